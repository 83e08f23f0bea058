"""Per-pixel calibration of one frame and its error propagation: one fused pass (numba)."""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = ["FLAG_BAD_INPUT", "FLAG_FLAT", "FLAG_MASTER", "FLAG_SATURATED", "calibrate_pixels"]

#: Mask bits of the optional ``MASK`` extension.
FLAG_BAD_INPUT = 1
FLAG_SATURATED = 2
FLAG_FLAT = 4
FLAG_MASTER = 8
_UNCALIBRATABLE = FLAG_BAD_INPUT | FLAG_FLAT | FLAG_MASTER
_NONE = np.empty((0, 0), dtype=np.float32)


@numba.njit(nogil=True, cache=True)
def _kernel(raw, level, var_level, y0, x0, bias, bias_err, dark, dark_err, dark_scale, flat,
            flat_err, norm, gain, read_noise, saturation, image, error, mask):  # pragma: no cover
    ny, nx = image.shape
    has_bias, has_dark, has_flat = bias.size > 0, dark.size > 0, flat.size > 0
    has_bias_err, has_dark_err, has_flat_err = bias_err.size > 0, dark_err.size > 0, \
        flat_err.size > 0
    per_row, per_col = level.shape[0] > 1, level.shape[1] > 1
    rn2 = (read_noise / gain) ** 2
    inv_gain = 1.0 / gain
    inv_norm = 1.0 / norm
    s2 = dark_scale * dark_scale
    undefined = 0
    for i in range(ny):
        li = y0 + i if per_row else 0
        for j in range(nx):
            r = np.float64(raw[y0 + i, x0 + j])
            lj = x0 + j if per_col else 0
            flags = 0 if math.isfinite(r) else 1
            x = r - level[li, lj]
            var = var_level[li, lj]
            if has_bias:
                b = np.float64(bias[i, j])
                if not math.isfinite(b):
                    flags |= 8
                x -= b
                if has_bias_err:
                    e = np.float64(bias_err[i, j])
                    if math.isfinite(e):
                        var += e * e
                    elif math.isfinite(b):
                        undefined += 1
            var += (x if x > 0.0 else 0.0) * inv_gain + rn2
            value = x
            if has_dark:
                d = np.float64(dark[i, j])
                if not math.isfinite(d):
                    flags |= 8
                value -= dark_scale * d
                if has_dark_err:
                    e = np.float64(dark_err[i, j])
                    if math.isfinite(e):
                        var += s2 * e * e
                    elif math.isfinite(d):
                        undefined += 1
            if has_flat:
                f = np.float64(flat[i, j]) * inv_norm
                if not math.isfinite(f):
                    flags |= 8  # no value: the same rule as for the bias and the dark
                elif f > 0.0:
                    inv_f = 1.0 / f
                    value *= inv_f
                    var *= inv_f * inv_f
                    if has_flat_err:
                        e = np.float64(flat_err[i, j]) * inv_norm
                        if math.isfinite(e):
                            var += value * value * e * e * inv_f * inv_f
                        else:
                            undefined += 1
                else:
                    flags |= 4  # a flat value that exists but cannot divide
            if r >= saturation:
                flags |= 2
            if (flags & 13) == 0 and not math.isfinite(value):
                flags |= 1  # e.g. an overscan level without any finite pixel
            if flags & 13:
                image[i, j] = np.nan
                error[i, j] = np.nan
            else:
                image[i, j] = value
                error[i, j] = math.sqrt(var)
            mask[i, j] = flags
    return undefined


def _array(values, dtype=np.float32) -> np.ndarray:
    return _NONE if values is None else np.ascontiguousarray(values, dtype=dtype)


def calibrate_pixels(
    raw: np.ndarray,
    *,
    area: tuple[int, int, int, int],
    level: np.ndarray | float = 0.0,
    var_level: np.ndarray | float = 0.0,
    bias: np.ndarray | None = None,
    bias_err: np.ndarray | None = None,
    dark: np.ndarray | None = None,
    dark_err: np.ndarray | None = None,
    dark_scale: float = 1.0,
    flat: np.ndarray | None = None,
    flat_err: np.ndarray | None = None,
    norm: float = 1.0,
    gain: float = 1.0,
    read_noise: float = 0.0,
    saturation: float | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Calibrate one raw frame over its image area and propagate the variance, in one pass.

    Parameters
    ----------
    raw : numpy.ndarray
        The whole raw frame (ADU), overscan included.
    area : (ymin, ymax, xmin, xmax)
        The image area kept.
    level, var_level : array or float
        Overscan level subtracted and its variance: a scalar, or per row ``(rows, 1)``, per column
        ``(1, columns)`` or per pixel, in raw-frame coordinates.
    bias, dark, flat : numpy.ndarray, optional
        Masters over the image area (``None`` skips the step); the dark is scaled by
        ``dark_scale``, the flat divided by ``norm``.
    bias_err, dark_err, flat_err : numpy.ndarray, optional
        Their 1-sigma errors (``None`` counts as 0).
    dark_scale : float
        ``s = t_raw / t_dark``.
    norm : float
        The flat's normalisation ``m``: ``F_n = F / m``.
    gain : float
        e-/ADU.
    read_noise : float
        Electrons.
    saturation : float, optional
        Raw level flagged as saturated.

    Returns
    -------
    image, error : numpy.ndarray
        float32 calibrated image and its 1-sigma error.
    mask : numpy.ndarray
        uint8 flags: 1 bad input, 2 saturated, 4 flat value finite and <= 0, 8 a master
        (bias, dark or flat) without a value (NaN or infinite) at that pixel.
    undefined : int
        Pixels where a master's error is undefined (NaN) though its value is not; counted as 0.

    Notes
    -----
    With ``x = raw - level - B``: ``var_pre = var_O + var_B + s^2 var_D + max(x, 0)/g + (RN/g)^2``,
    ``I = (x - s D) / F_n`` and ``var_I = var_pre / F_n^2 + I^2 var_Fn / F_n^2``. Pixels that
    cannot be calibrated (non-finite input, a master without a value, ``F_n <= 0``) are NaN in
    image and error and flagged; saturated pixels keep their value and are flagged. One rule for
    a missing value holds for every master: a non-finite bias, dark or flat pixel sets bit 8, and
    bit 4 is set only where the flat has a finite value ``<= 0``. A NaN master *error* is not a
    missing value: it counts as 0 and is counted in ``undefined``. Arithmetic is float64 per
    pixel.

    Examples
    --------
    >>> image, error, mask, _ = calibrate_pixels(np.array([[100.0]]), area=(0, 1, 0, 1),
    ...                                          gain=2.0, read_noise=4.0)
    >>> float(image[0, 0]), float(error[0, 0] ** 2)
    (100.0, 54.0)
    """
    y0, y1, x0, x1 = area
    shape = (y1 - y0, x1 - x0)
    image = np.empty(shape, dtype=np.float32)
    error = np.empty(shape, dtype=np.float32)
    mask = np.empty(shape, dtype=np.uint8)
    level = np.atleast_2d(np.asarray(level, dtype=np.float64))
    var_level = np.atleast_2d(np.asarray(var_level, dtype=np.float64))
    if var_level.shape != level.shape:
        var_level = np.ascontiguousarray(np.broadcast_to(var_level, level.shape))
    raw = raw if raw.dtype.isnative else raw.astype(raw.dtype.newbyteorder("="))
    undefined = _kernel(
        raw, level, var_level, y0, x0, _array(bias), _array(bias_err), _array(dark),
        _array(dark_err), float(dark_scale), _array(flat), _array(flat_err), float(norm),
        float(gain), float(read_noise), math.inf if saturation is None else float(saturation),
        image, error, mask,
    )
    return image, error, mask, int(undefined)
