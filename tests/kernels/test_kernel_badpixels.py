import doctest

import ccdproc
import numpy as np
from astropy.nddata import CCDData

import ccdflow.kernels.badpixels as bp_module
from ccdflow.kernels.badpixels import ccdmask, hot_pixels


def _master_dark(rng, shape, n=5, rate=0.02, t=300.0, gain=1.5, rn=5.0):
    """Median of n dark exposures (Poisson dark current, read noise) as a rate in ADU/s."""
    electrons = rng.poisson(rate * gain * t, size=(n, *shape)) + rng.normal(0, rn, (n, *shape))
    return np.median(electrons / gain, axis=0) / t


def _flat(rng, shape, noise=0.01):
    ny, nx = shape
    yy, xx = np.mgrid[:ny, :nx]
    # a gentle trend: the box of an edge column is off-centre, and a steep gradient across columns
    # biases its level enough for the whole-column sums to flag it (IRAF does the same)
    illumination = 1.0 + 0.02 * np.sin(xx / 100.0) + 0.03 * (yy / ny)
    return illumination * rng.normal(1.0, noise, shape)


def test_planted_hot_pixels_all_found_and_false_rate_below_1e4():
    rng = np.random.default_rng(11)
    clean = _master_dark(rng, (512, 512))
    assert hot_pixels(clean).mean() <= 1e-4
    dark = clean.copy()
    ys, xs = rng.integers(0, 512, 60), rng.integers(0, 512, 60)
    dark[ys, xs] += rng.uniform(0.5, 5.0, 60)  # hot: 25-250x the typical rate
    found = hot_pixels(dark)
    assert found[ys, xs].all()
    planted = np.zeros_like(found)
    planted[ys, xs] = True
    assert (found & ~planted).mean() <= 1e-4


def test_hot_pixels_on_quantised_data_and_nan():
    dark = np.zeros((100, 100))
    dark[::7, ::5] = 1.0  # MAD = 0: falls back to the standard deviation
    dark[40, 40] = 30.0
    dark[2, 3] = np.nan
    found = hot_pixels(dark)
    assert found[40, 40] and found[2, 3] and found.sum() == 2
    assert hot_pixels(np.full((3, 3), np.nan)).all()


def _defects(flat):
    """Dead column, a strong and a weak (trap-like) partial column segment, dead and hot pixels."""
    truth = {}
    flat[:, 100] *= 0.3
    truth["dead column"] = (slice(None), 100)
    flat[200:330, 40] *= 0.85  # 15 sigma per pixel
    truth["segment"] = (slice(200, 330), 40)
    flat[[10, 300, 350], [200, 17, 230]] *= [0.0, 0.5, 1.5]
    truth["pixels"] = ([10, 300, 350], [200, 17, 230])
    flat[60:160, 170] *= 0.97  # 3 sigma per pixel: only the column sums can see it
    truth["trap"] = (slice(60, 160), 170)
    return truth


def test_ccdmask_finds_planted_defects_and_little_else():
    rng = np.random.default_rng(12)
    flat = _flat(rng, (512, 256))
    assert ccdmask(flat).mean() <= 1e-4  # clean frame
    truth = _defects(flat)
    found = ccdmask(flat)
    assert found[truth["dead column"]].all()
    assert found[truth["segment"]].all()
    assert found[truth["pixels"]].all()
    trap_rows = np.flatnonzero(found[:, 170])
    assert found[truth["trap"]].mean() >= 0.9 and trap_rows.min() >= 52 and trap_rows.max() < 168
    planted = np.zeros_like(found)
    for key in ("dead column", "segment", "pixels", "trap"):
        planted[truth[key]] = True
    # outside the defects (a weak segment's ends are uncertain by a few rows)
    planted[50:170, 170] = True
    assert (found & ~planted).mean() <= 1e-4


def test_ccdmask_agrees_with_ccdproc_on_single_pixel_detection():
    # ccdproc's default (byblocks=False) runs IRAF's single-pixel test with a moving-box sigma that is
    # half of one sigma: its lsigma=12 is our 6. It has no column sums, so our superset is compared
    # after removing the trap, which only the column sums find.
    rng = np.random.default_rng(13)
    flat = _flat(rng, (400, 300))
    truth = _defects(flat)
    flat[truth["trap"]] /= 0.97
    ours = ccdmask(flat, ngood=0)
    theirs = ccdproc.ccdmask(CCDData(flat, unit="adu"), lsigma=12, hsigma=12, ngood=0)
    assert theirs.sum() > 500
    # the moving-median edges differ (ccdproc reflects, IRAF slides the box inside): 3 pixels of border
    inner = (slice(3, -3), slice(3, -3))
    differ = (ours[inner] != theirs[inner]).sum()
    assert differ <= 0.01 * theirs[inner].sum(), differ


def test_nonfinite_pixels_are_bad():
    flat = _flat(np.random.default_rng(14), (60, 60))
    flat[5, 5] = np.nan
    found = ccdmask(flat)
    assert found[5, 5] and found.sum() < 10


def test_examples_run():
    assert doctest.testmod(bp_module, extraglobs={"np": np}).failed == 0
