"""Masters from FITS files: data, optional ERROR extension, exposure time and file SHA-1."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
from astropy.io import fits

from ccdflow.errors import FrameReadError
from ccdflow.io.fits import read_header, read_rows
from ccdflow.io.headers import find_exposure_time
from ccdflow.master import Master

__all__ = ["file_sha1", "read_master"]


def file_sha1(path: str | os.PathLike) -> str:
    """SHA-1 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha1(usedforsecurity=False)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_master(path: str | os.PathLike, *, hdu: int = 0) -> Master:
    """Read a master frame (any FITS image; an ``ERROR`` extension is used when present).

    Parameters
    ----------
    path : str or path-like
        The master's file.
    hdu : int
        The HDU holding the master's data.

    Returns
    -------
    Master
        Data and error as float32, ``exptime`` from the header (``None`` when absent), file name
        and SHA-1.

    Raises
    ------
    FrameReadError
        If the file cannot be read or its ``ERROR`` extension has another shape.
    """
    path = str(path)
    index, header = read_header(path, hdu=hdu)
    data = read_rows(path, index, slice(None))
    error = None
    try:
        with fits.open(path, memmap=False) as hdul:
            if "ERROR" in hdul:
                error = np.array(hdul["ERROR"].data, dtype=np.float32)
    except (OSError, ValueError) as err:
        raise FrameReadError(path, f"cannot read the ERROR extension: {err}") from err
    if error is not None and error.shape != data.shape:
        raise FrameReadError(path, f"ERROR shape {error.shape} differs from data {data.shape}")
    return Master(
        data=data,
        error=error,
        exptime=find_exposure_time(header, path=path),
        name=Path(path).name,
        sha1=file_sha1(path),
        header=header,
    )
