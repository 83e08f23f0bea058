"""The MASK bits of the calibration kernel: one rule for a master without a value."""

import numpy as np
import pytest

from ccdflow.kernels.calibrate import (
    FLAG_BAD_INPUT,
    FLAG_FLAT,
    FLAG_MASTER,
    FLAG_SATURATED,
    calibrate_pixels,
)


def _masters(shape):
    return dict(bias=np.full(shape, 10.0), dark=np.full(shape, 0.5), flat=np.full(shape, 2.0))


@pytest.mark.parametrize("master", ["bias", "dark", "flat"])
@pytest.mark.parametrize("missing", [np.nan, np.inf, -np.inf])
def test_a_master_without_value_sets_bit_8_whichever_master(master, missing):
    raw = np.full((3, 3), 200.0, np.float32)
    masters = _masters(raw.shape)
    masters[master][1, 2] = missing
    image, error, mask, undefined = calibrate_pixels(
        raw, area=(0, 3, 0, 3), dark_scale=2.0, norm=2.0, **masters)
    assert mask[1, 2] == FLAG_MASTER
    assert np.isnan(image[1, 2]) and np.isnan(error[1, 2])
    assert np.count_nonzero(mask) == 1 and undefined == 0
    # every other pixel: (200 - 10 - 2 * 0.5) / (2.0 / 2.0)
    np.testing.assert_array_equal(np.delete(image.ravel(), 5), np.full(8, 189.0, np.float32))


@pytest.mark.parametrize("value", [0.0, -0.0, -1.5, -np.finfo(np.float64).tiny])
def test_bit_4_only_for_a_finite_flat_at_or_below_zero(value):
    raw = np.full((2, 2), 200.0, np.float32)
    flat = np.ones((2, 2))
    flat[0, 1] = value
    image, error, mask, _ = calibrate_pixels(raw, area=(0, 2, 0, 2), flat=flat)
    assert mask[0, 1] == FLAG_FLAT
    assert np.isnan(image[0, 1]) and np.isnan(error[0, 1])
    assert np.count_nonzero(mask) == 1


def test_a_nan_norm_leaves_no_flat_value_anywhere():
    raw = np.full((2, 2), 200.0, np.float32)
    _, _, mask, _ = calibrate_pixels(raw, area=(0, 2, 0, 2), flat=np.ones((2, 2)), norm=np.nan)
    np.testing.assert_array_equal(mask, np.full((2, 2), FLAG_MASTER, np.uint8))


def test_a_nan_flat_error_is_not_a_missing_value():
    raw = np.full((2, 2), 200.0, np.float32)
    flat_err = np.full((2, 2), 0.01)
    flat_err[1, 0] = np.nan
    image, error, mask, undefined = calibrate_pixels(
        raw, area=(0, 2, 0, 2), flat=np.ones((2, 2)), flat_err=flat_err, gain=2.0)
    assert not mask.any() and undefined == 1
    assert image[1, 0] == 200.0 and error[1, 0] == pytest.approx(np.sqrt(100.0))
    # where the flat itself has no value, its NaN error is not counted again
    flat = np.ones((2, 2))
    flat[1, 0] = np.nan
    _, _, mask, undefined = calibrate_pixels(
        raw, area=(0, 2, 0, 2), flat=flat, flat_err=flat_err, gain=2.0)
    assert mask[1, 0] == FLAG_MASTER and undefined == 0


def _reference_flags(raw, bias, dark, flat, saturation):
    """The documented rule, written out in numpy."""
    flags = np.where(np.isfinite(raw), 0, FLAG_BAD_INPUT)
    no_value = ~np.isfinite(bias) | ~np.isfinite(dark) | ~np.isfinite(flat)
    flags |= np.where(no_value, FLAG_MASTER, 0)
    flags |= np.where(np.isfinite(flat) & (flat <= 0), FLAG_FLAT, 0)
    flags |= np.where(raw >= saturation, FLAG_SATURATED, 0)
    return flags.astype(np.uint8)


def test_flags_of_random_frames_equal_the_rule_written_in_numpy():
    rng = np.random.default_rng(12)
    shape = (40, 50)
    raw = rng.normal(1000, 300, shape).astype(np.float32)
    masters = _masters(shape)
    specials = np.array([np.nan, np.inf, -np.inf, 0.0, -3.0])
    for name, array in (("raw", raw), *masters.items()):
        picked = rng.random(shape) < 0.05
        array[picked] = rng.choice(specials, picked.sum())
        assert np.isnan(array).any(), name
    image, error, mask, _ = calibrate_pixels(raw, area=(0, 40, 0, 50), saturation=1400.0,
                                             **masters)
    expected = _reference_flags(raw, **masters, saturation=1400.0)
    np.testing.assert_array_equal(mask, expected)
    # a NaN flat pixel carries bit 8 and never bit 4
    nan_flat = np.isnan(masters["flat"])
    assert np.all(mask[nan_flat] & FLAG_MASTER) and not np.any(mask[nan_flat] & FLAG_FLAT)
    unusable = (expected & (FLAG_BAD_INPUT | FLAG_FLAT | FLAG_MASTER)) != 0
    assert np.isnan(image[unusable]).all() and np.isnan(error[unusable]).all()
    assert np.isfinite(image[~unusable]).all() and np.isfinite(error[~unusable]).all()
