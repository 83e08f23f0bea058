"""The fused calibration kernel against the DESIGN.md formulas written out in plain numpy."""

import numpy as np
import pytest

from ccdflow.kernels.calibrate import calibrate_pixels


def _numpy_reference(raw, level, var_level, area, bias, bias_err, dark, dark_err, s, flat,
                     flat_err, norm, gain, rn):
    y0, y1, x0, x1 = area
    full_level = np.broadcast_to(level, raw.shape)[y0:y1, x0:x1]
    full_var = np.broadcast_to(var_level, raw.shape)[y0:y1, x0:x1]
    x = raw[y0:y1, x0:x1].astype(np.float64) - full_level - bias
    var_pre = full_var + bias_err**2 + s**2 * dark_err**2 + np.maximum(x, 0) / gain + (rn / gain)**2
    f_n, var_fn = flat / norm, (flat_err / norm) ** 2
    image = (x - s * dark) / f_n
    var = var_pre / f_n**2 + image**2 * var_fn / f_n**2
    return image, np.sqrt(var)


@pytest.mark.parametrize("level_shape", [(1, 1), (30, 1), (1, 40)])
def test_kernel_equals_numpy_formulas(level_shape):
    rng = np.random.default_rng(4)
    raw = rng.normal(1500, 30, (30, 40)).astype(np.float32)
    area = (5, 30, 0, 32)
    shape = (25, 32)
    level = rng.normal(1000, 1, level_shape)
    var_level = rng.uniform(0.1, 0.5, level_shape)
    bias, bias_err = rng.normal(5, 1, shape), rng.uniform(0.1, 1, shape)
    dark, dark_err = rng.uniform(0, 0.2, shape), rng.uniform(0.01, 0.02, shape)
    flat, flat_err = rng.uniform(1.5, 2.5, shape), rng.uniform(0.01, 0.02, shape)
    args = dict(level=level, var_level=var_level, bias=bias, bias_err=bias_err, dark=dark,
                dark_err=dark_err, dark_scale=60.0, flat=flat, flat_err=flat_err, norm=2.0,
                gain=1.7, read_noise=4.5, smooth=0)
    image, error, mask, undefined = calibrate_pixels(raw, area=area, **args)
    expected, expected_error = _numpy_reference(
        raw, level, var_level, area, bias, bias_err, dark, dark_err, 60.0, flat, flat_err, 2.0,
        1.7, 4.5)
    np.testing.assert_allclose(image, expected, rtol=2e-6)
    np.testing.assert_allclose(error, expected_error, rtol=2e-6)
    assert not mask.any() and undefined == 0
    assert image.dtype == np.float32 and error.dtype == np.float32 and mask.dtype == np.uint8


def test_flags_and_undefined_master_errors():
    raw = np.full((4, 4), 100.0, np.float32)
    raw[0, 0] = np.nan
    raw[0, 1] = 70000.0
    bias = np.zeros((4, 4))
    bias[1, 1] = np.nan
    bias_err = np.ones((4, 4))
    bias_err[2, 2] = np.nan  # counted as 0, and counted
    flat = np.ones((4, 4))
    flat[3, 3] = 0.0
    image, error, mask, undefined = calibrate_pixels(
        raw, area=(0, 4, 0, 4), bias=bias, bias_err=bias_err, flat=flat, saturation=65535.0)
    assert mask[0, 0] == 1 and np.isnan(image[0, 0]) and np.isnan(error[0, 0])
    assert mask[0, 1] == 2 and image[0, 1] == 70000.0
    assert mask[1, 1] == 8 and np.isnan(image[1, 1])
    assert mask[3, 3] == 4 and np.isnan(image[3, 3])
    assert undefined == 1 and error[2, 2] == pytest.approx(np.sqrt(100.0))
    assert np.count_nonzero(mask) == 4


def test_big_endian_raw_is_accepted():
    raw = np.arange(12, dtype=">f4").reshape(3, 4)
    image, _, _, _ = calibrate_pixels(raw, area=(0, 3, 0, 4), level=1.0)
    np.testing.assert_array_equal(image, raw.astype(np.float32) - 1)


def test_poisson_term_from_the_box_mean_without_the_pixel():
    rng = np.random.default_rng(8)
    raw = rng.normal(400.0, 20.0, (12, 15))
    raw[6, 7] = 5000.0  # an outlier takes its own counts
    image, error, _, _ = calibrate_pixels(raw, area=(0, 12, 0, 15), gain=2.0, read_noise=3.0,
                                          smooth=2)
    expected = np.empty_like(raw)
    for i in range(12):
        for j in range(15):
            box = raw[max(i - 2, 0):i + 3, max(j - 2, 0):j + 3]
            expected[i, j] = (box.sum() - raw[i, j]) / (box.size - 1)
    var = 1.5**2 + expected / 2.0
    outlier = (raw - expected) ** 2 > 25.0 * var
    var[outlier] = 1.5**2 + raw[outlier] / 2.0
    assert outlier[6, 7] and not outlier[0, 0]  # neighbours of the spike take their own counts too
    np.testing.assert_allclose(image, raw.astype(np.float32))
    np.testing.assert_allclose(error, np.sqrt(var), rtol=1e-5)
