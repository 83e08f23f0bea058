"""Bleed trails of saturated pixels along the readout columns, and growing a mask by a radius (numba)."""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["DEFAULT_BLEED_FRACTION", "bleed_trails", "grow_mask"]

DEFAULT_BLEED_FRACTION = 0.5
"""Default level, as a fraction of saturation, down to which a trail is followed.

Charge spilling from a full well along a column stays near full well for most of its length, then
falls off over a few pixels; a star's own profile at a few pixels from a saturated core is far below
half of saturation (a Gaussian at 2 FWHM is 1/256 of its peak). Half of saturation therefore keeps the
trail's tapering ends and stops before the star's wings and the sky, whatever the sky level short of
half the well.
"""


@numba.njit(nogil=True, cache=True)
def _trails(raw, saturation, level):  # pragma: no cover
    ny, nx = raw.shape
    out = np.zeros((ny, nx), dtype=np.bool_)
    for i in range(nx):
        j = 0
        while j < ny:
            if raw[j, i] >= saturation:
                # grow the run both ways while the column stays at or above the level
                a = j
                while a > 0 and raw[a - 1, i] >= level:
                    a -= 1
                b = j
                while b < ny - 1 and raw[b + 1, i] >= level:
                    b += 1
                out[a:b + 1, i] = True
                j = b + 1
            else:
                j += 1
    return out


def bleed_trails(
    raw: np.ndarray, *, saturation: float, fraction: float = DEFAULT_BLEED_FRACTION, axis: int = 0
) -> np.ndarray:
    """Flag the bleed trail of every saturated pixel: its contiguous run along the readout column.

    Parameters
    ----------
    raw : numpy.ndarray
        2-D raw frame in ADU, the scale on which ``saturation`` applies (before bias and flat).
    saturation : float
        Saturation level, ADU: a pixel at or above it is saturated.
    fraction : float
        The run continues while the values stay at or above ``fraction * saturation``
        (`DEFAULT_BLEED_FRACTION`).
    axis : {0, 1}
        The axis along which charge bleeds (the readout columns): 0 for numpy rows, i.e. FITS
        columns that run along y.

    Returns
    -------
    numpy.ndarray of bool
        True on every trail pixel, the saturated pixels included.

    Notes
    -----
    A pixel is flagged if, along ``axis``, it is connected to a saturated pixel by pixels all at or
    above ``fraction * saturation`` (itself included). Non-finite values end a run. Nothing is grown
    sideways: see `grow_mask`.

    Examples
    --------
    >>> col = np.array([[10], [40], [60], [100], [100], [70], [30], [80]], dtype=float)
    >>> bleed_trails(col, saturation=100).ravel().astype(int).tolist()
    [0, 0, 1, 1, 1, 1, 0, 0]
    """
    data = np.asarray(raw, dtype=np.float64)
    if axis == 1:
        return _trails(data.T, float(saturation), float(fraction * saturation)).T
    return _trails(data, float(saturation), float(fraction * saturation))


@numba.njit(nogil=True, cache=True)
def _dilate(mask, offsets):  # pragma: no cover
    ny, nx = mask.shape
    out = np.zeros((ny, nx), dtype=np.bool_)
    for j in range(ny):
        for i in range(nx):
            if mask[j, i]:
                for k in range(offsets.shape[0]):
                    y, x = j + offsets[k, 0], i + offsets[k, 1]
                    if 0 <= y < ny and 0 <= x < nx:
                        out[y, x] = True
    return out


def grow_mask(mask: np.ndarray, *, radius: int, footprint: str = "square") -> np.ndarray:
    """Binary dilation of a 2-D mask by ``radius`` pixels.

    Parameters
    ----------
    mask : numpy.ndarray of bool
    radius : int
        0 returns a copy.
    footprint : {"square", "disc"}
        ``square``: every pixel within ``radius`` in both axes (Chebyshev distance); ``disc``: within
        Euclidean distance ``radius``.

    Returns
    -------
    numpy.ndarray of bool

    Raises
    ------
    ValueError
        On a negative radius or an unknown footprint.

    Examples
    --------
    >>> m = np.zeros((5, 5), bool); m[2, 2] = True
    >>> int(grow_mask(m, radius=1).sum()), int(grow_mask(m, radius=1, footprint="disc").sum())
    (9, 5)
    """
    if radius < 0:
        raise ValueError(f"radius must be >= 0, got {radius}")
    if footprint not in ("square", "disc"):
        raise ValueError(f"footprint must be 'square' or 'disc', got {footprint!r}")
    dy, dx = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    keep = np.ones(dy.shape, bool) if footprint == "square" else dy**2 + dx**2 <= radius**2
    offsets = np.stack([dy[keep], dx[keep]], axis=1).astype(np.int64)
    return _dilate(np.asarray(mask, dtype=np.bool_), offsets)
