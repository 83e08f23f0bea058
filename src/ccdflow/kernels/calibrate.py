"""Per-pixel calibration of one frame and its error propagation: one fused pass (numba)."""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = ["FLAG_BAD_INPUT", "FLAG_FLAT", "FLAG_MASTER", "FLAG_SATURATED", "OUTLIER_SIGMA",
           "calibrate_pixels"]

#: Mask bits of the optional ``MASK`` extension.
FLAG_BAD_INPUT = 1
FLAG_SATURATED = 2
FLAG_FLAT = 4
FLAG_MASTER = 8
_UNCALIBRATABLE = FLAG_BAD_INPUT | FLAG_FLAT | FLAG_MASTER
_NONE = np.empty((0, 0), dtype=np.float32)

#: A pixel further than this many sigma from its neighbourhood's estimate (a star, a cosmic ray)
#: takes its Poisson term from its own value.
OUTLIER_SIGMA = 5.0


@numba.njit(nogil=True, cache=True)
def _first_pass(raw, level, var_level, y0, x0, ny, nx, flip_y, flip_x, oy, ox, scale, bias,
                bias_err, dark, dark_err, dark_scale, dark_bias, flat, flat_err, norm, rn2,
                saturation, image, error, mask):  # pragma: no cover
    """Everything but the Poisson term: image = I, error = its variance so far, mask.

    Output pixel ``(oy + i, ox + j)`` (and the masters' same pixel) takes raw pixel
    ``(y0 + i', x0 + j')``, ``i' = ny - 1 - i`` when the block is mirrored along y, else ``i``.
    """
    has_bias, has_dark, has_flat = bias.size > 0, dark.size > 0, flat.size > 0
    has_bias_err, has_dark_err, has_flat_err = bias_err.size > 0, dark_err.size > 0, \
        flat_err.size > 0
    per_row, per_col = level.shape[0] > 1, level.shape[1] > 1
    inv_norm = 1.0 / norm
    s2 = dark_scale * dark_scale
    scale2 = scale * scale
    undefined = 0
    for i in range(ny):
        ri = y0 + (ny - 1 - i if flip_y else i)
        li = ri if per_row else 0
        p = oy + i
        for j in range(nx):
            rj = x0 + (nx - 1 - j if flip_x else j)
            r = np.float64(raw[ri, rj])
            lj = rj if per_col else 0
            q = ox + j
            flags = 0 if math.isfinite(r) else 1
            value = (r - level[li, lj]) * scale
            var = var_level[li, lj] * scale2 + rn2
            var_b = 0.0
            if has_bias:
                b = np.float64(bias[p, q])
                if not math.isfinite(b):
                    flags |= 8
                value -= b
                if has_bias_err:
                    e = np.float64(bias_err[p, q])
                    if math.isfinite(e):
                        var_b = e * e
                    elif math.isfinite(b):
                        undefined += 1
            var_d, dark_known = 0.0, False
            if has_dark:
                d = np.float64(dark[p, q])
                if not math.isfinite(d):
                    flags |= 8
                value -= dark_scale * d
                if has_dark_err:
                    e = np.float64(dark_err[p, q])
                    if math.isfinite(e):
                        var_d, dark_known = s2 * e * e, True
                    elif math.isfinite(d):
                        undefined += 1
            # the subtracted dark carries -dark_bias times the master bias (its error includes
            # that share): var(B + sD) = (1 - phi)^2 var_B + (s^2 var_D - phi^2 var_B)
            var += (1.0 - dark_bias) ** 2 * var_b
            if dark_known:
                var += max(var_d - dark_bias * dark_bias * var_b, 0.0)
            if has_flat:
                f = np.float64(flat[p, q]) * inv_norm
                if not math.isfinite(f):
                    flags |= 8  # no value: the same rule as for the bias and the dark
                elif f > 0.0:
                    inv_f = 1.0 / f
                    value *= inv_f
                    var *= inv_f * inv_f
                    if has_flat_err:
                        e = np.float64(flat_err[p, q]) * inv_norm
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
                image[p, q] = np.nan
                error[p, q] = np.nan
            else:
                image[p, q] = value
                error[p, q] = var
            mask[p, q] = flags
    return undefined


@numba.njit(nogil=True, cache=True)
def _poisson_pass(dark, dark_scale, flat, norm, inv_gain, half, oy, ox, ny, nx, image, error,
                  mask):  # pragma: no cover
    """Add the Poisson term over the block ``[oy:oy+ny, ox:ox+nx]``, from a local estimate.

    The estimate is ``F_n * S + s*D``: ``S`` the mean of the calibrated image over a
    ``(2 half + 1)^2`` box around the pixel, within the block, the pixel itself left out (so its
    own noise does not enter its error), running sums over rows and columns keeping the work O(1)
    per pixel.
    """
    has_dark, has_flat = dark.size > 0, flat.size > 0
    inv_norm = 1.0 / norm
    col_sum = np.zeros(nx, dtype=np.float64)
    col_n = np.zeros(nx, dtype=np.int64)
    row_sum = np.zeros(nx + 1, dtype=np.float64)
    row_n = np.zeros(nx + 1, dtype=np.int64)
    for k in range(min(half, ny)):
        for j in range(nx):
            if mask[oy + k, ox + j] == 0:
                col_sum[j] += image[oy + k, ox + j]
                col_n[j] += 1
    for i in range(ny):
        add, drop = i + half, i - half - 1
        p = oy + i
        for j in range(nx):
            q = ox + j
            if add < ny and mask[oy + add, q] == 0:
                col_sum[j] += image[oy + add, q]
                col_n[j] += 1
            if drop >= 0 and mask[oy + drop, q] == 0:
                col_sum[j] -= image[oy + drop, q]
                col_n[j] -= 1
            row_sum[j + 1] = row_sum[j] + col_sum[j]
            row_n[j + 1] = row_n[j] + col_n[j]
        for j in range(nx):
            q = ox + j
            if mask[p, q] & 13:
                continue
            value = np.float64(image[p, q])
            lo, hi = max(j - half, 0), min(j + half + 1, nx)
            total, n = row_sum[hi] - row_sum[lo], row_n[hi] - row_n[lo]
            if mask[p, q] == 0:
                total -= value
                n -= 1
            local = total / n if n > 0 else value
            f = np.float64(flat[p, q]) * inv_norm if has_flat else 1.0
            sd = dark_scale * np.float64(dark[p, q]) if has_dark else 0.0
            var = np.float64(error[p, q])
            per_count = inv_gain / (f * f)
            expected = max(f * local + sd, 0.0)
            if (value - local) ** 2 > OUTLIER_SIGMA ** 2 * (var + expected * per_count):
                # not described by its neighbourhood: its own counts are the better estimate
                expected = max(f * value + sd, 0.0)
            error[p, q] = math.sqrt(var + expected * per_count)


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
    dark_bias: float = 0.0,
    flat: np.ndarray | None = None,
    flat_err: np.ndarray | None = None,
    norm: float = 1.0,
    gain: float = 1.0,
    read_noise: float = 0.0,
    saturation: float | None = None,
    smooth: int = 3,
    electrons: bool = False,
    flip_x: bool = False,
    flip_y: bool = False,
    out: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    dest: tuple[int, int] = (0, 0),
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Calibrate one raw frame (or one amplifier of it) over its image area, with its variance.

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
    dark_bias : float
        ``phi``: the share of the master bias's error the subtracted ``s D`` carries, because
        the dark was built from frames minus that same master bias (``phi = t_raw <1/t>`` for
        ccdflow's dark rates, whose error includes the share; 0 for a dark independent of the
        bias).
    norm : float
        The flat's normalisation ``m``: ``F_n = F / m``.
    gain : float
        e-/ADU.
    read_noise : float
        Electrons.
    saturation : float, optional
        Raw level flagged as saturated.
    smooth : int
        Half-width of the box over which the expected signal of the Poisson term is estimated;
        0 evaluates it on the pixel's own value (biased low at low counts).
    electrons : bool
        Multiply ``raw - level`` by ``gain`` before anything else: the output (and the masters)
        are in electrons.
    flip_x, flip_y : bool
        The area is stored mirrored along x / y relative to the output.
    out : (image, error, mask), optional
        Arrays of the assembled detector to write into (float32, float32, uint8), e.g. when each
        amplifier of a frame is calibrated in turn; the masters are then of the same shape and
        read at the same pixels. Default: new arrays of the area's shape.
    dest : (row, column)
        Where the area's first output pixel goes in `out` (and in the masters).

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
    With ``x = raw - level - B``, ``I = (x - s D) / F_n`` and, in ADU^2,
    ``var_pre = var_O + (1 - phi)^2 var_B + (s^2 var_D - phi^2 var_B) + max(E, 0)/g + (RN/g)^2``,
    ``var_I = var_pre / F_n^2 + I^2 var_Fn / F_n^2``; the bracket is kept >= 0 and is
    ``s^2 var_D`` when ``phi = 0``. ``E`` is the pixel's expected counts before the dark is
    removed, estimated without its own noise: ``E = F_n S + s D`` with ``S`` the mean of the
    calibrated image over the ``(2 smooth + 1)^2`` box around the pixel, the pixel itself, flagged
    pixels and NaN left out. A Poisson term from the noisy pixel, ``max(x, 0)/g``, correlates
    with the noise it describes and is biased at low counts; the box mean is not. Where the pixel
    lies more than `OUTLIER_SIGMA` sigma from ``S`` (a star's core, a cosmic ray), ``E`` is its
    own ``x``. Each pass is O(1) per pixel; the only temporaries are four rows.

    Pixels that cannot be calibrated (non-finite input, a master without a value, ``F_n <= 0``)
    are NaN in image and error and flagged; saturated pixels keep their value and are flagged
    (and left out of their neighbours' estimate). A non-finite bias, dark or flat pixel sets
    bit 8, and bit 4 is set only where the flat has a finite value ``<= 0``. A NaN master
    *error* is not a missing value: it counts as 0 and is counted in ``undefined``. Arithmetic is
    float64 per pixel.

    Examples
    --------
    >>> image, error, mask, _ = calibrate_pixels(np.array([[100.0]]), area=(0, 1, 0, 1),
    ...                                          gain=2.0, read_noise=4.0)
    >>> float(image[0, 0]), float(error[0, 0] ** 2)
    (100.0, 54.0)
    """
    y0, y1, x0, x1 = area
    ny, nx = y1 - y0, x1 - x0
    if out is None:
        image = np.empty((ny, nx), dtype=np.float32)
        error = np.empty((ny, nx), dtype=np.float32)
        mask = np.empty((ny, nx), dtype=np.uint8)
    else:
        image, error, mask = out
    oy, ox = dest
    if oy < 0 or ox < 0 or oy + ny > image.shape[0] or ox + nx > image.shape[1]:
        raise ValueError(f"an area of {ny}x{nx} at {dest} lies outside the output {image.shape}")
    scale = float(gain) if electrons else 1.0
    level = np.atleast_2d(np.asarray(level, dtype=np.float64))
    var_level = np.atleast_2d(np.asarray(var_level, dtype=np.float64))
    if var_level.shape != level.shape:
        var_level = np.ascontiguousarray(np.broadcast_to(var_level, level.shape))
    raw = raw if raw.dtype.isnative else raw.astype(raw.dtype.newbyteorder("="))
    dark, flat = _array(dark), _array(flat)
    saturation = math.inf if saturation is None else float(saturation)
    undefined = _first_pass(
        raw, level, var_level, y0, x0, ny, nx, bool(flip_y), bool(flip_x), oy, ox, scale,
        _array(bias), _array(bias_err), dark, _array(dark_err), float(dark_scale),
        float(dark_bias), flat, _array(flat_err), float(norm),
        (float(read_noise) * scale / float(gain)) ** 2, saturation, image, error, mask,
    )
    _poisson_pass(dark, float(dark_scale), flat, float(norm), scale / float(gain), int(smooth),
                  oy, ox, ny, nx, image, error, mask)
    return image, error, mask, int(undefined)
