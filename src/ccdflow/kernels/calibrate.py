"""Per-pixel calibration of one trimmed frame and its error propagation, in plain numpy."""

from __future__ import annotations

import numpy as np

__all__ = ["FLAG_BAD_INPUT", "FLAG_FLAT", "FLAG_MASTER", "FLAG_SATURATED", "apply_calibration"]

#: Mask bits of the optional ``MASK`` extension.
FLAG_BAD_INPUT = 1
FLAG_SATURATED = 2
FLAG_FLAT = 4
FLAG_MASTER = 8


def apply_calibration(
    x: np.ndarray,
    *,
    var_overscan: np.ndarray | float = 0.0,
    raw: np.ndarray | None = None,
    saturation: float | None = None,
    dark: np.ndarray | None = None,
    var_dark: np.ndarray | None = None,
    dark_scale: float = 1.0,
    var_bias: np.ndarray | None = None,
    flat: np.ndarray | None = None,
    var_flat: np.ndarray | None = None,
    gain: float = 1.0,
    read_noise: float = 0.0,
    master_bad: np.ndarray | None = None,
) -> np.ndarray:
    """Dark-subtract and flat-field a bias-subtracted frame, propagating its variance.

    Parameters
    ----------
    x : numpy.ndarray
        ``raw - overscan - bias`` over the image area, ADU.
    var_overscan : array or float
        Variance of the overscan correction, broadcastable to ``x`` (ADU^2).
    raw : numpy.ndarray, optional
        The raw pixels over the image area, for the bad-input and saturation flags.
    saturation : float, optional
        Raw level (ADU) at or above which a pixel is flagged saturated.
    dark, var_dark : numpy.ndarray, optional
        Master dark and its variance, in the master's units; ``None`` skips the step.
    dark_scale : float
        ``s = t_raw / t_dark``.
    var_bias : numpy.ndarray, optional
        Variance of the master bias (ADU^2).
    flat, var_flat : numpy.ndarray, optional
        Normalised flat ``F_n`` and its variance; ``None`` skips the step.
    gain : float
        e-/ADU.
    read_noise : float
        Read noise in electrons.
    master_bad : numpy.ndarray, optional
        Pixels where a master has no value (NaN), flagged `FLAG_MASTER`.

    Returns
    -------
    numpy.ndarray
        float32 ``(3, rows, columns)``: image, error and mask bits (as float).

    Notes
    -----
    ``var_pre = var_O + var_B + s^2 var_D + max(x, 0)/g + (RN/g)^2``,
    ``I = (x - s D) / F_n`` and ``var_I = var_pre / F_n^2 + I^2 var_Fn / F_n^2``. Pixels that
    cannot be calibrated (non-finite input, a master without a value, ``F_n <= 0``) are NaN in
    image and error and flagged. Missing master variances count as 0.

    Examples
    --------
    >>> out = apply_calibration(np.array([[100.0]]), gain=2.0, read_noise=4.0)
    >>> float(out[0, 0, 0]), float(out[1, 0, 0] ** 2)
    (100.0, 54.0)
    """
    x = np.asarray(x, dtype=np.float64)
    mask = np.zeros(x.shape, dtype=np.uint8)
    mask[~np.isfinite(x if raw is None else raw)] |= FLAG_BAD_INPUT
    if master_bad is not None:
        mask[master_bad] |= FLAG_MASTER
    var = np.maximum(x, 0.0) / gain + (read_noise / gain) ** 2 + var_overscan
    if var_bias is not None:
        var = var + np.nan_to_num(var_bias, nan=0.0)
    image = x
    if dark is not None:
        image = image - dark_scale * dark
        if var_dark is not None:
            var = var + dark_scale**2 * np.nan_to_num(var_dark, nan=0.0)
    if flat is not None:
        bad_flat = ~(flat > 0)
        mask[bad_flat] |= FLAG_FLAT
        with np.errstate(divide="ignore", invalid="ignore"):
            image = image / flat
            var = var / flat**2
            if var_flat is not None:
                var = var + image**2 * np.nan_to_num(var_flat, nan=0.0) / flat**2
    if raw is not None and saturation is not None:
        mask[raw >= saturation] |= FLAG_SATURATED
    invalid = (mask & (FLAG_BAD_INPUT | FLAG_FLAT | FLAG_MASTER)) != 0
    invalid |= ~np.isfinite(image)
    mask[invalid & (mask == 0)] |= FLAG_BAD_INPUT
    out = np.empty((3, *x.shape), dtype=np.float32)
    out[0] = np.where(invalid, np.nan, image)
    out[1] = np.where(invalid, np.nan, np.sqrt(var))
    out[2] = mask
    return out
