"""Atomic writes: a temporary file in the target's folder, then `os.replace`."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from astropy.io import fits

from ccdflow.errors import OutputExistsError

__all__ = ["atomic_path", "write_fits"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on error it is removed.

    Parameters
    ----------
    path : str or path-like
        The final file. Its folder is created if needed.
    overwrite : bool
        Whether an existing file may be replaced.

    Raises
    ------
    OutputExistsError
        If ``path`` exists and ``overwrite`` is false.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path}: exists and overwrite is off")
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(handle)
    tmp = Path(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_fits(path: str | os.PathLike, hdul: fits.HDUList, *, overwrite: bool = True,
               checksum: bool = False) -> Path:
    """Write an HDU list atomically, never leaving a partial file at ``path``.

    ``checksum`` adds FITS ``CHECKSUM``/``DATASUM`` cards; it costs about as much as the write
    itself, so it is used for masters (written once, read by every light) and not per light.
    """
    with atomic_path(path, overwrite=overwrite) as tmp:
        hdul.writeto(tmp, overwrite=True, checksum=checksum)
    return Path(path)
