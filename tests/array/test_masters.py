"""Stack-wise correction for masters equals the per-frame Calibrator path, lazily."""

import dask
import dask.array as da
import numpy as np
import pytest

from ccdflow import synthetic as syn
from ccdflow.array.calibration import CalibrationParams, Master
from ccdflow.array.combination import CombineParams
from ccdflow.array.masters import (
    StackGeometry,
    corrected_stack,
    flat_levels,
    master_dark,
    master_flat,
    overscan_levels,
)
from ccdflow.array.overscan import OverscanMethods
from ccdflow.array.sections import Region
from ccdflow.calibrator import Calibrator
from ccdflow.io import open_frame, open_stack
from conftest import grouped_median, raise_if_dask_computes


@pytest.fixture(scope="module", params=["columns", "rows"])
def frames(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(request.param)
    inst = syn.Instrument(ny=40, nx=36, n_overscan=8, overscan=request.param)
    truth = syn.make_truth(inst, seed=2)
    paths = []
    for i in range(4):
        paths.append(folder / f"dark{i}.fits")
        syn.make_frame(truth, imagetyp="dark", exptime=30.0 * (i + 1), seed=i).hdu.writeto(paths[-1])
    return inst, paths


@pytest.mark.parametrize("method", list(OverscanMethods))
def test_corrected_stack_equals_the_calibrator_frame_by_frame(frames, method):
    inst, paths = frames
    overscan, area = Region(**inst.overscan_region), Region(**inst.image_region)
    params = CalibrationParams(image_area=area, overscans=(overscan,), overscan_method=method)
    bias = Master(np.random.default_rng(0).normal(0, 2, area.shape).astype(np.float32))
    rate = Master(np.full(area.shape, 0.5, np.float32), exptime=1.0)
    times = tuple(30.0 * (i + 1) for i in range(4))
    stack = open_stack(paths, rows_per_chunk=7)
    with raise_if_dask_computes():
        lazy = corrected_stack(stack, StackGeometry(params=params, exptimes=times),
                               bias=bias.data, dark_rate=rate.data, per_second=True)
    calibrate = Calibrator(overscans=[inst.overscan_region], image_area=inst.image_region,
                           overscan_method=method, master_bias=bias, master_dark=rate)
    expected = [calibrate.calibrate(open_frame(p)).image.compute() / t
                for p, t in zip(paths, times, strict=True)]
    np.testing.assert_allclose(lazy.compute(), np.stack(expected), rtol=1e-5, atol=1e-5)


def test_master_builders_are_lazy_and_flats_are_scaled(frames):
    inst, paths = frames
    params = CalibrationParams(image_area=Region(**inst.image_region),
                               overscans=(Region(**inst.overscan_region),))
    geometry = StackGeometry(params=params, exptimes=(30.0, 60.0, 90.0, 120.0))
    stack = open_stack(paths)
    with raise_if_dask_computes():
        dark = master_dark(stack, geometry, bias=None)
        flat = master_flat(stack, geometry, bias=da.zeros(params.image_area.shape), dark_rate=None)
    assert flat.params.scale == "median"
    data, count = dask.compute(flat.data, flat.count)
    assert abs(np.nanmedian(data) - 1) < 0.15 and count.max() == 4  # divided by its level
    assert dark.data.shape == params.image_area.shape


def test_saturated_raw_pixels_never_enter_a_master():
    rng = np.random.default_rng(5)
    raw = rng.normal(20000.0, 100.0, (4, 12, 10)).astype(np.float32)
    raw[1, 3, 4] = 65535.0  # saturated in one flat only
    raw[:, 7, 2] = 65535.0  # saturated in every flat
    area = Region(xmin=0, xmax=10, ymin=0, ymax=12)
    geometry = StackGeometry(params=CalibrationParams(image_area=area, saturation=65535.0),
                             exptimes=(5.0,) * 4)
    corrected = corrected_stack(da.from_array(raw, chunks=(4, 6, 10)), geometry).compute()
    assert np.isnan(corrected[1, 3, 4]) and np.isnan(corrected[:, 7, 2]).all()
    assert np.isfinite(np.delete(corrected.reshape(4, -1), [3 * 10 + 4, 7 * 10 + 2], axis=1)).all()
    result = master_flat(da.from_array(raw, chunks=(4, 6, 10)), geometry, bias=None, dark_rate=None)
    data, count = dask.compute(result.data, result.count)
    assert count[3, 4] == 3 and count[7, 2] == 0 and np.isnan(data[7, 2])
    others = raw[[0, 2, 3], 3, 4] / np.median(raw[[0, 2, 3]], axis=(1, 2))
    assert data[3, 4] == pytest.approx(np.median(others), rel=1e-3)


@pytest.mark.parametrize("method", ["median", "median_per_line"])
def test_overscan_levels_of_all_frames_come_from_one_task(method):
    rng = np.random.default_rng(3)
    raw = rng.integers(900, 1100, (6, 30, 20)).astype(np.float32)
    stack = da.from_array(raw, chunks=(6, 8, 20))
    strip = Region(xmin=16, xmax=20, ymin=0, ymax=30)
    with raise_if_dask_computes():
        levels = overscan_levels(stack, [strip], method=OverscanMethods(method))
    assert levels.numblocks == (1, 1, 1)
    # as many tasks for twice the frames: none is per frame
    more = da.from_array(np.concatenate([raw, raw]), chunks=(12, 8, 20))
    twice = overscan_levels(more, [strip], method=OverscanMethods(method))
    assert len(dask.optimize(twice)[0].__dask_graph__()) == len(
        dask.optimize(levels)[0].__dask_graph__())
    # the same as each frame's own level, computed alone
    for frame, level in zip(raw, levels.compute(), strict=True):
        one = overscan_levels(da.from_array(frame[None]), [strip], method=OverscanMethods(method))
        np.testing.assert_array_equal(level, one.compute()[0])
    if method == "median":  # integer data: the grouped-data median of the strip
        expected = [grouped_median(frame[:, 16:]) for frame in raw]
        np.testing.assert_allclose(levels.compute()[:, 0, 0], expected, rtol=1e-6)


def test_flat_levels_are_each_frame_median_after_bias_and_dark():
    rng = np.random.default_rng(4)
    flats = rng.normal(1000.0, 20.0, (4, 10, 12)).astype(np.float32) * np.arange(1, 5)[:, None, None]
    bias = np.full((10, 12), 7.0, np.float32)
    dark = np.full((10, 12), 0.5, np.float32)
    params = CalibrationParams(image_area=Region(xmin=0, xmax=12, ymin=0, ymax=10))
    geometry = StackGeometry(params=params, exptimes=(2.0, 2.0, 4.0, 4.0))
    with raise_if_dask_computes():
        levels = flat_levels(da.from_array(flats, chunks=(4, 3, 12)), geometry, bias=bias,
                             dark_rate=dark, params=CombineParams(scale="median"))
    times = np.array([2.0, 2.0, 4.0, 4.0])[:, None, None]
    expected = np.median((flats.astype(np.float64) - 7.0 - 0.5 * times).reshape(4, -1), axis=1)
    np.testing.assert_allclose(levels.compute(), expected, rtol=1e-6)
