"""A master calibration frame in memory: data, error and the provenance the outputs record."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy.io import fits

__all__ = ["Master"]


@dataclass(frozen=True, eq=False)
class Master:
    """A master bias, dark or flat, as the `Calibrator` uses it.

    Parameters
    ----------
    data : numpy.ndarray
        The master, image-area shaped, float32. NaN marks pixels without a value.
    error : numpy.ndarray, optional
        Its per-pixel 1-sigma error; ``None`` (no ``ERROR`` extension) counts as 0.
    exptime : float, optional
        Exposure time the master's values correspond to (``EXPTIME``; 1 for a dark rate);
        ``None`` when unknown (a dark is then taken as a rate, with a warning).
    name : str, optional
        File name recorded in calibrated headers.
    sha1 : str, optional
        SHA-1 of the master file, recorded in calibrated headers.
    header : astropy.io.fits.Header, optional
        The master's primary header.

    Examples
    --------
    >>> bias = Master(np.zeros((4, 4), np.float32), name="bias.fits")
    >>> bias.shape
    (4, 4)
    """

    data: np.ndarray
    error: np.ndarray | None = None
    exptime: float | None = 1.0
    name: str | None = None
    sha1: str | None = None
    header: fits.Header | None = None

    def __post_init__(self):
        object.__setattr__(self, "data", np.asarray(self.data, dtype=np.float32))
        if self.error is not None:
            error = np.asarray(self.error, dtype=np.float32)
            if error.shape != self.data.shape:
                raise ValueError(f"error shape {error.shape} differs from data {self.data.shape}")
            object.__setattr__(self, "error", error)

    def __dask_tokenize__(self):
        # identify by provenance, not by hashing the pixels on every graph build
        return ("ccdflow.Master", self.name, self.sha1, id(self))

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the master."""
        return self.data.shape
