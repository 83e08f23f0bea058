"""Tests of ccdflow.kernels.clip against astropy.stats.sigma_clip and plain numpy."""

from __future__ import annotations

import math
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from astropy.stats import sigma_clip
from astropy.utils.exceptions import AstropyUserWarning

from ccdflow.kernels.clip import combine_block

SHAPES = [(5, 7, 9), (11, 4, 5), (40, 3, 3), (1, 3, 3)]

CLIP_PARAMS = [
    {},
    {"sigma_lower": 2.0, "sigma_upper": 4.0, "maxiters": 1},
    {"sigma_lower": 3.0, "sigma_upper": 3.0, "maxiters": None, "cenfunc": "mean", "stdfunc": "std"},
    {"sigma_lower": 2.0, "sigma_upper": 4.0, "maxiters": None, "cenfunc": "mean"},
    {"sigma_lower": 3.0, "sigma_upper": 3.0, "maxiters": 5, "stdfunc": "std"},
    {"sigma_lower": 1.5, "sigma_upper": 1.5, "maxiters": None},
    {"sigma_lower": 1.0, "sigma_upper": 1.5, "maxiters": 5, "cenfunc": "mean", "stdfunc": "std"},
]

ASTROPY_DEFAULTS = {
    "sigma_lower": 5.0,
    "sigma_upper": 5.0,
    "maxiters": 5,
    "cenfunc": "median",
    "stdfunc": "mad_std",
}


def make_stack(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """Gaussian frames with cosmic rays, scattered NaNs, an all-NaN and a single-value pixel."""
    rng = np.random.default_rng(seed)
    stack = rng.normal(100.0, 3.0, shape).astype(np.float32)
    hits = rng.random(shape) < 0.06
    stack[hits] += rng.uniform(30.0, 500.0, hits.sum()).astype(np.float32)
    stack[rng.random(shape) < 0.05] = np.nan
    stack[:, 0, 0] = np.nan
    stack[1:, 0, 1] = np.nan
    return stack


def astropy_masked(stack: np.ndarray, **params: object) -> np.ma.MaskedArray:
    kwargs = {**ASTROPY_DEFAULTS, **params}
    with warnings.catch_warnings():
        # astropy announces that it masks the NaNs we put in on purpose
        warnings.simplefilter("ignore", AstropyUserWarning)
        return sigma_clip(stack.astype(np.float64), axis=0, masked=True, **kwargs)


def numpy_expected(
    masked: np.ma.MaskedArray, method: str, uncertainty: str = "ccdflow"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Value, error and count of the unmasked values, with plain numpy."""
    arr = masked.filled(np.nan)
    count = (~np.ma.getmaskarray(masked)).sum(axis=0)
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        # empty and single-value pixels warn here; their NaN results are what we expect
        warnings.simplefilter("ignore", RuntimeWarning)
        reducer = {"median": np.ma.median, "mean": np.ma.mean, "sum": np.ma.sum}[method]
        value = np.ma.filled(reducer(masked, axis=0).astype(np.float64), np.nan)
        value = np.where(count == 0, np.nan, value)
        if uncertainty == "ccdflow":
            sd = np.nanstd(arr, axis=0, ddof=1)
            scale = {"median": math.sqrt(math.pi / 2) / np.sqrt(count), "mean": 1 / np.sqrt(count)}
            error = sd * scale.get(method, np.sqrt(count))
        else:
            sd = np.nanstd(arr, axis=0, ddof=0)
            mad = np.nanmedian(np.abs(arr - np.nanmedian(arr, axis=0)), axis=0)
            error = {
                "median": 1.4826 * mad / np.sqrt(count),
                "mean": sd / np.sqrt(count),
                "sum": sd * np.sqrt(count),
            }[method]
    return value, error, count


def check(result: np.ndarray, expected: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    value, error, count = expected
    assert result.dtype == np.float32
    np.testing.assert_array_equal(result[2], count)
    np.testing.assert_allclose(result[0], value, rtol=1e-5)
    np.testing.assert_allclose(result[1], error, rtol=1e-5)


@pytest.mark.parametrize("method", ["median", "mean", "sum"])
@pytest.mark.parametrize("params", CLIP_PARAMS, ids=lambda p: "-".join(map(str, p.values())))
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_sigma_clip_matches_astropy(shape, params, method):
    stack = make_stack(shape, seed=sum(shape))
    result = combine_block(stack, method=method, **params)
    check(result, numpy_expected(astropy_masked(stack, **params), method))


@pytest.mark.parametrize("method", ["median", "mean", "sum"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_ccdproc_uncertainty(shape, method):
    stack = make_stack(shape, seed=1)
    result = combine_block(stack, method=method, uncertainty="ccdproc")
    check(result, numpy_expected(astropy_masked(stack), method, "ccdproc"))


def test_lone_outlier_in_five_frames_is_rejected_by_default():
    rng = np.random.default_rng(5)
    good = rng.normal(100.0, 1.0, 4)
    stack = np.append(good, 1000.0).astype(np.float32).reshape(5, 1, 1)
    value, _, count = combine_block(stack)
    assert count[0, 0] == 4
    np.testing.assert_allclose(value[0, 0], np.median(good.astype(np.float32)), rtol=1e-6)
    # why mad_std is the default: with std one outlier among 5 stays within (5-1)/sqrt(5) sigma
    assert combine_block(stack, stdfunc="std")[2, 0, 0] == 5


def test_all_nan_and_single_value_pixels():
    stack = np.full((6, 1, 3), np.nan, dtype=np.float32)
    stack[2, 0, 1] = 7.0
    stack[:, 0, 2] = np.arange(6)
    for method in ("median", "mean", "sum"):
        value, error, count = combine_block(stack, method=method)
        np.testing.assert_array_equal(count[0], [0, 1, 6])
        assert np.isnan(value[0, 0]) and np.isnan(error[0, 0])
        assert value[0, 1] == 7.0
        assert np.isnan(error[0, 1])
        ccdproc = combine_block(stack, method=method, uncertainty="ccdproc")
        assert ccdproc[1, 0, 1] == 0.0
        assert np.isnan(ccdproc[1, 0, 0])


@pytest.mark.parametrize(("nlow", "nhigh"), [(1, 1), (0, 2), (2, 0), (3, 3), (0, 0)])
@pytest.mark.parametrize("method", ["median", "mean", "sum"])
def test_minmax_drops_extremes(nlow, nhigh, method):
    stack = make_stack((6, 5, 4), seed=3)
    result = combine_block(stack, method=method, clip="minmax", nlow=nlow, nhigh=nhigh)
    ordered = np.sort(stack.astype(np.float64), axis=0)  # NaNs sort last
    nfinite = np.isfinite(stack).sum(axis=0)
    rank = np.arange(stack.shape[0])[:, None, None]
    keep = (rank >= nlow) & (rank < nfinite - nhigh)
    check(result, numpy_expected(np.ma.masked_array(ordered, mask=~keep), method))
    # the single-value pixel loses its only value unless nothing is dropped
    assert result[2, 0, 1] == (nlow + nhigh == 0)


@pytest.mark.parametrize("method", ["median", "mean", "sum"])
def test_no_clipping_keeps_every_finite_value(method):
    stack = make_stack((9, 6, 5), seed=4)
    result = combine_block(stack, method=method, clip="none")
    masked = np.ma.masked_invalid(stack.astype(np.float64))
    check(result, numpy_expected(masked, method))
    np.testing.assert_array_equal(result[2], np.isfinite(stack).sum(axis=0))


def test_final_bounds_reinstate_earlier_rejections_like_astropy():
    # astropy masks the whole input against the last bounds: 97 is rejected in the first pass and
    # readmitted when the bounds widen, so 4 values survive, not the 3 of a purely sequential clip.
    values = np.array([97.0, 120.0, 100.0, 98.0, 104.0])
    params = {"sigma_lower": 1.5, "sigma_upper": 1.5, "maxiters": None, "cenfunc": "mean"}
    stack = values.astype(np.float32).reshape(5, 1, 1)
    expected = astropy_masked(stack, **params)
    assert (~expected.mask).sum() == 4
    check(combine_block(stack, **params), numpy_expected(expected, "median"))


def test_pass_rejecting_everything_leaves_no_survivor_like_astropy():
    stack = np.array([99.0, 107.0, 98.0, 99.0, 99.0, 103.0], dtype=np.float32).reshape(6, 1, 1)
    params = {"sigma_lower": 1.5, "sigma_upper": 1.5, "maxiters": None, "cenfunc": "mean"}
    assert astropy_masked(stack, **params).mask.all()
    value, error, count = combine_block(stack, **params)
    assert count[0, 0] == 0 and np.isnan(value[0, 0]) and np.isnan(error[0, 0])


@pytest.mark.parametrize("nframes", [1, 2, 3, 7, 16, 17, 33, 64, 100])
def test_order_statistics_for_many_stack_depths(nframes):
    # minmax leaving one value picks an order statistic, which exercises the sort for every depth
    rng = np.random.default_rng(nframes)
    stack = rng.integers(0, 6, (nframes, 20, 17)).astype(np.float32)  # ties on purpose
    stack[rng.random(stack.shape) < 0.1] = np.nan
    ordered = np.sort(stack, axis=0)
    for rank in {0, nframes // 2, nframes - 1}:
        result = combine_block(
            stack, clip="minmax", nlow=rank, nhigh=nframes - rank - 1, method="sum"
        )
        nfinite = np.isfinite(stack).sum(axis=0)
        present = rank < nfinite - (nframes - rank - 1)
        picked = np.where(present, ordered[min(rank, nframes - 1)], np.nan)
        np.testing.assert_array_equal(result[0], picked)


def test_input_layouts_and_dtypes_agree():
    stack = make_stack((8, 6, 7), seed=6)
    reference = combine_block(stack)
    np.testing.assert_array_equal(combine_block(stack.astype(">f4")), reference)
    np.testing.assert_array_equal(combine_block(np.asfortranarray(stack)), reference)
    strided = np.repeat(stack, 2, axis=2)[:, :, ::2]
    np.testing.assert_array_equal(combine_block(strided), reference)
    np.testing.assert_allclose(combine_block(stack.astype(np.float64)), reference, rtol=1e-6)
    integers = np.nan_to_num(stack, nan=0.0).astype(np.int16)
    np.testing.assert_array_equal(
        combine_block(integers), combine_block(integers.astype(np.float32))
    )


def test_infinities_are_missing_like_nans():
    stack = make_stack((7, 4, 4), seed=7)
    with_inf = stack.copy()
    with_inf[np.isnan(stack)] = np.inf
    with_inf[-1, 1, 1] = -np.inf
    stack[-1, 1, 1] = np.nan
    np.testing.assert_array_equal(combine_block(with_inf), combine_block(stack))


def test_many_tiles_and_threads_agree_with_one_call():
    stack = make_stack((12, 37, 53), seed=8)  # pixel count not a multiple of any tile width
    whole = combine_block(stack)
    check(whole, numpy_expected(astropy_masked(stack), "median"))
    bands = np.array_split(np.arange(37), 4)
    with ThreadPoolExecutor(4) as pool:
        parts = list(pool.map(lambda rows: combine_block(stack[:, rows]), bands))
    np.testing.assert_array_equal(np.concatenate(parts, axis=1), whole)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"method": "mode"}, "unknown method 'mode'"),
        ({"clip": "winsor"}, "unknown clip 'winsor'"),
        ({"cenfunc": "mode"}, "unknown cenfunc"),
        ({"stdfunc": "iqr"}, "unknown stdfunc"),
        ({"uncertainty": "poisson"}, "unknown uncertainty"),
    ],
)
def test_unknown_option_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        combine_block(np.zeros((3, 2, 2), dtype=np.float32), **kwargs)


def test_stack_must_be_3d():
    with pytest.raises(ValueError, match=r"must be 3-D.*\(4, 4\)"):
        combine_block(np.zeros((4, 4), dtype=np.float32))


def test_a_very_deep_stack_takes_the_numpy_sort_path_and_matches_astropy():
    from astropy.stats import sigma_clipped_stats

    rng = np.random.default_rng(7)
    values = rng.normal(1.0, 0.05, 5000)
    values[::97] = 3.0
    values[5] = np.nan
    values[6] = -np.inf
    out = combine_block(values.reshape(-1, 1, 1), method="mean", sigma_lower=3.0,
                        sigma_upper=3.0, cenfunc="median", stdfunc="std")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = sigma_clipped_stats(values[np.isfinite(values)], sigma=3.0, maxiters=5)[0]
    assert out[0, 0, 0] == pytest.approx(expected, rel=1e-6)
