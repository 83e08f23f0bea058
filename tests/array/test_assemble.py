import dask.array as da
import numpy as np
import pytest

from ccdflow.array.assemble import Units, assemble, assemble_frame
from ccdflow.array.detector import Detector
from ccdflow.array.overscan import OverscanMethods
from ccdflow.errors import ConfigError
from ccdflow.synthetic.amplifiers import make_amplifier_frame
from conftest import grouped_median, raise_if_dask_computes


def _raws(frame):
    return {h: frame.hdul[h].data.astype(np.float32) for h in frame.detector.hdus}



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
    result = assemble_frame(_raws(frame), detector=frame.detector)
    assert result.image.dtype == np.float32 and result.units == Units.adu
    np.testing.assert_allclose(result.image, _reference(frame), rtol=0, atol=1e-3)


@pytest.mark.parametrize("layout", ["lettered", "extensions"])
def test_pulls_per_amplifier_have_unit_spread(layout):
    # bias + Poisson + read noise; the rounding to integers adds 1/12 ADU^2
    frame = make_amplifier_frame(layout=layout, level=4000.0, seed=11, amp_shape=(110, 100))
    result = assemble_frame(_raws(frame), detector=frame.detector)
    truth = frame.truth
    error = np.sqrt(result.variance + truth.electrons / truth.gain**2 + 1 / 12)
    pull = (result.image - truth.adu) / error
    for amp in frame.detector.amplifiers:
        p = pull[amp.destination.slices]
        assert abs(p.std() - 1) < 0.03, (amp.name, p.std())
        assert abs(p.mean()) < 0.1, (amp.name, p.mean())


def test_bias_pulls_and_read_noise_maps():
    frame = make_amplifier_frame(level=0.0, seed=5, amp_shape=(110, 100))
    result = assemble_frame(_raws(frame), detector=frame.detector)
    np.testing.assert_array_equal(result.gain, frame.truth.gain.astype(np.float32))
    np.testing.assert_array_equal(result.read_noise, frame.truth.read_noise.astype(np.float32))
    pull = (result.image - frame.truth.bias) / np.sqrt(result.variance + 1 / 12)
    for amp in frame.detector.amplifiers:
        assert abs(pull[amp.destination.slices].std() - 1) < 0.03
        # the read-noise part of the variance is the amplifier's own (RN/g)^2
        v = result.variance[amp.destination.slices]
        assert np.all(v > (amp.read_noise / amp.gain) ** 2)
        assert np.all(v < (amp.read_noise / amp.gain) ** 2 * 1.01)


def test_electrons_are_each_amplifier_times_its_own_gain():
    frame = make_amplifier_frame(level=2000.0, seed=7, amp_shape=(20, 30))
    adu = assemble_frame(_raws(frame), detector=frame.detector)
    electron = assemble_frame(_raws(frame), detector=frame.detector, units="electron")
    assert electron.units == Units.electron
    np.testing.assert_allclose(electron.image, adu.image * frame.truth.gain, rtol=1e-6, atol=1e-3)
    np.testing.assert_allclose(electron.variance, adu.variance * frame.truth.gain**2, rtol=1e-5)
    # the flat-fielded electron image is seamless: expected electrons have no amplifier steps
    ratio = (electron.image - frame.truth.bias * frame.truth.gain) / frame.truth.electrons
    for amp in frame.detector.amplifiers:
        assert abs(np.mean(ratio[amp.destination.slices]) - 1) < 0.005


@pytest.mark.parametrize("chunks", [(8, 8), (40, 64), -1])
def test_lazy_equals_numpy_and_computes_nothing(chunks):
    frame = make_amplifier_frame(level=1000.0, seed=2, amp_shape=(20, 30))
    raws = _raws(frame)
    lazy_raws = {h: da.from_array(r, chunks=chunks) for h, r in raws.items()}
    with raise_if_dask_computes():
        lazy = assemble(lazy_raws, detector=frame.detector,
                        overscan_method=OverscanMethods.median_per_line, units="electron")
    eager = assemble_frame(raws, detector=frame.detector,
                           overscan_method="median_per_line", units="electron")
    image, variance, gain, noise = da.compute(lazy.image, lazy.variance, lazy.gain, lazy.read_noise)
    np.testing.assert_array_equal(image, eager.image)
    np.testing.assert_array_equal(variance, eager.variance)
    np.testing.assert_array_equal(gain, eager.gain)
    np.testing.assert_array_equal(noise, eager.read_noise)


def test_per_line_overscan_is_taken_on_the_amplifiers_own_rows():
    frame = make_amplifier_frame(level=0.0, seed=4, amp_shape=(20, 30))
    raws = _raws(frame)
    amp = frame.detector.amplifier("C")  # the upper row of the lettered/extension grid, flipped in y
    raws[amp.hdu][amp.data.ymin:amp.data.ymax] += np.arange(20, dtype=np.float32)[:, None] * 10
    result = assemble_frame(raws, detector=frame.detector, overscan_method="median_per_line")
    # a ramp added to data and overscan alike is removed line by line, flipped with the data
    residual = result.image[amp.destination.slices] - frame.truth.bias[amp.destination.slices]
    assert abs(float(residual.mean())) < 0.5
    assert float(np.abs(residual).max()) < 20  # a ramp mirrored against the data would leave 190


def test_uncovered_pixels_are_nan_and_errors_name_the_problem():
    det = Detector.from_dict({"name": "d", "shape": [2, 6], "amplifiers": [
        {"name": "A", "data": "[1:3,1:2]", "destination": "[1:3,1:2]", "overscans": ["[4:4,1:2]"]}]})
    result = assemble_frame({0: np.ones((2, 4), np.float32)}, detector=det)
    assert np.all(result.image[:, :3] == 0) and np.all(np.isnan(result.image[:, 3:]))
    with pytest.raises(ConfigError, match=r"no image given for HDU\(s\) \[0\]"):
        assemble_frame({1: np.ones((2, 4))}, detector=det)
    with pytest.raises(ConfigError, match="outside HDU 0"):
        assemble_frame({0: np.ones((2, 3))}, detector=det)
    with pytest.raises(ConfigError, match="units"):
        assemble_frame({0: np.ones((2, 4))}, detector=det, units="photons")


def test_user_overscan_method_is_applied_per_amplifier():
    frame = make_amplifier_frame(level=0.0, seed=8, amp_shape=(10, 12))

    def subtract_mean(image, overscans):
        o = overscans[0]
        return image - image[o["ymin"]:o["ymax"], o["xmin"]:o["xmax"]].mean()

    result = assemble_frame(_raws(frame), detector=frame.detector, overscan_method=subtract_mean)
    for amp in frame.detector.amplifiers:
        raw = frame.hdul[amp.hdu].data.astype(np.float64)
        o = amp.overscans[0]
        expected = raw[amp.data.slices].mean() - raw[o.slices].mean()
        assert result.image[amp.destination.slices].mean() == pytest.approx(expected, abs=1e-3)
