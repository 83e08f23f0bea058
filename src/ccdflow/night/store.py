"""The night's zarr store (``work.zarr``): masters and calibrated cubes (the lights' records: `records`).

Every product is marked complete only after its data is written, so a killed run leaves nothing
that a rerun would mistake for finished work.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec

from ccdflow.array.calibration import Master
from ccdflow.errors import MissingCalibrationError
from ccdflow.night.verify import STORE_ERRORS, array_digest

__all__ = ["Store", "cube_rows"]

# Fast and lossless: the cube is an intermediate, written once per frame and read for stacks.
CODEC = BloscCodec(cname="lz4", clevel=1, shuffle="bitshuffle")


class Store:
    """Access to ``work.zarr``; cheap to pickle (a path), so tasks on workers open it themselves."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __reduce__(self):
        return (Store, (str(self.path),))

    def root(self, mode: str = "a") -> zarr.Group:
        """The root group."""
        return zarr.open_group(str(self.path), mode=mode)

    # -- masters ----------------------------------------------------------------------------------

    def master_is_current(self, name: str, key: str) -> bool:
        """Whether master ``name`` is complete, intact and built from the same inputs and parameters.

        Intact: every array's values still have the digest recorded when it was written (a
        deleted or truncated chunk reads as fill values or garbage, never as the master).
        """
        try:
            group = zarr.open_group(str(self.path), path=f"masters/{name}", mode="r")
            attrs = dict(group.attrs)
            if attrs.get("complete") is not True or attrs.get("key") != key:
                return False
            digests = attrs.get("digests") or {}
            return bool(digests) and all(array_digest(group[label][...]) == digest
                                         for label, digest in digests.items())
        except (*STORE_ERRORS, zarr.errors.GroupNotFoundError):
            return False

    def write_master(self, name: str, *, data: np.ndarray, error: np.ndarray, count: np.ndarray,
                     attrs: dict[str, Any]) -> None:
        """Write a master's arrays, then its attributes (digests, ``complete = True``) last.

        Whatever was there before (possibly damaged) is removed first.
        """
        shutil.rmtree(self.path / "masters" / name, ignore_errors=True)
        group = self.root().require_group(f"masters/{name}")
        group.attrs["complete"] = False
        digests = {}
        for label, array in (("data", data), ("error", error), ("count", count)):
            target = group.create_array(label, shape=array.shape, dtype=array.dtype,
                                        chunks=array.shape, compressors=[CODEC], overwrite=True)
            target[...] = array
            digests[label] = array_digest(np.asarray(array, dtype=array.dtype))
        group.attrs.update({**attrs, "digests": digests, "complete": True})

    def read_master(self, name: str, *, key: str | None = None) -> Master:
        """A master as the `Calibrator` uses it, with the FITS product's name and SHA-1.

        Read from the store on every call (workers keep what they read: `worker_cache`). With
        ``key``, the stored master must have been built with that resume key.
        """
        try:
            group = zarr.open_group(str(self.path), path=f"masters/{name}", mode="r",
                                    zarr_format=3)
            attrs = dict(group.attrs)
        except (*STORE_ERRORS, zarr.errors.GroupNotFoundError) as err:
            raise MissingCalibrationError(
                f"master {name} cannot be read from {self.path} ({type(err).__name__}: {err}); "
                f"a rerun rebuilds it, or delete {self.path}/masters/{name}") from err
        if key is not None and attrs.get("key") != key:
            raise MissingCalibrationError(
                f"master {name} in {self.path} is not the one this night built (resume key "
                f"{attrs.get('key')!r}, expected {key!r}); a rerun rebuilds it")
        return _read_master(group, attrs, store=str(self.path), name=name)

    def master_attrs(self, name: str) -> dict[str, Any]:
        """The attributes of master ``name``."""
        return dict(self.root("r")[f"masters/{name}"].attrs)

    # -- calibrated cubes -------------------------------------------------------------------------

    def ensure_cube(self, name: str, *, stems: list[str], shape: tuple[int, int],
                    rows: int) -> dict[str, int]:
        """Open (or create) cube ``name`` and give each frame a slice; its stem -> index map.

        A frame keeps its slice across runs: the map (attribute ``index``) only grows, a new stem
        is appended and the arrays grow along axis 0 with it, so adding a frame to a finished
        night leaves every other slice where it was. A stem no longer listed keeps its slice,
        unused (nothing reads it). Only a cube of another image shape, or a damaged one, is made
        afresh (its records go with it, so its frames are redone).

        Arrays ``image``, ``error`` (float32, NaN-filled) and ``mask`` (uint8), chunked
        ``(1, rows, columns)`` so that every frame writes only its own chunks.

        Examples
        --------
        >>> import tempfile
        >>> store = Store(tempfile.mkdtemp() + "/work.zarr")
        >>> store.ensure_cube("lights_V", stems=["a", "b"], shape=(4, 4), rows=4)
        {'a': 0, 'b': 1}
        >>> store.ensure_cube("lights_V", stems=["c", "a"], shape=(4, 4), rows=4)
        {'a': 0, 'b': 1, 'c': 2}
        >>> store.cube_arrays("lights_V")["image"].shape
        (3, 4, 4)
        """
        root = self.root()
        path = f"cubes/{name}"
        index = self._cube_index(root, path, shape)
        if index is None:
            self._new_cube(root, name, shape=shape, rows=rows)
            index = {}
        new = [stem for stem in dict.fromkeys(stems) if stem not in index]
        index.update({stem: len(index) + i for i, stem in enumerate(new)})
        group = root[path]
        for label in ("image", "error", "mask"):
            if group[label].shape[0] < len(index):
                group[label].resize((len(index), *shape))
        # the map is written after the arrays grew: it never names a slice that is not there
        if group.attrs.get("index") != index:
            group.attrs["index"] = index
        return index

    @staticmethod
    def _cube_index(root: zarr.Group, path: str, shape: tuple[int, int]) -> dict[str, int] | None:
        """The stem -> index map of an intact cube of this shape, or None (absent, other, damaged)."""
        try:
            if path not in root:
                return None
            group = root[path]
            attrs = group.attrs
            index = attrs.get("index")
            if index is None and isinstance(attrs.get("frames"), list):
                # a store written before the map: its frames sit in the order they were listed
                index = {stem: i for i, stem in enumerate(attrs["frames"])}
            if (not isinstance(index, dict) or list(attrs.get("shape", [])) != list(shape)
                    or not all(label in group for label in ("image", "error", "mask"))):
                return None
            if any(group[label].shape[0] < len(index) for label in ("image", "error", "mask")):
                return None
            return {str(stem): int(i) for stem, i in index.items()}
        except STORE_ERRORS:
            return None  # damaged: made afresh

    def _new_cube(self, root: zarr.Group, name: str, *, shape: tuple[int, int], rows: int) -> None:
        """An empty cube (no slices yet); the cube's old records go, so its frames are redone."""
        shutil.rmtree(self.path / "cubes" / name, ignore_errors=True)
        group = root.require_group(f"cubes/{name}")
        for label, dtype, fill in (("image", np.float32, np.nan), ("error", np.float32, np.nan),
                                   ("mask", np.uint8, 0)):
            group.create_array(label, shape=(0, *shape), dtype=dtype,
                               chunks=(1, rows, shape[1]), fill_value=fill, compressors=[CODEC],
                               overwrite=True)
        group.attrs.update({"index": {}, "shape": list(shape)})
        records = root.require_group(f"records/{name}")
        for stem in list(records.group_keys()):
            del records[stem]

    def write_frame(self, cube: str, index: int, image: np.ndarray, error: np.ndarray,
                    mask: np.ndarray) -> None:
        """Write one frame's slices of a cube."""
        group = zarr.open_group(str(self.path), path=f"cubes/{cube}", mode="r+")
        group["image"][index] = image
        group["error"][index] = error
        group["mask"][index] = mask

    def cube_arrays(self, cube: str) -> dict[str, zarr.Array]:
        """The arrays of a cube, for reading."""
        group = zarr.open_group(str(self.path), path=f"cubes/{cube}", mode="r")
        return {label: group[label] for label in ("image", "error", "mask")}

    # -- per-frame records (the table is `ccdflow.night.records.RecordTable`) --------------------

    def record(self, cube: str, stem: str) -> dict[str, Any] | None:
        """A frame's record as stores written before the record table kept it (one group each)."""
        try:
            group = zarr.open_group(str(self.path), path=f"records/{cube}/{stem}", mode="r")
            return dict(group.attrs)
        except (*STORE_ERRORS, zarr.errors.GroupNotFoundError):
            return None


def _read_master(group: zarr.Group, attrs: dict[str, Any], *, store: str, name: str) -> Master:
    """A master's arrays, each checked against the digest recorded with it.

    A damaged master is an error, never a silent fill value.
    """
    try:
        arrays = {label: group[label][...] for label in ("data", "error")}
        damaged = [label for label, array in arrays.items()
                   if array_digest(array) != (attrs.get("digests") or {}).get(label)]
    except (*STORE_ERRORS, zarr.errors.GroupNotFoundError) as err:
        damaged = [f"unreadable ({type(err).__name__}: {err})"]
    if damaged:
        raise MissingCalibrationError(
            f"master {name} in {store} is damaged ({', '.join(damaged)}); a rerun rebuilds it, "
            f"or delete {store}/masters/{name}")
    return Master(data=arrays["data"], error=arrays["error"],
                  exptime=attrs.get("exptime", 1.0), name=attrs.get("fits_name"),
                  sha1=attrs.get("fits_sha1"), norm=attrs.get("norm"),
                  inv_exptime=attrs.get("inv_exptime"))


def cube_rows(shape: tuple[int, int]) -> int:
    """Rows per cube chunk: whole frames up to 4 MiB per chunk, else bands of that size."""
    return int(max(1, min(shape[0], (4 * 2**20) // (4 * shape[1]))))
