"""Bad pixels from masters: hot pixels in a dark rate, and IRAF ``ccdmask`` on a flat (numba).

``ccdmask`` follows IRAF's ``noao/imred/ccdred/src/t_ccdmask.x``: a moving-median background, a
percentile sigma per block, single-pixel rejection, then column sums at growing scales, then short
good runs between bad pixels closed up. Lines are numpy axis 0, columns axis 1.
"""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = ["MAD_TO_STD", "ccdmask", "hot_pixels"]

MAD_TO_STD = 1.482602218505602
"""Ratio of a Gaussian's standard deviation to its median absolute deviation."""

# The 30.9 and 69.1 percentiles are -0.5 and +0.5 sigma of a Gaussian: their difference is one sigma
# (IRAF's code uses the difference as is; its help page and ccdproc halve it, which doubles the
# effective threshold: ccdproc's lsigma=9 is IRAF's 4.5).
_PLOW, _PHIGH = 30.9, 69.1


def hot_pixels(rate: np.ndarray, *, nsigma: float = 5.0) -> np.ndarray:
    """Hot pixels of a master dark rate: far above the detector's typical rate.

    Parameters
    ----------
    rate : numpy.ndarray
        Master dark (ADU/s, or ADU at any fixed exposure: the test is scale-free).
    nsigma : float
        Threshold above the median, in units of the robust spread.

    Returns
    -------
    numpy.ndarray of bool
        True where ``rate > median + nsigma * s`` or where the rate is not finite.

    Notes
    -----
    ``s = 1.4826 * MAD`` over the finite pixels, a spread that the hot pixels themselves cannot
    inflate. Where more than half the pixels share one value (quantised data, MAD = 0) ``s`` falls
    back to the standard deviation, so a flat dark never flags its every pixel above the median. A
    non-finite rate (no master value) is flagged. For Gaussian noise the false rate at 5 sigma is
    3e-7 per pixel; the tests bound it at 1e-4 on simulated master darks.

    Examples
    --------
    >>> rate = np.random.default_rng(1).normal(0.01, 0.002, (50, 50)); rate[3, 4] = 1.0
    >>> np.argwhere(hot_pixels(rate)).tolist()
    [[3, 4]]
    """
    rate = np.asarray(rate, dtype=np.float64)
    finite = np.isfinite(rate)
    values = rate[finite]
    if values.size == 0:
        return np.ones(rate.shape, dtype=bool)
    median = np.median(values)
    spread = MAD_TO_STD * np.median(np.abs(values - median))
    if spread == 0.0:
        spread = float(np.std(values))
    flagged = ~finite
    flagged[finite] = values > median + nsigma * spread
    return flagged


@numba.njit(nogil=True, cache=True)
def _background(data, nlmed, ncmed):  # pragma: no cover
    # IRAF's box slides inside the image at the edges rather than being reflected or truncated
    nl, nc = data.shape
    out = np.empty((nl, nc), dtype=np.float64)
    work = np.empty(nlmed * ncmed, dtype=np.float64)
    for j in range(nl):
        k = max(0, min(nl, j + nlmed // 2 + 1) - nlmed)
        for i in range(nc):
            m = max(0, min(nc, i + ncmed // 2 + 1) - ncmed)
            n = 0
            for a in range(k, min(nl, k + nlmed)):
                for b in range(m, min(nc, m + ncmed)):
                    v = data[a, b]
                    if math.isfinite(v):
                        work[n] = v
                        n += 1
            out[j, i] = np.median(work[:n]) if n > 0 else np.nan
    return out


@numba.njit(nogil=True, cache=True)
def _nblocks(n, size):  # pragma: no cover
    return max(1, n // size)


@numba.njit(nogil=True, cache=True)
def _block_variance(resid, nlsig, ncsig, plow, phigh):  # pragma: no cover
    # One sigma per block, not a moving box (IRAF's choice, for speed); the leftover lines and
    # columns at the far edges join the last whole block.
    nl, nc = resid.shape
    nbl, nbc = _nblocks(nl, nlsig), _nblocks(nc, ncsig)
    var = np.empty((nbl, nbc), dtype=np.float64)
    for bl in range(nbl):
        l1, l2 = bl * nlsig, (nl if bl == nbl - 1 else (bl + 1) * nlsig)
        for bc in range(nbc):
            c1, c2 = bc * ncsig, (nc if bc == nbc - 1 else (bc + 1) * ncsig)
            block = resid[l1:l2, c1:c2].ravel()
            block = np.sort(block[np.isfinite(block)])
            n = block.size
            if n == 0:
                var[bl, bc] = np.inf
                continue
            lo = max(0, int(math.floor(plow * n / 100.0 - 1.0 + 0.5)))
            hi = min(n - 1, max(0, int(math.floor(phigh * n / 100.0 - 1.0 + 0.5))))
            s = block[hi] - block[lo]
            var[bl, bc] = s * s
    return var


@numba.njit(nogil=True, cache=True)
def _column_sums(resid, var, bad, lsig, hsig):  # pragma: no cover
    # Windows of l lines (2..9, then doubling to the whole column) slide down the column; the sum of
    # the residuals of the pixels still good at the start of this scale is tested against the
    # square root of the sum of their variances, and a deviant window is flagged whole.
    nl = resid.shape[0]
    scale = 2
    while scale <= nl:
        start = bad.copy()
        s1 = 0.0
        s2 = 0.0
        count = 0
        for j in range(scale - 1):
            if not start[j]:
                s1 += resid[j]
                s2 += var[j]
                count += 1
        for j in range(scale - 1, nl):
            k = j - scale + 1
            if not start[j]:
                s1 += resid[j]
                s2 += var[j]
                count += 1
            if count > 0:
                sigma = math.sqrt(s2)
                if s1 < -lsig * sigma or s1 > hsig * sigma:
                    bad[k:j + 1] = True
            if not start[k]:
                s1 -= resid[k]
                s2 -= var[k]
                count -= 1
        if scale == nl:
            break
        scale = scale + 1 if scale < 10 else min(2 * scale, nl)


@numba.njit(nogil=True, cache=True)
def _close_gaps(bad, ngood):  # pragma: no cover
    # IRAF also closes a short good run at either end of the column, not only between bad pixels
    nl = bad.size
    k = 0
    while k < nl and bad[k]:
        k += 1
    while k < nl - 1:
        m = k + 1
        while m < nl and not bad[m]:
            m += 1
        if m - k < ngood:
            bad[k:m] = True
        k = m + 1
        while k < nl and bad[k]:
            k += 1


@numba.njit(nogil=True, cache=True)
def _ccdmask(data, ncmed, nlmed, ncsig, nlsig, lsig, hsig, ngood, plow, phigh):  # pragma: no cover
    nl, nc = data.shape
    resid = data - _background(data, nlmed, ncmed)
    bvar = _block_variance(resid, nlsig, ncsig, plow, phigh)
    # A dead column biases a 7-pixel median by ~0.2 sigma in its neighbours, which the whole-column
    # sums (sqrt(2048) ~ 45) turn into whole flagged columns: the level is measured again without the
    # pixels that are deviant on their own.
    nbl, nbc = bvar.shape
    clean = data.copy()
    for j in range(nl):
        for i in range(nc):
            sigma = math.sqrt(bvar[min(j // nlsig, nbl - 1), min(i // ncsig, nbc - 1)])
            r = resid[j, i]
            if r < -lsig * sigma or r > hsig * sigma:
                clean[j, i] = np.nan
    resid = data - _background(clean, nlmed, ncmed)
    bvar = _block_variance(resid, nlsig, ncsig, plow, phigh)
    mask = np.zeros((nl, nc), dtype=np.bool_)
    col_var = np.empty(nl, dtype=np.float64)
    col_res = np.empty(nl, dtype=np.float64)
    bad = np.empty(nl, dtype=np.bool_)
    for i in range(nc):
        bc = min(i // ncsig, nbc - 1)
        nbad = 0
        for j in range(nl):
            v = bvar[min(j // nlsig, nbl - 1), bc]
            r = resid[j, i]
            col_var[j] = v
            col_res[j] = r
            sigma = math.sqrt(v)
            bad[j] = not math.isfinite(r) or r < -lsig * sigma or r > hsig * sigma
            nbad += bad[j]
        if nbad < nl:
            _column_sums(col_res, col_var, bad, lsig, hsig)
            if ngood > 1:
                _close_gaps(bad, ngood)
        mask[:, i] = bad
    return mask


def ccdmask(
    flat: np.ndarray,
    *,
    ncmed: int = 7,
    nlmed: int = 7,
    ncsig: int = 15,
    nlsig: int = 15,
    lsigma: float = 6.0,
    hsigma: float = 6.0,
    ngood: int = 5,
) -> np.ndarray:
    """Dead, cold, hot pixels and bad column segments of a flat, as IRAF's ``ccdmask``.

    Parameters
    ----------
    flat : numpy.ndarray
        A 2-D master flat, or better the ratio of two flats of different levels. Lines are axis 0,
        columns axis 1; column defects run along axis 0.
    ncmed, nlmed : int
        Columns and lines of the moving-median box estimating the local level (>= 3 columns to
        span a single bad column; more than twice a defect's width).
    ncsig, nlsig : int
        Columns and lines of the blocks in which the sigma is measured (of order 100 pixels or more).
    lsigma, hsigma : float
        Thresholds below and above the local level, in sigmas (IRAF's defaults, 6).
    ngood : int
        Runs of good pixels shorter than this along a column, next to bad ones, are flagged too.

    Returns
    -------
    numpy.ndarray of bool
        True where the pixel is bad.

    Notes
    -----
    Residual ``r = flat - median_box(flat)``; per block ``sigma = p69.1(r) - p30.9(r)`` (one
    Gaussian sigma, robust to the defects). A pixel is bad if ``r < -lsigma*sigma`` or
    ``r > hsigma*sigma``. Then, per column and for window lengths ``L = 2..9, 16, 32, ...`` up to the
    whole column, a window whose residual sum over the still-good pixels lies outside
    ``[-lsigma, hsigma] * sqrt(sum sigma^2)`` is flagged whole: this finds weak partial columns (traps)
    whose single pixels are not deviant. Finally good runs shorter than ``ngood`` are closed.
    Non-finite pixels are bad and left out of the medians and sigmas. Differences from IRAF: the local
    level is measured a second time without the individually deviant pixels (a dead column otherwise
    biases its neighbours' median by ~0.2 sigma, enough for the whole-column sums to flag them); the sigma
    is measured on the residual (as IRAF's help describes) rather than the raw values (as its code
    does), so a flat's illumination gradient does not widen it; edge blocks absorb the leftover lines.
    Limitation shared with IRAF: the median box of the outermost ``ncmed // 2`` columns is off-centre,
    so a steep gradient across columns (more than ~0.1 sigma per pixel) biases their level and the
    whole-column sums flag them; divide such a flat by a smooth fit first, or use a flat ratio.

    Examples
    --------
    >>> flat = np.random.default_rng(2).normal(1.0, 0.01, (60, 40)); flat[:, 17] = 0.5
    >>> np.flatnonzero(ccdmask(flat).all(axis=0)).tolist()
    [17]
    """
    data = np.asarray(flat, dtype=np.float64)
    return _ccdmask(data, int(ncmed), int(nlmed), int(ncsig), int(nlsig), float(lsigma), float(hsigma),
                    int(ngood), _PLOW, _PHIGH)


def illumination(flat: np.ndarray, *, box: int | None = None) -> np.ndarray:
    """A smooth model of a flat's large-scale illumination (vignetting, gradients).

    Medians of ``box x box`` blocks, interpolated linearly between block centres and
    extrapolated linearly beyond the outer centres, so that a gradient running into the edge of
    the detector is followed rather than flattened. Dividing a flat by it leaves the
    pixel-to-pixel structure that `ccdmask` looks at: its moving median slides inside the image
    at the edges, and a steep vignetting gradient there would otherwise flag whole edge columns.

    Parameters
    ----------
    flat : numpy.ndarray
        2-D flat; NaN ignored.
    box : int, optional
        Block size in pixels (a defect up to half a block wide does not move a block's median);
        by default an eighth of the smaller side, within 6 to 16, so that a small detector's
        steeper vignetting per pixel is still followed.

    Returns
    -------
    numpy.ndarray
        float64 model, the flat's shape.

    Examples
    --------
    >>> ramp = np.tile(np.linspace(0.5, 1.5, 64), (48, 1))
    >>> bool(np.allclose(illumination(ramp), ramp))
    True
    """
    data = np.asarray(flat, dtype=np.float64)
    ny, nx = data.shape
    if box is None:
        box = int(np.clip(min(ny, nx) // 8, 6, 16))
    edges_y = _block_edges(ny, box)
    edges_x = _block_edges(nx, box)
    medians = np.full((len(edges_y) - 1, len(edges_x) - 1), np.nan)
    for i, (y0, y1) in enumerate(zip(edges_y[:-1], edges_y[1:], strict=True)):
        for j, (x0, x1) in enumerate(zip(edges_x[:-1], edges_x[1:], strict=True)):
            block = data[y0:y1, x0:x1]
            finite = block[np.isfinite(block)]
            medians[i, j] = np.median(finite) if finite.size else np.nan
    centre_y = 0.5 * (edges_y[:-1] + edges_y[1:] - 1)
    centre_x = 0.5 * (edges_x[:-1] + edges_x[1:] - 1)
    rows = _interpolate(medians, centre_y, np.arange(ny))
    return _interpolate(rows.T, centre_x, np.arange(nx)).T


def _block_edges(n: int, box: int) -> np.ndarray:
    count = max(1, n // box)
    edges = np.arange(count + 1) * box
    edges[-1] = n  # the leftover lines join the last block
    return edges


def _interpolate(values: np.ndarray, centres: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """Linear along axis 0 between centres, extrapolated linearly beyond the outer ones."""
    if len(centres) == 1:
        return np.repeat(values, len(coords), axis=0)
    right = np.clip(np.searchsorted(centres, coords), 1, len(centres) - 1)
    left = right - 1
    t = (coords - centres[left]) / (centres[right] - centres[left])
    return values[left] * (1 - t)[:, None] + values[right] * t[:, None]
