"""Data quality in a night: the bad-pixel mask, bleed trails, cosmic rays and masks in stacks."""

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from astropy.io import fits

from ccdflow import synthetic as syn
from ccdflow.array.masks import MaskBits, read_mask_header
from ccdflow.night import load_config, reduce_night

SIZE = 128
CALIBRATION = {"overscans": "header", "overscan_method": "median_per_line", "image_area": "header"}
DEAD_COLUMN, DEAD_PIXELS = 40, [(10, 90), (70, 15), (100, 100)]


def _night(folder: Path, **config):
    inst = syn.Instrument(ny=SIZE, nx=SIZE, n_overscan=8)
    night = syn.write_night(folder, instrument=inst, filters=("V",), n_bias=5, n_dark=5,
                            dark_exptimes=(120.0,), n_flat=5, n_light=3, seed=11)
    data = {"input": {"filelist": "night.csv"}, "output": "reduced", "calibration": CALIBRATION,
            "stack_lights": True, **config}
    (folder / "night.yaml").write_text(yaml.safe_dump(data))
    return night, folder / "night.yaml"


def _kill_pixels(path: Path, inst: syn.Instrument, cells):
    """Make image-area pixels dead in a raw frame: no response, only the bias pedestal."""
    with fits.open(path, mode="update") as hdul:
        data = hdul[0].data.astype(np.float64)
        area = inst.image_region
        floor = np.median(data[:, inst.overscan_region["xmin"]:inst.overscan_region["xmax"]])
        for y, x in cells:
            data[area["ymin"] + y, area["xmin"] + x] = floor
        hdul[0].data = np.rint(data).astype(np.uint16)


def _run(config_path):
    report = reduce_night(load_config(config_path), scheduler="synchronous", echo=lambda *_: None,
                          progress=False)
    return report, config_path.parent / "reduced"


@pytest.fixture(scope="module")
def flawed_night(tmp_path_factory):
    """A night whose flats have a dead column and dead pixels, with hot pixels in the dark."""
    folder = tmp_path_factory.mktemp("quality")
    night, config = _night(folder)
    inst = night.instrument
    dead = [(y, DEAD_COLUMN) for y in range(SIZE)] + DEAD_PIXELS
    for path in night.files["flat"]:
        _kill_pixels(path, inst, dead)
    report, out = _run(config)
    assert report.ok, report.failures
    return night, report, out, dead


def test_bpm_finds_hot_pixels_and_dead_column_and_nothing_else(flawed_night):
    night, report, out, dead = flawed_night
    bpm = fits.getdata(out / "masters" / "bpm_V.fits") != 0
    rate = night.truth.dark_rate
    hot = rate > 20 * np.median(rate)  # planted at 50-500 times the typical rate
    planted = hot.copy()
    for y, x in dead:
        planted[y, x] = True
    assert hot.sum() > 10
    assert bpm[planted].all(), f"missed {np.argwhere(planted & ~bpm).tolist()[:10]}"
    false = bpm & ~planted
    assert false.sum() <= 1e-4 * bpm.size + 1, np.argwhere(false).tolist()[:10]
    assert report.masters["bpm_V"]["flagged"] == int(bpm.sum())


def test_every_light_has_the_named_mask_and_counts_per_plane(flawed_night):
    night, report, out, _ = flawed_night
    bpm = fits.getdata(out / "masters" / "bpm_V.fits") != 0
    for raw in night.files["light"]:
        with fits.open(out / "lights" / raw.name) as hdul:
            assert [h.name for h in hdul] == ["PRIMARY", "ERROR", "MASK"]
            mask = hdul["MASK"].data
            assert read_mask_header(hdul["MASK"].header)["COSMIC_RAY"] == MaskBits.COSMIC_RAY
            assert hdul[0].header["MBPMFNM"] == "bpm_V.fits"
        np.testing.assert_array_equal((mask & MaskBits.BAD) != 0, bpm)
        flags = report.frames[str(raw)]["stats"]["flags"]
        assert flags["BAD"] == int(bpm.sum())
        assert flags["COSMIC_RAY"] == int(np.count_nonzero(mask & MaskBits.COSMIC_RAY))
    saved = json.loads((out / "report.json").read_text())
    assert saved["frames"][str(night.files["light"][0])]["stats"]["flags"]["BAD"] > 0


def test_rerun_reuses_the_bpm(flawed_night, tmp_path):
    night, _, out, _ = flawed_night
    report = reduce_night(load_config(out.parent / "night.yaml"), scheduler="synchronous",
                          echo=lambda *_: None, progress=False)
    assert report.masters["bpm_V"]["status"] == "reused"
    assert report.count("done") == 0


def test_saturated_star_bleed_trail_is_flagged_and_nothing_else(tmp_path):
    night, config = _night(tmp_path)
    inst = night.instrument
    raw = night.files["light"][0]
    area = inst.image_region
    trail = [(y, 60) for y in range(50, 71)]  # a saturated core with a trail along its column
    with fits.open(raw, mode="update") as hdul:
        data = hdul[0].data.astype(np.float64)
        for y, x in trail:
            level = inst.saturation if 58 <= y <= 62 else 0.8 * inst.saturation
            data[area["ymin"] + y, area["xmin"] + x] = level
        hdul[0].data = np.clip(np.rint(data), 0, 65535).astype(np.uint16)
    report, out = _run(config)
    assert report.ok, report.failures
    mask = fits.getdata(out / "lights" / raw.name, "MASK")
    bleed = (mask & MaskBits.BLEED) != 0
    expected = np.zeros_like(bleed)
    for y, x in trail:
        expected[y, x] = True
    np.testing.assert_array_equal(bleed, expected)
    saturated = np.argwhere((mask & MaskBits.SATURATED) != 0).tolist()
    assert saturated == [[y, 60] for y in range(58, 63)]


def test_a_flagged_absurd_pixel_does_not_change_the_stack(tmp_path):
    night, config = _night(tmp_path, quality={"bad_pixel_mask": False})
    inst = night.instrument
    reference_report, reference = _run(config)
    assert reference_report.ok
    stack = fits.getdata(reference / "stacks" / "V_SYNTH-FIELD.fits")
    # an absurd hit in one light: flagged as a cosmic ray, and the stack stays as it was
    raw = night.files["light"][1]
    y, x = 33, 77
    with fits.open(raw, mode="update") as hdul:
        hdul[0].data[inst.image_region["ymin"] + y, inst.image_region["xmin"] + x] = 60000
    report, out = _run(config)
    assert report.ok and report.count("done") == 1
    mask = fits.getdata(out / "lights" / raw.name, "MASK")
    assert mask[y, x] & MaskBits.COSMIC_RAY
    with fits.open(out / "stacks" / "V_SYNTH-FIELD.fits") as hdul:
        after, count = hdul[0].data, hdul["NCOMBINE"].data
    assert count[y, x] == 2
    others = [fits.getdata(out / "lights" / p.name)[y, x] for p in night.files["light"] if p != raw]
    assert after[y, x] == pytest.approx(np.median(others), rel=1e-5)
    assert abs(after[y, x] - stack[y, x]) < 5 * np.std(others) + 1


def test_user_bad_pixel_mask_is_merged(tmp_path):
    user = np.zeros((SIZE, SIZE), np.uint8)
    user[5, 5] = user[120, 7] = 1
    fits.writeto(tmp_path / "mine.fits", user)
    night, config = _night(tmp_path, quality={"bad_pixels": "mine.fits", "cosmic_rays": "off"})
    report, out = _run(config)
    assert report.ok, report.failures
    bpm = fits.getdata(out / "masters" / "bpm_V.fits")
    assert bpm[5, 5] and bpm[120, 7]
    mask = fits.getdata(out / "lights" / night.files["light"][0].name, "MASK")
    assert mask[5, 5] & MaskBits.BAD and not mask[5, 6] & MaskBits.COSMIC_RAY


def test_a_user_mask_of_another_shape_fails_the_bpm_and_names_the_file(tmp_path):
    fits.writeto(tmp_path / "wrong.fits", np.zeros((10, 10), np.uint8))
    night, config = _night(tmp_path, quality={"bad_pixels": "wrong.fits", "cosmic_rays": "off"})
    report, _ = _run(config)
    assert not report.ok
    assert "wrong.fits" in report.masters["bpm_V"]["error"]
    assert all(f["status"] == "failed" and "bpm" in f["error"]
               for p, f in report.frames.items() if "light" in p)
