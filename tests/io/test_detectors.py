from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from ccdflow.array.calibration import CalibrationParams, Masters, calibrate_array
from ccdflow.array.sections import Region
from ccdflow.errors import ConfigError, FrameError, FrameReadError
from ccdflow.io.detectors import (
    Fallbacks,
    detectors_from_hdul,
    load_instrument,
    parse_binning,
    parse_section,
    read_detectors,
)
from ccdflow.synthetic.amplifiers import make_amplifier_frame


def _assembled(raws, detector, **params):
    """Overscan-corrected, trimmed and assembled: calibrated without any master."""
    return calibrate_array(raws, params=CalibrationParams(detector=detector, **params),
                           masters=Masters())[0]

DATA = Path(__file__).parents[1] / "data"
KAST_YAML = Path(__file__).parents[2] / "src" / "ccdflow" / "configs" / "instruments" / "kast_blue.yaml"


def _image(header, shape=(4, 20)):
    return fits.HDUList([fits.PrimaryHDU(np.zeros(shape, np.uint16), fits.Header(header))])


def test_parse_section_reads_reversed_ranges():
    assert parse_section("[2048:1025,1:2056]") == (Region(xmin=1024, xmax=2048, ymin=0, ymax=2056),
                                                   True, False)
    assert parse_section("[1:4,8:5]")[2] is True
    with pytest.raises(ConfigError, match="DATASEC: not a FITS section"):
        parse_section("1:4,1:3", key="DATASEC")
    with pytest.raises(ConfigError, match="CCDSUM"):
        parse_binning("2x2")
    assert parse_binning(None) == (1, 1)


def test_lettered_keys_with_binning_and_a_reversed_detsec():
    header = {"CCDSUM": "2 2", "DATASECA": "[1:8,1:4]", "BIASSECA": "[9:10,1:4]",
              "DETSECA": "[1:16,1:8]", "DATASECB": "[13:20,1:4]", "BIASSECB": "[11:12,1:4]",
              "DETSECB": "[32:17,1:8]", "GAINA": 1.5, "GAINB": "unavail", "RDNOISEA": 4.0,
              "SATURATB": 50000}
    (det,) = detectors_from_hdul(_image(header), fallbacks=Fallbacks(gain=2.0))
    a, b = det.amplifiers
    assert det.shape == (4, 16) and det.binning == (2, 2)
    assert a.destination == Region(xmin=0, xmax=8, ymin=0, ymax=4) and not a.flip_x
    assert b.destination == Region(xmin=8, xmax=16, ymin=0, ymax=4) and b.flip_x
    assert b.overscans == (Region(xmin=10, xmax=12, ymin=0, ymax=4),)
    assert (a.gain, a.gain_source) == (1.5, "header GAINA")
    assert (b.gain, b.gain_source) == (2.0, "config (header GAINB='unavail')")
    assert (b.read_noise, b.read_noise_source) == (0.0, "default")
    assert (b.saturation, b.saturation_source) == (50000.0, "header SATURATB")


def test_per_extension_keys_grouped_by_ccd():
    hdus = [fits.PrimaryHDU()]
    for ccd, x in (("left", 1), ("right", 101)):
        for amp, (y1, y2) in enumerate(((1, 4), (8, 5))):  # second amplifier read upside down
            hdus.append(fits.ImageHDU(np.zeros((4, 6), np.uint16), fits.Header({
                "CCDNAME": ccd, "DATASEC": "[1:5,1:4]", "BIASSEC": "[6:6,1:4]",
                "DETSEC": f"[{x}:{x + 4},{y1}:{y2}]", "CCDSUM": "1 1", "GAIN": 1.0 + amp,
                "RDNOISE": "5.5"}), name=f"{ccd}{amp}"))
    left, right = detectors_from_hdul(fits.HDUList(hdus))
    assert (left.name, right.name) == ("left", "right")
    assert left.shape == right.shape == (8, 5)
    assert [a.hdu for a in right.amplifiers] == [3, 4]
    assert [a.flip_y for a in left.amplifiers] == [False, True]
    assert right.amplifiers[1].destination == Region(xmin=0, xmax=5, ymin=4, ymax=8)
    assert right.amplifiers[1].read_noise == 5.5 and right.amplifiers[1].gain == 2.0


def test_plain_header_is_one_amplifier():
    (det,) = detectors_from_hdul(_image({"DATASEC": "[1:16,1:4]", "BIASSEC": "[17:20,1:4]",
                                         "GAIN": 2.5}))
    (amp,) = det.amplifiers
    assert det.shape == (4, 16) and amp.overscans[0].xmin == 16
    assert (amp.gain, amp.gain_source) == (2.5, "header GAIN")


@pytest.mark.parametrize(("header", "match"), [
    ({"DATASECA": "[1:8,1:4", "DETSECA": "[1:8,1:4]"}, r"<memory>\[0\]: DATASECA"),
    ({"DATASECA": "[1:8,1:4]", "DETSECA": "[1:9,1:4]"}, "differs"),
    ({"DATASECA": "[1:8,1:4]", "DETSECA": "[1:15,1:8]", "CCDSUM": "2 2"}, "whole number"),
    ({"DATASECA": "[1:8,1:4]", "DETSECA": "[1:8,1:4]", "CCDSUM": "two"}, "CCDSUM"),
])
def test_bad_headers_raise_frame_errors_naming_file_and_key(header, match):
    with pytest.raises(FrameError, match=match):
        detectors_from_hdul(_image(header))


def test_missing_file_is_a_read_error(tmp_path):
    with pytest.raises(FrameReadError, match="nothing.fits"):
        read_detectors(tmp_path / "nothing.fits")


@pytest.mark.parametrize("layout", ["lettered", "extensions"])
@pytest.mark.parametrize("binning", [1, 4])
def test_synthetic_headers_describe_the_true_layout(layout, binning, tmp_path):
    frame = make_amplifier_frame(layout=layout, seed=0, binning=binning, amp_shape=(6, 5))
    path = tmp_path / "raw.fits"
    frame.hdul.writeto(path)
    (det,) = read_detectors(path)
    assert det.layout_key == frame.detector.layout_key
    assert [a.gain for a in det.amplifiers] == [a.gain for a in frame.detector.amplifiers]
    assert all(a.gain_source.startswith("header GAIN") for a in det.amplifiers)


def test_instrument_file_round_trip_and_errors(tmp_path):
    kast = load_instrument(KAST_YAML)
    assert kast.name == "kast_blue" and kast.shape == (350, 2048)
    assert [(a.gain, a.read_noise) for a in kast.amplifiers] == [(1.2, 3.7), (1.2, 3.7)]
    assert {a.gain_source for a in kast.amplifiers} == {"instrument file"}
    assert kast.amplifiers[1].overscans == (Region(xmin=2080, xmax=2111, ymin=0, ymax=350),)
    bad = tmp_path / "bad.yaml"
    bad.write_text(KAST_YAML.read_text().replace('destination: "[1025:2048,1:350]"',
                                                 'destination: "[1000:2023,1:350]"'))
    with pytest.raises(ConfigError, match=r"bad.yaml: .*overlaps amplifier 1"):
        load_instrument(bad)
    bad.write_text("name: x\nshape: [1, 1]\namplifiers:\n  - {name: a, data: '[1:1,1:1]', "
                   "destination: '[1:1,1:1]', gain_source: config}\n")
    with pytest.raises(ConfigError, match=r"amplifiers\[0\]\.gain_source"):
        load_instrument(bad)
    with pytest.raises(ConfigError, match="cannot read instrument file"):
        load_instrument(tmp_path / "missing.yaml")


def test_kast_bias_amplifiers_agree_after_their_own_overscan():
    kast = load_instrument(KAST_YAML)
    raw = fits.getdata(DATA / "kast" / "b21.fits.gz").astype(np.float32)
    (header_only,) = read_detectors(DATA / "kast" / "b21.fits.gz")
    assert len(header_only.amplifiers) == 1  # the header alone does not know the two amplifiers
    one, two = kast.amplifiers
    before = float(raw[two.data.slices].mean() - raw[one.data.slices].mean())
    image = _assembled({0: raw}, kast)
    after = float(image[two.destination.slices].mean() - image[one.destination.slices].mean())
    assert 15 < before < 30  # the two pedestals, about 22 ADU apart
    assert abs(after) < 1.0


@pytest.mark.parametrize("name", ["sami_bias_20170331_4x4", "sami_domeflat_20160401_4x4"])
def test_sami_assembles_as_detsec_and_ccdsum_say(name):
    path = DATA / "sami" / f"{name}.fits.gz"
    (det,) = read_detectors(path, fallbacks=Fallbacks(gain=2.1))
    assert det.shape == (1028, 1024) and det.binning == (4, 4)  # DETSEC spans 4096 x 4112
    for amp in det.amplifiers:
        assert amp.shape == (514, 512)  # DATASEC [17:528,1:514]: 2048 x 2056 unbinned
        assert (amp.gain, amp.gain_source) == (2.1, "config (header GAIN='unavail')")
        assert amp.read_noise_source == "default (header RDNOISE='unavail')"
    with fits.open(path) as hdul:
        raws = {h: hdul[h].data.astype(np.float32) for h in det.hdus}
        headers = {h: hdul[h].header for h in det.hdus}
    image = _assembled(raws, det, overscan_method="mean")
    assert not np.isnan(image).any()
    for h, header in headers.items():  # independent placement straight from the strings
        (dx1, dx2), (dy1, dy2) = (map(int, p.split(":")) for p in header["DATASEC"][1:-1].split(","))
        (tx1, tx2), (ty1, ty2) = (map(int, p.split(":")) for p in header["DETSEC"][1:-1].split(","))
        bx1, bx2 = (int(v) for v in header["BIASSEC"][1:-1].split(",")[0].split(":"))
        level = raws[h][:, bx1 - 1:bx2].mean(dtype=np.float64)
        expected = raws[h][dy1 - 1:dy2, dx1 - 1:dx2] - level
        got = image[(ty1 - 1) // 4:ty2 // 4, (tx1 - 1) // 4:tx2 // 4]
        np.testing.assert_allclose(got, expected, atol=0.01)
    if "flat" in name:  # illumination continues across the amplifier seams (edge columns excluded)
        left, right = np.median(image[50:450, 505:510]), np.median(image[50:450, 514:519])
        assert abs(right / left - 1) < 0.05
