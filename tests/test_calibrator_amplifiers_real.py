"""The `Calibrator` on real multi-amplifier frames: Kast (layout from an instrument file or from
amplifier dicts) and SAMI (layout from its per-extension headers, gain 'unavail').

Every expected image is computed here with plain numpy straight from the raw pixels and the
section strings of the README and the headers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from ccdflow import Calibrator
from conftest import grouped_median

DATA = Path(__file__).parent / "data"
KAST = DATA / "kast"
SAMI = DATA / "sami"
KAST_YAML = Path(__file__).parents[1] / "src" / "ccdflow" / "configs" / "instruments" / "kast_blue.yaml"
# the layout the Kast data README gives, as 0-based column ranges (data, overscan)
KAST_AMPS = ((slice(0, 1024), slice(2049, 2080)), (slice(1024, 2048), slice(2080, 2111)))


def _kast_dicts(gain2: float = 1.2) -> list[dict]:
    return [dict(data="[1:1024,1:350]", overscan="[2050:2080,1:350]", gain=1.2, read_noise=3.7),
            dict(data="[1025:2048,1:350]", overscan="[2081:2111,1:350]", gain=gain2,
                 read_noise=3.7)]


def _section(text: str) -> tuple[tuple[int, int], tuple[int, int]]:
    """((x1, x2), (y1, y2)) of a FITS section string, 1-based inclusive, as written."""
    x, y = text.strip()[1:-1].split(",")
    return tuple(int(v) for v in x.split(":")), tuple(int(v) for v in y.split(":"))


def _span(pair: tuple[int, int], binning: int = 1) -> tuple[slice, bool]:
    """0-based slice of a 1-based inclusive range (binned), and whether it is written reversed."""
    lo, hi = sorted(pair)
    return slice((lo - 1) // binning, hi // binning), pair[0] > pair[1]


def test_kast_amplifier_dicts_give_the_instrument_file_result_exactly():
    raw_path = KAST / "b21.fits.gz"
    by_file = Calibrator(amplifiers=KAST_YAML)(raw=raw_path)
    by_dicts = Calibrator(amplifiers=_kast_dicts())(raw=raw_path)
    np.testing.assert_array_equal(by_dicts.data, by_file.data)
    np.testing.assert_array_equal(by_dicts.uncertainty.array, by_file.uncertainty.array)
    np.testing.assert_array_equal(by_dicts.mask, by_file.mask)
    assert by_file.meta["GAIN2"] == by_dicts.meta["GAIN2"] == 1.2
    assert "instrument file" in by_file.meta.comments["GAIN2"]
    assert "config" in by_dicts.meta.comments["GAIN2"]
    # the raw GAIN = 1 is Kast's gain index, not the 1.2 e-/ADU used: it must not survive
    assert fits.getheader(raw_path)["GAIN"] == 1 and "GAIN" not in by_file.meta
    # and both are each amplifier minus the grouped median of its own overscan strip
    raw = fits.getdata(raw_path).astype(np.float64)
    assert by_file.data.shape == (350, 2048)
    for data, overscan in KAST_AMPS:
        expected = raw[:, data] - grouped_median(raw[:, overscan])
        np.testing.assert_allclose(by_file.data[:, data], expected, atol=1e-3)


def test_kast_in_electrons_is_the_adu_result_times_each_amplifiers_gain():
    raw_path = KAST / "b21.fits.gz"
    adu = Calibrator(amplifiers=KAST_YAML)(raw=raw_path)
    electrons = Calibrator(amplifiers=KAST_YAML, units="electron")(raw=raw_path)
    assert (adu.meta["BUNIT"], electrons.meta["BUNIT"]) == ("adu", "electron")
    np.testing.assert_allclose(electrons.data, adu.data * np.float32(1.2), rtol=1e-6, atol=1e-4)
    # two different gains: each amplifier scaled by its own, so a swap or a shared gain would fail
    adu2 = Calibrator(amplifiers=_kast_dicts(gain2=1.5))(raw=raw_path)
    e2 = Calibrator(amplifiers=_kast_dicts(gain2=1.5), units="electron")(raw=raw_path)
    for (data, _), gain in zip(KAST_AMPS, (1.2, 1.5), strict=True):
        np.testing.assert_allclose(e2.data[:, data], adu2.data[:, data] * np.float32(gain),
                                   rtol=1e-6, atol=1e-4)
    print("\nKast b21 median per amplifier (ADU -> e-, gains 1.2 and 1.5): " + ", ".join(
        f"{np.median(adu2.data[:, d]):.3f} -> {np.median(e2.data[:, d]):.3f}" for d, _ in KAST_AMPS))


@pytest.mark.parametrize("name", ["sami_bias_20170331_4x4", "sami_domeflat_20160401_4x4"])
def test_sami_headers_assemble_the_amplifiers_where_detsec_and_ccdsum_say(name):
    path = SAMI / f"{name}.fits.gz"
    product = Calibrator(gain=2.1)(raw=path)  # the layout comes from the headers by default
    assert product.data.shape == (1028, 1024)  # 4 amps of 512 x 514 binned pixels, 2 x 2
    header = product.meta
    with fits.open(path) as hdul:
        assert [h.name.lower() for h in hdul[1:]] == ["im1", "im2", "im3", "im4"]
        covered = np.zeros(product.data.shape, bool)
        for i, hdu in enumerate(hdul[1:], start=1):
            raw = hdu.data.astype(np.float64)
            bx, by = (int(v) for v in hdu.header["CCDSUM"].split())
            (dx, dy), (tx, ty) = _section(hdu.header["DATASEC"]), _section(hdu.header["DETSEC"])
            (ox, oy) = _section(hdu.header["BIASSEC"])
            (sx, fx_data), (sy, fy_data) = _span(dx), _span(dy)
            (px, fx_det), (py, fy_det) = _span(tx, bx), _span(ty, by)
            expected = raw[sy, sx] - grouped_median(raw[_span(oy)[0], _span(ox)[0]])
            if fx_data != fx_det:
                expected = expected[:, ::-1]
            if fy_data != fy_det:
                expected = expected[::-1]
            assert expected.shape == (514, 512)
            np.testing.assert_allclose(product.data[py, px], expected, atol=2e-3)
            covered[py, px] = True
            assert header[f"AMPNAM{i}"] == hdu.name.lower()
            assert header[f"GAIN{i}"] == 2.1 and "config" in header.comments[f"GAIN{i}"]
            assert "GAIN='unavail'" in header.comments[f"GAIN{i}"]
    assert covered.all()  # the four blocks tile the detector
    # the WCS comes from im1, whose first data column (17) is the product's first column
    im1 = fits.getheader(path, 1)
    assert header["CRPIX1"] == im1["CRPIX1"] - 16 and header["CRPIX2"] == im1["CRPIX2"]
    assert header["CCDSUM"] == "4 4" and header["NAMPS"] == 4
    assert "GAIN" not in header  # the raw value is 'unavail' and the product's gain is per amp
