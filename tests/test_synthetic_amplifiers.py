import numpy as np
import pytest

from ccdflow.synthetic.amplifiers import AMPLIFIERS, make_amplifier_frame


def test_seeded_and_both_layouts_hold_the_same_pixels():
    a = make_amplifier_frame(layout="lettered", seed=9, level=100.0, amp_shape=(5, 6))
    b = make_amplifier_frame(layout="lettered", seed=9, level=100.0, amp_shape=(5, 6))
    c = make_amplifier_frame(layout="extensions", seed=9, level=100.0, amp_shape=(5, 6))
    np.testing.assert_array_equal(a.hdul[0].data, b.hdul[0].data)
    for amp_l, amp_e in zip(a.detector.amplifiers, c.detector.amplifiers, strict=True):
        np.testing.assert_array_equal(a.hdul[0].data[amp_l.data.slices],
                                      c.hdul[amp_e.hdu].data[amp_e.data.slices])


def test_truth_and_electronics():
    frame = make_amplifier_frame(seed=1, level=1000.0, amp_shape=(50, 40))
    assert frame.truth.flat.mean() == pytest.approx(1.0)
    np.testing.assert_allclose(frame.truth.electrons, frame.truth.flat * 1000.0)
    for spec, amp in zip(AMPLIFIERS, frame.detector.amplifiers, strict=True):
        raw = frame.hdul[amp.hdu].data.astype(float)
        over = raw[amp.overscans[0].slices]
        assert abs(over.mean() - spec.pedestal) < 0.5
        assert over.std() == pytest.approx(spec.read_noise / spec.gain, rel=0.1)
        assert (amp.gain, amp.read_noise) == (spec.gain, spec.read_noise)
    assert sum(a.flip_x for a in frame.detector.amplifiers) == 1
    assert sum(a.flip_y for a in frame.detector.amplifiers) == 1
    sides = {a.overscans[0].xmin < a.data.xmin for a in frame.detector.amplifiers}
    assert sides == {True, False}
    with pytest.raises(ValueError, match="layout"):
        make_amplifier_frame(layout="mosaic", seed=0)


@pytest.mark.parametrize("layout", ["extensions", "lettered"])
def test_two_amplifiers_side_by_side(layout):
    frame = make_amplifier_frame(layout=layout, n_amplifiers=2, seed=2, level=500.0,
                                 amp_shape=(6, 5), n_overscan=3)
    det = frame.detector
    assert det.name == "SYNTH-2AMP" and det.shape == (6, 10)
    assert [(a.name, a.destination.xmin, a.flip_x, a.flip_y) for a in det.amplifiers] == [
        ("A", 0, False, False), ("B", 5, True, False)]
    assert frame.truth.gain[:, :5].tolist() == [[1.5] * 5] * 6
    assert frame.truth.gain[:, 5:].tolist() == [[2.0] * 5] * 6
    if layout == "lettered":
        header = frame.hdul[0].header
        assert frame.hdul[0].data.shape == (6, 16) and "DATASECC" not in header
        assert (header["DATASECB"], header["BIASSECB"], header["DETSECB"]) == (
            "[12:16,1:6]", "[9:11,1:6]", "[10:6,1:6]")
    else:
        assert [h.name for h in frame.hdul[1:]] == ["A", "B"]
    with pytest.raises(ValueError, match="n_amplifiers must be one of"):
        make_amplifier_frame(n_amplifiers=1, seed=0)
