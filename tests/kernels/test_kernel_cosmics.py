import doctest

import ccdproc
import numpy as np
import pytest

import ccdflow.kernels.cosmics as cosmics_module
from ccdflow.kernels.bleed import grow_mask
from ccdflow.kernels.cosmics import detect_cosmics_block

GAIN, RN, SKY = 2.0, 6.0, 300.0  # e-/ADU, e-, ADU


def _light(seed, shape=(256, 256), n_stars=25, n_crs=60):
    """Gaussian stars (FWHM 2.5-4 px) on a sky, Poisson + read noise in electrons, back to ADU; then
    cosmic rays (single pixels and short tracks) of 5-100 sigma of the local noise at known pixels."""
    rng = np.random.default_rng(seed)
    ny, nx = shape
    yy, xx = np.mgrid[:ny, :nx]
    model = np.full(shape, SKY)
    cores = []
    placed = []
    while len(placed) < n_stars:
        # isolated stars: L.A.Cosmic flags parts of close blends (< ~8 px), a known limit not tested here
        y0, x0 = rng.uniform(10, ny - 10), rng.uniform(10, nx - 10)
        if any((y0 - a) ** 2 + (x0 - b) ** 2 < 12**2 for a, b in placed):
            continue
        placed.append((y0, x0))
        sigma = rng.uniform(2.5, 4.0) / 2.355
        peak = rng.uniform(200, 8000)
        model += peak * np.exp(-((yy - y0) ** 2 + (xx - x0) ** 2) / (2 * sigma**2))
        cores.append((int(round(y0)), int(round(x0))))
    electrons = rng.poisson(model * GAIN) + rng.normal(0, RN, shape)
    image = electrons / GAIN
    noise = np.sqrt(model * GAIN + RN**2) / GAIN  # ADU
    truth = np.zeros(shape, bool)
    amplitude = np.zeros(shape)
    for k in range(n_crs):
        y, x = int(rng.integers(3, ny - 3)), int(rng.integers(3, nx - 3))
        length = 1 if k % 2 else int(rng.integers(2, 5))
        dy, dx = [(0, 1), (1, 0), (1, 1)][k % 3]
        nsig = rng.uniform(5, 100)
        for step in range(length):
            yy_, xx_ = y + step * dy, x + step * dx
            image[yy_, xx_] += nsig * noise[yy_, xx_]
            truth[yy_, xx_] = True
            amplitude[yy_, xx_] = max(amplitude[yy_, xx_], nsig)
    return image.astype(np.float32), truth, amplitude, cores


@pytest.fixture(scope="module")
def frames():
    return [_light(seed) for seed in (21, 22)]


def test_recall_false_flags_and_star_cores(frames):
    for image, truth, amplitude, cores in frames:
        mask, cleaned = detect_cosmics_block(image, gain=GAIN, read_noise=RN)
        strong = truth & (amplitude >= 10)
        assert mask[strong].mean() >= 0.95
        # L.A.Cosmic flags a hit's neighbours on purpose (sigfrac): false flags are counted beyond them
        near = grow_mask(truth, radius=1)
        assert (mask & ~near).mean() <= 5e-4
        assert (mask & ~truth).mean() <= 1e-3
        # a core is fair game only when a hit lands on the star itself
        hit_stars = grow_mask(truth, radius=2)
        assert not any(mask[y, x] for y, x in cores if not hit_stars[y, x])
        assert np.array_equal(cleaned[~mask], image[~mask])
        # a cleaned hit is back near the local level: within 5 sigma of the sky noise for most
        assert np.median(np.abs(cleaned[mask & truth] - SKY)) < 5 * np.sqrt(SKY * GAIN + RN**2) / GAIN


def test_same_pixels_as_ccdproc_with_the_same_settings(frames):
    for image, _, _, _ in frames:
        ours, ours_clean = detect_cosmics_block(image, gain=GAIN, read_noise=RN)
        # ccdproc on an ndarray in ADU, satlevel in electrons as astroscrappy wants; gain_apply=False
        # keeps its cleaned array in ADU (with True it comes back multiplied by the gain)
        theirs_clean, theirs = ccdproc.cosmicray_lacosmic(image, gain=GAIN, readnoise=RN,
                                                          satlevel=np.inf, gain_apply=False)
        assert abs(int(ours.sum()) - int(theirs.sum())) <= 0.01 * theirs.sum()
        assert (ours != theirs).sum() <= 0.01 * theirs.sum()
        np.testing.assert_allclose(ours_clean[ours & theirs], theirs_clean[ours & theirs], rtol=1e-5)


def test_units_an_electron_image_with_gain_one_finds_the_same_hits(frames):
    image = frames[0][0]
    in_adu, _ = detect_cosmics_block(image, gain=GAIN, read_noise=RN)
    in_electrons, _ = detect_cosmics_block(image * GAIN, gain=1.0, read_noise=RN)
    assert (in_adu != in_electrons).sum() <= 0.01 * in_adu.sum()
    # the classic mistake, electrons with the gain applied again, flags a different set
    twice, _ = detect_cosmics_block(image * GAIN, gain=GAIN, read_noise=RN)
    assert (twice != in_adu).sum() > 0.05 * in_adu.sum()


def test_sky_subtracted_input_and_variance(frames):
    image, truth, amplitude, _ = frames[1]
    plain, plain_clean = detect_cosmics_block(image, gain=GAIN, read_noise=RN)
    sub, sub_clean = detect_cosmics_block(image - SKY, gain=GAIN, read_noise=RN, sky=SKY)
    assert (plain != sub).sum() <= 0.01 * plain.sum()
    np.testing.assert_allclose(sub_clean[sub & plain], plain_clean[sub & plain] - SKY, rtol=1e-4,
                               atol=1e-2)
    variance = np.maximum(image, 0) / GAIN + (RN / GAIN) ** 2
    with_var, _ = detect_cosmics_block(image, gain=GAIN, read_noise=RN, variance=variance)
    assert with_var[truth & (amplitude >= 10)].mean() >= 0.95


def test_bad_and_nonfinite_pixels_are_ignored(frames):
    image, truth, _, _ = frames[0]
    image = image.copy()
    y, x = np.argwhere(truth)[0]
    bad = np.zeros(image.shape, bool)
    bad[y, x] = True
    image[5, 5] = np.nan
    mask, cleaned = detect_cosmics_block(image, gain=GAIN, read_noise=RN, bad=bad)
    assert not mask[y, x] and not mask[5, 5] and np.isnan(cleaned[5, 5])
    assert mask[truth].mean() > 0.8


def test_examples_run():
    assert doctest.testmod(cosmics_module, extraglobs={"np": np}).failed == 0
