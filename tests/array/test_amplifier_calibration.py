"""Overscan, trim and assembly of multi-amplifier frames through the calibration path.

`calibrate_array` with no masters is each amplifier's overscan correction, trim, mirroring and
placement in the assembled image; the references below do the same in plain numpy.
"""

import dask.array as da
import numpy as np
import pytest

from ccdflow import Calibrator
from ccdflow.array.calibration import (
    CalibrationParams,
    Masters,
    calibrate_array,
    calibrate_lazy,
    check_geometry,
)
from ccdflow.array.detector import Detector, Units
from ccdflow.array.overscan import OverscanMethods
from ccdflow.errors import ConfigError, IncompatibleFramesError
from ccdflow.kernels.calibrate import FLAG_BAD_INPUT
from ccdflow.synthetic.amplifiers import make_amplifier_frame
from conftest import grouped_median, raise_if_dask_computes


def _raws(frame):
    return {h: frame.hdul[h].data.astype(np.float32) for h in frame.detector.hdus}


def _calibrate(frame, **params):
    params = CalibrationParams(detector=frame.detector, **params)
    return calibrate_array(_raws(frame), params=params, masters=Masters())


def _reference(frame):
    """Plain numpy: per amplifier, median of its own overscan, trim, mirror, place."""
    out = np.full(frame.detector.shape, np.nan)
    for amp in frame.detector.amplifiers:
        raw = frame.hdul[amp.hdu].data.astype(np.float64)
        o = amp.overscans[0]
        level = grouped_median(raw[o.ymin:o.ymax, o.xmin:o.xmax])
        d, t = amp.data, amp.destination
        block = raw[d.ymin:d.ymax, d.xmin:d.xmax] - level
        if amp.flip_x:
            block = np.fliplr(block)
        if amp.flip_y:
            block = np.flipud(block)
        out[t.ymin:t.ymax, t.xmin:t.xmax] = block
    return out


@pytest.mark.parametrize("layout", ["lettered", "extensions"])
@pytest.mark.parametrize("binning", [1, 2])
def test_matches_a_plain_numpy_reference(layout, binning):
    frame = make_amplifier_frame(layout=layout, level=3000.0, seed=3, binning=binning,
                                 amp_shape=(30, 20))
    image, error, mask, stats = _calibrate(frame)
    assert image.dtype == np.float32 and error.dtype == np.float32
    assert image.shape == frame.detector.shape == (60, 40)
    np.testing.assert_allclose(image, _reference(frame), rtol=0, atol=1e-3)
    assert not mask.any() and np.all(error > 0)
    assert sorted(stats["overscan_levels"]) == ["A", "B", "C", "D"]


@pytest.mark.parametrize("layout", ["lettered", "extensions"])
def test_pulls_per_amplifier_have_unit_spread(layout):
    # bias + Poisson + read noise; the rounding to integers adds 1/12 ADU^2
    frame = make_amplifier_frame(layout=layout, level=4000.0, seed=11, amp_shape=(110, 100))
    image, error, _, _ = _calibrate(frame)
    truth = frame.truth
    pull = (image - truth.adu) / np.sqrt(error.astype(np.float64) ** 2 + 1 / 12)
    for amp in frame.detector.amplifiers:
        p = pull[amp.destination.slices]
        assert abs(p.std() - 1) < 0.03, (amp.name, p.std())
        assert abs(p.mean()) < 0.1, (amp.name, p.mean())


def test_bias_pulls_and_each_amplifiers_read_noise():
    frame = make_amplifier_frame(level=0.0, seed=5, amp_shape=(110, 100), bias_structure=0.0)
    image, error, _, _ = _calibrate(frame)
    pull = (image - frame.truth.bias) / np.sqrt(error.astype(np.float64) ** 2 + 1 / 12)
    for amp in frame.detector.amplifiers:
        assert abs(pull[amp.destination.slices].std() - 1) < 0.03, amp.name
        # the error is the amplifier's own read noise, (RN/g)^2, plus a small overscan and
        # Poisson share (the local mean of a bias is ~0 counts)
        v = error[amp.destination.slices].astype(np.float64) ** 2
        rn2 = (amp.read_noise / amp.gain) ** 2
        assert np.all(v > rn2), amp.name
        assert np.median(v) < rn2 * 1.05, amp.name


def test_electrons_are_each_amplifier_times_its_own_gain():
    frame = make_amplifier_frame(level=2000.0, seed=7, amp_shape=(20, 30))
    adu, adu_err, _, _ = _calibrate(frame)
    electron, electron_err, _, _ = _calibrate(frame, units="electron")
    gain = frame.truth.gain
    np.testing.assert_allclose(electron, adu * gain, rtol=1e-6, atol=1e-3)
    np.testing.assert_allclose(electron_err, adu_err * gain, rtol=1e-5)
    # electrons of the assembled image are the expected photo-electrons, no amplifier steps
    ratio = (electron - frame.truth.bias * gain) / frame.truth.electrons
    for amp in frame.detector.amplifiers:
        assert abs(np.mean(ratio[amp.destination.slices]) - 1) < 0.005, amp.name


@pytest.mark.parametrize("chunks", [(8, 8), (40, 64), -1])
def test_lazy_equals_numpy_and_computes_nothing(chunks):
    frame = make_amplifier_frame(level=1000.0, seed=2, amp_shape=(20, 30))
    raws = _raws(frame)
    lazy_raws = {h: da.from_array(r, chunks=chunks) for h, r in raws.items()}
    params = CalibrationParams(detector=frame.detector, units="electron",
                               overscan_method=OverscanMethods.median_per_line)
    with raise_if_dask_computes():
        lazy = calibrate_lazy(lazy_raws, params=params, masters=Masters(), dark_scale=1.0,
                              norm=1.0)
    image, error, mask = da.compute(lazy.image, lazy.error, lazy.mask)
    eager = calibrate_array(raws, params=params, masters=Masters())
    np.testing.assert_array_equal(image, eager[0])
    np.testing.assert_array_equal(error, eager[1])
    np.testing.assert_array_equal(mask, eager[2])
    assert lazy.params.units == Units.electron


@pytest.mark.parametrize("layout", ["lettered", "extensions"])
def test_the_calibrator_reads_the_layout_lazily_and_equals_numpy(tmp_path, layout):
    frame = make_amplifier_frame(layout=layout, level=1000.0, seed=12, amp_shape=(20, 30))
    path = tmp_path / "raw.fits"
    frame.hdul.writeto(path)
    calibrate = Calibrator(overscan_method="median_per_line", units="electron")
    with raise_if_dask_computes():
        lazy = calibrate.calibrate(str(path))
    assert [a.name for a in lazy.params.layout.amplifiers] == \
        [a.name for a in frame.detector.amplifiers]
    image, error = da.compute(lazy.image, lazy.error)
    eager = _calibrate(frame, units="electron", overscan_method="median_per_line")
    np.testing.assert_array_equal(image, eager[0])
    np.testing.assert_array_equal(error, eager[1])


def test_per_line_overscan_is_taken_on_the_amplifiers_own_rows():
    frame = make_amplifier_frame(level=0.0, seed=4, amp_shape=(20, 30))
    raws = _raws(frame)
    amp = frame.detector.amplifier("C")  # the upper row of the grid, flipped in y
    assert amp.flip_y
    raws[amp.hdu][amp.data.ymin:amp.data.ymax] += np.arange(20, dtype=np.float32)[:, None] * 10
    params = CalibrationParams(detector=frame.detector, overscan_method="median_per_line")
    image, *_ = calibrate_array(raws, params=params, masters=Masters())
    # a ramp added to data and overscan alike is removed line by line, flipped with the data
    residual = image[amp.destination.slices] - frame.truth.bias[amp.destination.slices]
    assert abs(float(residual.mean())) < 0.5
    assert float(np.abs(residual).max()) < 20  # a ramp mirrored against the data would leave 190


def test_uncovered_pixels_are_nan_and_flagged_and_errors_name_the_problem():
    det = Detector.from_dict({"name": "d", "shape": [2, 6], "amplifiers": [
        {"name": "A", "data": "[1:3,1:2]", "destination": "[1:3,1:2]", "overscans": ["[4:4,1:2]"]}]})
    params = CalibrationParams(detector=det)
    image, error, mask, stats = calibrate_array({0: np.ones((2, 4), np.float32)}, params=params,
                                                masters=Masters())
    assert np.all(image[:, :3] == 0) and np.all(np.isfinite(error[:, :3]))
    assert np.all(np.isnan(image[:, 3:])) and np.all(np.isnan(error[:, 3:]))
    assert np.all(mask[:, 3:] == FLAG_BAD_INPUT) and not mask[:, :3].any()
    assert stats["not_calibrated"] == 6
    with pytest.raises(IncompatibleFramesError, match="HDU 0 holds no 2-D image"):
        check_geometry({1: (2, 4)}, params, Masters(), path="raw.fits")
    with pytest.raises(IncompatibleFramesError,
                       match=r"raw.fits\[0\]: overscan area .* lies outside the 2x3 frame"):
        check_geometry({0: (2, 3)}, params, Masters(), path="raw.fits")
    with pytest.raises(ConfigError, match="units"):
        CalibrationParams(detector=det, units="photons")


def test_user_overscan_method_is_applied_per_amplifier():
    frame = make_amplifier_frame(level=0.0, seed=8, amp_shape=(10, 12))

    def subtract_mean(image, overscans):
        o = overscans[0]
        return image - image[o["ymin"]:o["ymax"], o["xmin"]:o["xmax"]].mean()

    image, error, _, _ = _calibrate(frame, overscan_method=subtract_mean)
    for amp in frame.detector.amplifiers:
        raw = frame.hdul[amp.hdu].data.astype(np.float64)
        o = amp.overscans[0]
        expected = raw[amp.data.slices].mean() - raw[o.slices].mean()
        assert image[amp.destination.slices].mean() == pytest.approx(expected, abs=1e-3)
        # a user method's level carries no variance: read noise and Poisson terms only
        assert np.all(error[amp.destination.slices] ** 2 >= (amp.read_noise / amp.gain) ** 2 * 0.999)
