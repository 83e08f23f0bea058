"""Outlier rejection against a noise model, with IRAF ``imcombine`` semantics (``mclip=yes``).

The spread of a pixel is not estimated from its own few values but from a model of the noise:
the CCD noise model (``ccdclip``), IRAF's Poisson-scaled spread pooled along the image line
(``avsigclip``), or a read-noise plus Poisson model fitted along the line (``pooled``). The functions
here work on one image line of sorted values and are called by the fused kernel in `clip`.
"""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = ["MODE_AVSIGCLIP", "MODE_CCDCLIP", "MODE_POOLED", "QUANTISATION_SIGMA"]

MODE_CCDCLIP = 0
MODE_AVSIGCLIP = 1
MODE_POOLED = 2

#: Standard deviation of the rounding error of integer data, 1/sqrt(12) ADU.
QUANTISATION_SIGMA = 1.0 / math.sqrt(12.0)

# IRAF's tolerance for equal residuals when rejected values are restored (icombine.h).
_TOL = 0.001
# A pixel whose sample variance exceeds this many times the model is left out of the line fit:
# clean pixels rarely do (P(chi2_1 > 10) = 1.6e-3, P(chi2_4/4 > 10) = 4e-8); a cosmic ray
# would inflate the fit.
_FIT_TRIM = 10.0
_FIT_PASSES = 5


@numba.njit(nogil=True, cache=True)
def _median(x: np.ndarray, a: int, b: int) -> float:
    # of the sorted range x[a:b] (the combine kernels sort each pixel's values first)
    n = b - a
    mid = a + n // 2
    if n % 2:
        return x[mid]
    return 0.5 * (x[mid - 1] + x[mid])


@numba.njit(nogil=True, cache=True)
def noise_sigma(centre: float, model: np.ndarray) -> float:
    """Spread at ``centre``: sqrt(c0 + c1 L + c2 L^2), L = max(lmin, centre), at least the floor."""
    level = max(model[3], centre)
    var = model[0] + model[1] * level + model[2] * level * level
    return max(math.sqrt(max(var, 0.0)), model[4])


@numba.njit(nogil=True, cache=True)
def _is_integer_valued(line: np.ndarray, counts: np.ndarray) -> bool:
    for q in range(line.shape[1]):
        for k in range(counts[q]):
            v = line[k, q]
            if v != math.floor(v):
                return False
    return True


@numba.njit(nogil=True, cache=True)
def _avsig_gain(line: np.ndarray, counts: np.ndarray) -> float:
    # icaclip.gx (ic_mavsigclip): sum over the line's pixels with >= 3 values of
    # (x - median)^2 / max(1, median), divided by the number of those values minus one.
    total = 0.0
    nvalues = 0
    for q in range(line.shape[1]):
        n = counts[q]
        if n < 3:
            continue
        med = _median(line[:, q], 0, n)
        norm = max(1.0, med)
        for k in range(n):
            total += (line[k, q] - med) ** 2 / norm
        nvalues += n
    return total / (nvalues - 1) if nvalues > 1 else 0.0


@numba.njit(nogil=True, cache=True)
def _pixel_variances(line: np.ndarray, counts: np.ndarray):
    npix = line.shape[1]
    level = np.zeros(npix)
    var = np.zeros(npix)
    dof = np.zeros(npix)
    for q in range(npix):
        n = counts[q]
        if n < 2:
            continue
        col = line[:, q]
        mean = 0.0
        for k in range(n):
            mean += col[k]
        mean /= n
        ss = 0.0
        for k in range(n):
            ss += (col[k] - mean) ** 2
        # Deviations from the mean: an unbiased variance for any n (the median's would not be).
        level[q] = max(0.0, _median(col, 0, n))
        var[q] = ss / (n - 1)
        dof[q] = n - 1
    return level, var, dof


@numba.njit(nogil=True, cache=True)
def _fit_line(level: np.ndarray, var: np.ndarray, dof: np.ndarray, a: float, b: float,
              keep_all: bool) -> tuple[float, float]:
    # Weighted least squares of var ~ a + b*level, weights dof/model^2 (the variance of a sample
    # variance is 2 sigma^4/dof), over pixels not far above the previous model.
    sw = swl = swll = swv = swlv = 0.0
    for q in range(level.size):
        if dof[q] == 0.0:
            continue
        model = max(a + b * level[q], 1e-30)
        if not keep_all and var[q] > _FIT_TRIM * model:
            continue
        w = dof[q] / (model * model)
        sw += w
        swl += w * level[q]
        swll += w * level[q] * level[q]
        swv += w * var[q]
        swlv += w * level[q] * var[q]
    if sw == 0.0:
        return 0.0, 0.0
    det = sw * swll - swl * swl
    if det > 1e-9 * sw * swll:
        na = (swll * swv - swl * swlv) / det
        nb = (sw * swlv - swl * swv) / det
        if na >= 0.0 and nb >= 0.0:
            return na, nb
        if na < 0.0 and swll > 0.0:
            nb = swlv / swll
            if nb >= 0.0:
                return 0.0, nb
    return max(swv / sw, 0.0), 0.0


@numba.njit(nogil=True, cache=True)
def _pooled_fit(line: np.ndarray, counts: np.ndarray, floor: float) -> tuple[float, float]:
    level, var, dof = _pixel_variances(line, counts)
    used = dof > 0
    if not used.any():
        return 0.0, 0.0
    # Start from a constant: the median of the variances, each divided by the median of
    # chi2_dof/dof (Wilson-Hilferty), so that cosmic rays cannot blow the first trimming
    # threshold up, even on a short line; the passes then converge on the fitted model.
    d = dof[used]
    start = np.median(var[used] / (1.0 - 2.0 / (9.0 * d)) ** 3)
    a = max(start, floor * floor, 1e-30)
    b = 0.0
    for _ in range(_FIT_PASSES):
        a, b = _fit_line(level, var, dof, a, b, False)
        if a + b == 0.0:
            a = max(floor * floor, 1e-30)
    return a, b


@numba.njit(nogil=True, cache=True)
def line_model(line: np.ndarray, counts: np.ndarray, mode: int, read_var: float, inv_gain: float,
               sens2: float) -> np.ndarray:
    """The noise model of one sorted line: ``[c0, c1, c2, lmin, floor, minclip]`` (see `noise_sigma`).

    ``line`` is (N, npix) with each column sorted and its ``counts[q]`` finite values first.
    """
    out = np.zeros(6)
    if mode == MODE_CCDCLIP:
        out[0], out[1], out[2], out[5] = read_var, inv_gain, sens2, 2.0
    elif mode == MODE_AVSIGCLIP:
        out[1], out[3], out[5] = _avsig_gain(line, counts), 1.0, 3.0
    else:
        floor = QUANTISATION_SIGMA if _is_integer_valued(line, counts) else 0.0
        out[0], out[1] = _pooled_fit(line, counts, floor)
        out[4], out[5] = floor, 3.0
    return out


@numba.njit(nogil=True, cache=True)
def _restore(x_resid: np.ndarray, nl: int, nh: int, m: int, n2: int, maxkeep: int) -> tuple[int, int]:
    # IRAF's nkeep: put rejected values back, the one with the smaller residual first (values
    # with residuals within TOL of each other together), transcribed with 0-based half-open bounds.
    n1 = nh - nl
    while n1 < maxkeep:
        if nl == 0:
            nh += 1
        elif nh == m:
            nl -= 1
        else:
            r = x_resid[nl - 1]
            s = x_resid[nh]
            if r < s:
                nl -= 1
                r += _TOL
                if s <= r:
                    nh += 1
                if nl > 0 and x_resid[nl - 1] <= r:
                    nl -= 1
            else:
                nh += 1
                s += _TOL
                if r <= s:
                    nl -= 1
                if nh < n2 and x_resid[nh] <= s:
                    nh += 1
        n1 = nh - nl
    return nl, nh


@numba.njit(nogil=True, cache=True)
def model_clip(x: np.ndarray, m: int, sig_lo: float, sig_hi: float, maxiters: int, nkeep: int,
               model: np.ndarray, resid: np.ndarray) -> tuple[int, int]:
    """Reject among the sorted ``x[:m]`` as IRAF's median-centred ccdclip/avsigclip; survivors [a, b).

    Each pass: centre = median of the survivors, spread = `noise_sigma` there; reject strictly
    outside ``[c - sig_lo*s, c + sig_hi*s]`` walking in from both ends; rejections are permanent.
    Stops when nothing changes, fewer than ``max(minclip, maxkeep+1)`` remain, or after
    ``maxiters`` passes (0: no limit); then restores up to ``maxkeep`` values (IRAF's nkeep).
    """
    maxkeep = max(0, m + nkeep) if nkeep < 0 else min(m, nkeep)
    minclip = int(model[5])
    nl, nh = 0, m
    n1 = m
    if n1 < max(minclip, maxkeep + 1):
        return nl, nh
    n2 = n1
    passes = 0
    while True:
        n2 = n1
        med = _median(x, nl, nh)
        s = noise_sigma(med, model)
        if s > 0.0:
            while nl < nh:
                r = (med - x[nl]) / s
                if r <= sig_lo:
                    break
                resid[nl] = r
                nl += 1
            while nh > nl:
                r = (x[nh - 1] - med) / s
                if r <= sig_hi:
                    break
                resid[nh - 1] = r
                nh -= 1
        n1 = nh - nl
        passes += 1
        if n1 == n2 or n1 < max(minclip, maxkeep + 1):
            break
        if maxiters > 0 and passes >= maxiters:
            break
    if n1 < maxkeep:
        nl, nh = _restore(resid, nl, nh, m, n2, maxkeep)
    return nl, nh
