"""Frame lists: the CSV file list (``type, path[, hdu]``) and the scan of a folder of raw frames."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

from ccdflow.errors import ConfigError
from ccdflow.io.fits import read_header
from ccdflow.io.headers import frame_type

__all__ = ["ListedFrame", "read_filelist", "scan_directory"]

FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".fz", ".fits.fz")


@dataclass(frozen=True)
class ListedFrame:
    """One entry of a frame list: canonical type, absolute path, HDU, and where it came from."""

    type: str
    path: Path
    hdu: int = 0
    origin: str = ""


def read_filelist(path: str | os.PathLike) -> list[ListedFrame]:
    """Read a CSV file list of 2 or 3 columns: ``type, path[, hdu]``.

    Whitespace around fields is stripped, blank lines and lines starting with ``#`` are skipped,
    relative paths are relative to the list's folder. Types: light, dark, flat, bias, arc (and
    their usual synonyms such as ``zero`` or ``object``).

    Parameters
    ----------
    path : str or path-like
        The CSV file.

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
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: spreadsheets often write a BOM
    except OSError as err:
        raise ConfigError(str(path), f"cannot read the file list: {err.strerror}") from err
    except UnicodeDecodeError as err:
        raise ConfigError(str(path), f"the file list is not UTF-8 text: {err}") from err
    frames = []
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
        frame_path = Path(fields[1]).expanduser()
        if not frame_path.is_absolute():
            frame_path = path.parent / frame_path
        frames.append(ListedFrame(kind, frame_path.resolve(), hdu, where))
    if not frames:
        raise ConfigError(str(path), "the file list names no frames")
    return frames


def scan_directory(directory: str | os.PathLike) -> list[ListedFrame]:
    """List the FITS frames of a folder, typed by their ``IMAGETYP`` (or ``OBSTYPE``) card.

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
        If the folder is missing or holds no FITS frame, or a frame's type card is missing or
        unknown (the file is named).
    FrameReadError
        If a frame cannot be read.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise ConfigError(str(directory), "not a folder")
    frames = []
    for path in sorted(directory.iterdir()):
        if not path.name.lower().endswith(FITS_SUFFIXES) or not path.is_file():
            continue
        hdu, header = read_header(path)
        value = header.get("IMAGETYP", header.get("OBSTYPE"))
        if value is None:
            raise ConfigError(str(path), "no IMAGETYP or OBSTYPE card to tell the frame type")
        frames.append(ListedFrame(frame_type(str(value), key=f"{path}: IMAGETYP"), path.resolve(),
                                  hdu, str(path)))
    if not frames:
        raise ConfigError(str(directory), "no FITS frames found")
    return frames
