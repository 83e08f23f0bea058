"""Checking what a rerun reuses: products and store entries carry a size and checksum, verified.

A rerun trusts nothing it cannot check. Each FITS product is recorded with its size and SHA-1,
each array in ``work.zarr`` (a master, a frame's cube slices) with the SHA-1 of its values;
anything that no longer matches is redone. A ``zarr.json`` that cannot be parsed is removed
with the product it describes (`repair_store`), so the run rebuilds it instead of crashing.
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np

from ccdflow.io.location import Location, RemotePath, as_location, remove_tree, stat
from ccdflow.io.products import file_sha1

__all__ = ["STORE_ERRORS", "array_digest", "file_problem", "file_stamp", "repair_store",
           "reuse_problem"]

#: What reading a damaged zarr entry raises: unparsable metadata (``json`` ``ValueError``), a
#: missing array or group (``KeyError``, ``FileNotFoundError``), a chunk the codec rejects.
#: (A truncated lz4 chunk can also decode to garbage without any error: hence the digests.)
STORE_ERRORS = (OSError, ValueError, KeyError, RuntimeError, TypeError)


def array_digest(array: np.ndarray) -> str:
    """SHA-1 of an array's shape, dtype and values (native byte order).

    Examples
    --------
    >>> a = np.zeros((2, 3), np.float32)
    >>> array_digest(a) == array_digest(a.copy()), array_digest(a) == array_digest(a.T)
    (True, False)
    """
    array = np.ascontiguousarray(array)
    digest = hashlib.sha1(f"{array.shape}{array.dtype.str}".encode(), usedforsecurity=False)
    digest.update(array.data)
    return digest.hexdigest()


def file_stamp(path: str | os.PathLike | RemotePath, *, sha1: str | None = None
               ) -> dict[str, int | str]:
    """A product's size, modification time (ns), ETag (an object's) and SHA-1, when written.

    ``sha1``: the digest of the bytes just written, when the writer computed it (else the file is
    read).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "a.fits"
    >>> _ = path.write_bytes(b"x" * 2880)
    >>> file_stamp(path)["size"]
    2880
    """
    status = stat(path)
    return {"size": status.st_size, "mtime_ns": status.st_mtime_ns,
            "etag": getattr(status, "etag", ""), "sha1": sha1 or file_sha1(path)}


def file_problem(path: str | os.PathLike | RemotePath, stamp: dict | None, *,
                 content: bool = True) -> str | None:
    """Why a product cannot be reused (missing, other size, other checksum), or None if intact.

    Parameters
    ----------
    path : str or path-like
        The product.
    stamp : dict or None
        Its `file_stamp` when written; None (an entry from before stamps existed) is not trusted.
    content : bool
        Compare the SHA-1 always. Otherwise (``resume: metadata``) a file with the size and
        modification time it had when written is trusted without reading it, as ``make`` and
        ``rsync`` trust them; one whose time changed is still compared by SHA-1.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "a.fits"
    >>> _ = path.write_bytes(b"x" * 2880)
    >>> stamp = file_stamp(path)
    >>> file_problem(path, stamp) is None
    True
    >>> _ = path.write_bytes(b"x" * 100)
    >>> file_problem(path, stamp)
    'size 100 bytes, 2880 when written'
    """
    try:
        status = stat(path)
    except OSError:
        return "missing"
    if not stamp:
        return "no size and checksum recorded"
    if status.st_size != stamp.get("size"):
        return f"size {status.st_size} bytes, {stamp.get('size')} when written"
    if (not content and status.st_mtime_ns == stamp.get("mtime_ns")
            and getattr(status, "etag", "") == stamp.get("etag", "")):
        return None
    if file_sha1(path) != stamp.get("sha1"):
        return "content changed since written (SHA-1 differs)"
    return None


def repair_store(path: str | os.PathLike | RemotePath) -> list[str]:
    """Remove every store entry whose ``zarr.json`` cannot be parsed, so that it is rebuilt.

    A damaged entry under ``masters/<name>``, ``cubes/<name>``, ``stacks/<name>`` or
    ``records/<cube>/<frame>`` takes that whole product with it (a cube also takes its records, so
    its frames are redone); a damaged root or section ``zarr.json`` is rewritten empty of
    attributes (groups keep no attributes there).

    Parameters
    ----------
    path : str or path-like
        The store (``work.zarr``); a missing store is left alone.

    Returns
    -------
    list of str
        What was removed or rewritten, for the report.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> store = pathlib.Path(tempfile.mkdtemp()) / "work.zarr"
    >>> (store / "masters" / "bias").mkdir(parents=True)
    >>> _ = (store / "masters" / "bias" / "zarr.json").write_text('{"zarr_fo')
    >>> repair_store(store)
    ['work.zarr/masters/bias: metadata cannot be read; removed, to be rebuilt']
    >>> (store / "masters" / "bias").exists()
    False
    """
    root = as_location(path)
    messages: list[str] = []
    for meta in sorted(root.rglob("zarr.json"), key=lambda p: len(p.parts)):
        if not meta.exists() or _readable(meta):
            continue
        parts = meta.parent.relative_to(root).parts
        depth = 3 if parts[:1] == ("records",) else 2  # a record is one frame's
        if len(parts) < depth:  # the root or a section: its children carry their own metadata
            meta.write_text(json.dumps({"zarr_format": 3, "node_type": "group", "attributes": {}}))
            messages.append(f"{root.name}/{'/'.join(parts) or '.'}: metadata rewritten")
            continue
        victims = [root.joinpath(*parts[:depth])]
        if parts[0] == "cubes":
            victims.append(root / "records" / parts[1])
        for victim in victims:
            remove_tree(victim)
        messages.append(f"{root.name}/{'/'.join(parts[:depth])}: metadata cannot be read; "
                        "removed, to be rebuilt")
    return messages


def _readable(meta: Location) -> bool:
    try:
        content = json.loads(meta.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(content, dict) and content.get("node_type") in ("group", "array")


def reuse_problem(frame_plan, record: dict, store, *, cubes: dict | None = None,
                  stacking: bool = True, content: bool = True) -> str | None:
    """Why a calibrated frame recorded as finished cannot be reused, or None if it can.

    Its FITS product must have the size and SHA-1 recorded with it and, when the night stacks,
    its cube slices the recorded digests (a frame calibrated while the night did not stack has no
    slices: it is redone). With ``content`` false, files whose size and modification time are
    those recorded are trusted without reading them (`file_problem`).

    Parameters
    ----------
    frame_plan : ccdflow.night.plan.FramePlan
        The frame.
    record : dict
        Its record in the store (``output_stamp``, ``digests``).
    store : ccdflow.night.store.Store
        The night's store.
    cubes : dict, optional
        Cube name -> its arrays (or None where unreadable), filled as cubes are first opened: one
        shared dict opens each cube once for all the frames checked with it.
    stacking : bool
        Whether the night stacks (and so needs the frame's cube slices).
    content : bool
        Compare every checksum (``resume: content``), not only sizes and modification times.

    Returns
    -------
    str or None
    """
    problem = file_problem(frame_plan.output, record.get("output_stamp"), content=content)
    if problem:
        return f"output {problem}"
    if not stacking:
        return None
    if not record.get("digests"):
        return f"it has no slice in cube {frame_plan.cube} (calibrated when the night did not stack)"
    if not _slices_intact(frame_plan, record, store, {} if cubes is None else cubes,
                          content=content):
        return f"its slice of cube {frame_plan.cube} in {store.path.name} is damaged"
    return None


def _slices_intact(frame_plan, record: dict, store, cubes: dict, *, content: bool) -> bool:
    """Whether a frame's cube slices still hold the values recorded when they were written.

    Without ``content``, slices whose shard files have the sizes and modification times recorded
    are trusted; otherwise (or when those differ) their values' digests are compared.
    """
    if frame_plan.cube not in cubes:
        try:
            cubes[frame_plan.cube] = store.cube_arrays(frame_plan.cube)
        except STORE_ERRORS:  # zarr's GroupNotFoundError is an OSError and a ValueError
            cubes[frame_plan.cube] = None
    arrays = cubes[frame_plan.cube]
    if arrays is None:
        return False
    stamps = record.get("slice_stamps")
    if not content and stamps and store.slice_stamps(arrays, frame_plan.index) == stamps:
        return True
    try:
        return all(array_digest(arrays[label][frame_plan.index]) == digest
                   for label, digest in record["digests"].items())
    except STORE_ERRORS:
        return False
