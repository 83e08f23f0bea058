"""Tests of the overscan kernel against independent plain-numpy / astropy oracles."""

import warnings

import numpy as np
import pytest
from astropy.stats import sigma_clip

from ccdflow.kernels.overscan import overscan_level

NY, NX = 60, 80
RIGHT = (0, NY, 70, 80)  # 10-column overscan strip on the right
TOP = (0, 8, 0, NX)  # 8-row overscan strip at the top


def frame(seed=1, noise=3.0):
    """Science area of noise plus a right overscan at 1000 + 0.05 * row + N(0, noise)."""
    rng = np.random.default_rng(seed)
    image = rng.normal(500.0, 10.0, (NY, NX))
    rows = np.arange(NY)[:, None]
    image[:, 70:] = 1000.0 + 0.05 * rows + rng.normal(0.0, noise, (NY, 10))
    return image.astype(np.float32)


def top_frame(seed=2):
    rng = np.random.default_rng(seed)
    image = rng.normal(500.0, 10.0, (NY, NX))
    image[:8, :] = 1000.0 + 0.1 * np.arange(NX)[None, :] + rng.normal(0.0, 3.0, (8, NX))
    return image.astype(np.float32)


def median_var(pixels, axis=None):
    n = np.isfinite(pixels).sum(axis=axis)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.pi / 2 * np.nanvar(pixels, ddof=1, axis=axis) / n


def overscan_pixels(image, region=RIGHT):
    ymin, ymax, xmin, xmax = region
    return image[ymin:ymax, xmin:xmax].astype(np.float64)


# --- scalar methods -----------------------------------------------------------------------------


def test_median_matches_numpy():
    image = frame()
    pix = overscan_pixels(image).ravel()
    level, var = overscan_level(image, [RIGHT], method="median")
    assert level.shape == var.shape == (1, 1)
    assert level.dtype == var.dtype == np.float64
    np.testing.assert_allclose(level[0, 0], np.median(pix), rtol=1e-12)
    np.testing.assert_allclose(var[0, 0], np.pi / 2 * np.var(pix, ddof=1) / pix.size, rtol=1e-10)


def test_mean_matches_numpy():
    image = frame()
    pix = overscan_pixels(image).ravel()
    level, var = overscan_level(image, [RIGHT], method="mean")
    np.testing.assert_allclose(level[0, 0], pix.mean(), rtol=1e-12)
    np.testing.assert_allclose(var[0, 0], np.var(pix, ddof=1) / pix.size, rtol=1e-10)


@pytest.mark.parametrize(("sigma", "maxiters"), [(3.0, 5), (2.0, 1), (2.0, 20), (1.5, 3)])
def test_clipped_mean_matches_astropy(sigma, maxiters):
    image = frame()
    image[[3, 17, 40], [71, 75, 79]] = [1500.0, 1200.0, 700.0]  # cosmic rays / cold pixels
    pix = overscan_pixels(image).ravel()
    kept = sigma_clip(pix, sigma=sigma, maxiters=maxiters, cenfunc="median", stdfunc="std")
    kept = kept.compressed()
    level, var = overscan_level(image, [RIGHT], method="clipped_mean", sigma=sigma,
                                maxiters=maxiters)
    assert kept.size < pix.size
    np.testing.assert_allclose(level[0, 0], kept.mean(), rtol=1e-12)
    np.testing.assert_allclose(var[0, 0], np.var(kept, ddof=1) / kept.size, rtol=1e-10)


def test_scalar_pools_regions_and_ignores_non_finite():
    image = frame()
    left = (10, 50, 0, 4)
    image[5, 72], image[30, 1], image[44, 79] = np.nan, np.inf, -np.inf
    pix = np.concatenate([overscan_pixels(image).ravel(), overscan_pixels(image, left).ravel()])
    pix = pix[np.isfinite(pix)]
    level, var = overscan_level(image, [RIGHT, left], method="median")
    np.testing.assert_allclose(level[0, 0], np.median(pix), rtol=1e-12)
    np.testing.assert_allclose(var[0, 0], np.pi / 2 * np.var(pix, ddof=1) / pix.size, rtol=1e-10)


def test_overlapping_regions_count_pixels_once():
    image = frame()
    once, _ = overscan_level(image, [RIGHT], method="mean")
    twice, _ = overscan_level(image, [RIGHT, (0, 30, 70, 80)], method="mean")
    np.testing.assert_allclose(twice, once, rtol=1e-12)


@pytest.mark.parametrize("method", ["median", "mean", "clipped_mean"])
def test_scalar_all_nan_region_gives_nan(method):
    image = frame()
    image[:, 70:] = np.nan
    level, var = overscan_level(image, [RIGHT], method=method)
    assert np.isnan(level).all() and np.isnan(var).all()


# --- per-line methods ---------------------------------------------------------------------------


def test_median_per_line_rows_matches_numpy():
    image = frame()
    pix = overscan_pixels(image)
    level, var = overscan_level(image, [RIGHT], method="median_per_line")
    assert level.shape == var.shape == (NY, 1)
    np.testing.assert_allclose(level[:, 0], np.median(pix, axis=1), rtol=1e-12)
    np.testing.assert_allclose(var[:, 0], median_var(pix, axis=1), rtol=1e-10)


def test_median_per_line_columns_for_top_strip():
    image = top_frame()
    pix = overscan_pixels(image, TOP)
    level, var = overscan_level(image, [TOP], method="median_per_line")
    assert level.shape == var.shape == (1, NX)
    np.testing.assert_allclose(level[0], np.median(pix, axis=0), rtol=1e-12)
    np.testing.assert_allclose(var[0], median_var(pix, axis=0), rtol=1e-10)


def test_median_per_line_pools_two_regions():
    image = frame()
    left = (20, NY, 0, 5)
    level, var = overscan_level(image, [RIGHT, left], method="median_per_line")
    for row in (0, 19, 20, 45, NY - 1):
        pix = image[row, 70:].astype(np.float64)
        if row >= 20:
            pix = np.concatenate([pix, image[row, :5]])
        np.testing.assert_allclose(level[row, 0], np.median(pix), rtol=1e-12)
        np.testing.assert_allclose(var[row, 0], median_var(pix), rtol=1e-10)


def test_median_per_line_fills_uncovered_lines():
    image = frame()
    regions = [(5, 20, 70, 80), (30, 50, 70, 80)]
    level, var = overscan_level(image, regions, method="median_per_line")
    med = np.median(image[:, 70:].astype(np.float64), axis=1)
    mv = median_var(image[:, 70:].astype(np.float64), axis=1)
    np.testing.assert_allclose(level[:5, 0], med[5], rtol=1e-12)  # constant before the first
    np.testing.assert_allclose(level[50:, 0], med[49], rtol=1e-12)  # constant after the last
    np.testing.assert_allclose(var[50:, 0], mv[49], rtol=1e-10)
    t = (np.arange(20, 30) - 19) / 11.0  # linear between rows 19 and 30
    np.testing.assert_allclose(level[20:30, 0], (1 - t) * med[19] + t * med[30], rtol=1e-12)
    np.testing.assert_allclose(var[20:30, 0], (1 - t) ** 2 * mv[19] + t**2 * mv[30], rtol=1e-10)


def test_median_per_line_ignores_non_finite_and_flags_empty_lines():
    image = frame()
    image[4, 70:73] = np.nan
    image[9, 75] = np.inf
    image[12, 70:] = np.nan  # a covered line with no finite pixel
    image[14, 70:79] = np.nan  # a line with a single pixel
    pix = overscan_pixels(image)
    pix[~np.isfinite(pix)] = np.nan
    level, var = overscan_level(image, [RIGHT], method="median_per_line")
    good = np.setdiff1d(np.arange(NY), [12, 14])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        oracle = np.nanmedian(pix, axis=1)
    np.testing.assert_allclose(level[good, 0], oracle[good], rtol=1e-12)
    np.testing.assert_allclose(var[good, 0], median_var(pix, axis=1)[good], rtol=1e-10)
    assert np.isnan(level[12, 0]) and np.isnan(var[12, 0])
    assert level[14, 0] == pix[14, 9]
    np.testing.assert_allclose(var[14, 0], np.median(var[good, 0]), rtol=1e-12)


def test_polynomial_matches_polyfit():
    image = frame()
    med = np.median(overscan_pixels(image), axis=1)
    rows = np.arange(NY, dtype=np.float64)
    coef, cov = np.polyfit(rows, med, 3, cov="unscaled")
    s2 = np.sum((med - np.polyval(coef, rows)) ** 2) / (NY - 4)
    vander = np.vander(rows, 4)
    level, var = overscan_level(image, [RIGHT], method="polynomial", order=3)
    assert level.shape == var.shape == (NY, 1)
    np.testing.assert_allclose(level[:, 0], np.polyval(coef, rows), rtol=1e-10)
    np.testing.assert_allclose(var[:, 0], s2 * np.einsum("ij,jk,ik->i", vander, cov, vander),
                               rtol=1e-6)


def test_polynomial_columns_and_extrapolation():
    image = top_frame()
    region = (0, 8, 10, 70)
    med = np.median(overscan_pixels(image, region), axis=0)
    coef = np.polyfit(np.arange(10, 70), med, 2)
    level, var = overscan_level(image, [region], method="polynomial", order=2)
    assert level.shape == (1, NX)
    np.testing.assert_allclose(level[0], np.polyval(coef, np.arange(NX)), rtol=1e-10)
    assert np.all(np.isfinite(var)) and var[0, 0] > var[0, 40]  # extrapolation is less certain


def test_polynomial_exact_fit_falls_back_to_line_variance():
    image = frame()
    region = (10, 14, 70, 73)  # four rows of three pixels, cubic: zero residual degrees of freedom
    level, var = overscan_level(image, [region], method="polynomial", order=3)
    pix = overscan_pixels(image, region)
    np.testing.assert_allclose(level[10:14, 0], np.median(pix, axis=1), rtol=1e-9)
    # At the fitted lines an exact fit has leverage 1, so the variance is the mean line variance.
    np.testing.assert_allclose(var[10:14, 0], median_var(pix, axis=1).mean(), rtol=1e-9)


# --- errors -------------------------------------------------------------------------------------


def test_mixed_orientation_raises():
    with pytest.raises(ValueError, match="all taller than wide"):
        overscan_level(frame(), [RIGHT, TOP], method="median_per_line")


def test_square_region_raises():
    with pytest.raises(ValueError, match="all wider than tall"):
        overscan_level(frame(), [(0, 10, 70, 80)], method="polynomial")


def test_unknown_method_raises():
    with pytest.raises(ValueError, match="unknown overscan method 'mode'"):
        overscan_level(frame(), [RIGHT], method="mode")


# --- honest variances ---------------------------------------------------------------------------

# 2000 realisations put the sampling error of the empirical variance near 3 %, so the 15 %
# tolerance is a real test of the formula rather than of the seed.
N_REAL = 2000


@pytest.fixture(scope="module")
def noise_frames():
    rng = np.random.default_rng(12345)
    return rng.normal(0.0, 3.0, (N_REAL, NY, 20)).astype(np.float32)


@pytest.mark.parametrize("method", ["median", "mean", "clipped_mean"])
def test_scalar_variance_is_honest(noise_frames, method):
    region = [(0, NY, 10, 20)]
    results = [overscan_level(f, region, method=method) for f in noise_frames]
    levels = np.array([lv[0, 0] for lv, _ in results])
    predicted = np.mean([v[0, 0] for _, v in results])
    np.testing.assert_allclose(levels.var(ddof=1), predicted, rtol=0.15)


def test_polynomial_variance_is_honest(noise_frames):
    region = [(0, NY, 10, 20)]
    results = [overscan_level(f, region, method="polynomial", order=3) for f in noise_frames]
    levels = np.array([lv[:, 0] for lv, _ in results])
    predicted = np.array([v[:, 0] for _, v in results]).mean(axis=0)
    for row in (0, 15, 30, NY - 1):
        np.testing.assert_allclose(levels[:, row].var(ddof=1), predicted[row], rtol=0.15)
