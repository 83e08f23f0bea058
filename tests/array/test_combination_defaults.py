"""The contract of combine's defaults on clean and contaminated stacks of few frames."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest

from ccdflow.array.combination import CombineParams, combine
from ccdflow.errors import ConfigError

NS = [3, 4, 5, 7, 11, 20]
# >= 1e5 values per case, small frames so the table stays fast
SHAPE = (64, 128)


def _clean(n: int, *, sigma: float, integer: bool, level: float = 1000.0, seed: int = 0):
    rng = np.random.default_rng(seed + 100 * n)
    values = rng.normal(level, sigma, (n, *SHAPE))
    return (np.round(values) if integer else values).astype(np.float32)


def _run(stack, params=None):
    result = combine(stack, params=params or CombineParams())
    return dask.compute(result.data, result.error, result.count)


def _repeat(n: int) -> int:
    """Stacks per case so that at least 1e5 values are counted."""
    return -(-100_000 // (n * SHAPE[0] * SHAPE[1]))


@pytest.mark.parametrize("n", NS)
@pytest.mark.parametrize(("integer", "sigma"), [(False, 3.0), (True, 0.5), (True, 1.0)])
def test_false_rejections_at_most_one_in_a_thousand(n, integer, sigma):
    rejected = total = 0
    for seed in range(_repeat(n)):
        stack = _clean(n, sigma=sigma, integer=integer, seed=seed)
        _, error, count = _run(stack)
        rejected += int(n * count.size - count.sum(dtype=np.int64))
        total += stack.size
        differ = stack.min(axis=0) != stack.max(axis=0)
        assert np.all(error[differ] > 0), "a pixel whose inputs differ reports error 0"
    assert total >= 100_000
    assert rejected / total <= 1e-3


@pytest.mark.parametrize(("n", "strength"), [(3, 20.0), (4, 20.0), (5, 10.0), (7, 10.0), (11, 10.0)])
@pytest.mark.parametrize("integer", [False, True])
def test_a_lone_outlier_is_rejected(n, strength, integer):
    sigma = 1.0 if integer else 3.0
    stack = _clean(n, sigma=sigma, integer=integer, seed=7)
    rng = np.random.default_rng(n)
    frame = rng.integers(0, n, SHAPE)
    hit = rng.random(SHAPE) < 0.02
    ys, xs = np.nonzero(hit)
    sign = np.where(rng.random(ys.size) < 0.5, -1.0, 1.0)
    stack[frame[ys, xs], ys, xs] += (sign * strength * sigma).astype(np.float32)
    _, _, count = _run(stack)
    assert np.all(count[hit] == n - 1)
    assert np.mean(count[~hit] == n) > 0.999


def test_no_zero_errors_on_low_noise_integer_data():
    # noise 0.3 ADU: most pixels have a majority of equal values (MAD = 0 per pixel)
    rng = np.random.default_rng(11)
    stack = np.round(rng.normal(500.0, 0.3, (5, *SHAPE))).astype(np.float32)
    _, error, count = _run(stack)
    assert np.all(error > 0)
    assert 1 - count.sum() / stack.size < 2e-3


@pytest.mark.parametrize("method", ["mean", "median"])
def test_model_errors_have_unit_pulls(method):
    # known truth: a level ramp with read noise and Poisson noise (gain 2 e-/ADU)
    rng = np.random.default_rng(5)
    truth = np.broadcast_to(np.linspace(50.0, 5000.0, SHAPE[1]), SHAPE)
    gain, read_noise = 2.0, 8.0
    sigma = np.sqrt((read_noise / gain) ** 2 + truth / gain)
    stack = rng.normal(truth, sigma, (5, *SHAPE)).astype(np.float32)
    pulls = {}
    for params in (CombineParams(method=method),
                   CombineParams(method=method, gain=gain, read_noise=read_noise)):
        value, error, _ = _run(stack, params)
        pulls[params.effective_clip.value] = np.std((value - truth) / error)
    # the median's sqrt(pi/2) is its large-n efficiency: at n = 5 its true factor is 4% smaller
    tolerance = 0.05 if method == "mean" else 0.08
    for name, std in pulls.items():
        assert abs(std - 1.0) < tolerance, (name, std)


def test_avsigclip_misses_outliers_near_zero_where_the_default_does_not():
    # bias-like frames: level ~0, read noise 10 ADU; avsigclip scales its spread by sqrt(level)
    # only, so the pooled factor absorbs the read noise unevenly
    rng = np.random.default_rng(2)
    levels = np.broadcast_to(np.linspace(0.0, 3000.0, SHAPE[1]), SHAPE)
    stack = rng.normal(levels, np.sqrt(100.0 + levels), (3, *SHAPE)).astype(np.float32)
    hit = (rng.random(SHAPE) < 0.05) & (levels < 200)
    ys, xs = np.nonzero(hit)
    stack[0, ys, xs] += 20 * 10.0
    _, _, default = _run(stack)
    _, _, avsig = _run(stack, CombineParams(clip="avsigclip"))
    assert hit.sum() > 20
    assert np.all(default[hit] == 2)
    assert np.any(avsig[hit] == 3)  # some 20-sigma outliers kept by avsigclip


@pytest.mark.parametrize("chunks", [(4, 64, 128), (4, 7, 128), (2, 13, 50), (1, 64, 9)])
def test_median_scale_does_not_depend_on_chunking(chunks):
    rng = np.random.default_rng(9)
    pattern = rng.uniform(0.8, 1.2, SHAPE)
    pattern[:20] *= 1.3  # rows differ, so a median of row-band medians would differ
    stack = (np.array([1000.0, 2000.0, 4000.0, 3000.0])[:, None, None] * pattern
             * rng.normal(1.0, 0.01, (4, *SHAPE))).astype(np.float32)
    params = CombineParams(scale="median")
    reference = _run(stack, params)
    result = _run(da.from_array(stack, chunks=chunks), params)
    for a, b in zip(reference, result, strict=True):
        np.testing.assert_array_equal(a, b)


def test_defaults_resolve_and_round_trip():
    assert CombineParams().effective_clip == "pooled"
    assert CombineParams().effective_uncertainty == "model"
    assert CombineParams(gain=2.0).effective_clip == "ccdclip"
    assert CombineParams(gain=2.0, scale="median").effective_clip == "pooled"
    assert CombineParams(clip="sigma").effective_uncertainty == "empirical"
    params = CombineParams(clip="ccdclip", gain=1.5, read_noise=4.0, sensitivity_noise=0.01,
                           nkeep=-2, uncertainty="empirical")
    assert CombineParams.from_dict(params.to_dict()) == params


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"clip": "ccdclip"}, "ccdclip needs gain"),
    ({"clip": "ccdclip", "gain": 2.0, "scale": "median"}, "cannot be combined with scale"),
    ({"clip": "sigma", "uncertainty": "model"}, "needs a noise-model clip"),
    ({"gain": 0.0}, "gain.*> 0"),
    ({"read_noise": -1.0}, "read_noise.*>= 0"),
    ({"nkeep": 1.5}, "nkeep"),
])
def test_invalid_noise_model_parameters(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        CombineParams(**kwargs)
