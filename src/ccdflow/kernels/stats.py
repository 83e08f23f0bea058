"""Clipped statistics of a set of pixels: the estimator behind overscan levels and flat norms."""

from __future__ import annotations

import numpy as np

__all__ = ["clipped_mean", "sigma_clip_survivors"]


def sigma_clip_survivors(pixels: np.ndarray, *, sigma: float = 3.0, maxiters: int = 5) -> np.ndarray:
    """Return the survivors of an iterative median/std sigma clip of 1-D finite ``pixels``.

    Parameters
    ----------
    pixels : numpy.ndarray
        1-D finite values (the caller drops NaN and inf).
    sigma : float
        Threshold in standard deviations, both sides.
    maxiters : int
        Maximum number of iterations.

    Returns
    -------
    numpy.ndarray
        The values kept.

    Notes
    -----
    Each iteration keeps ``|x - median| <= sigma * std(ddof=0)`` of the current survivors and
    stops when nothing more is rejected: astropy's ``sigma_clip(axis=None, cenfunc="median",
    stdfunc="std")`` on the same values.

    Examples
    --------
    >>> values = np.array([1.0, 1.1, 0.9, 1.0, 50.0])
    >>> sigma_clip_survivors(values, sigma=1.5).tolist()
    [1.0, 1.1, 0.9, 1.0]
    """
    for _ in range(maxiters):
        if pixels.size == 0:
            break
        centre, spread = np.median(pixels), pixels.std()
        kept = pixels[(pixels >= centre - sigma * spread) & (pixels <= centre + sigma * spread)]
        if kept.size == pixels.size:
            break
        pixels = kept
    return pixels


def clipped_mean(values: np.ndarray, *, sigma: float = 3.0, maxiters: int = 5) -> tuple[float, float]:
    """Sigma-clipped mean of the finite values of an array, and the variance of that mean.

    Parameters
    ----------
    values : numpy.ndarray
        Any shape; NaN and inf are ignored; accumulated in float64.
    sigma, maxiters : float, int
        As in `sigma_clip_survivors` (defaults: astropy ``sigma_clipped_stats``' own).

    Returns
    -------
    (float, float)
        The mean of the ``m`` survivors and ``var(survivors, ddof=1) / m``; NaN without
        finite values (the variance also with one survivor).

    Examples
    --------
    >>> clipped_mean(np.array([[1.0, 3.0], [np.nan, 2.0]]))
    (2.0, 0.3333333333333333)
    """
    pixels = np.asarray(values, dtype=np.float64).ravel()
    pixels = sigma_clip_survivors(pixels[np.isfinite(pixels)], sigma=sigma, maxiters=maxiters)
    n = pixels.size
    if n == 0:
        return float("nan"), float("nan")
    return float(pixels.mean()), float(pixels.var(ddof=1) / n) if n > 1 else float("nan")
