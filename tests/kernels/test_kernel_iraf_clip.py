"""ccdclip and avsigclip held against a plain numpy transcription of IRAF imcombine (mclip=yes)."""

from __future__ import annotations

import numpy as np
import pytest

from ccdflow.kernels.clip import combine_block


def _iraf_median(values: list[float]) -> float:
    return float(np.median(values))


def _iraf_reject(values: np.ndarray, sigma_of, lo: float, hi: float, minclip: int) -> set[int]:
    """Indices rejected by IRAF's median-centred clip (nkeep=0): from the documented algorithm.

    Each pass: median of the survivors; reject every survivor with (median - x)/sigma > lo or
    (x - median)/sigma > hi; repeat until nothing changes or fewer than ``minclip`` remain.
    """
    alive = list(np.flatnonzero(np.isfinite(values)))
    rejected: set[int] = set()
    while len(alive) >= minclip:
        med = _iraf_median([values[i] for i in alive])
        s = sigma_of(med)
        if s <= 0:
            break
        out = {i for i in alive if (med - values[i]) / s > lo or (values[i] - med) / s > hi}
        if not out:
            break
        rejected |= out
        alive = [i for i in alive if i not in out]
    return rejected


def _avsig_line_gain(line: np.ndarray) -> float:
    """IRAF's pooled avsigclip factor of one line (nframes, npix) from the help text's formula."""
    total, count = 0.0, 0
    for column in line.T:
        values = column[np.isfinite(column)]
        if values.size < 3:
            continue
        med = np.median(values)
        total += np.sum((values - med) ** 2) / max(1.0, med)
        count += values.size
    return total / (count - 1)


def _stack(seed: int, n: int = 5, shape=(6, 40), level: float = 200.0, sigma: float = 5.0):
    rng = np.random.default_rng(seed)
    levels = rng.uniform(0.0, level, shape)
    stack = rng.normal(levels, sigma, (n, *shape))
    hits = rng.random(stack.shape) < 0.05
    stack[hits] += rng.uniform(10.0, 200.0, hits.sum())
    stack[rng.random(stack.shape) < 0.03] = np.nan
    return stack.astype(np.float32)


def _rejected_sets(stack: np.ndarray, counts: np.ndarray, keep: np.ndarray) -> None:
    """Counts from the kernel equal the reference's survivors pixel by pixel."""
    finite = np.isfinite(stack).sum(axis=0)
    np.testing.assert_array_equal(counts, finite - keep)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("rn", "gain", "sn"), [(5.0, 2.0, 0.0), (10.0, 1.0, 0.01), (3.0, 4.0, 0.0)])
def test_ccdclip_rejects_what_iraf_rejects(seed, rn, gain, sn):
    stack = _stack(seed)
    value, _, count = combine_block(stack, clip="ccdclip", read_noise=rn, gain=gain,
                                    sensitivity_noise=sn, sigma_lower=3.0, sigma_upper=3.0,
                                    maxiters=None, nkeep=0)

    def sigma_of(med):
        m = max(0.0, med)
        return np.sqrt((rn / gain) ** 2 + m / gain + (m * sn) ** 2)

    nrej = np.zeros(stack.shape[1:], int)
    medians = np.full(stack.shape[1:], np.nan)
    for y, x in np.ndindex(*stack.shape[1:]):
        column = stack[:, y, x].astype(np.float64)
        out = _iraf_reject(column, sigma_of, 3.0, 3.0, minclip=2)
        nrej[y, x] = len(out)
        keep = [v for i, v in enumerate(column) if i not in out and np.isfinite(v)]
        if keep:
            medians[y, x] = np.median(keep)
    _rejected_sets(stack, count, nrej)
    assert nrej.sum() > 0.03 * stack.size  # the cosmic rays are there to be found
    np.testing.assert_allclose(value, medians, rtol=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_avsigclip_rejects_what_iraf_rejects(seed):
    stack = _stack(seed, n=7)
    _, _, count = combine_block(stack, clip="avsigclip", sigma_lower=3.0, sigma_upper=3.0,
                                maxiters=None, nkeep=0)
    nrej = np.zeros(stack.shape[1:], int)
    for y in range(stack.shape[1]):
        gain = _avsig_line_gain(stack[:, y, :].astype(np.float64))
        for x in range(stack.shape[2]):
            column = stack[:, y, x].astype(np.float64)
            nrej[y, x] = len(_iraf_reject(column, lambda m, g=gain: np.sqrt(g * max(1.0, m)),
                                          3.0, 3.0, minclip=3))
    _rejected_sets(stack, count, nrej)
    assert nrej.sum() > 0.01 * stack.size


def test_nkeep_restores_the_values_with_smallest_residuals():
    # 3 of 5 values far out: with nkeep=4 the nearer outlier (smaller residual) comes back.
    column = np.array([100.0, 101.0, 99.0, 160.0, 400.0], np.float32).reshape(5, 1, 1)
    kwargs = dict(clip="ccdclip", read_noise=2.0, gain=1.0, sigma_lower=3.0, sigma_upper=3.0,
                  method="mean")
    assert combine_block(column, nkeep=0, **kwargs)[2, 0, 0] == 3
    value, _, count = combine_block(column, nkeep=4, **kwargs)
    assert count[0, 0] == 4 and value[0, 0] == pytest.approx(115.0)
    # negative nkeep: at most one rejected
    assert combine_block(column, nkeep=-1, **kwargs)[2, 0, 0] == 4


def test_maxiters_limits_the_passes():
    # Removing the top value moves the median down, which uncovers the next one.
    column = np.array([*range(10), 30], np.float32).reshape(11, 1, 1)
    kwargs = dict(clip="ccdclip", read_noise=1e6, gain=1e6, sigma_lower=100.0, sigma_upper=4.0)
    counts = [combine_block(column, maxiters=k, **kwargs)[2, 0, 0] for k in (1, 2, 3, None)]
    assert counts == [10, 9, 9, 9]


def test_model_error_needs_a_noise_model():
    with pytest.raises(ValueError, match="needs a noise-model clip"):
        combine_block(np.zeros((3, 2, 2), np.float32), clip="sigma", uncertainty="model")
