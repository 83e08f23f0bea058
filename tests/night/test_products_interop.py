"""A night's products in astropy and ccdproc: WCS across the trim, master darks, stacks, order."""

from __future__ import annotations

import warnings

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData
from astropy.stats import sigma_clipped_stats
from astropy.wcs import WCS, FITSFixedWarning

from ccdflow import read_product
from ccdflow.calibrator import Calibrator
from ccdflow.night.config import CalibrationConfig, ClusterConfig, NightConfig
from ccdflow.night.run import reduce_night
from ccdflow.reduction import ImageReduction
from ccdflow.synthetic import Instrument, write_night
from conftest import grouped_median

NY, NX, N_OVER = 24, 30, 6
X0, Y0 = 2, N_OVER  # the trim offset: TRIMSEC leaves out 2 columns and the overscan rows


def _wcs(header: fits.Header) -> WCS:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        return WCS(header)


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    """A trimmed night whose raw frames carry a TAN WCS, reduced with stacks."""
    root = tmp_path_factory.mktemp("interop")
    inst = Instrument(ny=NY, nx=NX, n_overscan=N_OVER, overscan="rows")
    synth = write_night(root / "night", instrument=inst, filters=("V",), n_bias=3, n_dark=3,
                        dark_exptimes=(60.0,), n_flat=3, n_light=3, seed=5)
    for path in sorted((root / "night" / "raw").glob("*.fits")):
        with fits.open(path, mode="update") as hdul:
            h = hdul[0].header
            h["TRIMSEC"] = f"[{X0 + 1}:{NX},{Y0 + 1}:{Y0 + NY}]"
            h.update({"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CRPIX1": 20.0, "CRPIX2": 25.0,
                      "CRVAL1": 150.0, "CRVAL2": 2.0, "CDELT1": -1e-4, "CDELT2": 1e-4,
                      "CUNIT1": "deg", "CUNIT2": "deg"})
    config = NightConfig(filelist=synth.filelist, output=root / "reduced", stack_lights=True,
                         calibration=CalibrationConfig(overscans="header", image_area="header",
                                                       overscan_method="median"),
                         cluster=ClusterConfig(scheduler="synchronous"))
    report = reduce_night(config, scheduler="synchronous", echo=lambda *_: None, progress=False)
    assert report.ok
    return synth, config, report


def _same_sky(raw_header, product_header):
    raw, product = _wcs(raw_header), _wcs(product_header)
    ys, xs = np.mgrid[Y0:Y0 + NY:7, X0:NX:5]
    sky_raw = raw.pixel_to_world(xs, ys)
    sky_product = product.pixel_to_world(xs - X0, ys - Y0)  # the same physical pixels
    assert np.max(sky_raw.separation(sky_product).to_value(u.arcsec)) < 1e-6


def test_light_stack_and_reduction_keep_the_raw_wcs_across_the_trim(night, tmp_path):
    synth, config, _ = night
    raw = fits.getheader(synth.files["light"][0])
    light = config.output / "lights" / f"{synth.files['light'][0].stem}.fits"
    stack = next((config.output / "stacks").glob("*.fits"))
    for product in (light, stack):
        header = fits.getheader(product)
        assert (header["CRPIX1"], header["CRPIX2"]) == (20.0 - X0, 25.0 - Y0)
        assert not {"TRIMSEC", "BIASSEC", "DATASEC"} & set(header)
        _same_sky(raw, header)
        ccd = read_product(product)
        assert ccd.wcs is not None and ccd.shape == (NY, NX - X0)
        _same_sky(raw, ccd.wcs.to_header())
    reduced = ImageReduction(synth.filelist, work_dir=tmp_path / "w").reduce()  # sections from headers
    assert reduced.data.shape == (NY, NX - X0)
    _same_sky(raw, reduced.header)


def test_one_combine_card_convention(night):
    _, config, _ = night
    master = fits.getheader(config.output / "masters" / "bias.fits")
    stack = fits.getheader(next((config.output / "stacks").glob("*.fits")))
    for header in (master, stack):
        assert {"CMETHOD", "CCLIP", "CSIGLO", "CSIGHI", "CERRFORM"} <= set(header)
        assert not any(key.startswith("CCDFLOW COMBINE") for key in header)
    assert stack["NCOMBINE"] == 3 and stack["INPUT003"] == "light_V_002.fits"
    assert "NFLAGGED" not in stack and "OVSCLVL" not in stack


def test_master_dark_works_in_ccdproc_subtract_dark(night):
    import ccdproc

    _, config, _ = night
    path = config.output / "masters" / "dark.fits"
    header = fits.getheader(path)
    assert header["BUNIT"] == "adu" and header["EXPTIME"] == 1.0
    dark = read_product(path)
    assert dark.unit == u.adu and dark.uncertainty is not None
    rng = np.random.default_rng(1)
    light = CCDData(rng.normal(500.0, 5.0, dark.shape), unit="adu", meta={"EXPTIME": 120.0})
    subtracted = ccdproc.subtract_dark(light, dark, exposure_time="EXPTIME", exposure_unit=u.s,
                                       scale=True)
    # the dark file holds the ADU of a 1 s exposure
    np.testing.assert_allclose(subtracted.data, light.data - 120.0 * fits.getdata(path), rtol=1e-6)
    same = ccdproc.subtract_dark(light, CCDData.read(path, unit="adu"), exposure_time="EXPTIME",
                                 exposure_unit=u.s, scale=True)
    np.testing.assert_allclose(same.data, subtracted.data)


def test_night_lights_equal_the_formula_and_the_calibrator_on_the_fits_masters(night):
    synth, config, _ = night
    masters = config.output / "masters"
    bias, dark, flat = (fits.getdata(masters / f"{n}.fits").astype(np.float64)
                        for n in ("bias", "dark", "flat_V"))
    raw_path = synth.files["light"][1]
    raw = fits.getdata(raw_path).astype(np.float64)
    t = fits.getheader(raw_path)["EXPTIME"]
    level = grouped_median(raw[:N_OVER, :])  # integer raw data: the grouped-data median
    norm = sigma_clipped_stats(flat, sigma=3.0, maxiters=5)[0]
    expected = (raw[Y0:, X0:] - level - bias - t * dark) / (flat / norm)
    light = fits.getdata(config.output / "lights" / f"{raw_path.stem}.fits")
    np.testing.assert_allclose(light, expected, rtol=1e-5, atol=1e-3)
    calibrate = Calibrator(master_bias=masters / "bias.fits",
                           master_dark=masters / "dark.fits", master_flat=masters / "flat_V.fits")
    ccd = calibrate(raw=raw_path, overscans=[dict(xmin=0, xmax=NX, ymin=0, ymax=N_OVER)],
                    image_area=dict(xmin=X0, xmax=NX, ymin=Y0, ymax=Y0 + NY))
    np.testing.assert_array_equal(ccd.data, light)


def test_summary_says_reused_in_file_list_order(night):
    synth, config, _ = night
    again = reduce_night(config, scheduler="synchronous", echo=lambda *_: None, progress=False)
    lines = again.summary().splitlines()
    names = [p.name for p in synth.files["light"]]
    rows = [line for line in lines if line.split()[0] in names]
    assert [row.split()[0] for row in rows] == names
    assert all(row.split()[1] == "reused" for row in rows)
    assert "frames: 0 done, 3 reused, 0 failed" in lines[-1]
    assert list(again.frames) == [str(p) for p in synth.files["light"]]
