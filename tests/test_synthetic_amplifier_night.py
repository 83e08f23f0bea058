"""Synthetic multi-amplifier nights: headers, detectors and pixels checked against the saved truth.

The assembly here is a plain re-implementation from the header text (no ccdflow geometry): each
amplifier minus the median of its overscan, mirrored where ``DETSEC`` runs backwards, placed at
``DETSEC / CCDSUM``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from astropy.io import fits
from click.testing import CliRunner

from ccdflow.cli import main
from ccdflow.io.detectors import read_detectors
from ccdflow.io.filelist import read_filelist, scan_directory
from ccdflow.synthetic import AmplifierNightTruth, Instrument, write_amplifier_night, write_night

SMALL = dict(filters=("V",), n_bias=8, n_dark=2, dark_exptimes=(120.0,), n_flat=2, n_light=2,
             amp_shape=(24, 16), n_overscan=8)


def _slices(text: str) -> tuple[slice, slice, bool, bool]:
    x1, x2, y1, y2 = (int(v) for v in re.fullmatch(r"\[(\d+):(\d+),(\d+):(\d+)\]", text).groups())
    return (slice(min(y1, y2) - 1, max(y1, y2)), slice(min(x1, x2) - 1, max(x1, x2)),
            x1 > x2, y1 > y2)


def _amplifiers(hdul: fits.HDUList) -> list[tuple[str, np.ndarray, dict[str, str]]]:
    """(name, raw pixels, sections) of every amplifier, in either header layout."""
    header = hdul[0].header
    letters = [k[-1] for k in header if re.fullmatch(r"DATASEC[A-Z]", k)]
    if letters:
        return [(x, hdul[0].data, {k: header[f"{k}{x}"] for k in ("DATASEC", "BIASSEC", "DETSEC")})
                for x in letters]
    return [(h.name, h.data, {k: h.header[k] for k in ("DATASEC", "BIASSEC", "DETSEC")})
            for h in hdul[1:]]


def _assemble(path: Path) -> tuple[np.ndarray, dict[str, float]]:
    """Overscan-subtracted assembled image (ADU) and each amplifier's overscan median."""
    with fits.open(path) as hdul:
        binning = int(hdul[0].header["CCDSUM"].split()[0])
        amps = _amplifiers(hdul)
        places = [_slices(s["DETSEC"]) for _, _, s in amps]
        ny = max(p[0].stop for p in places) // binning
        nx = max(p[1].stop for p in places) // binning
        out, levels = np.full((ny, nx), np.nan), {}
        for (name, raw, sections), (ys, xs, fx, fy) in zip(amps, places, strict=True):
            raw = raw.astype(np.float64)
            levels[name] = float(np.median(raw[_slices(sections["BIASSEC"])[:2]]))
            data = raw[_slices(sections["DATASEC"])[:2]] - levels[name]
            data = data[:: -1 if fy else 1, :: -1 if fx else 1]
            out[ys.start // binning:ys.stop // binning, xs.start // binning:xs.stop // binning] = data
    return out, levels


@pytest.fixture(scope="module", params=[("extensions", 4), ("lettered", 4), ("lettered", 2),
                                        ("extensions", 2)], ids=lambda p: f"{p[0]}-{p[1]}")
def night(request, tmp_path_factory):
    layout, n = request.param
    return write_amplifier_night(tmp_path_factory.mktemp(f"{layout}{n}"), layout=layout,
                                 n_amplifiers=n, seed=3, **SMALL)


def test_detector_read_back_is_the_truths(night):
    truth = night.truth
    for kind, paths in night.files.items():
        (detector,) = read_detectors(paths[0])
        assert detector.layout_key == truth.detector.layout_key, kind
        for amp in detector.amplifiers:
            assert (amp.gain, amp.read_noise) == (truth.gain[amp.name], truth.read_noise[amp.name])
            assert amp.gain_source.startswith("header GAIN")
            assert amp.overscans == truth.detector.amplifier(amp.name).overscans
    flips = {a.name: (a.flip_x, a.flip_y) for a in truth.detector.amplifiers}
    expected = {"A": (False, False), "B": (True, False), "C": (False, True), "D": (False, False)}
    assert flips == {k: v for k, v in expected.items() if k in flips}
    assert len(set(truth.gain.values())) == len(truth.gain)  # the amplifiers differ
    assert len(set(truth.pedestal.values())) == len(truth.pedestal)


def test_binned_detector_places_unbinned_detsec(tmp_path):
    night = write_amplifier_night(tmp_path, layout="lettered", binning=2, filters=("V",), n_bias=1,
                                  n_dark=0, n_flat=0, n_light=0, amp_shape=(6, 4), n_overscan=2)
    header = fits.getheader(night.files["bias"][0])
    assert header["CCDSUM"] == "2 2" and header["DETSECB"] == "[16:9,1:12]"
    (detector,) = read_detectors(night.files["bias"][0])
    assert detector.binning == (2, 2) and detector.shape == (12, 8)
    assert detector.layout_key == night.truth.detector.layout_key
    image, _ = _assemble(night.files["bias"][0])
    assert image.shape == (12, 8) and np.isfinite(image).all()


def test_overscan_medians_are_the_bias_levels(night):
    truth = night.truth
    for path in night.files["bias"] + night.files["light"]:
        _, levels = _assemble(path)
        exposure = truth.exposures[path.stem]
        for name, level in levels.items():
            sigma = truth.read_noise[name] / truth.gain[name]
            n = SMALL["amp_shape"][0] * SMALL["n_overscan"]
            # median of integers: up to 0.5 ADU of rounding, plus 4 standard errors of a median
            tolerance = 0.5 + 4 * 1.2533 * sigma / np.sqrt(n)
            assert abs(level - truth.pedestal[name] - exposure.offsets[name]) < tolerance, name


def test_mean_bias_is_the_bias_structure(night):
    truth = night.truth
    mean = np.mean([_assemble(p)[0] for p in night.files["bias"]], axis=0)
    residual = mean - truth.bias
    for spec in truth.camera.specs:
        cell = residual[truth.camera.cell(spec)]
        sigma = np.sqrt((spec.read_noise / spec.gain) ** 2 + 1 / 12) / np.sqrt(SMALL["n_bias"])
        assert abs(cell.mean()) < 0.5, spec.name
        assert 0.8 < cell.std() / sigma < 1.25, spec.name
        # the structure is there to be recovered: without it the same test fails
        assert mean[truth.camera.cell(spec)].std() / sigma > 1.5, spec.name


def _pulls(image: np.ndarray, truth: AmplifierNightTruth, electrons: np.ndarray) -> np.ndarray:
    gain, noise = truth.gain_map, truth.read_noise_map
    measured = (image - truth.bias) * gain
    # Poisson + read noise + rounding to whole ADU + the overscan median's own error
    n_over = SMALL["amp_shape"][0] * SMALL["n_overscan"]
    variance = (np.maximum(electrons, 0) + noise**2 + gain**2 / 12
                + 1.5708 * (noise**2 + gain**2 / 12) / n_over)
    return (measured - electrons) / np.sqrt(variance)


def _consistent(pulls: np.ndarray, truth: AmplifierNightTruth) -> bool:
    """Every amplifier's pulls have mean ~0 and spread ~1 (a few hundred pixels each)."""
    cells = [pulls[truth.camera.cell(spec)] for spec in truth.camera.specs]
    return all(abs(c.mean()) < 0.25 and 0.85 < c.std() < 1.15 for c in cells)


@pytest.mark.parametrize("kind", ["dark", "flat", "light"])
def test_exposures_are_dark_flat_sky_and_stars_in_electrons(night, kind):
    truth = night.truth
    for path in night.files[kind]:
        image, _ = _assemble(path)
        expected = truth.electrons(path.stem)
        assert _consistent(_pulls(image, truth, expected), truth), path.name
        t = truth.exposures[path.stem].exptime
        # each ingredient is in the pixels: leaving one out of the expectation breaks the pulls
        without = {}
        if kind in ("dark", "light"):
            without["dark"] = expected - truth.dark_rate * t
        if kind == "light":
            without["stars"] = expected - truth.flats["V"] * (truth.light_rate - truth.sky_rate) * t
            without["flat"] = truth.dark_rate * t + truth.light_rate * t
        if kind == "flat":
            without["flat"] = truth.dark_rate * t + truth.exposures[path.stem].level
        for name, wrong in without.items():
            assert not _consistent(_pulls(image, truth, wrong), truth), (path.name, name)


def test_flat_is_seamless_across_amplifiers(night):
    truth = night.truth
    flat = truth.flats["V"]
    rows, cols = truth.camera.grid
    ny, nx = truth.camera.amp_shape
    # the response is one smooth surface: the step across every amplifier boundary is small
    assert np.abs(np.diff(flat, axis=1)[:, nx - 1]).max() < 0.05
    if rows == 2:
        assert np.abs(np.diff(flat, axis=0)[ny - 1, :]).max() < 0.05
    path = night.files["flat"][0]
    image, _ = _assemble(path)
    level = truth.exposures[path.stem].level
    measured = (image - truth.bias) * truth.gain_map / level
    assert np.abs(np.median(measured - flat)) < 0.005


def test_headers_and_file_list_match_the_single_amplifier_night(night, tmp_path):
    single = write_night(tmp_path, instrument=Instrument(ny=8, nx=8, n_overscan=2),
                         filters=SMALL["filters"], n_bias=SMALL["n_bias"], n_dark=SMALL["n_dark"],
                         dark_exptimes=SMALL["dark_exptimes"], n_flat=SMALL["n_flat"],
                         n_light=SMALL["n_light"], seed=3)
    assert night.filelist.read_text() == single.filelist.read_text()
    keys = ("IMAGETYP", "OBSTYPE", "EXPTIME", "FILTER", "OBJECT", "DATE-OBS", "MJD-OBS")
    for kind, paths in night.files.items():
        for ours, theirs in zip(paths, single.files[kind], strict=True):
            header, reference = fits.getheader(ours), fits.getheader(theirs)
            assert {k: header.get(k) for k in keys} == {k: reference.get(k) for k in keys}
            assert header["DETECTOR"] == night.truth.camera.name
    listed = read_filelist(night.filelist)
    assert [(f.type, f.path.name) for f in listed] == [
        (kind, p.name) for kind in ("bias", "dark", "flat", "light") for p in night.files[kind]]
    if night.truth.camera.layout == "lettered":
        scanned = {f.path.name: f.type for f in scan_directory(night.directory / "raw")}
        assert scanned == {f.path.name: f.type for f in listed}


def test_truth_round_trips_and_the_night_is_seeded(night, tmp_path):
    loaded = AmplifierNightTruth.load(night.directory)
    truth = night.truth
    assert loaded.camera == truth.camera and loaded.exposures == truth.exposures
    assert (loaded.gain, loaded.read_noise, loaded.pedestal) == (truth.gain, truth.read_noise,
                                                                 truth.pedestal)
    for name in ("bias", "dark_rate", "light_rate"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(truth, name))
    np.testing.assert_array_equal(loaded.flats["V"], truth.flats["V"])
    camera = truth.camera
    again = write_amplifier_night(tmp_path, layout=camera.layout, n_amplifiers=camera.n_amplifiers,
                                  seed=3, **SMALL)
    other = write_amplifier_night(tmp_path / "other", layout=camera.layout,
                                  n_amplifiers=camera.n_amplifiers, seed=4, **SMALL)
    for kind, paths in night.files.items():
        for ours, theirs in zip(paths, again.files[kind], strict=True):
            assert ours.read_bytes() == theirs.read_bytes()
    assert (tmp_path / "truth.json").read_text() == (night.directory / "truth.json").read_text()
    first = night.files["light"][0]
    assert other.files["light"][0].read_bytes() != first.read_bytes()


def test_invalid_layouts_are_refused(tmp_path):
    with pytest.raises(ValueError, match="n_amplifiers must be one of"):
        write_amplifier_night(tmp_path, n_amplifiers=3)
    with pytest.raises(ValueError, match="layout must be one of"):
        write_amplifier_night(tmp_path, layout="mosaic")
    with pytest.raises(ValueError, match="amp_shape must be"):
        write_amplifier_night(tmp_path, amp_shape=(1, 8))
    assert not (tmp_path / "raw").exists()


def _invoke(*args):
    return CliRunner(catch_exceptions=False).invoke(main, [str(a) for a in args])


@pytest.mark.parametrize(("amplifiers", "layout", "shape"), [("4", "lettered", (16, 16)),
                                                             ("2", None, (32, 16))])
def test_cli_writes_a_multi_amplifier_night(tmp_path, amplifiers, layout, shape):
    args = ["synth", tmp_path, "--size", "32", "--lights", "1", "--amplifiers", amplifiers]
    result = _invoke(*args, *(["--layout", layout] if layout else []))
    assert result.exit_code == 0, result.output
    assert (f"synthetic {amplifiers}-amplifier night written; reduce it with: ccdflow run "
            f"{tmp_path / 'night.yaml'}") in result.stdout
    truth = AmplifierNightTruth.load(tmp_path)
    assert truth.camera.layout == (layout or "extensions")
    assert truth.camera.amp_shape == shape and truth.camera.shape == (32, 32)
    lights = sorted(p.name for p in (tmp_path / "raw").glob("light_*.fits"))
    assert lights == ["light_R_000.fits", "light_V_000.fits"]
    (detector,) = read_detectors(tmp_path / "raw" / lights[0])
    assert len(detector.amplifiers) == int(amplifiers) and detector.shape == (32, 32)
    config = yaml.safe_load((tmp_path / "night.yaml").read_text())
    assert "calibration" not in config  # the layout, sections, gains: all from the headers


@pytest.mark.parametrize("layout", ["extensions", "lettered"])
def test_demo_reduces_a_four_amplifier_night_from_its_headers_alone(tmp_path, layout):
    result = _invoke("demo", "--directory", tmp_path / "demo", "--size", "32", "--amplifiers", "4",
                     "--layout", layout, "--scheduler", "synchronous")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "demo" / "reduced" / "report.json").read_text())
    assert report["ok"] and len(report["frames"]) == 8
    path = tmp_path / "demo" / "reduced" / "lights" / "light_V_000.fits"
    data, header = fits.getdata(path), fits.getheader(path)
    assert data.shape == (32, 32) and header["NAMPS"] == 4
    assert [header[f"GAIN{i}"] for i in range(1, 5)] == [
        a.gain for a in AmplifierNightTruth.load(tmp_path / "demo").camera.detector.amplifiers]


@pytest.mark.parametrize(("args", "message"), [
    (("--amplifiers", "3"), "Invalid value for --amplifiers: must be 1, 2 or 4, not 3"),
    (("--layout", "lettered"), "Invalid value for --layout: applies to 2 or 4 amplifiers only"),
    (("--amplifiers", "1", "--layout", "extensions"), "applies to 2 or 4 amplifiers only"),
    (("--amplifiers", "4", "--layout", "mosaic"), "Invalid value for '--layout'"),
])
def test_cli_refuses_bad_amplifier_options(tmp_path, args, message):
    result = _invoke("synth", tmp_path / "night", "--size", "32", *args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert not (tmp_path / "night").exists()
