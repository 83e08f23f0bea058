"""The frame table of a night: every listed frame with the header facts the plan needs."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from astropy.io import fits

from ccdflow.errors import CcdflowError
from ccdflow.io.filelist import ListedFrame
from ccdflow.io.fits import read_header
from ccdflow.io.headers import find_exposure_time
from ccdflow.io.names import safe_name
from ccdflow.io.products import file_sha1

__all__ = ["FrameInfo", "describe_frames", "file_identity", "output_stem"]


@dataclass(frozen=True)
class FrameInfo:
    """A listed frame and what its header says; ``error`` is set when it could not be read."""

    type: str
    path: Path
    hdu: int
    shape: tuple[int, int] | None = None
    exptime: float | None = None
    filter: str = ""
    object: str = ""
    processed: bool = False  # floating-point or rescaled data: a reduced product, not a raw readout
    header: str = ""  # the header as FITS text: small, picklable, exact
    identity: tuple = ()
    error: str | None = None

    def fits_header(self) -> fits.Header:
        """The frame's header."""
        return fits.Header.fromstring(self.header)

    @property
    def stem(self) -> str:
        """The file name without FITS and compression suffixes, made safe (`safe_name`)."""
        return safe_name(output_stem(self.path), fallback="frame")


def output_stem(path: Path) -> str:
    """``raw/v_e_1.fits.gz`` -> ``v_e_1``."""
    name = path.name
    for suffix in (".gz", ".fz", ".bz2"):
        name = name.removesuffix(suffix)
    for suffix in (".fits", ".fit", ".fts"):
        name = name.removesuffix(suffix)
    return name


def file_identity(path: Path, *, content: bool = False) -> tuple:
    """What says a file changed: its absolute path, size and modification time (and content).

    With ``content``, the SHA-1 of the file's bytes is added: pixels rewritten in place with the
    size and modification time restored are then noticed too, at the cost of reading every file.
    """
    st = os.stat(path)
    identity = (str(path), st.st_size, st.st_mtime_ns)
    return (*identity, file_sha1(path)) if content else identity


def _is_reduced_product(header: fits.Header) -> bool:
    """Raw readouts are plain integers; floating-point or rescaled (BSCALE != 1) data is a product."""
    bitpix = int(header.get("ZBITPIX", header.get("BITPIX", 16)))
    bscale = header.get("BSCALE", 1.0)
    return bitpix < 0 or (isinstance(bscale, int | float) and bscale != 1)


def describe_frames(listed: list[ListedFrame], *, content: bool = False) -> list[FrameInfo]:
    """Read every listed frame's header (never its pixels); unreadable frames carry an error.

    Parameters
    ----------
    listed : list of ListedFrame
        From `ccdflow.io.filelist.read_filelist` or `scan_directory`.
    content : bool
        Put each file's SHA-1 in its identity (``resume: content``), not only size and time.

    Returns
    -------
    list of FrameInfo
        In the listed order.
    """
    frames = []
    for entry in listed:
        if entry.error:
            frames.append(FrameInfo(type=entry.type, path=entry.path, hdu=entry.hdu,
                                    error=entry.error))
            continue
        try:
            hdu, header = read_header(entry.path, hdu=entry.hdu)
            frames.append(FrameInfo(
                type=entry.type, path=entry.path, hdu=hdu,
                shape=(int(header["NAXIS2"]), int(header["NAXIS1"])),
                exptime=find_exposure_time(header, path=str(entry.path)),
                filter=str(header.get("FILTER", "")).strip(),
                object=str(header.get("OBJECT", "")).strip(),
                processed=_is_reduced_product(header),
                header=header.tostring(), identity=file_identity(entry.path, content=content),
            ))
        except (CcdflowError, OSError) as err:
            frames.append(FrameInfo(type=entry.type, path=entry.path, hdu=entry.hdu,
                                    error=f"{type(err).__name__}: {err}"))
    return frames
