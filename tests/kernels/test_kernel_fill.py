import doctest

import numpy as np

import ccdflow.kernels.fill as fill_module
from ccdflow.kernels.fill import interpolate_rows


def _oracle(image, bad):
    # np.interp over the good columns of each row: linear inside, nearest value at the ends
    out = image.astype(np.float64).copy()
    cols = np.arange(image.shape[1])
    for j in range(image.shape[0]):
        good = ~bad[j]
        if good.any() and bad[j].any():
            out[j, bad[j]] = np.interp(cols[bad[j]], cols[good], image[j, good])
    return out


def test_matches_np_interp_and_never_touches_good_pixels():
    rng = np.random.default_rng(5)
    image = rng.normal(100, 10, (40, 30)).astype(np.float32)
    bad = rng.random((40, 30)) < 0.2
    bad[3] = True  # a row without any good pixel
    bad[4, :5] = True
    bad[5, -4:] = True
    out, err, filled = interpolate_rows(image, bad)
    assert err is None and out.dtype == np.float32
    assert np.array_equal(out[~bad], image[~bad])
    ok = ~bad.all(axis=1)
    np.testing.assert_allclose(out[ok], _oracle(image, bad)[ok], rtol=1e-6)
    assert np.array_equal(filled, bad & ok[:, None])
    assert np.array_equal(out[3], image[3]) and not filled[3].any()


def test_error_of_an_interpolated_pixel():
    image = np.array([[2.0, 0.0, 0.0, 0.0, 10.0]])
    error = np.array([[1.0, 9.0, 9.0, 9.0, 2.0]])
    bad = np.array([[0, 1, 1, 1, 0]], bool)
    out, err, _ = interpolate_rows(image, bad, error=error)
    t = np.array([0.25, 0.5, 0.75])
    np.testing.assert_allclose(out[0, 1:4], 2 + 8 * t)
    np.testing.assert_allclose(err[0, 1:4], np.sqrt((1 - t) ** 2 * 1 + t**2 * 4))
    assert err[0, 0] == 1.0 and err[0, 4] == 2.0


def test_nan_pixels_flagged_are_replaced():
    image = np.array([[1.0, np.nan, 3.0]])
    out, _, filled = interpolate_rows(image, np.isnan(image))
    assert out.tolist() == [[1.0, 2.0, 3.0]] and filled.tolist() == [[False, True, False]]


def test_examples_run():
    assert doctest.testmod(fill_module, extraglobs={"np": np}).failed == 0
