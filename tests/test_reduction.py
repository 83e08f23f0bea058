"""`ImageReduction`: real SPRAT frames against a numpy oracle, synthetic nights, exports, errors."""

from __future__ import annotations

import base64
import gzip
import json
import re
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.stats import sigma_clipped_stats

from ccdflow.array.combination import CombineParams
from ccdflow.errors import CcdflowError, ConfigError, MissingCalibrationError
from ccdflow.kernels.clip import combine_block
from ccdflow.reduction import ImageReduction
from ccdflow.synthetic import Instrument, make_frame, write_night

SPRAT = Path(__file__).parent / "data" / "sprat"
LIGHTS = [SPRAT / f"v_e_20180810_12_{i}_0_0.fits.gz" for i in (1, 2)]
DARK = SPRAT / "v_dark_1.fits.gz"
FLAT = SPRAT / "v_slit_red_1.fits.gz"
ARC = SPRAT / "v_a_20180810_13_1_0_1.fits.gz"

INSTRUMENT = Instrument(ny=48, nx=48, n_overscan=8)
CALIBRATION = {"overscans": "header", "image_area": "header", "overscan_method": "median_per_line"}
SMALL = dict(n_bias=1, n_dark=1, dark_exptimes=(120.0,), n_flat=1)  # one frame per master


def _png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def _unflagged(path: Path) -> np.ndarray:
    """A calibrated light with its flagged pixels (MASK != 0) as NaN: what a combine may use."""
    with fits.open(path) as hdul:
        return np.where(hdul["MASK"].data != 0, np.nan, hdul[0].data.astype(np.float64))


def _clipped(paths: list[Path], reduce=np.ma.mean) -> np.ndarray:
    """The combine of the lights with the default rejection, from the kernel on the whole stack
    (the rejection itself is held against IRAF's algorithm in the kernel tests)."""
    cube = np.array([_unflagged(p) for p in paths], dtype=np.float32)
    method = "median" if reduce is np.ma.median else "mean"
    return combine_block(cube, **CombineParams(method=method).kernel_kwargs())[0]


def _small_night(directory: Path, **kwargs):
    return write_night(directory, instrument=INSTRUMENT, filters=("V",), **{**SMALL, **kwargs})


@pytest.fixture(scope="module")
def sprat_run(tmp_path_factory):
    """One reduction of the SPRAT frames, shared by the tests that only read its results."""
    tmp = tmp_path_factory.mktemp("sprat")
    csv = tmp / "sprat.csv"
    csv.write_text(
        "# SPRAT, LHS6328\n"
        f"light, {LIGHTS[0]}\n"
        f"  light ,   {LIGHTS[1]}  ,  0  \n"
        f"dark, {DARK}\n"
        f"flat, {FLAT}\n"
        f"arc, {ARC}\n"
    )
    reduction = ImageReduction(csv, work_dir=tmp / "work")
    return reduction, reduction.reduce()


# -- SPRAT ----------------------------------------------------------------------------------------


def test_sprat_matches_numpy_reference(sprat_run):
    reduction, hdu = sprat_run
    assert isinstance(hdu, fits.PrimaryHDU)
    assert hdu is reduction.image_hdu
    assert hdu.data.shape == (254, 1024) and hdu.data.dtype == np.float32
    dark = fits.getdata(DARK).astype(np.float64)  # bias-subtracted counts in 600 s
    flat = fits.getdata(FLAT).astype(np.float64)
    norm = sigma_clipped_stats(flat)[0]
    calibrated = [(fits.getdata(p).astype(np.float64) - 120 / 600 * dark) / (flat / norm)
                  for p in LIGHTS]
    # flagged pixels (hot pixels of the dark, cosmic rays) do not enter the combination
    flagged = [fits.getdata(reduction.work_dir / "lights" / p.name.removesuffix(".gz"), "MASK") != 0
               for p in LIGHTS]
    # the real dark's ~960 hot pixels, the flat's dead band near row 40, and cosmic rays
    assert 0 < np.mean(flagged) < 0.03
    stack = np.where(flagged, np.nan, calibrated)
    # two frames: nothing lies outside 5 sigma of the noise model; median == mean
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = np.nanmedian(stack, axis=0)
    np.testing.assert_allclose(hdu.data, expected, rtol=1e-4, atol=1e-3)
    np.testing.assert_array_equal(np.isnan(hdu.data), np.all(flagged, axis=0))
    assert reduction.error.shape == (254, 1024)


def test_sprat_header(sprat_run):
    reduction, hdu = sprat_run
    header = hdu.header
    first = fits.getheader(LIGHTS[0])
    assert header["INSTRUME"] == "SPRAT"
    assert header["OBJECT"] == first["OBJECT"] == "LHS6328"
    assert header["DATE-OBS"] == first["DATE-OBS"]
    assert header["NCOMBINE"] == 2
    assert header["EXPTOTAL"] == 240.0
    assert header["EXPMEAN"] == 120.0
    assert header["CMETHOD"] == "median"
    assert header["CSIGLO"] == header["CSIGHI"] == 5.0
    assert header["CSTDFUNC"] == "mad_std"
    assert header["INPUT001"] == LIGHTS[0].name
    assert header["INPUT002"] == LIGHTS[1].name
    assert "INPUT003" not in header
    assert header["HIERARCH CCDFLOW MASTER DARK"] == "dark.fits"
    assert header["HIERARCH CCDFLOW MASTER DARK N"] == 1
    # the filter is the wheels' FILTER1 + FILTER2 (SPRAT writes no FILTER card)
    assert first["FILTER1"] == "4020longpass" and first["FILTER2"] == "clear"
    assert header["HIERARCH CCDFLOW MASTER FLAT_4020LONGPASS+CLEAR"] == "flat_4020longpass+clear.fits"
    assert header["HIERARCH CCDFLOW MASTER FLAT_4020LONGPASS+CLEAR N"] == 1
    assert "HIERARCH CCDFLOW MASTER BIAS" not in header  # no bias listed
    assert "CHECKSUM" not in header and "DATASUM" not in header
    # the arc is combined on its own, with its own header
    arc = reduction.arc_hdu
    assert isinstance(arc, fits.PrimaryHDU)
    assert arc.data.shape == (254, 1024)
    assert arc.header["NCOMBINE"] == 1
    assert arc.header["INPUT001"] == ARC.name
    assert arc.header["OBJECT"] == fits.getheader(ARC)["OBJECT"]
    assert "HIERARCH CCDFLOW MASTER FLAT_4020LONGPASS+CLEAR" not in arc.header  # arcs: no flat


def test_sprat_arc_is_the_processed_arc_unchanged(sprat_run):
    reduction, _ = sprat_run
    np.testing.assert_allclose(reduction.arc_hdu.data, fits.getdata(ARC), rtol=1e-5, atol=1e-3)
    assert "DARKSCL" not in reduction.arc_hdu.header


# -- synthetic nights ------------------------------------------------------------------------------


def test_synthetic_mean_matches_clipped_oracle_and_truth(tmp_path):
    night = write_night(tmp_path / "night", instrument=INSTRUMENT, filters=("V",), n_light=3,
                        n_bias=3, n_dark=3, n_flat=3, seed=3)
    work = tmp_path / "work"
    reduction = ImageReduction(night.filelist, calibration=CALIBRATION, combine_method="mean",
                               work_dir=work)
    hdu = reduction.reduce()
    assert hdu.data.shape == (INSTRUMENT.ny, INSTRUMENT.nx)
    assert hdu.header["NCOMBINE"] == 3 and hdu.header["CMETHOD"] == "mean"
    assert hdu.header["EXPTOTAL"] == 360.0 and hdu.header["EXPMEAN"] == 120.0
    for name, n in (("BIAS", 3), ("DARK", 6), ("FLAT_V", 3)):  # darks at 60 s and 120 s
        assert hdu.header[f"HIERARCH CCDFLOW MASTER {name} N"] == n
    assert reduction.arc_hdu is None

    calibrated = sorted((work / "lights").glob("*.fits"))
    assert [p.stem for p in calibrated] == [p.stem for p in night.files["light"]]
    np.testing.assert_allclose(hdu.data, _clipped(calibrated), rtol=1e-5, atol=1e-3)

    # the truth: the lights' signal, regenerated with write_night's per-frame seeds
    n_before = 3 + 3 * 2 + 3  # biases, darks (two exposure times), flats precede the lights
    signals = [make_frame(night.truth, imagetyp="light", exptime=120.0, seed=int(
        np.random.SeedSequence([3, n_before + i]).generate_state(1)[0])).signal for i in range(3)]
    truth = np.mean(signals, axis=0)
    residual = hdu.data - truth
    # NaN only where every light flags the pixel (the bad-pixel mask's hot pixels)
    flagged = [fits.getdata(p, "MASK") != 0 for p in calibrated]
    np.testing.assert_array_equal(np.isnan(hdu.data), np.all(flagged, axis=0))
    assert np.mean(np.isnan(hdu.data)) < 0.01
    residual = residual[np.isfinite(residual)]
    assert abs(np.median(residual)) < 3.0  # ADU, on a sky of 400 ADU
    # noise of a mean of 3 (sky 400 ADU, gain 1.5: ~9 ADU) plus the masters' noise
    assert np.median(np.abs(residual)) < 15.0


def test_rerun_in_same_work_dir_combines_only_the_listed_lights(tmp_path):
    night = write_night(tmp_path / "night", instrument=INSTRUMENT, filters=("V", "R"), n_light=2,
                        **SMALL)
    work = tmp_path / "work"
    first = ImageReduction(night.filelist, calibration=CALIBRATION, work_dir=work).reduce_all()
    assert list(first) == [("V", "SYNTH FIELD"), ("R", "SYNTH FIELD")]
    assert [hdu.header["NCOMBINE"] for hdu in first.values()] == [2, 2]
    v_only = tmp_path / "night" / "v.csv"
    v_only.write_text("\n".join(line for line in night.filelist.read_text().splitlines()
                                if "_R_" not in line) + "\n")
    second = ImageReduction(v_only, calibration=CALIBRATION, combine_method="mean",
                            work_dir=work).reduce()
    assert second.header["NCOMBINE"] == 2
    assert [second.header[f"INPUT{i:03d}"] for i in (1, 2)] == [
        p.name for p in night.files["light"] if "_V_" in p.name]
    assert "HIERARCH CCDFLOW MASTER FLAT_R" not in second.header
    v_lights = sorted((work / "lights").glob("light_V_*.fits"))
    np.testing.assert_allclose(second.data, _clipped(v_lights), rtol=1e-5, atol=1e-3)


def test_same_file_name_in_two_folders(tmp_path):
    night = _small_night(tmp_path / "night", n_light=2)
    other = tmp_path / "night" / "other"
    other.mkdir()
    twin = other / night.files["light"][0].name
    twin.write_bytes(night.files["light"][1].read_bytes())
    with night.filelist.open("a") as f:
        f.write(f"light, {twin}\n")
    work = tmp_path / "work"
    hdu = ImageReduction(night.filelist, calibration=CALIBRATION, work_dir=work).reduce()
    assert hdu.header["NCOMBINE"] == 3
    assert [hdu.header[f"INPUT{i:03d}"] for i in (1, 2, 3)] == [
        "light_V_000.fits", "light_V_001.fits", "light_V_000.fits"]
    calibrated = sorted((work / "lights").glob("*.fits"))
    assert len(calibrated) == 3
    np.testing.assert_allclose(hdu.data, _clipped(calibrated, np.ma.median), rtol=1e-5, atol=1e-3)


def test_exposure_times_come_from_the_listed_hdu(tmp_path):
    night = _small_night(tmp_path / "night", n_light=2)
    # light 0 becomes an extension behind an empty primary that has no EXPTIME
    path = night.files["light"][0]
    with fits.open(path) as hdul:
        extension = fits.ImageHDU(hdul[0].data, header=hdul[0].header)
    mef = path.with_name("light_mef.fits")
    fits.HDUList([fits.PrimaryHDU(), extension]).writeto(mef)
    text = night.filelist.read_text().replace(f"raw/{path.name}", "raw/light_mef.fits, 1")
    night.filelist.write_text(text)
    hdu = ImageReduction(night.filelist, calibration=CALIBRATION, work_dir=tmp_path / "w").reduce()
    assert hdu.header["NCOMBINE"] == 2
    assert hdu.header["INPUT001"] == "light_mef.fits"
    assert hdu.header["EXPTOTAL"] == 240.0 and hdu.header["EXPMEAN"] == 120.0


# -- exports ---------------------------------------------------------------------------------------


def test_save_fits_round_trip(sprat_run, tmp_path):
    reduction, hdu = sprat_run
    out = reduction.save_fits(tmp_path / "reduced.fits")
    with fits.open(out) as hdul:
        assert [h.name for h in hdul] == ["PRIMARY", "ERROR"]
        np.testing.assert_array_equal(hdul[0].data, hdu.data)
        np.testing.assert_array_equal(hdul["ERROR"].data, reduction.error)
        assert hdul[0].header["NCOMBINE"] == 2
        assert hdul[0].header["OBJECT"] == "LHS6328"


def test_static_images(sprat_run, tmp_path):
    reduction, hdu = sprat_run
    height, width = hdu.data.shape
    # by default the picture has the image's aspect ratio
    bare = reduction.save_image(tmp_path / "bare.png")
    w, h = _png_size(bare)
    assert w / h == pytest.approx(width / height, rel=0.05)
    # a title sits in a strip above: same width, taller
    titled = reduction.save_image(tmp_path / "r.png", title="LHS 6328")
    w_t, h_t = _png_size(titled)
    assert w_t == w and h < h_t < h + 100
    for suffix, magic in ((".jpg", b"\xff\xd8\xff"), (".svg", b"<?xml"), (".pdf", b"%PDF")):
        path = reduction.save_image(tmp_path / f"r{suffix}")
        assert path.read_bytes().startswith(magic), suffix
    with pytest.raises(ConfigError, match=r"unsupported image suffix '\.gif'"):
        reduction.save_image(tmp_path / "r.gif")


def test_html_is_self_contained(sprat_run, tmp_path):
    reduction, _ = sprat_run
    page = reduction.to_html(tmp_path / "r.html").read_text()
    assert "<html" in page
    assert "Plotly" in page and len(page) > 1_000_000  # plotly.js inlined
    assert not re.search(r"<script[^>]*\bsrc=[\"']https?:", page)
    assert "LHS6328" in page  # the title


def test_json_is_a_plotly_heatmap_of_the_image(sprat_run):
    pio = pytest.importorskip("plotly.io")
    reduction, hdu = sprat_run
    text = reduction.to_json()
    raw = json.loads(text)
    fig = pio.from_json(text)
    trace = fig.data[0]
    assert trace.type == "heatmap" == raw["data"][0]["type"]
    z = trace.z
    if isinstance(z, dict):  # plotly >= 6: a base64 typed array
        shape = tuple(int(n) for n in str(z["shape"]).split(","))
        z = np.frombuffer(base64.b64decode(z["bdata"]), dtype=z["dtype"]).reshape(shape)
    z = np.asarray(z, dtype=np.float64)
    assert z.shape == hdu.data.shape
    np.testing.assert_allclose(z, hdu.data, rtol=1e-6, equal_nan=True)


# -- errors ----------------------------------------------------------------------------------------


def test_malformed_line_names_file_and_line(tmp_path):
    night = _small_night(tmp_path / "night", n_light=1)
    lines = night.filelist.read_text().splitlines()
    lines.insert(2, "light")  # line 3: one column
    night.filelist.write_text("\n".join(lines) + "\n")
    reduction = ImageReduction(night.filelist, work_dir=tmp_path / "work")
    with pytest.raises(ConfigError, match=re.escape(f"{night.filelist.resolve()}:3")):
        reduction.reduce()


def test_list_without_lights(tmp_path):
    night = _small_night(tmp_path / "night", n_light=0)
    reduction = ImageReduction(night.filelist, calibration=CALIBRATION, work_dir=tmp_path / "w")
    with pytest.raises(MissingCalibrationError, match="no light frame to reduce"):
        reduction.reduce()
    assert reduction.image_hdu is None


@pytest.mark.parametrize("compress", [False, True], ids=["fits", "fits.gz"])
def test_corrupt_light_is_named(tmp_path, compress):
    night = _small_night(tmp_path / "night", n_light=2)
    good = night.files["light"][0]
    data = good.read_bytes()
    if compress:
        data = gzip.compress(data)
    broken = good.with_name("broken.fits.gz" if compress else "broken.fits")
    broken.write_bytes(data[: len(data) // 2])
    with night.filelist.open("a") as f:
        f.write(f"light, {broken}\n")
    reduction = ImageReduction(night.filelist, calibration=CALIBRATION, work_dir=tmp_path / "w")
    with pytest.raises(CcdflowError, match=re.escape(str(broken))):
        reduction.reduce()
    assert reduction.report.failures.keys() == {str(broken)}


@pytest.mark.parametrize("method", ["sum", "mode"])
def test_unsupported_combine_method(tmp_path, method):
    with pytest.raises(ConfigError, match=rf"combine_method: expected 'median' or 'mean', got '{method}'"):
        ImageReduction(tmp_path / "night.csv", combine_method=method, work_dir=tmp_path / "w")


def test_save_image_reduces_first(tmp_path):
    night = _small_night(tmp_path / "night", n_light=2)
    reduction = ImageReduction(night.filelist, calibration=CALIBRATION, work_dir=tmp_path / "w")
    assert reduction.image_hdu is None
    path = reduction.save_image(tmp_path / "r.png")
    assert reduction.image_hdu is not None and reduction.report.ok
    assert reduction.image_hdu.data.shape == (INSTRUMENT.ny, INSTRUMENT.nx)
    width, height = _png_size(path)
    assert width == height >= 512  # a tiny square image is enlarged, its aspect kept


def test_plotting_libraries_are_imported_only_when_used():
    code = "import ccdflow.reduction, sys; print('matplotlib' in sys.modules, 'plotly' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


# -- one image per filter and object, no folder left behind ----------------------------------------


def test_several_filters_need_a_choice_and_reduce_one(tmp_path, monkeypatch):
    night = write_night(tmp_path / "night", instrument=INSTRUMENT, filters=("V", "R"), n_light=2,
                        **SMALL)
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    reduction = ImageReduction(night.filelist, calibration=CALIBRATION)
    with pytest.raises(ConfigError, match=r"^filter: the file list has lights of several filters or "
                                          r"objects: \(filter='V', object='SYNTH FIELD'\), "
                                          r"\(filter='R', object='SYNTH FIELD'\); choose one"):
        reduction.reduce()
    with pytest.raises(ConfigError, match=r"^filter: no light with filter='B', object=None"):
        reduction.reduce(filter="B")
    hdu = reduction.reduce(filter="R")
    assert hdu.header["FILTER"] == "R" and hdu.header["NCOMBINE"] == 2
    assert [hdu.header["INPUT001"], hdu.header["INPUT002"]] == ["light_R_000.fits", "light_R_001.fits"]
    kept = ImageReduction(night.filelist, calibration=CALIBRATION, work_dir=tmp_path / "w")
    np.testing.assert_array_equal(kept.reduce(filter="R", object="SYNTH FIELD").data, hdu.data)
    r_lights = sorted((tmp_path / "w" / "lights").glob("light_R_*.fits"))
    np.testing.assert_allclose(hdu.data, _clipped(r_lights, np.ma.median), rtol=1e-5, atol=1e-3)
    assert list(temporary.iterdir()) == []  # the work folder went with the call
    images = reduction.reduce_all()
    assert {key: h.header["FILTER"] for key, h in images.items()} == {
        ("V", "SYNTH FIELD"): "V", ("R", "SYNTH FIELD"): "R"}
    np.testing.assert_array_equal(images[("R", "SYNTH FIELD")].data, hdu.data)
    assert reduction.errors[("V", "SYNTH FIELD")].shape == hdu.data.shape
    assert list(temporary.iterdir()) == []


def test_sections_come_from_the_headers_unless_given(tmp_path):
    night = _small_night(tmp_path / "night", n_light=1)
    hdu = ImageReduction(night.filelist, work_dir=tmp_path / "a").reduce()
    assert hdu.data.shape == (INSTRUMENT.ny, INSTRUMENT.nx)  # BIASSEC and TRIMSEC applied
    assert hdu.header["OVSCAREA"] == INSTRUMENT.biassec and hdu.header["IMAGAREA"] == INSTRUMENT.datasec
    raw_shape = fits.getdata(night.files["light"][0]).shape
    whole = {"overscans": [], "image_area": {"xmin": 0, "xmax": raw_shape[1], "ymin": 0,
                                             "ymax": raw_shape[0]}}
    explicit = ImageReduction(night.filelist, calibration=whole, work_dir=tmp_path / "b").reduce()
    assert explicit.data.shape == raw_shape and explicit.header["OVSCAREA"] == "none"
