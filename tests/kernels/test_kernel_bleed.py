import doctest

import numpy as np
import pytest

import ccdflow.kernels.bleed as bleed_module
from ccdflow.kernels.bleed import bleed_trails, grow_mask

SAT = 60000.0


def _light(seed=3, shape=(200, 160)):
    """Sky with read noise, saturated stars with bleed trails of known extent, and bright unsaturated
    stars; returns the frame and the true trail pixels."""
    rng = np.random.default_rng(seed)
    ny, nx = shape
    yy, xx = np.mgrid[:ny, :nx]
    frame = 500.0 + rng.normal(0, 5, shape)
    truth = np.zeros(shape, bool)
    for y0, x0, up, down in [(50, 30, 12, 20), (120, 90, 30, 5), (170, 140, 25, 40)]:
        sigma = 3.0 / 2.355
        star = 4 * SAT * np.exp(-((yy - y0) ** 2 + (xx - x0) ** 2) / (2 * sigma**2))
        frame += star
        core = star >= SAT
        frame[core] = SAT
        # the core's shoulder above the level, in the columns of the saturated disc (the Gaussian puts
        # every such pixel in a column that has a saturated one), belongs to the run
        truth |= star + 500.0 >= 0.5 * SAT
        # the column through the core bleeds; the trail ends with a taper (0.8, 0.6 of SAT), then
        # falls to 0.3 of SAT, below the default level
        top, bottom = max(0, y0 - up), min(ny, y0 + down + 1)
        frame[top:bottom, x0] = SAT
        truth[top:bottom, x0] = True
        for k, level in enumerate((0.8, 0.6)):
            for row in (top - 1 - k, bottom + k):
                if 0 <= row < ny:
                    frame[row, x0] = level * SAT
                    truth[row, x0] = True
        for row in (top - 3, bottom + 2):
            if 0 <= row < ny:
                frame[row, x0] = 0.3 * SAT
    # bright unsaturated stars: peaks at 0.9 and 0.7 of saturation, never part of a trail
    for y0, x0, peak in [(20, 120, 0.9), (150, 20, 0.7)]:
        frame += peak * SAT * np.exp(-((yy - y0) ** 2 + (xx - x0) ** 2) / (2 * 1.5**2))
    frame = np.minimum(frame, SAT)  # the ADC clips
    return frame.astype(np.float32), truth


def test_every_trail_pixel_and_nothing_else():
    frame, truth = _light()
    found = bleed_trails(frame, saturation=SAT)
    assert truth.sum() > 100
    assert np.array_equal(found, truth), (np.argwhere(found & ~truth), np.argwhere(truth & ~found))


def test_transposed_readout_axis():
    frame, truth = _light(seed=4)
    assert np.array_equal(bleed_trails(frame.T, saturation=SAT, axis=1), truth.T)


def test_level_and_nan_end_a_run():
    col = np.array([SAT, 0.55 * SAT, 0.45 * SAT, np.nan, SAT], dtype=np.float64)[:, None]
    assert bleed_trails(col, saturation=SAT).ravel().tolist() == [True, True, False, False, True]
    assert bleed_trails(col, saturation=SAT, fraction=0.6).ravel().tolist() == [True, False, False,
                                                                                False, True]


def _brute_dilation(mask, radius, disc):
    out = np.zeros_like(mask)
    for y, x in np.argwhere(mask):
        for dy in range(-radius, radius + 1):
            for dx in range(-radius, radius + 1):
                if disc and dy * dy + dx * dx > radius * radius:
                    continue
                if 0 <= y + dy < mask.shape[0] and 0 <= x + dx < mask.shape[1]:
                    out[y + dy, x + dx] = True
    return out


@pytest.mark.parametrize("radius", [0, 1, 3])
@pytest.mark.parametrize("footprint", ["square", "disc"])
def test_growth_equals_a_brute_force_dilation(radius, footprint):
    mask = np.random.default_rng(radius).random((30, 25)) < 0.02
    mask[0, 0] = mask[-1, -1] = True  # edges clip
    expected = _brute_dilation(mask, radius, footprint == "disc")
    assert np.array_equal(grow_mask(mask, radius=radius, footprint=footprint), expected)


def test_growth_validates():
    with pytest.raises(ValueError, match="radius must be >= 0"):
        grow_mask(np.zeros((3, 3), bool), radius=-1)
    with pytest.raises(ValueError, match="footprint must be"):
        grow_mask(np.zeros((3, 3), bool), radius=1, footprint="diamond")


def test_examples_run():
    assert doctest.testmod(bleed_module, extraglobs={"np": np}).failed == 0
