"""Inline pictures and robust statistics for the night page."""

from __future__ import annotations

import base64
import io

import matplotlib.image
import numpy as np
import pytest
from astropy.stats import mad_std

from ccdflow.errors import ConfigError
from ccdflow.io.pictures import ImageStats, downsample, image_stats, png_data_uri


def _block_means(image: np.ndarray, factor: int) -> np.ndarray:
    ny, nx = image.shape[0] // factor, image.shape[1] // factor
    out = np.full((ny, nx), np.nan)
    for y in range(ny):
        for x in range(nx):
            block = image[y * factor:(y + 1) * factor, x * factor:(x + 1) * factor]
            if np.isfinite(block).any():
                out[y, x] = np.nanmean(block)
    return out


def test_downsample_equals_block_means_with_nan_ignored():
    image = np.random.default_rng(1).normal(size=(23, 17))
    image[0:3, 0:3] = np.nan  # a whole block of NaN stays NaN
    image[5, 7] = np.nan
    small = downsample(image, max_side=8)
    assert small.shape == (7, 5)  # factor 3, ragged edges dropped
    assert small.dtype == np.float32
    np.testing.assert_allclose(small, _block_means(image, 3), rtol=1e-5, atol=1e-6, equal_nan=True)
    assert np.isnan(small[0, 0])


def test_downsample_keeps_small_images():
    image = np.arange(12.0).reshape(3, 4)
    np.testing.assert_array_equal(downsample(image, max_side=4), image)


@pytest.mark.parametrize(("image", "max_side", "match"), [
    (np.zeros(4), 2, "^image: expected a 2-D array"),
    (np.zeros((4, 4)), 0, "^max_side: must be positive"),
])
def test_downsample_rejects(image, max_side, match):
    with pytest.raises(ConfigError, match=match):
        downsample(image, max_side=max_side)


def test_image_stats_against_numpy_and_astropy():
    rng = np.random.default_rng(2)
    image = rng.normal(100.0, 5.0, size=(40, 40))
    image[:2] = np.nan
    stats = image_stats(image)
    finite = image[2:].ravel()
    assert stats.median == pytest.approx(np.median(finite), rel=1e-12)
    assert stats.std == pytest.approx(mad_std(finite), rel=1e-12)
    assert stats.finite == pytest.approx(38 / 40)
    empty = image_stats(np.full((3, 3), np.nan))
    assert np.isnan(empty.median) and np.isnan(empty.std) and empty.finite == 0.0


def test_image_stats_validates():
    with pytest.raises(ConfigError, match="^finite: must be a fraction"):
        ImageStats(median=0.0, std=1.0, finite=1.5)


def _decode(uri: str) -> np.ndarray:
    assert uri.startswith("data:image/png;base64,")
    return matplotlib.image.imread(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])), format="png")


def test_png_is_small_oriented_and_nan_transparent():
    image = np.zeros((300, 600))
    image[:150] = 1.0  # bottom half bright: row 0 is drawn at the bottom
    image[-6:, -6:] = np.nan  # one whole block
    pixels = _decode(png_data_uri(image, max_side=100, limits=(0.0, 1.0)))
    assert pixels.shape == (50, 100, 4)  # factor 6
    assert pixels[-1, 0, 0] == pytest.approx(1.0) and pixels[0, 0, 0] == pytest.approx(0.0)
    assert pixels[0, -1, 3] == 0.0  # the NaN block (top right on the picture) is transparent
    assert pixels[0, 0, 3] == 1.0


def test_png_of_a_constant_image_and_a_bad_colormap():
    assert _decode(png_data_uri(np.full((4, 4), 7.0))).shape == (4, 4, 4)
    with pytest.raises(ConfigError, match="^cmap: unknown matplotlib colormap"):
        png_data_uri(np.zeros((4, 4)), cmap="no-such-map")
