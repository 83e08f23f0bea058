"""The Calibrator: the seed workflow, numerics against numpy, honest errors, real data, bad input."""

import math

import dask
import numpy as np
import pytest
from astropy.io import fits
from astropy.stats import sigma_clipped_stats

from ccdflow import synthetic as syn
from ccdflow.array.calibration import Master
from ccdflow.array.combination import CombineParams, combine
from ccdflow.array.masks import MaskBits
from ccdflow.array.overscan import OverscanMethods
from ccdflow.calibrator import Calibrator
from ccdflow.errors import (
    ConfigError,
    FrameReadError,
    IncompatibleFramesError,
    OutputExistsError,
)
from ccdflow.io import open_frame
from conftest import DATA, error_with_poisson, grouped_median, raise_if_dask_computes

NY, NX, NOVER = 40, 48, 20
SEED_AREA = dict(xmin=0, xmax=NX, ymin=NOVER, ymax=NY + NOVER)
SEED_OVERSCAN = dict(xmin=0, xmax=NX, ymin=0, ymax=NOVER)


def _write(path, data, **cards):
    hdu = fits.PrimaryHDU(data)
    for key, value in cards.items():
        hdu.header[key] = value
    hdu.writeto(path)
    return path


def _write_master(path, data, error=None, exptime=None):
    hdus = [fits.PrimaryHDU(np.asarray(data, np.float32))]
    if exptime is not None:
        hdus[0].header["EXPTIME"] = exptime
    if error is not None:
        hdus.append(fits.ImageHDU(np.asarray(error, np.float32), name="ERROR"))
    fits.HDUList(hdus).writeto(path)
    return path


@pytest.fixture
def seed_files(tmp_path):
    """Raw frames with the seed's layout (first rows are overscan) and a bias and dark master."""
    inst = syn.Instrument(ny=NY, nx=NX, n_overscan=NOVER, overscan="rows", gain=16.0)
    truth = syn.make_truth(inst, seed=4)
    (tmp_path / "masters").mkdir()
    raws = []
    for i in range(2):
        frame = syn.make_frame(truth, imagetyp="light", exptime=30.0 + 30 * i, seed=10 + i)
        frame.hdu.writeto(tmp_path / f"raw{i + 1}.fits")
        raws.append(tmp_path / f"raw{i + 1}.fits")
    rng = np.random.default_rng(0)
    bias = truth.bias + rng.normal(0, 0.1, truth.bias.shape)
    bias_err = np.full(bias.shape, 0.1)
    dark = truth.dark_rate * 600 + rng.normal(0, 0.5, bias.shape)
    dark_err = np.full(bias.shape, 0.5)
    _write_master(tmp_path / "masters/master_bias1.fits", bias, bias_err)
    _write_master(tmp_path / "masters/master_dark3.fits", dark, dark_err, exptime=600.0)
    return tmp_path, raws




def _reference(raw_path, bias_path, dark_path, gain, read_noise):
    """The DESIGN.md formulas written out in plain numpy (median overscan, no flat)."""
    raw = fits.getdata(raw_path).astype(np.float64)
    t = fits.getheader(raw_path)["EXPTIME"]
    over = raw[:NOVER, :NX]
    level = grouped_median(over)
    var_o = math.pi / 2 * over.var(ddof=1) / over.size
    bias, bias_err = fits.getdata(bias_path, 0), fits.getdata(bias_path, "ERROR")
    dark, dark_err = fits.getdata(dark_path, 0), fits.getdata(dark_path, "ERROR")
    s = t / fits.getheader(dark_path)["EXPTIME"]
    x = raw[NOVER:, :] - level - bias
    var = var_o + bias_err**2.0 + s**2 * dark_err**2.0 + (read_noise / gain) ** 2
    return x - s * dark, error_with_poisson(x - s * dark, var, 1.0, s * dark, gain), s


def test_seed_example_runs_as_written(seed_files, monkeypatch):
    folder, _ = seed_files
    monkeypatch.chdir(folder)
    # The seed document's example, with only the package name and its two typos changed.
    calibrate = Calibrator(
        overscans = [dict(xmin = 0, xmax = NX, ymin = 0, ymax = NOVER)],
        overscan_method = OverscanMethods.median,
        master_bias = 'masters/master_bias1.fits',
        gain = 16.0,
        image_area = dict(xmin = 0, xmax = NX, ymin = NOVER, ymax = NY + NOVER)
    )
    calibrate.set_masters(dark = 'masters/master_dark3.fits')
    calibrate(raw = 'raw1.fits', calibrated = 'calib1.fits')
    calibrate(raw = 'raw2.fits', calibrated = 'calib2.fits', gain = 8.0)

    assert calibrate.gain == 16.0  # the per-call override did not leak
    for name, gain in (("1", 16.0), ("2", 8.0)):
        image, error, s = _reference(f"raw{name}.fits", "masters/master_bias1.fits",
                                     "masters/master_dark3.fits", gain, 5.0)
        with fits.open(f"calib{name}.fits") as hdul:
            # the seed's two extensions, then the MASK every calibrated light carries by default
            assert [h.name for h in hdul] == ["PRIMARY", "ERROR", "MASK"]
            assert hdul[0].data.dtype == np.dtype(">f4") and hdul[1].data.dtype == np.dtype(">f4")
            np.testing.assert_allclose(hdul[0].data, image, rtol=1e-5, atol=1e-3)
            np.testing.assert_allclose(hdul[1].data, error, rtol=1e-5)
            header = hdul[0].header
            assert header["GAIN"] == gain and header["RDNOISE"] == 5.0
            assert header["DARKSCL"] == pytest.approx(s)
            assert header["MBIASFNM"] == "master_bias1.fits"
            assert header["MDARKFNM"] == "master_dark3.fits"
            assert len(header["MBIASSHA"]) == 40 and header["OVSCMETH"] == "median"
            assert header["IMAGAREA"] == f"[1:{NX},{NOVER + 1}:{NY + NOVER}]"
            assert header["OVSCAREA"] == f"[1:{NX},1:{NOVER}]"
            assert "FLATNORM" not in header and "MFLATFNM" not in header
            assert header["BUNIT"] == "adu" and "CCDFLVER" in header


def test_overrides_are_per_call_and_masters_can_be_skipped(seed_files):
    folder, raws = seed_files
    calibrate = Calibrator(overscans=[SEED_OVERSCAN], image_area=SEED_AREA,
                           master_bias=folder / "masters/master_bias1.fits",
                           master_dark=folder / "masters/master_dark3.fits")
    with_dark = calibrate(raw=raws[0], calibrated=folder / "a.fits")
    no_dark = calibrate(raw=raws[0], calibrated=folder / "b.fits", master_dark=None)
    assert calibrate.master_dark is not None
    dark = fits.getdata(folder / "masters/master_dark3.fits") * 30.0 / 600.0
    np.testing.assert_allclose(fits.getdata(no_dark) - fits.getdata(with_dark), dark,
                               rtol=1e-4, atol=1e-3)
    assert "MDARKFNM" not in fits.getheader(no_dark)
    calibrate.set_masters(bias=None)
    assert calibrate.master_bias is None and calibrate.master_dark is not None
    with pytest.raises(ConfigError, match="gian: not a Calibrator parameter"):
        calibrate(raw=raws[0], calibrated=folder / "c.fits", gian=2.0)


def test_lazy_calibrate_equals_the_file_and_computes_nothing(seed_files):
    folder, raws = seed_files
    calibrate = Calibrator(overscans=[SEED_OVERSCAN], image_area=SEED_AREA,
                           master_bias=folder / "masters/master_bias1.fits", mask=True)
    out = calibrate(raw=raws[1], calibrated=folder / "out.fits")
    frame = open_frame(raws[1])
    with raise_if_dask_computes():
        result = calibrate.calibrate(frame)
    image, error, mask = dask.compute(result.image, result.error, result.mask)
    with fits.open(out) as hdul:
        np.testing.assert_array_equal(hdul[0].data, image)
        np.testing.assert_array_equal(hdul[1].data, error)
        np.testing.assert_array_equal(hdul["MASK"].data, mask)
        assert hdul["MASK"].data.dtype == np.uint8


def _overscan_corrected_stack(frames, calibrate, **overrides):
    """Overscan-correct and trim frames lazily, as the masters pipeline does."""
    import dask.array as da

    return da.stack([calibrate.calibrate(f, **overrides).image for f in frames])


@pytest.fixture(scope="module")
def known_truth(tmp_path_factory):
    """A small night with known truth and masters built through combine()."""
    folder = tmp_path_factory.mktemp("truth")
    inst = syn.Instrument(ny=96, nx=96, n_overscan=16)
    truth = syn.make_truth(inst, filters=("V",), seed=11)

    def frames(kind, n, **kw):
        out = []
        for i in range(n):
            path = folder / f"{kind}{i}.fits"
            syn.make_frame(truth, imagetyp=kind, seed=hash((kind, i)) % 2**31, **kw).hdu.writeto(path)
            out.append(open_frame(path))
        return out

    base = Calibrator(overscans=[inst.overscan_region], image_area=inst.image_region,
                      overscan_method="median_per_line")
    mean = CombineParams(method="mean")
    bias = combine(_overscan_corrected_stack(frames("bias", 12), base), params=mean)
    bias = Master(*dask.compute(bias.data, bias.error), name="bias")
    darks = frames("dark", 10, exptime=300.0)
    stack = _overscan_corrected_stack(darks, base, master_bias=bias) / 300.0
    dark = combine(stack, params=mean)
    dark = Master(*dask.compute(dark.data, dark.error), exptime=1.0, name="dark")
    flats = _overscan_corrected_stack(frames("flat", 10, exptime=5.0, filter="V"), base,
                                      master_bias=bias, master_dark=dark)
    flat = combine(flats, params=mean.replace(scale="mean"))
    flat = Master(*dask.compute(flat.data, flat.error), name="flat")
    lights = [syn.make_frame(truth, imagetyp="light", exptime=120.0, filter="V", seed=500 + i)
              for i in range(3)]
    light_paths = []
    for i, light in enumerate(lights):
        light_paths.append(folder / f"light{i}.fits")
        light.hdu.writeto(light_paths[-1])
    return dict(truth=truth, base=base, bias=bias, dark=dark, flat=flat, lights=lights,
                light_paths=light_paths, folder=folder)


@pytest.mark.parametrize("steps", ["bias+dark+flat", "bias only", "bias+dark"])
def test_errors_are_honest_against_known_truth(known_truth, steps):
    k = known_truth
    overrides = dict(master_bias=k["bias"],
                     master_dark=k["dark"] if "dark" in steps else None,
                     master_flat=k["flat"] if "flat" in steps else None)
    pulls = []
    for light, path in zip(k["lights"], k["light_paths"], strict=True):
        result = k["base"].calibrate(open_frame(path), **overrides)
        image, error = dask.compute(result.image, result.error)
        flat_true = k["truth"].flats["V"]
        if "flat" in steps:
            expected = light.signal * sigma_clipped_stats(flat_true)[0]
        else:
            expected = light.signal * flat_true
        if "dark" not in steps:
            expected = expected + k["truth"].dark_rate * 120.0
        good = ~light.cosmic_rays
        pulls.append(((image - expected) / error)[good])
    pulls = np.concatenate(pulls)
    assert abs(np.mean(pulls)) < 0.05
    assert np.std(pulls) == pytest.approx(1.0, abs=0.05)


def test_every_builtin_overscan_method_and_a_user_callable(known_truth):
    k = known_truth
    frame = open_frame(k["light_paths"][0])
    inst = k["truth"].instrument
    images = {}
    for method in OverscanMethods:
        result = k["base"].calibrate(frame, overscan_method=method, master_bias=k["bias"])
        images[method.value] = result.image.compute()
    calls = []

    def per_row_mean(image, overscans):
        calls.append(overscans)
        region = overscans[0]
        strip = image[:, region["xmin"]:region["xmax"]]
        return image - strip.mean(axis=1, keepdims=True)

    result = k["base"].calibrate(frame, overscan_method=per_row_mean, master_bias=k["bias"])
    images["user"] = result.image.compute()
    assert calls == [[inst.overscan_region]]
    # all methods remove the ~1000 ADU pedestal; per-line ones also its row gradient
    reference = images["median_per_line"]
    for name, image in images.items():
        assert abs(np.median(image - reference)) < 4.0, name
    assert abs(np.median(images["polynomial"] - reference)) < 0.5


def test_several_overscan_areas_are_pooled(tmp_path):
    data = np.full((30, 40), 100.0, np.float32)
    data[:, :5] = 10.0
    data[:, -5:] = 20.0
    path = _write(tmp_path / "two.fits", data)
    calibrate = Calibrator(overscans=["[1:5,1:30]", dict(xmin=35, xmax=40, ymin=0, ymax=30)],
                           overscan_method="mean", image_area=dict(xmin=5, xmax=35, ymin=0, ymax=30))
    image = calibrate.calibrate(open_frame(path, exptime=1.0)).image.compute()
    np.testing.assert_allclose(image, 85.0)


def _sprat_numpy(light, dark_path, flat_path):
    raw = fits.getdata(light).astype(np.float64)
    dark = fits.getdata(dark_path).astype(np.float64)
    flat = fits.getdata(flat_path).astype(np.float64)
    t_light, t_dark = fits.getheader(light)["EXPTIME"], fits.getheader(dark_path)["EXPTIME"]
    norm = sigma_clipped_stats(flat)[0]
    f_n = flat / norm
    image = (raw - t_light / t_dark * dark) / f_n
    return image, error_with_poisson(image, 0.0, f_n, t_light / t_dark * dark, 2.45), norm


def test_real_sprat_light_with_real_dark_and_flat(tmp_path):
    sprat = DATA / "sprat"
    light = sprat / "v_e_20180810_12_1_0_0.fits.gz"
    dark, flat = sprat / "v_dark_1.fits.gz", sprat / "v_slit_red_1.fits.gz"
    calibrate = Calibrator(master_dark=dark, master_flat=flat)
    out = calibrate(raw=light, calibrated=tmp_path / "light.fits")
    image, error, norm = _sprat_numpy(light, dark, flat)
    with fits.open(out) as hdul:
        header = hdul[0].header
        assert header["DARKSCL"] == pytest.approx(120 / 600)
        assert header["GAIN"] == 2.45 and header["RDNOISE"] == 0.0
        assert header["FLATNORM"] == pytest.approx(norm, rel=1e-5)
        assert header["INSTRUME"] == "SPRAT"
        np.testing.assert_allclose(hdul[0].data, image, rtol=1e-4, atol=1e-2)
        np.testing.assert_allclose(hdul[1].data, error, rtol=1e-4)


def test_nan_raw_pixels_and_zero_flat_pixels_are_flagged_not_spread(tmp_path):
    data = np.full((20, 20), 500.0, np.float32)
    data[3, 4] = np.nan
    raw = _write(tmp_path / "raw.fits", data, EXPTIME=10.0, SATURATE=1000.0)
    flat = np.ones((20, 20), np.float32)
    flat[7, 8] = 0.0
    flat[9, 9] = -1.0
    data2 = data.copy()
    data2[5, 5] = 2000.0
    raw2 = _write(tmp_path / "raw2.fits", data2, EXPTIME=10.0, SATURATE=1000.0)
    calibrate = Calibrator(master_flat=Master(flat, name="flat"), gain=2.0, mask=True)
    for path in (raw, raw2):
        out = calibrate(raw=path, calibrated=tmp_path / f"cal_{path.name}")
        with fits.open(out) as hdul:
            image, error, mask = hdul[0].data, hdul[1].data, hdul["MASK"].data
        for y, x, bit in ((3, 4, 1), (7, 8, 4), (9, 9, 4)):
            assert np.isnan(image[y, x]) and np.isnan(error[y, x]) and mask[y, x] & bit
        assert np.isfinite(image).sum() == 400 - 3
        assert fits.getheader(out)["NFLAGGED"] == (mask != 0).sum()
    # saturated: kept, flagged; it is also the whole (one-pixel) bleed trail of itself
    assert mask[5, 5] == MaskBits.SATURATED | MaskBits.BLEED and image[5, 5] > 1000


def test_missing_and_truncated_and_non_image_raws_write_nothing(tmp_path):
    calibrate = Calibrator()
    out = tmp_path / "out" / "cal.fits"
    with pytest.raises(FrameReadError, match="nothere.fits"):
        calibrate(raw=tmp_path / "nothere.fits", calibrated=out)
    good = _write(tmp_path / "good.fits", np.ones((200, 200), np.float32), EXPTIME=1.0)
    truncated = tmp_path / "truncated.fits"
    truncated.write_bytes(good.read_bytes()[: 2880 * 10])
    with pytest.raises(FrameReadError, match="truncated.fits"):
        calibrate(raw=truncated, calibrated=out)
    table = tmp_path / "table.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(
        [fits.Column(name="a", format="E", array=np.ones(3))])]).writeto(table)
    with pytest.raises(FrameReadError, match=r"table.fits\[1\].*not an image"):
        calibrate(raw=table, calibrated=out, raw_hdu=1)
    assert not out.exists()
    assert not out.parent.exists() or not any(out.parent.iterdir())


def test_geometry_errors_name_the_file(tmp_path, seed_files):
    folder, raws = seed_files
    wrong = _write_master(tmp_path / "wrong_bias.fits", np.zeros((10, 10)))
    out = tmp_path / "cal.fits"
    calibrate = Calibrator(overscans=[SEED_OVERSCAN], image_area=SEED_AREA, master_bias=wrong)
    with pytest.raises(IncompatibleFramesError, match=r"wrong_bias.fits.*\(10, 10\).*raw1.fits"):
        calibrate(raw=raws[0], calibrated=out)
    calibrate.master_bias = None
    with pytest.raises(IncompatibleFramesError, match=r"raw1.fits.*overscan area .* outside"):
        calibrate(raw=raws[0], calibrated=out, overscans=[dict(xmin=0, xmax=NX + 1, ymin=0,
                                                               ymax=NOVER)])
    with pytest.raises(IncompatibleFramesError, match=r"raw1.fits.*image_area .* outside"):
        calibrate(raw=raws[0], calibrated=out, image_area=dict(xmin=0, xmax=NX, ymin=NOVER,
                                                              ymax=NY + NOVER + 5))
    assert not out.exists()


def test_invalid_parameters_are_refused_at_construction():
    with pytest.raises(ConfigError, match="overscan_method.*not one of"):
        Calibrator(overscan_method="mode")
    with pytest.raises(ConfigError, match="gain"):
        Calibrator(gain=0.0)
    with pytest.raises(ConfigError, match=r"overscans\[0\]"):
        Calibrator(overscans=[dict(xmin=0, xmax=10, ymin=0)])
    with pytest.raises(ConfigError, match="image_area"):
        Calibrator(image_area="[0:10,1:5]")


def test_existing_output_is_kept_when_overwrite_is_off(tmp_path):
    raw = _write(tmp_path / "raw.fits", np.ones((8, 8), np.float32), EXPTIME=1.0)
    out = tmp_path / "cal.fits"
    out.write_bytes(b"keep me")
    with pytest.raises(OutputExistsError, match="cal.fits"):
        Calibrator(overwrite=False)(raw=raw, calibrated=out)
    assert out.read_bytes() == b"keep me"


def test_a_calibrator_pickles_without_its_loaded_masters(seed_files):
    import pickle

    folder, raws = seed_files
    calibrate = Calibrator(overscans=[SEED_OVERSCAN], image_area=SEED_AREA,
                           master_bias=folder / "masters/master_bias1.fits")
    first = calibrate(raw=raws[0], calibrated=folder / "a.fits")
    clone = pickle.loads(pickle.dumps(calibrate))
    assert clone._master_cache == {} and clone.master_bias == calibrate.master_bias
    second = clone(raw=raws[0], calibrated=folder / "b.fits")
    np.testing.assert_array_equal(fits.getdata(first), fits.getdata(second))
