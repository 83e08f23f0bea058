import doctest

import dask
import dask.array as da
import numpy as np
import pytest

import ccdflow.array.badpixels as badpixels_module
import ccdflow.array.cosmics as cosmics_module
import ccdflow.array.quality as quality_module
from ccdflow.array.badpixels import BadPixelParams, bad_pixel_mask
from ccdflow.array.cosmics import CosmicRayParams, detect_cosmic_rays
from ccdflow.array.masks import MaskBits
from ccdflow.array.quality import bleed_mask, fill_interpolate
from ccdflow.array.sections import Region
from ccdflow.errors import ConfigError
from ccdflow.kernels.badpixels import ccdmask, hot_pixels
from ccdflow.kernels.bleed import bleed_trails, grow_mask
from ccdflow.kernels.cosmics import detect_cosmics_block
from ccdflow.kernels.fill import interpolate_rows
from conftest import raise_if_dask_computes

RNG = np.random.default_rng(31)


def test_bad_pixel_mask_is_lazy_and_equals_the_kernels():
    dark = RNG.normal(0.02, 0.003, (80, 60))
    dark[7, 9] = 3.0
    flat = RNG.normal(1.0, 0.01, (80, 60))
    flat[:, 33] = 0.4
    user = np.zeros((80, 60))
    user[50, 5] = 1
    params = BadPixelParams(hot_sigma=6.0)
    with raise_if_dask_computes():
        mask = bad_pixel_mask(dark=da.from_array(dark, chunks=20), flat=da.from_array(flat, chunks=20),
                              user_mask=user, params=params)
    expected = (hot_pixels(dark, nsigma=6.0) | ccdmask(flat) | (user != 0)) * np.uint8(MaskBits.BAD)
    assert mask.dtype == np.uint8 and np.array_equal(mask.compute(), expected)
    assert expected[7, 9] and expected[0, 33] and expected[50, 5]


def test_bad_pixel_mask_tests_each_amplifier_on_its_own():
    # a flat and a dark in ADU of four amplifiers with their own gains: steps at the seams
    gain = np.ones((80, 60))
    gain[:40, 30:], gain[40:, :30], gain[40:, 30:] = 2.8, 1.7, 2.3
    flat = RNG.normal(1.0, 0.01, (80, 60)) / gain
    flat[60, 10] = 0.2 / 1.7  # dead
    dark = RNG.normal(0.5, 0.02, (80, 60)) / gain
    dark[20, 45] = 3.0  # hot
    areas = [Region(xmin=x, xmax=x + 30, ymin=y, ymax=y + 40) for y in (0, 40) for x in (0, 30)]
    whole = bad_pixel_mask(flat=flat, dark=dark).compute()
    by_amp = bad_pixel_mask(flat=flat, dark=dark, amplifiers=areas).compute()
    assert np.argwhere(by_amp).tolist() == [[20, 45], [60, 10]]
    assert np.count_nonzero(whole) > 100  # whole-frame statistics take the steps for defects
    # one area is what the kernel finds in it alone
    assert np.array_equal(by_amp[areas[1].slices] != 0, hot_pixels(dark[areas[1].slices]))


def test_bad_pixel_mask_validates():
    with pytest.raises(ValueError, match="needs a dark, a flat or a user mask"):
        bad_pixel_mask()
    with pytest.raises(ValueError, match="shapes differ"):
        bad_pixel_mask(dark=np.zeros((3, 3)), flat=np.ones((3, 4)))
    with pytest.raises(ConfigError, match="ncsig"):
        BadPixelParams(ncsig=5)
    with pytest.raises(ConfigError, match=r"bad_pixels\.lsigma"):
        BadPixelParams.from_dict({"lsigma": -1})
    with pytest.raises(ConfigError, match=r"bad_pixels\.nope"):
        BadPixelParams.from_dict({"nope": 1})
    params = BadPixelParams(ngood=3, hsigma=7)
    assert BadPixelParams.from_dict(params.to_dict()) == params


def test_cosmic_rays_lazy_equal_the_kernel():
    image = RNG.normal(200.0, 10.0, (96, 80)).astype(np.float32)
    image[[10, 40, 70], [12, 50, 60]] += 3000.0
    error = np.full(image.shape, 10.0, np.float32)
    params = CosmicRayParams(sigclip=5.0)
    with raise_if_dask_computes():
        mask, cleaned = detect_cosmic_rays(da.from_array(image, chunks=32), gain=1.0, read_noise=10.0,
                                           error=error, params=params)
    mask, cleaned = dask.compute(mask, cleaned)
    ref_mask, ref_clean = detect_cosmics_block(image, gain=1.0, read_noise=10.0, variance=error**2,
                                               sigclip=5.0)
    assert mask.dtype == bool and cleaned.dtype == np.float32
    assert np.array_equal(mask, ref_mask) and np.array_equal(cleaned, ref_clean)
    assert mask[[10, 40, 70], [12, 50, 60]].all()


def test_cosmic_ray_params_validate():
    with pytest.raises(ConfigError, match="psfsize"):
        CosmicRayParams(psfsize=6)
    with pytest.raises(ConfigError, match="cleantype"):
        CosmicRayParams(cleantype="blur")
    with pytest.raises(ConfigError, match=r"cosmic_rays\.sigclip"):
        CosmicRayParams.from_dict({"sigclip": 0})
    params = CosmicRayParams(fsmode="convolve", psffwhm=3.0)
    assert CosmicRayParams.from_dict(params.to_dict()) == params
    assert params.to_dict()["fsmode"] == "convolve"


def test_bleed_mask_lazy_equals_the_kernels():
    raw = RNG.normal(500, 5, (64, 48))
    raw[10:30, 20] = 1000.0
    raw[30, 20] = 700.0
    with raise_if_dask_computes():
        mask = bleed_mask(da.from_array(raw, chunks=16), saturation=1000.0, radius=1, footprint="disc")
    expected = grow_mask(bleed_trails(raw, saturation=1000.0), radius=1, footprint="disc")
    assert np.array_equal(mask.compute(), expected) and expected[30, 20] and expected[20, 21]
    with pytest.raises(ValueError, match="fraction"):
        bleed_mask(raw, saturation=1000.0, fraction=0.0)


@pytest.mark.parametrize("chunks", [(64, 48), (10, 48), (16, 7)])
def test_fill_interpolate_over_chunkings(chunks):
    image = RNG.normal(100, 5, (64, 48)).astype(np.float32)
    error = np.full(image.shape, 5.0, np.float32)
    mask = np.zeros(image.shape, np.uint8)
    mask[RNG.random(image.shape) < 0.05] = MaskBits.COSMIC_RAY
    mask[3, 4] = MaskBits.SATURATED
    mask[5, 6] = MaskBits.INTERPOLATED  # not a reason to replace
    with raise_if_dask_computes():
        out, err, new_mask = fill_interpolate(da.from_array(image, chunks=chunks),
                                              da.from_array(mask, chunks=chunks), error=error)
    out, err, new_mask = dask.compute(out, err, new_mask)
    bad = (mask & ~np.uint8(MaskBits.INTERPOLATED)) != 0
    ref, ref_err, filled = interpolate_rows(image, bad, error=error)
    np.testing.assert_array_equal(out, ref)
    np.testing.assert_array_equal(err, ref_err)
    assert np.array_equal(new_mask, mask | (filled * np.uint8(MaskBits.INTERPOLATED)))
    assert np.array_equal(out[~bad], image[~bad]) and out[5, 6] == image[5, 6]


@pytest.mark.parametrize("module", [badpixels_module, cosmics_module, quality_module])
def test_examples_run(module):
    assert doctest.testmod(module, extraglobs={"np": np}).failed == 0
