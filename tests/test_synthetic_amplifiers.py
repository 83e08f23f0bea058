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
