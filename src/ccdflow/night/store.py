"""The night's zarr store (``work.zarr``): masters, calibrated cubes and per-frame records.

Every product is marked complete only after its data is written, so a killed run leaves nothing
that a rerun would mistake for finished work.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec

from ccdflow.array.calibration import Master

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
        """Whether master ``name`` is complete and was built from the same inputs and parameters."""
        try:
            attrs = self.root("r")[f"masters/{name}"].attrs
        except (KeyError, FileNotFoundError, zarr.errors.GroupNotFoundError):
            return False
        return attrs.get("complete") is True and attrs.get("key") == key

    def write_master(self, name: str, *, data: np.ndarray, error: np.ndarray, count: np.ndarray,
                     attrs: dict[str, Any]) -> None:
        """Write a master's arrays, then its attributes with ``complete = True`` last."""
        group = self.root().require_group(f"masters/{name}")
        group.attrs["complete"] = False
        for label, array in (("data", data), ("error", error), ("count", count)):
            target = group.create_array(label, shape=array.shape, dtype=array.dtype,
                                        chunks=array.shape, compressors=[CODEC], overwrite=True)
            target[...] = array
        group.attrs.update({**attrs, "complete": True})

    def read_master(self, name: str) -> Master:
        """A master as the `Calibrator` uses it, with the FITS product's name and SHA-1."""
        return _read_master(str(self.path), name, self.master_attrs(name)["key"])

    def master_attrs(self, name: str) -> dict[str, Any]:
        """The attributes of master ``name``."""
        return dict(self.root("r")[f"masters/{name}"].attrs)

    # -- calibrated cubes -------------------------------------------------------------------------

    def ensure_cube(self, name: str, *, frames: list[str], shape: tuple[int, int],
                    rows: int) -> bool:
        """Create cube ``name`` unless it exists with these frames and shape; True if (re)created.

        Arrays ``image``, ``error`` (float32, NaN-filled) and ``mask`` (uint8), chunked
        ``(1, rows, columns)`` so that every frame writes only its own chunks.
        """
        root = self.root()
        path = f"cubes/{name}"
        if path in root:
            attrs = root[path].attrs
            if attrs.get("frames") == frames and list(attrs.get("shape", [])) == list(shape):
                return False
        group = root.require_group(path)
        for label, dtype, fill in (("image", np.float32, np.nan), ("error", np.float32, np.nan),
                                   ("mask", np.uint8, 0)):
            group.create_array(label, shape=(len(frames), *shape), dtype=dtype,
                               chunks=(1, rows, shape[1]), fill_value=fill, compressors=[CODEC],
                               overwrite=True)
        group.attrs.update({"frames": frames, "shape": list(shape)})
        records = root.require_group(f"records/{name}")
        for stem in list(records.group_keys()):
            del records[stem]
        return True

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

    # -- per-frame records ------------------------------------------------------------------------

    def record(self, cube: str, stem: str) -> dict[str, Any] | None:
        """The record of a finished frame, or None."""
        try:
            group = zarr.open_group(str(self.path), path=f"records/{cube}/{stem}", mode="r")
        except (KeyError, FileNotFoundError, zarr.errors.GroupNotFoundError):
            return None
        return dict(group.attrs)

    def write_record(self, cube: str, stem: str, attrs: dict[str, Any]) -> None:
        """Record a frame as finished (written last, after its FITS file and cube slices)."""
        group = zarr.open_group(str(self.path), path=f"records/{cube}/{stem}", mode="a")
        group.attrs.update(attrs)

    def forget_record(self, cube: str, stem: str) -> None:
        """Drop a frame's record, so it is redone."""
        try:
            records = zarr.open_group(str(self.path), path=f"records/{cube}", mode="a")
            if stem in records:
                del records[stem]
        except (KeyError, FileNotFoundError, zarr.errors.GroupNotFoundError):
            pass


@functools.lru_cache(maxsize=8)
def _read_master(store: str, name: str, key: str) -> Master:
    """Masters read once per worker process (keyed by their resume key, so a new one is reread)."""
    group = zarr.open_group(store, path=f"masters/{name}", mode="r")
    attrs = group.attrs
    return Master(data=group["data"][...], error=group["error"][...],
                  exptime=attrs.get("exptime", 1.0), name=attrs.get("fits_name"),
                  sha1=attrs.get("fits_sha1"), norm=attrs.get("norm"),
                  inv_exptime=attrs.get("inv_exptime"))


def cube_rows(shape: tuple[int, int]) -> int:
    """Rows per cube chunk: whole frames up to 4 MiB per chunk, else bands of that size."""
    return int(max(1, min(shape[0], (4 * 2**20) // (4 * shape[1]))))
