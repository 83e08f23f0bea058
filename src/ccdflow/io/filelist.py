"""Frame lists: the CSV file list (``type, path[, hdu]``) and the scan of a folder of raw frames."""

from __future__ import annotations

import contextlib
import csv
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from astropy.io import fits

from ccdflow.errors import CcdflowError, ConfigError, FrameReadError
from ccdflow.io.detectors import assembled_header, header_detectors
from ccdflow.io.fits import read_header
from ccdflow.io.headers import frame_type
from ccdflow.io.location import RemotePath, as_location, is_local, resolve_cached

__all__ = ["ListedFrame", "drop_duplicates", "read_filelist", "scan_directory"]

FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".fz", ".fits.fz")


@dataclass(frozen=True)
class ListedFrame:
    """One entry of a frame list: canonical type, absolute path, HDU, and where it came from.

    ``error`` says why a scanned file cannot be read (it is then reported as failed), ``ignored``
    why a readable one is not reduced (no type card, a type ccdflow does not reduce); ``type`` is
    empty in both cases.
    """

    type: str
    path: Path
    hdu: int = 0
    origin: str = ""
    error: str | None = None
    ignored: str | None = None


def read_filelist(path: str | os.PathLike | RemotePath, *,
                  storage_options: Mapping[str, Any] | None = None) -> list[ListedFrame]:
    """Read a CSV file list of 2 or 3 columns: ``type, path[, hdu]``.

    Whitespace around fields is stripped, blank lines and lines starting with ``#`` are skipped,
    relative paths are relative to the list's folder. Types: light, dark, flat, bias, arc (and
    their usual synonyms such as ``zero`` or ``object``).

    Parameters
    ----------
    path : str, path-like or RemotePath
        The CSV file (a URL such as ``s3://bucket/night.csv`` too).
    storage_options : mapping, optional
        fsspec options for frames named by URL in a local list (a remote list's own are used for
        the frames beside it).

    Returns
    -------
    list of ListedFrame

    Raises
    ------
    ConfigError
        If the list cannot be read, or a line is malformed (its number and text are named).

    Examples
    --------
    >>> frames = read_filelist("night.csv")  # doctest: +SKIP
    """
    path = as_location(path, storage_options=storage_options)
    if storage_options is None and isinstance(path, RemotePath):
        storage_options = path.storage_options
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: spreadsheets often write a BOM
    except OSError as err:
        raise ConfigError(str(path), f"cannot read the file list: {err.strerror or err}") from err
    except UnicodeDecodeError as err:
        raise ConfigError(str(path), f"the file list is not UTF-8 text: {err}") from err
    frames = []
    folders: dict[Path, Path] = {}
    for number, row in enumerate(csv.reader(text.splitlines()), start=1):
        fields = [f.strip() for f in row]
        if not fields or not any(fields) or fields[0].startswith("#"):
            continue
        where = f"{path}:{number}"
        if len(fields) not in (2, 3) or not fields[1]:
            raise ConfigError(where, f"expected 'type, path[, hdu]', got {','.join(row)!r}")
        kind = frame_type(fields[0], key=where)
        hdu = 0
        if len(fields) == 3 and fields[2]:
            try:
                hdu = int(fields[2])
            except ValueError:
                raise ConfigError(where, f"HDU must be an integer, got {fields[2]!r}") from None
            if hdu < 0:
                raise ConfigError(where, f"HDU must be >= 0, got {hdu}")
        frame_path = as_location(fields[1], storage_options=storage_options)
        if not frame_path.is_absolute():
            frame_path = path.parent / frame_path
        frames.append(ListedFrame(kind, resolve_cached(frame_path, folders), hdu, where))
    if not frames:
        raise ConfigError(str(path), "the file list names no frames")
    return frames


def scan_directory(directory: str | os.PathLike | RemotePath) -> list[ListedFrame]:
    """List the FITS frames of a folder, typed by their ``IMAGETYP`` (or ``OBSTYPE``) card.

    One odd file never stops the scan: a file that cannot be read as FITS (empty, truncated,
    not FITS at all) is listed with its ``error``, and one without a type card or of a type
    ccdflow does not reduce (``FOCUS``, a stale ``MASTER BIAS``) with the reason it is
    ``ignored``.

    Parameters
    ----------
    directory : str or path-like
        Folder scanned (not recursively) for ``.fits``, ``.fit``, ``.fts``, ``.fz`` and ``.gz``.

    Returns
    -------
    list of ListedFrame
        Sorted by file name.

    Raises
    ------
    ConfigError
        If the folder is missing or holds no FITS file name at all.

    Examples
    --------
    >>> frames = scan_directory("raw/")  # doctest: +SKIP
    """
    directory = as_location(directory)
    if not directory.is_dir():
        raise ConfigError(str(directory), "not a folder")
    frames = [_classify(path) for path in sorted(directory.iterdir())
              if path.name.lower().endswith(FITS_SUFFIXES) and path.is_file()]
    if not frames:
        raise ConfigError(str(directory), "no FITS frames found")
    return frames


def _type_header(path: Path) -> tuple[int, fits.Header]:
    """The header that says a frame's type (for one extension per amplifier: see below).

    An empty primary before one extension per amplifier: the primary's cards completed by the
    first amplifier's.
    """
    try:
        return read_header(path)
    except FrameReadError as err:
        try:
            detectors = header_detectors(path)
        except CcdflowError:
            detectors = None  # a damaged file: the frame reader's reason is the one to give
        if not detectors:
            raise err from None
        return 0, assembled_header(path, detectors[0])


def _classify(path: Path) -> ListedFrame:
    try:
        hdu, header = _type_header(path)
    except CcdflowError as err:
        return ListedFrame("", path.resolve(), 0, str(path), error=f"{type(err).__name__}: {err}")
    value = header.get("IMAGETYP", header.get("OBSTYPE"))
    if value is None:
        return ListedFrame("", path.resolve(), hdu, str(path),
                           ignored="no IMAGETYP or OBSTYPE card to tell the frame type")
    try:
        kind = frame_type(str(value), key=f"{path}: IMAGETYP")
    except ConfigError as err:
        return ListedFrame("", path.resolve(), hdu, str(path), ignored=err.reason)
    return ListedFrame(kind, path.resolve(), hdu, str(path))


def drop_duplicates(frames: list[ListedFrame]) -> tuple[list[ListedFrame], list[str]]:
    """Keep the first listing of each frame; a repeated one is dropped with a warning.

    The same frame is the same HDU of the same file: same resolved path, or same device and
    inode (a hard link, or a path through a symbolic link). A file listed under two types is
    kept under the first.

    Parameters
    ----------
    frames : list of ListedFrame
        As listed.

    Returns
    -------
    (list of ListedFrame, list of str)
        The frames, each once, in order; one warning per dropped line.

    Examples
    --------
    >>> a = ListedFrame("bias", Path("/no/such/b1.fits"), 0, "night.csv:2")
    >>> b = ListedFrame("dark", Path("/no/such/b1.fits"), 0, "night.csv:5")
    >>> kept, warnings = drop_duplicates([a, b])
    >>> len(kept), warnings[0]
    (1, 'night.csv:5: /no/such/b1.fits[0] is already listed as bias at night.csv:2; counted once')
    """
    seen: dict[tuple, ListedFrame] = {}
    kept, warnings = [], []
    for frame in frames:
        identity: tuple = ("path", str(frame.path), frame.hdu)  # an object store has no links
        if is_local(frame.path):
            with contextlib.suppress(OSError):  # unreadable: reported once, under its path
                st = os.stat(frame.path)
                identity = ("inode", st.st_dev, st.st_ino, frame.hdu)
        first = seen.get(identity)
        if first is None:
            seen[identity] = frame
            kept.append(frame)
            continue
        kind = first.type or "an unused frame"
        warnings.append(f"{frame.origin}: {frame.path}[{frame.hdu}] is already listed as {kind} "
                        f"at {first.origin}; counted once")
    return kept, warnings
