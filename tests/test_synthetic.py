import io
import re

import numpy as np
import pytest
from astropy.io import fits

from ccdflow.synthetic import (
    Instrument,
    SyntheticFrame,
    Truth,
    make_frame,
    make_truth,
    write_night,
)

INST = Instrument(ny=64, nx=64, n_overscan=16)
RN_ADU = INST.read_noise / INST.gain


@pytest.fixture(scope="module")
def truth() -> Truth:
    return make_truth(INST, filters=("V", "R"), seed=3)


def _region(data: np.ndarray, region: dict[str, int]) -> np.ndarray:
    return data[region["ymin"]:region["ymax"], region["xmin"]:region["xmax"]]


def _debiased(frame: SyntheticFrame) -> np.ndarray:
    """Image area minus the per-row overscan median (columns overscan)."""
    data = frame.hdu.data.astype(np.float64)
    over = np.median(_region(data, INST.overscan_region), axis=1)
    return _region(data, INST.image_region) - over[:, None]


def _to_bytes(hdu: fits.PrimaryHDU) -> bytes:
    buffer = io.BytesIO()
    hdu.writeto(buffer)
    return buffer.getvalue()


def _parse_section(section: str) -> dict[str, int]:
    x1, x2, y1, y2 = map(int, re.fullmatch(r"\[(\d+):(\d+),(\d+):(\d+)\]", section).groups())
    return dict(xmin=x1 - 1, xmax=x2, ymin=y1 - 1, ymax=y2)


# --- determinism ---------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["bias", "dark", "flat", "light"])
def test_same_seed_gives_identical_bytes(kind: str) -> None:
    a = make_frame(make_truth(INST, seed=1), imagetyp=kind, exptime=30.0, seed=7)
    b = make_frame(make_truth(INST, seed=1), imagetyp=kind, exptime=30.0, seed=7)
    assert _to_bytes(a.hdu) == _to_bytes(b.hdu)
    np.testing.assert_array_equal(a.cosmic_rays, b.cosmic_rays)


def test_different_seed_gives_different_data(truth: Truth) -> None:
    a = make_frame(truth, imagetyp="light", exptime=60.0, filter="V", seed=1)
    b = make_frame(truth, imagetyp="light", exptime=60.0, filter="V", seed=2)
    assert not np.array_equal(a.hdu.data, b.hdu.data)
    # the star field belongs to the object, not to the frame: lights of one field stack
    np.testing.assert_array_equal(a.signal, b.signal)
    assert not np.array_equal(make_truth(INST, seed=1).bias, make_truth(INST, seed=2).bias)


def test_flat_of_a_filter_does_not_depend_on_the_other_filters() -> None:
    both = make_truth(INST, filters=("V", "R"), seed=5)
    alone = make_truth(INST, filters=("V",), seed=5)
    np.testing.assert_array_equal(both.flats["V"], alone.flats["V"])
    assert not np.array_equal(both.flats["V"], both.flats["R"])


# --- files and headers ---------------------------------------------------------------------------

def test_headers(truth: Truth) -> None:
    light = make_frame(truth, imagetyp="LIGHT", exptime=120.0, filter="R", seed=4,
                       date_obs="2024-05-06T22:00:00.000", object="M 67")
    header = light.hdu.header
    expected = {
        "IMAGETYP": "LIGHT", "OBSTYPE": "LIGHT", "EXPTIME": 120.0, "FILTER": "R",
        "OBJECT": "M 67", "GAIN": 1.5, "RDNOISE": 5.0, "BIASSEC": "[65:80,1:64]",
        "DATASEC": "[1:64,1:64]", "TRIMSEC": "[1:64,1:64]", "SATURATE": 65535,
        "DATE-OBS": "2024-05-06T22:00:00.000", "INSTRUME": "CCDFLOW-SYNTH",
    }
    for key, value in expected.items():
        assert header[key] == value, key
    assert header["MJD-OBS"] == pytest.approx(60436.0 + 22 / 24)
    bias = make_frame(truth, imagetyp="bias", exptime=10.0, seed=4).hdu.header
    assert bias["IMAGETYP"] == "BIAS" and bias["EXPTIME"] == 0.0
    assert "FILTER" not in bias and "OBJECT" not in bias
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}", bias["DATE-OBS"])
    assert "FILTER" in make_frame(truth, imagetyp="flat", filter="V", seed=4).hdu.header


def test_file_reads_back_as_uint16_with_bzero(truth: Truth, tmp_path) -> None:
    frame = make_frame(truth, imagetyp="flat", exptime=5.0, filter="V", seed=9)
    path = tmp_path / "flat.fits"
    frame.hdu.writeto(path)
    with fits.open(path) as hdul:
        assert hdul[0].header["BITPIX"] == 16
        assert hdul[0].header["BZERO"] == 32768
        data = hdul[0].data
        assert data.dtype == np.uint16
        assert data.shape == INST.raw_shape == (64, 80)
        np.testing.assert_array_equal(data, frame.hdu.data)
    with fits.open(path, do_not_scale_image_data=True) as hdul:
        assert hdul[0].data.dtype == np.dtype(">i2")


def test_saturation_clips(truth: Truth) -> None:
    low = make_truth(Instrument(ny=32, nx=32, saturation=3000), seed=0)
    frame = make_frame(low, imagetyp="flat", seed=1)
    assert frame.hdu.data.max() == 3000
    light = make_frame(truth, imagetyp="light", exptime=300.0, filter="V", seed=1)
    # by default even a 300 s light stays well below saturation (cosmic rays aside)
    assert _region(light.hdu.data, INST.image_region)[~light.cosmic_rays].max() < 40000


# --- statistics against the truth ----------------------------------------------------------------

def test_master_bias_equals_truth_bias(truth: Truth) -> None:
    n = 30
    mean = np.mean([_debiased(make_frame(truth, imagetyp="bias", seed=s)) for s in range(n)],
                   axis=0)
    residual = mean - truth.bias
    # per pixel: read noise and rounding; per row: the overscan median (~1.25 RN / sqrt(16))
    sigma = np.sqrt(RN_ADU**2 + 1 / 12 + (1.2533 * RN_ADU / 4) ** 2) / np.sqrt(n)
    assert abs(residual.mean()) < 0.1
    assert residual.std() < 1.2 * sigma
    assert np.abs(residual).max() < 5 * sigma
    assert np.corrcoef(mean.ravel(), truth.bias.ravel())[0, 1] > 0.9


def test_long_dark_minus_bias_is_dark_rate_times_t(truth: Truth) -> None:
    t = 1000.0
    dark = make_frame(truth, imagetyp="dark", exptime=t, seed=11, n_cosmics=5)
    bias = make_frame(truth, imagetyp="bias", seed=12)
    assert dark.signal is None and dark.cosmic_rays.any()
    diff = _debiased(dark) - _debiased(bias)
    expected = truth.dark_rate * t
    good = ~dark.cosmic_rays
    assert (diff - expected)[good].mean() == pytest.approx(0.0, abs=1.0)
    assert diff[good].mean() == pytest.approx(expected[good].mean(), rel=0.05)
    hot = truth.dark_rate > 20 * np.median(truth.dark_rate)
    assert hot.any()
    np.testing.assert_allclose(diff[hot & good], expected[hot & good],
                               atol=0, rtol=0.2)
    assert (diff[dark.cosmic_rays] - expected[dark.cosmic_rays]).min() > 1000


def test_flat_over_its_mean_is_the_truth_flat(truth: Truth) -> None:
    frame = make_frame(truth, imagetyp="flat", exptime=5.0, filter="R", seed=21)
    assert not frame.cosmic_rays.any()
    np.testing.assert_array_equal(frame.signal, 20000.0)
    image = _debiased(frame) - truth.bias - truth.dark_rate * 5.0
    residual = image / image.mean() - truth.flats["R"]
    sigma = np.sqrt(20000.0 / INST.gain) / 20000.0
    assert residual.std() < 1.2 * sigma
    assert np.abs(residual).max() < 6 * sigma


def test_read_noise_in_the_overscan(truth: Truth) -> None:
    over = np.stack([_region(make_frame(truth, imagetyp="light", exptime=60.0, filter="V",
                                        seed=s).hdu.data, INST.overscan_region) for s in range(10)])
    over = over.astype(np.float64)
    resid = over - over.mean(axis=2, keepdims=True)
    n = INST.n_overscan
    measured = np.sqrt((resid**2).sum() / (resid.size * (n - 1) / n))
    assert measured == pytest.approx(np.sqrt(RN_ADU**2 + 1 / 12), rel=0.05)
    # nothing but pedestal and read noise there: no bias structure, light or cosmic rays
    rows = over.mean(axis=(0, 2))
    np.testing.assert_allclose(rows - rows.mean(),
                               INST.pedestal_profile() - INST.pedestal_profile().mean(), atol=0.8)


def test_poisson_variance_of_a_flat(truth: Truth) -> None:
    level = 20000.0
    a = make_frame(truth, imagetyp="flat", exptime=5.0, filter="V", seed=31, flat_level=level)
    b = make_frame(truth, imagetyp="flat", exptime=5.0, filter="V", seed=32, flat_level=level)
    diff = (_region(a.hdu.data.astype(float), INST.image_region)
            - _region(b.hdu.data.astype(float), INST.image_region))
    variance = diff.var() / 2
    expected = level / INST.gain + RN_ADU**2 + 1 / 12
    assert variance == pytest.approx(expected, rel=0.08)


def test_calibrating_a_light_with_the_truth_recovers_its_signal(truth: Truth) -> None:
    t = 120.0
    frame = make_frame(truth, imagetyp="light", exptime=t, filter="V", seed=41, n_cosmics=6)
    assert frame.cosmic_rays.sum() >= 6
    calibrated = (_debiased(frame) - truth.bias - truth.dark_rate * t) / truth.flats["V"]
    assert np.median(frame.signal) == pytest.approx(200.0 * t / 60, rel=0.05)
    assert frame.signal.max() > 2 * np.median(frame.signal)  # stars
    x = frame.signal * truth.flats["V"] + truth.dark_rate * t
    sigma = np.sqrt(x / INST.gain + RN_ADU**2 + (1.2533 * RN_ADU / 4) ** 2) / truth.flats["V"]
    pull = ((calibrated - frame.signal) / sigma)[~frame.cosmic_rays]
    assert abs(pull.mean()) < 0.1
    assert 0.9 < pull.std() < 1.15


# --- truth, instrument geometry ------------------------------------------------------------------

def test_truth_shapes_and_normalised_flats(truth: Truth) -> None:
    assert truth.instrument is INST
    for array in (truth.bias, truth.dark_rate, *truth.flats.values()):
        assert array.shape == (64, 64) and array.dtype == np.float64
        assert not array.flags.writeable
    for flat in truth.flats.values():
        assert flat.mean() == pytest.approx(1.0, abs=1e-12)
        corners = np.mean([flat[0, 0], flat[0, -1], flat[-1, 0], flat[-1, -1]])
        assert corners / flat[28:36, 28:36].mean() == pytest.approx(0.75, abs=0.05)
    hot = truth.dark_rate > 20 * np.median(truth.dark_rate)
    assert 0 < hot.mean() < 0.01
    assert np.median(truth.dark_rate) == pytest.approx(0.05 / 1.5, rel=0.1)


def test_row_overscan_comes_first() -> None:
    inst = Instrument(ny=32, nx=48, n_overscan=8, overscan="rows")
    assert inst.raw_shape == (40, 48)
    assert inst.overscan_region == dict(xmin=0, xmax=48, ymin=0, ymax=8)
    assert inst.image_region == dict(xmin=0, xmax=48, ymin=8, ymax=40)
    assert inst.biassec == "[1:48,1:8]" and inst.datasec == "[1:48,9:40]"
    frame = make_frame(make_truth(inst), imagetyp="flat", exptime=1.0, seed=0)
    data = frame.hdu.data.astype(float)
    assert data.shape == (40, 48)
    overscan_level = _region(data, inst.overscan_region).mean()
    assert abs(overscan_level - inst.pedestal) < 3 * inst.pedestal_jitter
    assert _region(data, inst.image_region).mean() > inst.pedestal + 15000


@pytest.mark.parametrize("overscan", ["columns", "rows"])
@pytest.mark.parametrize(("ny", "nx", "n_os"), [(64, 64, 16), (20, 35, 3), (1, 1, 1)])
def test_regions_and_sections_agree(overscan: str, ny: int, nx: int, n_os: int) -> None:
    inst = Instrument(ny=ny, nx=nx, n_overscan=n_os, overscan=overscan)
    assert _parse_section(inst.biassec) == inst.overscan_region
    assert _parse_section(inst.datasec) == inst.image_region
    covered = np.zeros(inst.raw_shape, dtype=int)
    _region(covered, inst.overscan_region)[...] += 1
    _region(covered, inst.image_region)[...] += 1
    np.testing.assert_array_equal(covered, 1)
    assert _region(covered, inst.image_region).shape == (ny, nx)


def test_instrument_to_dict_round_trips_and_validates() -> None:
    inst = Instrument(ny=10, nx=12, overscan="rows", gain=2.0)
    assert Instrument.from_dict(inst.to_dict()) == inst
    assert inst.to_dict()["overscan"] == "rows"
    with pytest.raises(ValueError, match="overscan"):
        Instrument(overscan="left")
    with pytest.raises(ValueError, match="gain"):
        Instrument(gain=0.0)


def test_make_frame_rejects_bad_input(truth: Truth) -> None:
    with pytest.raises(ValueError, match="imagetyp"):
        make_frame(truth, imagetyp="arc", seed=0)
    with pytest.raises(ValueError, match="filter 'B'"):
        make_frame(truth, imagetyp="light", filter="B", seed=0)
    with pytest.raises(ValueError, match="filter None"):
        make_frame(truth, imagetyp="flat", seed=0)  # two filters: must say which
    with pytest.raises(ValueError, match="exptime"):
        make_frame(truth, imagetyp="dark", exptime=-1.0, seed=0)
    with pytest.raises(ValueError, match="ISO"):
        make_frame(truth, imagetyp="bias", seed=0, date_obs="yesterday")


def test_bias_has_no_signal_nor_cosmics(truth: Truth) -> None:
    frame = make_frame(truth, imagetyp="Bias", seed=3, n_cosmics=50)
    assert frame.signal is None
    assert not frame.cosmic_rays.any()


# --- a night on disk -----------------------------------------------------------------------------

def test_write_night(tmp_path) -> None:
    inst = Instrument(ny=32, nx=32, n_overscan=8)
    night = write_night(tmp_path / "night", instrument=inst, n_bias=2, n_dark=2,
                        dark_exptimes=(60.0, 2.5), n_flat=2, n_light=1, seed=4)
    raw = tmp_path / "night" / "raw"
    names = {kind: [p.name for p in paths] for kind, paths in night.files.items()}
    assert names == {
        "bias": ["bias_000.fits", "bias_001.fits"],
        "dark": ["dark_060s_000.fits", "dark_060s_001.fits", "dark_2p5s_000.fits",
                 "dark_2p5s_001.fits"],
        "flat": ["flat_V_000.fits", "flat_V_001.fits", "flat_R_000.fits", "flat_R_001.fits"],
        "light": ["light_V_000.fits", "light_R_000.fits"],
    }
    assert sorted(p.name for p in raw.iterdir()) == sorted(sum(names.values(), []))
    assert night.truth.instrument == inst and set(night.truth.flats) == {"V", "R"}

    lines = night.filelist.read_text().splitlines()
    assert night.filelist == tmp_path / "night" / "night.csv"
    assert lines[0] == "# ccdflow synthetic night"
    rows = [[field.strip() for field in line.split(",")] for line in lines[1:]]
    assert all(len(row) == 2 for row in rows)
    assert [kind for kind, _ in rows] == ["bias"] * 2 + ["dark"] * 4 + ["flat"] * 4 + ["light"] * 2
    seeds = set()
    for kind, rel in rows:
        assert rel.startswith("raw/")
        with fits.open(night.filelist.parent / rel) as hdul:
            header = hdul[0].header
            assert header["IMAGETYP"] == kind.upper()
            assert hdul[0].data.shape == inst.raw_shape
            seeds.add(header["SYNSEED"])
            if kind in ("flat", "light"):
                assert rel.split("_")[1] == header["FILTER"]
            if kind == "dark":
                assert header["EXPTIME"] in (60.0, 2.5)
    assert len(seeds) == len(rows)  # every frame its own seed

    again = write_night(tmp_path / "again", instrument=inst, n_bias=2, n_dark=2,
                        dark_exptimes=(60.0, 2.5), n_flat=2, n_light=1, seed=4)
    for a, b in zip(night.files["light"], again.files["light"], strict=True):
        assert a.read_bytes() == b.read_bytes()
