"""Per-pixel combination of a stack of frames with outlier rejection.

One fused numba pass gathers each pixel's values, sorts them, rejects outliers (astropy-compatible
sigma clipping, or min/max clipping) and reduces the survivors to a value, an error and a count.
"""

from __future__ import annotations

import functools
import math

import numba
import numpy as np

from ccdflow.kernels.noiseclip import (
    MODE_AVSIGCLIP,
    MODE_CCDCLIP,
    MODE_POOLED,
    _median,
    line_model,
    model_clip,
    noise_sigma,
)

__all__ = ["combine_block"]

_METHODS = {"median": 0, "mean": 1, "sum": 2}
_CLIPS = {"none": 0, "sigma": 1, "minmax": 2}
_MODEL_CLIPS = {"ccdclip": MODE_CCDCLIP, "avsigclip": MODE_AVSIGCLIP, "pooled": MODE_POOLED}
_CENFUNCS = {"median": 0, "mean": 1}
_STDFUNCS = {"std": 0, "mad_std": 1}
_UNCERTAINTIES = {"empirical": 0, "ccdflow": 0, "ccdproc": 1, "model": 2}

# astropy's mad_std, which ccdproc's sigma_func calls too.
_MAD_TO_STD = 1.482602218505602


@numba.njit(nogil=True, cache=True)
def _mad(x: np.ndarray, a: int, b: int, med: float) -> float:
    # The deviations |x - med| of a sorted range form two sorted runs (walking out from the middle),
    # so merging half of them finds their median: no second buffer, no second sort.
    n = b - a
    i = a + n // 2 - 1
    j = a + n // 2
    prev = cur = 0.0
    for _ in range(n // 2 + 1):
        prev = cur
        if j >= b or (i >= a and med - x[i] <= x[j] - med):
            cur = med - x[i]
            i -= 1
        else:
            cur = x[j] - med
            j += 1
    if n % 2:
        return cur
    return 0.5 * (prev + cur)


@numba.njit(nogil=True, cache=True)
def _sum_std(x: np.ndarray, a: int, b: int, ddof: int) -> tuple[float, float, float]:
    # Two passes, like astropy's C code, rather than a sum of squares that cancels catastrophically.
    n = b - a
    total = 0.0
    for k in range(a, b):
        total += x[k]
    mean = total / n
    ss = 0.0
    for k in range(a, b):
        ss += (x[k] - mean) * (x[k] - mean)
    if n - ddof <= 0:
        return total, mean, np.nan
    return total, mean, math.sqrt(ss / (n - ddof))


@numba.njit(nogil=True, cache=True)
def _sigma_clip(
    x: np.ndarray, m: int, sig_lo: float, sig_hi: float, maxiters: int, cen_code: int, std_code: int
) -> tuple[int, int]:
    # Mirrors astropy's compute_sigma_clipped_bounds: bounds from the survivors, stop when nothing
    # changes, when everything would go, or after maxiters rejecting passes. Survivors of a sorted
    # array are always one contiguous range [a, b).
    a, b = 0, m
    iteration = 0
    lo = hi = 0.0
    while True:
        med = _median(x, a, b)
        cen = spread = med
        if cen_code == 1 or std_code == 0:
            _, mean, spread = _sum_std(x, a, b, 0)
            if cen_code == 1:
                cen = mean
        if std_code == 1:
            # mad_std takes its own median whatever the centre is, as in astropy.
            spread = _MAD_TO_STD * _mad(x, a, b, med)
        lo = cen - sig_lo * spread
        hi = cen + sig_hi * spread
        na, nb = a, b
        while na < nb and x[na] < lo:
            na += 1
        while nb > na and x[nb - 1] > hi:
            nb -= 1
        if nb - na == b - a or nb == na:
            break
        a, b = na, nb
        iteration += 1
        if maxiters > 0 and iteration >= maxiters:
            break
    # astropy masks the *whole* input against the final bounds, so a value rejected in an early pass
    # comes back if the bounds later widen over it; the result is still one contiguous range.
    a, b = 0, m
    while a < b and x[a] < lo:
        a += 1
    while b > a and x[b - 1] > hi:
        b -= 1
    return a, b


@numba.njit(nogil=True, cache=True)
def _reduce(x: np.ndarray, a: int, b: int, method: int, unc_code: int) -> tuple[float, float]:
    n = b - a
    med = _median(x, a, b)
    ddof = 1 if unc_code == 0 else 0
    total, mean, sd = _sum_std(x, a, b, ddof)
    if method == 0:
        value = med
        if unc_code == 0:
            err = math.sqrt(math.pi / 2.0) * sd / math.sqrt(n)
        else:
            err = _MAD_TO_STD * _mad(x, a, b, med) / math.sqrt(n)
    elif method == 1:
        value = mean
        err = sd / math.sqrt(n)
    else:
        value = total
        err = sd * math.sqrt(n)
    return value, err


@numba.njit(nogil=True, cache=True)
def sort_tile(
    stack: np.ndarray, pairs: np.ndarray, p0: int, w: int, tile: np.ndarray, counts: np.ndarray
) -> None:
    """Copy pixels ``p0:p0+w`` of ``stack`` (N, npix) into ``tile``, each column sorted.

    Non-finite values go last; ``counts[q]`` is the number of finite values of column ``q``.
    """
    nframes = stack.shape[0]
    counts[:w] = 0
    for k in range(nframes):
        src = stack[k, p0 : p0 + w]
        row = tile[k]
        for q in range(w):
            v = src[q]
            finite = math.isfinite(v)
            # Missing values sort to the end and are cut off by the count.
            row[q] = v if finite else np.inf
            counts[q] += finite
    for c in range(pairs.shape[0]):
        ri = tile[pairs[c, 0]]
        rj = tile[pairs[c, 1]]
        for q in range(w):
            u = ri[q]
            v = rj[q]
            ri[q] = u if u < v else v
            rj[q] = v if u < v else u


@numba.njit(nogil=True, cache=True)
def _combine_kernel(
    stack: np.ndarray,
    pairs: np.ndarray,
    out: np.ndarray,
    method: int,
    clip: int,
    sig_lo: float,
    sig_hi: float,
    maxiters: int,
    cen_code: int,
    std_code: int,
    nlow: int,
    nhigh: int,
    unc_code: int,
) -> None:
    nframes, npix = stack.shape
    # Sorting dominates, so a tile of pixels is sorted at once by a branch-free network whose inner
    # loop runs across pixels and vectorises; the tile stays in L1/L2 cache.
    width = max(16, min(256, 65536 // (stack.itemsize * max(nframes, 1)) // 16 * 16))
    tile = np.empty((nframes, width), dtype=stack.dtype)
    counts = np.empty(width, dtype=np.int64)
    buf = np.empty(nframes, dtype=np.float64)
    for p0 in range(0, npix, width):
        w = min(width, npix - p0)
        sort_tile(stack, pairs, p0, w, tile, counts)
        for q in range(w):
            m = counts[q]
            for k in range(m):
                buf[k] = tile[k, q]
            a, b = 0, m
            if m > 0 and clip == 1:
                a, b = _sigma_clip(buf, m, sig_lo, sig_hi, maxiters, cen_code, std_code)
            elif clip == 2:
                a, b = nlow, max(m - nhigh, nlow)
            if b > a:
                value, err = _reduce(buf, a, b, method, unc_code)
            else:
                value, err = np.nan, np.nan
            out[0, p0 + q] = value
            out[1, p0 + q] = err
            out[2, p0 + q] = b - a


@numba.njit(nogil=True, cache=True)
def _line_kernel(
    stack: np.ndarray,
    pairs: np.ndarray,
    out: np.ndarray,
    nx: int,
    method: int,
    mode: int,
    sig_lo: float,
    sig_hi: float,
    maxiters: int,
    nkeep: int,
    noise: np.ndarray,
    unc_code: int,
) -> None:
    # Rejection against a noise model pooled along each image line: sort a whole line first (the
    # model needs all of it), then clip and reduce its pixels one by one.
    nframes, npix = stack.shape
    width = max(16, min(256, 65536 // (stack.itemsize * max(nframes, 1)) // 16 * 16))
    tile = np.empty((nframes, width), dtype=stack.dtype)
    tcounts = np.empty(width, dtype=np.int64)
    line = np.empty((nframes, nx), dtype=np.float64)
    counts = np.empty(nx, dtype=np.int64)
    buf = np.empty(nframes, dtype=np.float64)
    resid = np.empty(nframes, dtype=np.float64)
    for base in range(0, npix, nx):
        for p0 in range(0, nx, width):
            w = min(width, nx - p0)
            sort_tile(stack, pairs, base + p0, w, tile, tcounts)
            for k in range(nframes):
                for q in range(w):
                    line[k, p0 + q] = tile[k, q]
            counts[p0 : p0 + w] = tcounts[:w]
        model = line_model(line, counts, mode, noise[0], noise[1], noise[2])
        for q in range(nx):
            m = counts[q]
            for k in range(m):
                buf[k] = line[k, q]
            a, b = 0, m
            if m > 0:
                a, b = model_clip(buf, m, sig_lo, sig_hi, maxiters, nkeep, model, resid)
            value, err = np.nan, np.nan
            if b > a:
                value, err = _reduce(buf, a, b, method, min(unc_code, 1))
                if unc_code == 2:
                    err = _model_error(noise_sigma(_median(buf, a, b), model), b - a, method)
            out[0, base + q] = value
            out[1, base + q] = err
            out[2, base + q] = b - a


# n var(median of n) / sigma^2 for Gaussian values, n = 1..16 (order-statistic integrals): far
# below the large-n pi/2 for the few frames masters are made of (1.434 for 5, not 1.571).
_MEDIAN_VARIANCE = np.array([1.0, 1.0, 1.346, 1.1928, 1.4342, 1.2885, 1.4731, 1.3454, 1.4949,
                             1.3833, 1.5088, 1.4102, 1.5184, 1.4303, 1.5254, 1.446])


@numba.njit(nogil=True, cache=True)
def median_variance_factor(n: int) -> float:
    """``n var(median) / sigma^2`` of n Gaussian values.

    Exact to n = 16, then ``pi/2 (1 - a/n)`` (a = 0.434 odd, 1.27 even, matching the exact
    values at 15 and 16).
    """
    if n <= _MEDIAN_VARIANCE.size:
        return _MEDIAN_VARIANCE[n - 1]
    return math.pi / 2.0 * (1.0 - (0.434 if n % 2 else 1.27) / n)


@numba.njit(nogil=True, cache=True)
def _model_error(sigma: float, n: int, method: int) -> float:
    # The expected error of the combined value of n values that each scatter by sigma.
    if method == 0:
        return math.sqrt(median_variance_factor(n)) * sigma / math.sqrt(n)
    if method == 1:
        return sigma / math.sqrt(n)
    return sigma * math.sqrt(n)


#: Deepest stack sorted by a network; deeper ones are pre-sorted with numpy.
_NETWORK_MAX = 1024


@functools.lru_cache(maxsize=64)
def _sorting_network(n: int) -> np.ndarray:
    """Return the comparators, shape ``(ncomp, 2)``, of Batcher's merge sort for ``n`` values."""
    # Built for the next power of two; comparators reaching past n only ever meet the +inf padding a
    # shorter input would have, so dropping them keeps the network correct for any n.
    pairs = []
    p = 1
    while p < n:
        k = p
        while k >= 1:
            for j in range(k % p, n - k, 2 * k):
                for i in range(min(k, n - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p):
                        pairs.append((i + j, i + j + k))
            k //= 2
        p *= 2
    return np.array(pairs, dtype=np.int64).reshape(-1, 2)


def _code(table: dict[str, int], name: str, value: str) -> int:
    try:
        return table[value]
    except KeyError:
        raise ValueError(f"unknown {name} {value!r}; expected one of {sorted(table)}") from None


def combine_block(
    stack: np.ndarray,
    *,
    method: str = "median",
    clip: str = "sigma",
    sigma_lower: float = 5.0,
    sigma_upper: float = 5.0,
    maxiters: int | None = 5,
    cenfunc: str = "median",
    stdfunc: str = "mad_std",
    nlow: int = 1,
    nhigh: int = 1,
    nkeep: int = 1,
    read_noise: float = 0.0,
    gain: float = 1.0,
    sensitivity_noise: float = 0.0,
    uncertainty: str = "empirical",
) -> np.ndarray:
    """Combine a stack of frames pixel by pixel, rejecting outliers.

    Parameters
    ----------
    stack : numpy.ndarray
        Frames stacked along axis 0, shape ``(N, ny, nx)``, any real dtype, byte order or layout.
    method : {"median", "mean", "sum"}
        How the surviving values of a pixel are reduced.
    clip : {"sigma", "minmax", "none", "ccdclip", "avsigclip", "pooled"}
        Outlier rejection applied before the reduction; the last three reject against a noise
        model (see `ccdflow.kernels.noiseclip` and Notes).
    sigma_lower, sigma_upper : float
        Sigma clipping rejects ``x < c - sigma_lower*s`` and ``x > c + sigma_upper*s``.
    maxiters : int or None
        Maximum number of rejecting passes; ``None`` (or ``0``, as in astropy) means until nothing
        changes.
    cenfunc : {"median", "mean"}
        Centre ``c`` of the sigma clipping.
    stdfunc : {"mad_std", "std"}
        Scale ``s`` of the sigma clipping.
    nlow, nhigh : int
        Number of lowest and highest values dropped by ``clip="minmax"``.
    nkeep : int
        Noise-model clips only: at least this many values are kept (negative: at most ``-nkeep``
        rejected), restoring those with the smallest residuals, as IRAF's ``nkeep``.
    read_noise, gain, sensitivity_noise : float
        ``ccdclip`` noise model: read noise (electrons), gain (e-/ADU), sensitivity noise (fraction).
    uncertainty : {"empirical", "ccdproc", "model"}
        Error convention, see Notes (``"ccdflow"`` is accepted for ``"empirical"``).

    Returns
    -------
    numpy.ndarray
        float32 array of shape ``(3, ny, nx)``: the combined value, its error, and the number of
        surviving values (stored as float; exact up to 2**24).

    Raises
    ------
    ValueError
        If ``stack`` is not 3-D, an option string is unknown, or ``uncertainty="model"`` is asked
        for a clip without a noise model.

    Notes
    -----
    Non-finite inputs (NaN, and inf as in astropy) are ignored. Sigma clipping reproduces
    ``astropy.stats.sigma_clip(stack, axis=0, ...)``: each pass computes ``c`` and ``s`` (``std``
    with ddof=0; ``mad_std = 1.482602218505602 * median(|x - median(x)|)``) on the survivors and
    rejects outside ``[c - sigma_lower*s, c + sigma_upper*s]``. As in astropy, the survivors
    returned are all values inside the *final* bounds (a value rejected early may come back), and a
    pass that would reject everything ends the clipping with no survivor. Min/max clipping drops
    the ``nlow`` lowest and ``nhigh`` highest values. Arithmetic is float64.

    The noise-model clips follow IRAF ``imcombine`` with ``mclip=yes``: centre = median of the
    survivors, spread ``sigma(centre)`` from the model, strict rejection, rejections permanent,
    repeated until nothing changes (or ``maxiters``), then ``nkeep``. Each row of the block is an
    image line: ``avsigclip`` and ``pooled`` pool their spread along it, so pass full-width rows.

    With ``n`` survivors and ``sd`` their ``std(ddof=1)``, ``uncertainty="empirical"`` gives
    ``sd/sqrt(n)`` (mean), ``sqrt(pi/2)*sd/sqrt(n)`` (median) and ``sd*sqrt(n)`` (sum), NaN when
    ``n == 1``. ``uncertainty="model"`` puts the model spread ``sigma`` at the survivors' median in
    place of ``sd``. ``uncertainty="ccdproc"`` reproduces ``ccdproc.combine``:
    ``std(ddof=0)/sqrt(n)`` (mean), ``1.482602218505602*MAD/sqrt(n)`` (median),
    ``std(ddof=0)*sqrt(n)`` (sum), hence 0 when ``n == 1``. A pixel without survivors has value
    NaN, error NaN and count 0.

    The kernel releases the GIL and is safe to call from many threads at once.

    Examples
    --------
    >>> import numpy as np
    >>> stack = np.array([10.0, 11.0, 9.0, 10.0, 1000.0], dtype=np.float32).reshape(5, 1, 1)
    >>> value, error, count = combine_block(stack)
    >>> float(value[0, 0]), int(count[0, 0])
    (10.0, 4)
    >>> value, error, count = combine_block(stack, clip="ccdclip", read_noise=1.0)
    >>> int(count[0, 0])
    4
    """
    stack = np.asarray(stack)
    if stack.ndim != 3:
        raise ValueError(f"stack must be 3-D (N, ny, nx), got shape {stack.shape}")
    model_mode = _MODEL_CLIPS.get(clip, -1)
    clip_code = 0 if model_mode >= 0 else _code(_CLIPS, "clip", clip)
    method_code = _code(_METHODS, "method", method)
    unc_code = _code(_UNCERTAINTIES, "uncertainty", uncertainty)
    if unc_code == 2 and model_mode < 0:
        raise ValueError(f"uncertainty 'model' needs a noise-model clip, not {clip!r}")
    # float32 holds float16/(u)int8/(u)int16 exactly; anything wider keeps its precision in float64.
    exact32 = stack.dtype.itemsize <= 2 or (stack.dtype.kind == "f" and stack.dtype.itemsize <= 4)
    dtype = np.float32 if exact32 else np.float64
    nframes, ny, nx = stack.shape
    flat = np.ascontiguousarray(stack, dtype=dtype).reshape(nframes, ny * nx)
    out = np.empty((3, ny * nx), dtype=np.float32)
    if nframes > _NETWORK_MAX:
        # A very deep stack (e.g. every pixel of a frame as one sample): numpy sorts it faster than
        # a network could even be built. Non-finite values go last, as the kernel expects, and an
        # empty network leaves the sorted order alone.
        flat = np.sort(np.where(np.isfinite(flat), flat, np.nan), axis=0)
        pairs = np.empty((0, 2), dtype=np.int64)
    else:
        pairs = _sorting_network(nframes)
    if model_mode >= 0:
        noise = np.array([(read_noise / gain) ** 2, 1.0 / gain, sensitivity_noise**2])
        if ny * nx:
            _line_kernel(flat, pairs, out, nx, method_code, model_mode, float(sigma_lower),
                         float(sigma_upper), int(maxiters or 0), int(nkeep), noise, unc_code)
        return out.reshape(3, ny, nx)
    codes = (method_code, clip_code, float(sigma_lower), float(sigma_upper), int(maxiters or 0),
             _code(_CENFUNCS, "cenfunc", cenfunc), _code(_STDFUNCS, "stdfunc", stdfunc),
             int(nlow), int(nhigh), unc_code)
    _combine_kernel(flat, pairs, out, *codes)
    return out.reshape(3, ny, nx)
