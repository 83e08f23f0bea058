"""The night's zarr store (``work.zarr``): masters and calibrated cubes (the lights' records: `records`).

Every product is marked complete only after its data is written, so a killed run leaves nothing
that a rerun would mistake for finished work.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec

from ccdflow.array.calibration import Master
from ccdflow.errors import MissingCalibrationError
from ccdflow.io.location import RemotePath, as_location, remove_tree, stat, zarr_target
from ccdflow.night.shards import ShardLayout, read_band
from ccdflow.night.verify import STORE_ERRORS, array_digest

__all__ = ["Store", "cube_rows"]

# Fast and lossless: the cube is an intermediate, written once per frame and read for stacks.
CODEC = BloscCodec(cname="lz4", clevel=1, shuffle="bitshuffle")


class Store:
    """Access to ``work.zarr``; cheap to pickle (a path or URL), so tasks on workers open it themselves.

    A URL (``s3://bucket/night/work.zarr``, a `RemotePath` with its storage options) is opened
    through zarr's fsspec store.
    """

    def __init__(self, path: str | Path | RemotePath):
        self.path = as_location(path)

    def __reduce__(self):
        return (Store, (self.path if isinstance(self.path, RemotePath) else str(self.path),))

    def group(self, path: str = "", *, mode: str = "a", **kwargs) -> zarr.Group:
        """The group at ``path`` in the store."""
        return zarr.open_group(**zarr_target(self.path), path=path, mode=mode, **kwargs)

    def root(self, mode: str = "a") -> zarr.Group:
        """The root group."""
        return self.group(mode=mode)

    # -- masters ----------------------------------------------------------------------------------

    def master_is_current(self, name: str, key: str) -> bool:
        """Whether master ``name`` is complete, intact and built from the same inputs and parameters.

        Intact: every array's values still have the digest recorded when it was written (a
        deleted or truncated chunk reads as fill values or garbage, never as the master).
        """
        try:
            group = self.group(f"masters/{name}", mode="r")
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
        remove_tree(self.path / "masters" / name)
        group = self.root().require_group(f"masters/{name}")
        group.attrs["complete"] = False
        digests = {}
        for label, array in (("data", data), ("error", error), ("count", count)):
            target = group.create_array(label, shape=array.shape, dtype=array.dtype,
                                        chunks=array.shape, compressors=[CODEC], overwrite=True)
            target[...] = array
            digests[label] = array_digest(np.asarray(array, dtype=array.dtype))
        group.attrs.update({**attrs, "digests": digests, "complete": True})

    def begin_master(self, name: str, *, shape: tuple[int, int], rows: int) -> None:
        """Make master ``name`` afresh and incomplete: empty arrays in chunks of ``rows`` full rows.

        The tasks that compute a master's row bands write them (`write_master_rows`), each into
        chunks of its own, and `complete_master` marks it done. Whatever was there is removed.

        Examples
        --------
        >>> import tempfile
        >>> store = Store(tempfile.mkdtemp() + "/work.zarr")
        >>> store.begin_master("bias", shape=(4, 3), rows=2)
        >>> store.write_master_rows("bias", 2, data=np.ones((2, 3), np.float32),
        ...                         error=np.ones((2, 3), np.float32), count=np.ones((2, 3), np.uint16))
        >>> store.master_attrs("bias")["complete"], store.master_is_current("bias", "")
        (False, False)
        >>> store.complete_master("bias", {"key": "k", "digests": store.master_digests("bias")})
        >>> store.master_is_current("bias", "k"), float(np.nansum(store.read_master("bias").data))
        (True, 6.0)
        """
        remove_tree(self.path / "masters" / name)
        group = self.root().require_group(f"masters/{name}")
        group.attrs["complete"] = False
        for label, dtype, fill in (("data", np.float32, np.nan), ("error", np.float32, np.nan),
                                   ("count", np.uint16, 0)):
            group.create_array(label, shape=shape, dtype=dtype, chunks=(max(1, rows), shape[1]),
                               fill_value=fill, compressors=[CODEC], overwrite=True)

    def write_master_rows(self, name: str, start: int, *, data: np.ndarray, error: np.ndarray,
                          count: np.ndarray) -> None:
        """Write rows ``start:start + len(data)`` of an incomplete master (`begin_master`).

        The rows must cover whole chunks of the arrays (the last chunk may end at the last row),
        so that tasks writing different bands never touch one chunk.
        """
        arrays = self.master_arrays(name, mode="r+")
        for label, values in (("data", data), ("error", error), ("count", count)):
            arrays[label][start:start + values.shape[0]] = values

    def master_arrays(self, name: str, *, mode: str = "r") -> dict[str, zarr.Array]:
        """A master's ``data``, ``error`` and ``count`` arrays as stored (complete or not)."""
        group = self.group(f"masters/{name}", mode=mode)
        return {label: group[label] for label in ("data", "error", "count")}

    def master_digests(self, name: str) -> dict[str, str]:
        """The digests of a master's arrays as stored (read whole: run it where the master is)."""
        return {label: array_digest(array[...]) for label, array in self.master_arrays(name).items()}

    def complete_master(self, name: str, attrs: dict[str, Any]) -> None:
        """Record a master's attributes (with its ``digests``, `master_digests`), ``complete`` last."""
        group = self.group(f"masters/{name}", mode="r+")
        group.attrs.update({**attrs, "complete": True})

    def read_master(self, name: str, *, key: str | None = None) -> Master:
        """A master as the `Calibrator` uses it, with the FITS product's name and SHA-1.

        Read from the store on every call (workers keep what they read: `worker_cache`). With
        ``key``, the stored master must have been built with that resume key.
        """
        try:
            group = self.group(f"masters/{name}", mode="r", zarr_format=3)
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

        Arrays ``image``, ``error`` (float32, NaN-filled) and ``mask`` (uint8), sharded: one
        shard per frame (what one light's task writes, a single file per array), made of inner
        chunks of ``rows`` full-width rows, so a stack reads just the rows it combines of every
        frame (`read_rows`). ``rows`` need not divide the image's height.

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
        remove_tree(self.path / "cubes" / name)
        group = root.require_group(f"cubes/{name}")
        rows = max(1, min(rows, shape[0]))
        # a shard must hold whole inner chunks: the last band may run past the image (not stored)
        shard = (1, -(-shape[0] // rows) * rows, shape[1])
        for label, dtype, fill in (("image", np.float32, np.nan), ("error", np.float32, np.nan),
                                   ("mask", np.uint8, 0)):
            group.create_array(label, shape=(0, *shape), dtype=dtype, shards=shard,
                               chunks=(1, rows, shape[1]), fill_value=fill, compressors=[CODEC],
                               overwrite=True)
        group.attrs.update({"index": {}, "shape": list(shape)})
        records = root.require_group(f"records/{name}")
        for stem in list(records.group_keys()):
            del records[stem]

    def write_frame(self, cube: str, index: int, image: np.ndarray, error: np.ndarray,
                    mask: np.ndarray, *, arrays: dict[str, zarr.Array] | None = None) -> None:
        """Write one frame's slices of a cube (its shard of each array, made afresh).

        ``arrays``: the cube's arrays when already open (a worker keeps them).
        """
        group = arrays or self.group(f"cubes/{cube}", mode="r+")
        for label, values in (("image", image), ("error", error), ("mask", mask)):
            # zarr merges a shard write into the shard on disk, reading it first: a damaged one
            # would fail the write, so the frame's old chunks (key c/<index>/..., the default
            # encoding) are removed and the frame is written whole
            remove_tree(self.path / "cubes" / cube / label / "c" / str(index))
            group[label][index] = values

    def slice_stamps(self, arrays: dict[str, zarr.Array], index: int) -> dict[str, list[int]]:
        """Size, modification time (ns) and ETag (objects) of the files of a frame's cube slices.

        ``arrays``: the cube's (`cube_arrays`). A slice never written has no file: ``[-1, -1, '']``.
        What a rerun compares (`ccdflow.night.verify`) before trusting a slice unread.

        Examples
        --------
        >>> import tempfile
        >>> store = Store(tempfile.mkdtemp() + "/work.zarr")
        >>> _ = store.ensure_cube("lights_V", stems=["a"], shape=(2, 2), rows=2)
        >>> store.slice_stamps(store.cube_arrays("lights_V"), 0)["image"]
        [-1, -1, '']
        """
        stamps = {}
        for label, array in arrays.items():
            key = array.metadata.chunk_key_encoding.encode_chunk_key((index, 0, 0))
            try:
                status = stat(self.path / array.path / key)
                stamps[label] = [status.st_size, status.st_mtime_ns, getattr(status, "etag", "")]
            except OSError:
                stamps[label] = [-1, -1, ""]
        return stamps

    def cube_arrays(self, cube: str) -> dict[str, zarr.Array]:
        """The arrays of a cube, for reading."""
        group = self.group(f"cubes/{cube}", mode="r")
        return {label: group[label] for label in ("image", "error", "mask")}

    def read_rows(self, sources: list[tuple[str, list[int]]], rows: tuple[int, int]) -> np.ndarray:
        """Rows ``[r0, r1)`` of frames' images, their flagged pixels NaN: one band of a stack.

        Parameters
        ----------
        sources : list of (str, list of int)
            Cube names and the slices to read from each, in the order the frames are stacked.
        rows : tuple of int
            ``(r0, r1)``, 0-based, half-open.

        Returns
        -------
        numpy.ndarray
            ``(frames, r1 - r0, columns)`` float32; a pixel whose mask is not 0 (bad, saturated,
            cosmic ray, ...) is NaN, so it never enters a stack.

        Examples
        --------
        >>> import tempfile
        >>> store = Store(tempfile.mkdtemp() + "/work.zarr")
        >>> index = store.ensure_cube("lights_V", stems=["a", "b"], shape=(4, 3), rows=2)
        >>> image = np.arange(12, dtype=np.float32).reshape(4, 3)
        >>> mask = np.zeros((4, 3), np.uint8); mask[2, 1] = 1
        >>> store.write_frame("lights_V", 1, image, image, mask)
        >>> store.read_rows([("lights_V", [1])], (1, 3))
        array([[[ 3.,  4.,  5.],
                [ 6., nan,  8.]]], dtype=float32)
        """
        r0, r1 = rows
        arrays = {cube: self.cube_arrays(cube) for cube, _ in sources}
        columns = arrays[sources[0][0]]["image"].shape[2]
        out = np.empty((sum(len(indices) for _, indices in sources), r1 - r0, columns), np.float32)
        slot = 0
        for cube, indices in sources:
            image, mask = arrays[cube]["image"], arrays[cube]["mask"]
            if ShardLayout.of(image) and ShardLayout.of(mask):
                _read_flagged(image, mask, indices, rows, out=out[slot:slot + len(indices)])
                slot += len(indices)
                continue
            for start, stop in _runs(indices):
                # another layout (a cube written before shards): zarr reads a run of consecutive
                # frames in one call, a basic slice (fancy indexing over many frames holds many
                # times the band)
                n = stop - start
                out[slot:slot + n] = image[start:stop, r0:r1, :]
                out[slot:slot + n][mask[start:stop, r0:r1, :] != 0] = np.nan
                slot += n
        return out

    # -- per-frame records (the table is `ccdflow.night.records.RecordTable`) --------------------

    def record(self, cube: str, stem: str) -> dict[str, Any] | None:
        """A frame's record as stores written before the record table kept it (one group each)."""
        try:
            group = self.group(f"records/{cube}/{stem}", mode="r")
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


#: Bytes of one inner chunk of a cube's float32 arrays: small enough that a stack's row band of
#: many frames is read with little waste, large enough that a frame's shard has few chunks.
CUBE_CHUNK_BYTES = 64 * 2**10


def _read_flagged(image: zarr.Array, mask: zarr.Array, indices: list[int], rows: tuple[int, int],
                  *, out: np.ndarray) -> None:
    """Frames' rows of a sharded cube into ``out``, flagged pixels NaN.

    The images are decompressed straight into ``out`` and the masks a few frames at a time, so
    the band costs little more than its float32 values.
    """
    read_band(image, indices, rows, out=out)
    flags = np.empty((min(_MASK_FRAMES, len(indices)), *out.shape[1:]), np.uint8)
    for k in range(0, len(indices), _MASK_FRAMES):
        some = indices[k:k + _MASK_FRAMES]
        read_band(mask, some, rows, out=flags[:len(some)])
        out[k:k + len(some)][flags[:len(some)] != 0] = np.nan


#: Frames whose masks are held at once while a band is read (each one band of uint8).
_MASK_FRAMES = 16


def _runs(indices: list[int]) -> list[tuple[int, int]]:
    """Consecutive runs ``[start, stop)`` of a list of indices, in its order."""
    runs: list[list[int]] = []
    for i in indices:
        if runs and i == runs[-1][1]:
            runs[-1][1] = i + 1
        else:
            runs.append([i, i + 1])
    return [(a, b) for a, b in runs]


def cube_rows(shape: tuple[int, int]) -> int:
    """Rows per inner chunk of a cube: full-width bands of about `CUBE_CHUNK_BYTES` (float32).

    Examples
    --------
    >>> cube_rows((512, 512)), cube_rows((2048, 2048)), cube_rows((4096, 4096)), cube_rows((10, 64))
    (32, 8, 4, 10)
    """
    return int(max(1, min(shape[0], CUBE_CHUNK_BYTES // (4 * shape[1]))))
