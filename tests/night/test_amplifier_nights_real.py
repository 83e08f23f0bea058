"""Whole nights of real multi-amplifier frames: Kast (layout from the shipped instrument file) and
SAMI (layout from its headers, gain 'unavail', calibrations of one binning only).

The figures are printed (run with ``-s`` to see them). Expected values come from plain numpy on
the raw pixels and the section strings of the data README, never from ccdflow itself.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from astropy.io import fits

from ccdflow import Calibrator
from ccdflow.night import load_config
from ccdflow.night.run import reduce_night

DATA = Path(__file__).parents[1] / "data"
KAST = DATA / "kast"
SAMI = DATA / "sami"
KAST_YAML = Path(__file__).parents[2] / "src" / "ccdflow" / "configs" / "instruments" / "kast_blue.yaml"
BIASES = [KAST / f"b2{i}.fits.gz" for i in (1, 2, 3)]
FLATS = [KAST / f"b1{i}.fits.gz" for i in (1, 2, 3)]
# 0-based columns of the Kast amplifiers' data and overscan, from the data README
KAST_AMPS = ((slice(0, 1024), slice(2049, 2080)), (slice(1024, 2048), slice(2080, 2111)))
SAMI_BIAS, SAMI_FLAT = SAMI / "sami_bias_20170331_4x4.fits.gz", SAMI / "sami_domeflat_20160401_4x4.fits.gz"
SAMI_ACQ = SAMI / "sami_acq_NGC4902_20160402_4x4.fits.gz"
SAMI_2X2 = SAMI / "sami_object_KMHK19_20171218_2x2.fits.gz"
# the SAMI nights test layouts, notes and matching: skip the slow bad-pixel and cosmic-ray steps
FAST_QUALITY = {"bad_pixel_mask": False, "cosmic_rays": "off"}


def _night(folder: Path, rows: list[tuple[str, Path]], **config) -> tuple[Path, dict]:
    """Write a file list and a YAML config naming `config`, reduce the night, return its report."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "night.csv").write_text("".join(f"{kind}, {path}\n" for kind, path in rows))
    doc = {"input": {"filelist": "night.csv"}, "output": "reduced", **config}
    (folder / "night.yaml").write_text(yaml.safe_dump(doc))
    reduce_night(load_config(folder / "night.yaml"), scheduler="synchronous", echo=lambda *a: None,
                 progress=False)
    out = folder / "reduced"
    return out, json.loads((out / "report.json").read_text())


@pytest.fixture(scope="module")
def kast(tmp_path_factory) -> tuple[Path, dict]:
    rows = [("bias", p) for p in BIASES] + [("flat", p) for p in FLATS] \
        + [("light", KAST / "b24.fits.gz")]
    return _night(tmp_path_factory.mktemp("kast"), rows, calibration={"instrument": "kast_blue"})


def test_kast_night_removes_each_amplifiers_pedestal(kast):
    out, report = kast
    assert report["ok"], report["failures"]
    assert sorted(report["masters"]) == ["bias", "bpm_none", "flat_none"]
    print()
    for path in BIASES:
        raw = fits.getdata(path).astype(np.float64)
        before = raw[:, KAST_AMPS[1][0]].mean() - raw[:, KAST_AMPS[0][0]].mean()
        assert 18 < before < 26, path.name  # the README's ~22 ADU between the amplifiers
        image = Calibrator(amplifiers=KAST_YAML, master_bias=out / "masters" / "bias.fits")(
            raw=path).data.astype(np.float64)
        for n, (data, overscan) in enumerate(KAST_AMPS, start=1):
            pixels = image[:, data]
            mean, std = pixels.mean(), pixels.std(ddof=1)
            # The mean carries the noise of the pixels and of two overscan levels (this frame's and
            # the mean of the three in the master): the median of n values has variance
            # (pi/2) s^2 / n. Those levels dominate (~0.035 ADU against ~0.004 ADU).
            strip = raw[:, overscan]
            var_level = np.pi / 2 * strip.var(ddof=1) / strip.size
            noise = np.sqrt(std**2 / pixels.size + var_level * (1 + 1 / len(BIASES)))
            print(f"Kast {path.name} amp {n}: raw step {before:+.2f} ADU; calibrated mean "
                  f"{mean:+.4f} ADU, noise of the mean {noise:.4f} ADU")
            assert abs(mean) < 3 * noise, (path.name, n)


def _boundary_step(image: np.ndarray, width: int = 10) -> tuple[float, float]:
    """Mean over rows of (median of `width` columns right of 1024 - median of those left), and the
    standard error of that mean from the scatter of the rows."""
    left = np.median(image[:, 1024 - width:1024], axis=1)
    right = np.median(image[:, 1024:1024 + width], axis=1)
    diff = right - left
    return float(diff.mean()), float(diff.std(ddof=1) / np.sqrt(diff.size))


def test_kast_flat_fielded_flats_have_no_step_at_the_amplifier_boundary(kast):
    out, _ = kast
    masters = {"master_bias": out / "masters" / "bias.fits",
               "master_flat": out / "masters" / "flat_none.fits"}
    per_amp = Calibrator(amplifiers=KAST_YAML, **masters)
    # one amplifier, one overscan strip (amplifier 1's) for the whole width: amplifier 2 keeps
    # its ~22 ADU higher pedestal, which the per-amplifier master bias does not remove
    one_strip = Calibrator(overscans=["[2050:2080,1:350]"], image_area="[1:2048,1:350]", **masters)
    print()
    for path in FLATS:
        step, noise = _boundary_step(per_amp(raw=path).data.astype(np.float64))
        wrong, wrong_noise = _boundary_step(one_strip(raw=path).data.astype(np.float64))
        print(f"Kast {path.name} flat-fielded, step at columns 1024|1025: per amplifier "
              f"{step:+.2f} +- {noise:.2f}; one overscan strip {wrong:+.2f} +- {wrong_noise:.2f}")
        assert abs(step) < 3 * noise, path.name
        assert wrong > 5 * wrong_noise, path.name  # the test would see a step


def test_kast_products_carry_each_amplifiers_values_from_the_instrument_file(kast):
    out, report = kast
    light = report["frames"][str(KAST / "b24.fits.gz")]
    assert light["status"] == "done" and light["warnings"] is None
    levels = light["stats"]["overscan_levels"]
    raw = fits.getdata(KAST / "b24.fits.gz").astype(np.float64)
    header = fits.getheader(out / "lights" / "b24.fits")
    assert (header["BUNIT"], header["NAMPS"], header["DETNAME"]) == ("adu", 2, "kast_blue")
    for n, (data, overscan) in enumerate(KAST_AMPS, start=1):
        assert header[f"GAIN{n}"] == 1.2 and header[f"RDNOIS{n}"] == 3.7
        assert "instrument file" in header.comments[f"GAIN{n}"]
        assert "instrument file" in header.comments[f"RDNOIS{n}"]
        assert header[f"AMPSEC{n}"] == header[f"DETSEC{n}"] == \
            f"[{data.start + 1}:{data.stop},1:350]"
        # the subtracted level is the median of this amplifier's own strip (integer data: within
        # half an ADU of the plain median)
        assert abs(levels[str(n)] - np.median(raw[:, overscan])) <= 0.5
        assert header[f"OVSCLV{n}"] == pytest.approx(levels[str(n)], abs=1e-4)
    assert "GAIN" not in header and header["CCDFNWRN"] == 0  # nothing assumed
    assert fits.getheader(out / "masters" / "bias.fits")["BUNIT"] == "adu"
    assert fits.getdata(out / "lights" / "b24.fits").shape == (350, 2048)


@pytest.fixture(scope="module")
def sami(tmp_path_factory) -> tuple[Path, dict]:
    # no flat: SAMI's dome flat is of another filter than the acquisition (see below)
    rows = [("bias", SAMI_BIAS), ("light", SAMI_ACQ), ("light", SAMI_2X2)]
    return _night(tmp_path_factory.mktemp("sami"), rows, quality=FAST_QUALITY,
                  calibration={"gain": 2.1, "read_noise": 4.0})


def test_sami_night_notes_the_unavailable_gain_and_uses_the_configured_one(sami):
    out, report = sami
    acq = report["frames"][str(SAMI_ACQ)]
    assert acq["status"] == "done"
    for notes in (acq["warnings"], report["masters"]["bias"]["notes"][str(SAMI_BIAS)]):
        assert any("GAIN='unavail'" in n and "configured gain 2.1" in n for n in notes), notes
        assert any("RDNOISE='unavail'" in n and "configured read_noise 4.0" in n for n in notes)
    header = fits.getheader(out / "lights" / f"{SAMI_ACQ.name.removesuffix('.fits.gz')}.fits")
    comments = "".join(str(c) for c in header["COMMENT"])  # long notes wrap over several cards
    assert header["CCDFNWRN"] == 2 and comments.count("ccdflow fallback:") == 2
    assert "GAIN='unavail'" in comments and "configured gain 2.1" in comments
    for n in range(1, 5):
        assert header[f"GAIN{n}"] == 2.1 and "config" in header.comments[f"GAIN{n}"]
        assert header[f"RDNOIS{n}"] == 4.0 and "config" in header.comments[f"RDNOIS{n}"]
    print(f"\nSAMI acquisition: {acq['warnings'][0]}")


def test_sami_object_of_another_binning_fails_naming_it_and_the_rest_is_done(sami):
    out, report = sami
    assert not report["ok"]
    failure = report["failures"][str(SAMI_2X2)]
    assert failure.startswith("MissingCalibrationError")
    assert "binned 2x2" in failure and "binned 4x4" in failure, failure
    assert list(report["failures"]) == [str(SAMI_2X2)]
    assert report["frames"][str(SAMI_ACQ)]["status"] == "done"
    image = fits.getdata(out / "lights" / f"{SAMI_ACQ.name.removesuffix('.fits.gz')}.fits")
    assert image.shape == (1028, 1024)
    print(f"\nSAMI 2x2 object: {failure}")


def test_sami_flat_of_another_filter_is_not_applied(tmp_path):
    # FILTERS (FILTER1 + FILTER2 wheels): the dome flat is c0100 (R), the acquisition v0011
    rows = [("bias", SAMI_BIAS), ("flat", SAMI_FLAT), ("light", SAMI_ACQ)]
    out, report = _night(tmp_path, rows, quality=FAST_QUALITY,
                         calibration={"gain": 2.1, "read_noise": 4.0})
    assert list(report["masters"]) == ["bias", "flat_c0100"]
    failure = report["failures"][str(SAMI_ACQ)]
    assert failure.startswith("MissingCalibrationError") and "FILTER='v0011'" in failure, failure
    assert "flat_c0100" in failure


def test_sami_night_without_a_gain_notes_the_default_assumed(tmp_path):
    out, report = _night(tmp_path, [("light", SAMI_ACQ)], quality=FAST_QUALITY)
    notes = report["frames"][str(SAMI_ACQ)]["warnings"]
    gain_notes = [n for n in notes if "GAIN='unavail'" in n]
    assert len(gain_notes) == 1 and "gain 1.0 e-/ADU assumed" in gain_notes[0], notes
    assert report["frames"][str(SAMI_ACQ)]["status"] == "done"
    header = fits.getheader(out / "lights" / f"{SAMI_ACQ.name.removesuffix('.fits.gz')}.fits")
    for n in range(1, 5):
        assert header[f"GAIN{n}"] == 1.0
        assert header.comments[f"GAIN{n}"] == "[e-/ADU] default (header GAIN='unavail')"
    comments = "".join(str(c) for c in header["COMMENT"])
    assert "gain 1.0 e-/ADU assumed" in comments
    print(f"\nSAMI without a gain: {gain_notes[0]}")
