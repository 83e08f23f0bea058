import numpy as np
import pytest

from ccdflow.kernels.assemble import place_amplifier


@pytest.mark.parametrize(("flip_x", "flip_y"), [(False, False), (True, False), (False, True),
                                                (True, True)])
def test_place_subtracts_scales_and_mirrors(flip_x, flip_y):
    rng = np.random.default_rng(0)
    block = rng.normal(size=(3, 4))
    level = rng.normal(size=(3, 1))  # per raw row
    out = np.full((5, 7), -1.0, dtype=np.float32)
    place_amplifier(out, block, dest=(1, 4, 2, 6), level=level, scale=2.5, flip_x=flip_x,
                    flip_y=flip_y)
    expected = (block - level) * 2.5
    if flip_x:
        expected = expected[:, ::-1]
    if flip_y:
        expected = expected[::-1, :]
    np.testing.assert_allclose(out[1:4, 2:6], expected, rtol=1e-6)
    untouched = np.ones(out.shape, bool)
    untouched[1:4, 2:6] = False
    assert np.all(out[untouched] == -1.0)


def test_nan_propagates():
    out = np.zeros((1, 2), dtype=np.float32)
    place_amplifier(out, np.array([[np.nan, 1.0]]), dest=(0, 1, 0, 2), level=np.array([[0.5]]))
    assert np.isnan(out[0, 0]) and out[0, 1] == 0.5
