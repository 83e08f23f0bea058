"""`combine` on lists of CCDData/NDData: masks honoured, units checked, against ccdproc.combine."""

from __future__ import annotations

import warnings

import astropy.units as u
import dask
import numpy as np
import pytest
from astropy.nddata import CCDData, NDData, StdDevUncertainty

from ccdflow.array.combination import CombineParams, combine
from ccdflow.array.ndstack import UncertaintyIgnoredWarning, stack_nddata
from ccdflow.errors import ConfigError


def _frames(n: int = 5, shape=(6, 7), seed: int = 3) -> list[CCDData]:
    rng = np.random.default_rng(seed)
    frames = [CCDData(rng.normal(1000.0, 5.0, shape), unit="adu") for _ in range(n)]
    # a hot pixel of 5000 ADU, masked in its frame: it must not enter the combine
    frames[2].data[1, 1] = 5000.0
    frames[2].mask = np.zeros(shape, bool)
    frames[2].mask[1, 1] = True
    # a pixel masked in every frame has no value at all
    for frame in frames:
        mask = np.zeros(shape, bool) if frame.mask is None else frame.mask
        mask[4, 5] = True
        frame.mask = mask
    return frames


def _ccdproc(frames, method):
    import ccdproc

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ccdproc's own chatter about all-masked pixels
        return ccdproc.combine(frames, method=method, dtype=np.float64)


@pytest.mark.parametrize("method,ccdproc_method", [("mean", "average"), ("median", "median")])
def test_masked_pixels_are_left_out_as_ccdproc_does(method, ccdproc_method):
    frames = _frames()
    result = combine(frames, params=CombineParams(method=method, clip="none", uncertainty="ccdproc"))
    data, error, count = dask.compute(result.data, result.error, result.count)
    expected = _ccdproc(frames, ccdproc_method)
    good = ~expected.mask
    np.testing.assert_allclose(data[good], expected.data[good], rtol=1e-6)
    np.testing.assert_allclose(error[good], expected.uncertainty.array[good], rtol=1e-4)
    # the masked 5000 ADU does not enter: about 1000, not (5000 + 4*1000)/5
    plain = np.mean([f.data[1, 1] for i, f in enumerate(frames) if i != 2])
    assert data[1, 1] == pytest.approx(plain if method == "mean" else data[1, 1], rel=1e-6)
    assert abs(data[1, 1] - 1000.0) < 20.0
    assert count[1, 1] == 4 and count[0, 0] == 5
    assert count[4, 5] == 0 and np.isnan(data[4, 5]) and bool(expected.mask[4, 5])
    assert result.unit == u.adu


def test_mask_and_unit_with_the_default_rejection():
    frames = _frames(n=7)
    result = combine(frames, params=CombineParams(method="mean"))
    data, count = dask.compute(result.data, result.count)
    assert count[1, 1] <= 6 and abs(data[1, 1] - 1000.0) < 20.0
    assert result.unit == u.adu


def test_plain_nddata_and_no_unit():
    frames = [NDData(np.full((3, 4), v)) for v in (1.0, 2.0, 6.0)]
    result = combine(frames, params=CombineParams(method="median", clip="none"))
    assert result.unit is None
    assert float(result.data[0, 0].compute()) == 2.0


def test_mixed_units_are_an_error_naming_them():
    frames = [CCDData(np.ones((3, 3)), unit="adu"), CCDData(np.ones((3, 3)), unit="electron")]
    with pytest.raises(ConfigError, match=r"mixed units \(frame 0: adu, frame 1: electron\)"):
        combine(frames)
    with pytest.raises(ConfigError, match="frame 1: no unit"):
        combine([CCDData(np.ones((3, 3)), unit="adu"), NDData(np.ones((3, 3)))])


def test_equal_units_spelt_differently_are_one_unit():
    frames = [CCDData(np.ones((3, 3)), unit="electron/s"),
              CCDData(np.ones((3, 3)), unit=u.electron * u.s**-1)]
    assert stack_nddata(frames).unit == u.electron / u.s


def test_shapes_must_agree():
    frames = [CCDData(np.ones((3, 3)), unit="adu"), CCDData(np.ones((3, 4)), unit="adu")]
    with pytest.raises(ConfigError, match=r"frame 1 has shape \(3, 4\)"):
        combine(frames)


def test_uncertainties_are_ignored_with_a_warning():
    frames = [CCDData(np.full((2, 2), v), unit="adu", uncertainty=StdDevUncertainty(np.ones((2, 2))))
              for v in (1.0, 2.0, 3.0)]
    with pytest.warns(UncertaintyIgnoredWarning, match="not propagated"):
        result = combine(frames, params=CombineParams(method="mean", clip="none", uncertainty="ccdproc"))
    # the error is the scatter's (std(ddof=0)/sqrt(3)), not from the input uncertainties (1/sqrt(3))
    assert float(result.error[0, 0].compute()) == pytest.approx(np.std([1, 2, 3]) / np.sqrt(3), rel=1e-6)


def test_stacking_is_lazy():
    frames = _frames()
    calls = []

    def counting(dsk, keys, **kwargs):
        calls.append(1)
        return dask.get(dsk, keys, **kwargs)

    with dask.config.set(scheduler=counting):
        combine(frames)
    assert calls == []
