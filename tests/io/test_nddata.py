"""CCDData, arrays and Quantities in the Calibrator; read_product; ccdproc masters in read_master."""

from __future__ import annotations

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData, StdDevUncertainty

from ccdflow import read_product
from ccdflow.calibrator import Calibrator
from ccdflow.errors import ConfigError
from ccdflow.io.products import read_master
from conftest import error_with_poisson

NY, NX = 12, 16
AREA = dict(xmin=0, xmax=NX, ymin=4, ymax=NY)  # rows 0-3 are overscan


@pytest.fixture
def raw(tmp_path):
    rng = np.random.default_rng(7)
    data = rng.normal(1200.0, 10.0, (NY, NX)).astype(np.float32)
    data[:4] = rng.normal(300.0, 2.0, (4, NX))
    header = fits.Header([("EXPTIME", 90.0), ("GAIN", 2.0), ("RDNOISE", 5.0), ("OBJECT", "M67")])
    path = tmp_path / "raw.fits"
    fits.PrimaryHDU(data, header).writeto(path)
    return path, data, header


def _masters(tmp_path):
    rng = np.random.default_rng(8)
    bias = rng.normal(50.0, 1.0, (NY - 4, NX)).astype(np.float32)
    dark = np.full((NY - 4, NX), 60.0, np.float32)  # ADU in 600 s
    flat = rng.normal(2.0, 0.02, (NY - 4, NX)).astype(np.float32)
    return bias, dark, flat


def test_ccddata_raw_writes_the_same_product_as_the_file(raw, tmp_path):
    path, _, _ = raw
    bias, dark, flat = _masters(tmp_path)
    calibrate = Calibrator(overscans=[dict(xmin=0, xmax=NX, ymin=0, ymax=4)], image_area=AREA,
                           master_bias=CCDData(bias, unit="adu"),
                           master_dark=CCDData(dark, unit="adu", meta={"EXPTIME": 600.0}),
                           master_flat=flat, mask=True)
    from_file = calibrate(raw=path, calibrated=tmp_path / "a.fits")
    from_ccd = calibrate(raw=CCDData.read(path, unit="adu"), calibrated=tmp_path / "b.fits")
    with fits.open(from_file) as a, fits.open(from_ccd) as b:
        assert [h.name for h in a] == [h.name for h in b] == ["PRIMARY", "ERROR", "MASK"]
        for ha, hb in zip(a, b, strict=True):
            np.testing.assert_array_equal(ha.data, hb.data)
        drop = {"HISTORY"}
        assert {k: v for k, v in a[0].header.items() if k not in drop} == \
               {k: v for k, v in b[0].header.items() if k not in drop}
        assert a[0].header["DARKSCL"] == pytest.approx(90.0 / 600.0)
    # in memory: the same pixels, error and flags as the file
    ccd = calibrate(raw=CCDData.read(path, unit="adu"))
    product = read_product(from_file)
    assert isinstance(ccd, CCDData) and ccd.unit == u.adu
    np.testing.assert_array_equal(ccd.data, product.data)
    np.testing.assert_array_equal(ccd.uncertainty.array, product.uncertainty.array)
    np.testing.assert_array_equal(ccd.mask, product.mask)
    assert ccd.header["OBJECT"] == "M67" and ccd.header["IMAGAREA"] == "[1:16,5:12]"


def test_array_raw_and_masters_against_numpy(raw, tmp_path):
    _, data, header = raw
    bias, dark, flat = _masters(tmp_path)
    bias_err = np.full(bias.shape, 0.5, np.float32)
    calibrate = Calibrator(overscans=[dict(xmin=0, xmax=NX, ymin=0, ymax=4)], image_area=AREA,
                           gain=2.0 * u.electron / u.adu, read_noise=5.0 * u.electron,
                           master_bias=CCDData(bias, unit="adu", uncertainty=StdDevUncertainty(bias_err)),
                           master_dark=CCDData(dark / 600.0, unit=u.adu / u.s))
    ccd = calibrate(raw=np.asarray(data, np.float64), header=header)
    level = np.median(data[:4].astype(np.float64))  # not integer data: the plain median
    x = data[4:].astype(np.float64) - level - bias
    sd = 90.0 * dark / 600.0
    expected = x - sd
    np.testing.assert_allclose(ccd.data, expected, rtol=1e-5, atol=1e-3)
    var_o = np.pi / 2 * data[:4].astype(np.float64).var(ddof=1) / data[:4].size
    var_rest = var_o + 0.25 + (5.0 / 2.0) ** 2
    np.testing.assert_allclose(ccd.uncertainty.array,
                               error_with_poisson(expected, var_rest, 1.0, sd, 2.0), rtol=1e-4)


def test_masked_raw_pixels_are_flagged(raw):
    path, _, _ = raw
    ccd = CCDData.read(path, unit="adu")
    ccd.mask = np.zeros(ccd.shape, bool)
    ccd.mask[6, 3] = True
    out = Calibrator(image_area=AREA)(raw=ccd)
    assert np.isnan(out.data[2, 3]) and out.mask[2, 3] and out.mask.sum() == 1


def test_quantities_equal_numbers_and_wrong_units_are_named(raw):
    path, _, _ = raw
    plain = Calibrator(gain=4.0, read_noise=3.0)(raw=path)
    quantity = Calibrator(gain=4.0 * u.electron / u.adu, read_noise=3.0 * u.electron)(raw=path)
    np.testing.assert_array_equal(plain.uncertainty.array, quantity.uncertainty.array)
    assert quantity.header["GAIN"] == 4.0 and quantity.header["RDNOISE"] == 3.0
    with pytest.raises(ConfigError, match=r"^gain: expected a quantity in electron / adu, got electron$"):
        Calibrator(gain=2.0 * u.electron)
    with pytest.raises(ConfigError, match="^read_noise: expected a quantity in electron, got adu$"):
        Calibrator(read_noise=2.0 * u.adu)
    with pytest.raises(ConfigError, match="^raw: expected ADU, got electron$"):
        Calibrator()(raw=CCDData(np.ones((4, 4)), unit="electron"))


def test_an_array_without_header_takes_the_defaults(raw):
    _, data, _ = raw
    out = Calibrator(exptime=10.0)(raw=data)
    assert out.header["GAIN"] == 1.0 and out.header["RDNOISE"] == 0.0 and out.header["EXPTIME"] == 10.0
    np.testing.assert_array_equal(out.data, data)


def test_read_master_loads_a_ccdproc_master(tmp_path):
    import ccdproc

    rng = np.random.default_rng(2)
    frames = [CCDData(rng.normal(300.0, 4.0, (8, 9)), unit="adu") for _ in range(5)]
    combined = ccdproc.combine(frames, method="average", dtype=np.float32)
    combined.mask = np.zeros(combined.shape, bool)
    combined.mask[2, 2] = True
    combined.meta["EXPTIME"] = 0.0
    path = tmp_path / "ccdproc_bias.fits"
    combined.write(path)
    with fits.open(path) as hdul:
        assert "UNCERT" in hdul and "MASK" in hdul
    master = read_master(path)
    np.testing.assert_allclose(master.error, combined.uncertainty.array, rtol=1e-6)
    assert np.isnan(master.data[2, 2]) and np.isfinite(master.data).sum() == 8 * 9 - 1
    np.testing.assert_allclose(master.data[0], combined.data[0], rtol=1e-6)
    product = read_product(path)
    assert product.mask[2, 2] and product.mask.sum() == 1
    np.testing.assert_allclose(product.uncertainty.array, combined.uncertainty.array, rtol=1e-6)
