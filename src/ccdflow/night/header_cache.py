"""The described frames of a night, kept in its output folder so that a rerun reads no header twice.

An entry is used only for the same file (absolute path, size, modification time in ns, and the
SHA-1 with ``resume: content``), listed with the same type and HDU; anything else is read again.
A cache that cannot be read or does not have the expected form is ignored (and later rewritten).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ccdflow._version import __version__
from ccdflow.io.location import RemotePath, as_location
from ccdflow.io.write import atomic_path
from ccdflow.night.frames import PLAN_KEYS, FrameInfo

__all__ = ["CACHE_NAME", "load_header_cache", "save_header_cache"]

logger = logging.getLogger(__name__)

#: The cache's file name inside the output folder.
CACHE_NAME = ".ccdflow-headers.json"
_FORMAT = 3  # 2: the filter read by `frame_filter`; 3: the values planning reads


def _entry(frame: FrameInfo, listed_hdu: int) -> dict:
    return {"key": [list(frame.identity), frame.type, listed_hdu], "hdu": frame.hdu,
            "shape": list(frame.shape), "exptime": frame.exptime, "filter": frame.filter,
            "object": frame.object, "processed": frame.processed, "header": frame.header,
            "values": [list(pair) for pair in frame.values]}


def _frame(entry: dict, options: Mapping[str, Any] | None) -> tuple[tuple, FrameInfo]:
    identity, kind, listed_hdu = entry["key"]
    path, size, mtime_ns, *rest = identity
    if not (isinstance(path, str) and isinstance(size, int) and isinstance(mtime_ns, int)
            and isinstance(kind, str) and isinstance(listed_hdu, int)
            and isinstance(entry["header"], str) and len(entry["header"]) % 80 == 0
            and all(isinstance(key, str) and key in PLAN_KEYS for key, _ in entry["values"])):
        raise ValueError("malformed entry")
    ny, nx = entry["shape"]
    exptime = entry["exptime"]
    frame = FrameInfo(type=kind, path=as_location(path, storage_options=options),
                      hdu=int(entry["hdu"]), shape=(int(ny), int(nx)),
                      exptime=None if exptime is None else float(exptime),
                      filter=str(entry["filter"]), object=str(entry["object"]),
                      processed=bool(entry["processed"]), header=entry["header"],
                      values=tuple((key, value) for key, value in entry["values"]),
                      identity=tuple(identity))
    return (frame.identity, kind, listed_hdu), frame


def load_header_cache(output: str | Path | RemotePath, *,
                      storage_options: Mapping[str, Any] | None = None) -> dict[tuple, FrameInfo]:
    """The frames described by an earlier plan of this output folder, by file identity.

    Parameters
    ----------
    output : path-like or RemotePath
        The night's output folder.
    storage_options : mapping, optional
        fsspec options of the frames named by URL.

    Returns
    -------
    dict
        ``(identity, listed type, listed hdu) -> FrameInfo``; empty when there is no cache, or
        when it is damaged, from another ccdflow version or of another form.

    Examples
    --------
    >>> import tempfile
    >>> load_header_cache(tempfile.mkdtemp())
    {}
    """
    path = as_location(output) / CACHE_NAME
    try:
        data = json.loads(path.read_text())
        if data.get("format") != _FORMAT or data.get("version") != __version__:
            return {}
        return dict(_frame(entry, storage_options) for entry in data["frames"])
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        logger.warning("%s: header cache ignored (%s: %s)", path, type(err).__name__, err)
        return {}


def save_header_cache(output: str | Path, described: Iterable[tuple[FrameInfo, int]], *,
                      known: dict[tuple, FrameInfo] | None = None) -> None:
    """Keep the readable described frames in ``<output>/.ccdflow-headers.json`` (atomically).

    Nothing is written when they are exactly the ``known`` ones (`load_header_cache`): a rerun
    of an unchanged night leaves the cache as it is.

    Parameters
    ----------
    output : path-like
        The night's output folder; it must exist (a plan alone never creates it).
    described : iterable of (FrameInfo, int)
        Each described frame with the HDU it was listed with; frames with an error are left out,
        so that they are read again next time.
    known : dict, optional
        What the cache held when the plan started.

    Examples
    --------
    >>> import tempfile
    >>> from astropy.io import fits
    >>> header = fits.Header([("NAXIS1", 4), ("NAXIS2", 3), ("EXPTIME", 2.0)])
    >>> frame = FrameInfo.from_header(type="bias", path=Path("/raw/b.fits"), hdu=0, header=header,
    ...                               identity=("/raw/b.fits", 5760, 1))
    >>> folder = tempfile.mkdtemp()
    >>> save_header_cache(folder, [(frame, 0)])
    >>> load_header_cache(folder)[(("/raw/b.fits", 5760, 1), "bias", 0)] == frame
    True
    """
    kept = [(frame, hdu) for frame, hdu in described
            # frames read through a detector are described again (one file, several entries)
            if frame.error is None and frame.identity and not frame.detector]
    keys = {(frame.identity, frame.type, hdu) for frame, hdu in kept}
    if known is not None and len(keys) == len(kept) and keys == set(known):
        return
    frames = [_entry(frame, hdu) for frame, hdu in kept]
    text = json.dumps({"format": _FORMAT, "version": __version__, "frames": frames})
    with atomic_path(as_location(output) / CACHE_NAME) as tmp:
        tmp.write_text(text)
