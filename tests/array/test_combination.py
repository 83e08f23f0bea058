import warnings

import dask
import dask.array as da
import numpy as np
import pytest
from astropy.io import fits
from astropy.stats import sigma_clip
from astropy.utils.exceptions import AstropyUserWarning

from ccdflow.array.combination import CombineParams, combine, frame_levels
from ccdflow.errors import ConfigError
from ccdflow.io import open_stack
from ccdflow.kernels.clip import combine_block
from conftest import raise_if_dask_computes


def _stack(n=9, ny=23, nx=17, seed=1):
    rng = np.random.default_rng(seed)
    stack = rng.normal(100.0, 3.0, (n, ny, nx)).astype(np.float32)
    hits = rng.random(stack.shape) < 0.03
    stack[hits] += rng.uniform(50, 500, hits.sum()).astype(np.float32)
    stack[rng.random(stack.shape) < 0.02] = np.nan
    stack[:, 0, 0] = np.nan  # a pixel with no data at all
    return stack


def _compute(result):
    return dask.compute(result.data, result.error, result.count)


@pytest.mark.parametrize("params", [CombineParams(), CombineParams(clip="sigma"),
                                    CombineParams(clip="avsigclip", method="mean")])
@pytest.mark.parametrize("chunks", [(9, 23, 17), (9, 5, 17), (9, 7, 4), (3, 10, 17), (1, 23, 17)])
def test_dask_result_equals_kernel_for_any_chunking(chunks, params):
    stack = _stack()
    expected = combine_block(stack, **params.kernel_kwargs())
    data, error, count = _compute(combine(da.from_array(stack, chunks=chunks), params=params))
    np.testing.assert_array_equal(data, expected[0])
    np.testing.assert_array_equal(error, expected[1])
    np.testing.assert_array_equal(count, expected[2].astype(np.uint16))
    assert data.dtype == np.float32 and error.dtype == np.float32 and count.dtype == np.uint16


@pytest.mark.parametrize("params", [
    CombineParams(clip="sigma", stdfunc="mad_std"),
    CombineParams(clip="sigma", method="mean", cenfunc="mean", stdfunc="std", sigma_lower=2,
                  sigma_upper=2.5),
    CombineParams(clip="sigma", stdfunc="mad_std", method="mean", maxiters=None, sigma_lower=3,
                  sigma_upper=3),
])
def test_combine_matches_astropy_sigma_clip(params):
    stack = _stack(n=12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyUserWarning)  # the NaNs are there on purpose
        clipped = _clip(stack, params)
    data, error, count = _compute(combine(da.from_array(stack, chunks=(12, 6, 9)), params=params))
    survivors = (~np.ma.getmaskarray(clipped)).sum(axis=0)
    np.testing.assert_array_equal(count, survivors)
    with np.errstate(all="ignore"):
        reduce = np.ma.median if params.method == "median" else np.ma.mean
        expected = reduce(clipped, axis=0).filled(np.nan)
    np.testing.assert_allclose(data, expected, rtol=1e-5)
    assert np.isnan(data[0, 0]) and count[0, 0] == 0


def _clip(stack, params):
    return sigma_clip(stack, axis=0, sigma_lower=params.sigma_lower,
                         sigma_upper=params.sigma_upper, maxiters=params.maxiters,
                      cenfunc=params.cenfunc.value, stdfunc=params.stdfunc.value, masked=True)


def test_lone_outlier_in_five_frames_is_rejected_by_default():
    stack = np.random.default_rng(3).normal(100.0, 1.0, (5, 4, 4)).astype(np.float32)
    stack[2, 1, 1] = 1000.0
    data, _, count = _compute(combine(stack))
    assert count[1, 1] == 4
    assert data[1, 1] == pytest.approx(np.median(np.delete(stack[:, 1, 1], 2)), rel=1e-6)


def test_stack_from_fits_files_equals_in_memory_stack(tmp_path):
    stack = _stack(n=6, ny=40, nx=30)
    paths = []
    for i, frame in enumerate(stack):
        raw = np.nan_to_num(frame * 10, nan=0).astype(np.uint16)  # the usual uint16 + BZERO raw
        stack[i] = raw
        paths.append(tmp_path / f"f{i}.fits")
        fits.PrimaryHDU(raw).writeto(paths[-1])
    params = CombineParams(method="mean")
    from_files = _compute(combine(open_stack(paths, rows_per_chunk=7), params=params))
    in_memory = _compute(combine(stack, params=params))
    for a, b in zip(from_files, in_memory, strict=True):
        np.testing.assert_array_equal(a, b)


def test_building_a_combine_computes_nothing(tmp_path):
    paths = []
    for i in range(4):
        paths.append(tmp_path / f"f{i}.fits")
        fits.PrimaryHDU(np.full((20, 10), i, np.float32)).writeto(paths[-1])
    with raise_if_dask_computes():
        result = combine(open_stack(paths, rows_per_chunk=5),
                         params=CombineParams(scale="median"))
    assert result.data.shape == (20, 10) and result.n_frames == 4


def test_chunks_hold_the_whole_stack_within_the_budget():
    stack = da.zeros((200, 512, 256), chunks=(10, 512, 256), dtype=np.float32)
    result = combine(stack, budget=4 * 2**20)
    rows = max(result.data.chunks[0])
    assert 200 * rows * 256 * 4 <= 4 * 2**20
    assert result.data.chunks[1] == (256,)


def test_flat_scaling_divides_each_frame_by_its_level():
    rng = np.random.default_rng(5)
    pattern = rng.uniform(0.8, 1.2, (30, 20))
    levels = np.array([1000.0, 2000.0, 4000.0, 3000.0])
    stack = (levels[:, None, None] * pattern).astype(np.float32)
    median_levels = frame_levels(da.from_array(stack, chunks=(4, 30, 20)), "median").compute()
    np.testing.assert_allclose(median_levels, np.median(stack.reshape(4, -1), axis=1), rtol=1e-6)
    mean_levels = frame_levels(da.from_array(stack, chunks=(4, 7, 20)), "mean").compute()
    np.testing.assert_allclose(mean_levels, stack.reshape(4, -1).mean(axis=1), rtol=1e-6)
    data, _, _ = _compute(combine(stack, params=CombineParams(scale="mean")))
    np.testing.assert_allclose(data, pattern / pattern.mean(), rtol=1e-5)


def test_ccdproc_uncertainty_matches_ccdproc_combine():
    ccdproc = pytest.importorskip("ccdproc")
    from astropy.nddata import CCDData

    stack = _stack(n=7, ny=12, nx=11)[:, 1:, 1:]
    stack = np.nan_to_num(stack, nan=100.0)
    ccds = [CCDData(frame, unit="adu") for frame in stack]
    for method, func in (("median", "median"), ("mean", "mean")):
        reference = ccdproc.combine(
            ccds, method="average" if method == "mean" else method, sigma_clip=True,
            sigma_clip_low_thresh=3, sigma_clip_high_thresh=3, sigma_clip_func=func,
            sigma_clip_dev_func="std")
        params = CombineParams(clip="sigma", method=method, sigma_lower=3, sigma_upper=3,
                               maxiters=1, cenfunc=func, stdfunc="std", uncertainty="ccdproc")
        data, error, _ = _compute(combine(stack, params=params))
        np.testing.assert_allclose(data, reference.data, rtol=1e-5)
        # tight enough to tell ccdproc's 1.482602218505602 from a rounded 1.4826 (1.5e-6 apart)
        np.testing.assert_allclose(error, reference.uncertainty.array, rtol=3e-7)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("method", "mode", "method.*not one of"),
    ("sigma_lower", -1, "sigma_lower.*> 0"),
    ("maxiters", 0, "maxiters.*integer >= 1"),
    ("stdfunc", "iqr", "stdfunc"),
    ("scale", "max", "scale"),
])
def test_invalid_params_name_the_field(field, value, message):
    with pytest.raises(ConfigError, match=message):
        CombineParams(**{field: value})


def test_params_round_trip_and_unknown_keys():
    params = CombineParams(method="mean", maxiters=None, scale="median", nlow=2)
    assert CombineParams.from_dict(params.to_dict()) == params
    with pytest.raises(ConfigError, match=r"combine\.sigma: unknown key"):
        CombineParams.from_dict({"sigma": 3})
    with pytest.raises(ConfigError, match=r"flat\.method"):
        CombineParams.from_dict({"method": "max"}, key="flat")


def test_a_stack_must_be_three_dimensional():
    with pytest.raises(ConfigError, match="3-D"):
        combine(np.zeros((4, 4), np.float32))
