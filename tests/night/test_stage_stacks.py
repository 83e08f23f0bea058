"""Stacks read band by band from the sharded cube: equal to astropy/numpy on the same frames, no
rechunk in the graph, every stack of a night computed in one go, a failing stack on its own."""

import warnings
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace as NS

import dask
import numpy as np
import pytest
import yaml
import zarr
from astropy.io import fits
from astropy.stats import sigma_clip
from astropy.utils.exceptions import AstropyUserWarning
from dask.callbacks import Callback
from dask.utils import key_split

from ccdflow import synthetic as syn
from ccdflow.array.combination import CombineParams, combine
from ccdflow.night import load_config, reduce_night
from ccdflow.night.memory import stack_rows
from ccdflow.night.report import NightReport
from ccdflow.night.run import plan_night
from ccdflow.night.stage_stacks import (
    combine_calibrated,
    compute_stacks,
    stack_from_cubes,
    stack_lights,
)
from ccdflow.night.store import Store

SHAPE = (10, 12)  # 10 rows in inner chunks of 3: the last inner chunk runs past the image


def _frames(n: int, seed: int):
    """Calibrated frames with outliers, NaNs and flagged pixels, written independently here."""
    rng = np.random.default_rng(seed)
    images = rng.normal(50.0, 2.0, (n, *SHAPE)).astype(np.float32)
    images[1, 2, 3] = 5000.0
    images[2, 7, 0] = np.nan
    masks = np.zeros((n, *SHAPE), np.uint8)
    masks[0, 4, 4] = 1
    masks[:, 9, 11] = 8  # every frame flagged there: no value survives
    return images, masks


def _store(tmp_path: Path, n: int = 9) -> tuple[Store, list, np.ndarray]:
    """Two cubes (V and R of one shape); the stack takes frames from both, out of slice order."""
    store = Store(tmp_path / "work.zarr")
    images, masks = _frames(n, seed=5)
    half = n // 2
    store.ensure_cube("lights_V", stems=[f"v{i}" for i in range(half)], shape=SHAPE, rows=3)
    store.ensure_cube("lights_R", stems=[f"r{i}" for i in range(n - half)], shape=SHAPE, rows=3)
    frames = []
    for i in range(n):
        cube, index = ("lights_V", half - 1 - i) if i < half else ("lights_R", i - half)
        store.write_frame(cube, index, images[i], np.ones(SHAPE, np.float32), masks[i])
        frames.append(NS(cube=cube, index=index))
    expected = np.where(masks != 0, np.nan, images)
    return store, frames, expected


def test_the_cube_is_one_shard_per_frame_of_row_band_chunks(tmp_path):
    store, _, _ = _store(tmp_path)
    image = zarr.open_array(str(store.path / "cubes/lights_V/image"), mode="r")
    assert image.shards == (1, 12, 12) and image.chunks == (1, 3, 12)
    shards = sorted(p.relative_to(store.path / "cubes/lights_V/image").as_posix()
                    for p in (store.path / "cubes/lights_V/image/c").rglob("*") if p.is_file())
    assert shards == ["c/0/0/0", "c/1/0/0", "c/2/0/0", "c/3/0/0"]


@pytest.mark.parametrize("rows", [1, 3, 4, 10])
@pytest.mark.parametrize("params", [
    CombineParams(method="median", clip="sigma", cenfunc="median", stdfunc="mad_std"),
    CombineParams(method="mean", clip="sigma", cenfunc="median", stdfunc="std", sigma_lower=3,
                  sigma_upper=3, maxiters=None),
])
def test_a_stack_from_the_sharded_cube_equals_astropy_sigma_clip(tmp_path, rows, params):
    store, frames, stack = _store(tmp_path)
    result = combine(stack_from_cubes(frames, store, rows=rows), params=params)
    data, error, count = dask.compute(result.data, result.error, result.count)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyUserWarning)  # the NaNs are there on purpose
        clipped = sigma_clip(stack, axis=0, sigma_lower=params.sigma_lower,
                             sigma_upper=params.sigma_upper, maxiters=params.maxiters,
                             cenfunc=params.cenfunc.value, stdfunc=params.stdfunc.value,
                             masked=True)
    survivors = (~np.ma.getmaskarray(clipped)).sum(axis=0)
    np.testing.assert_array_equal(count, survivors)
    assert count[1 + 1, 3] == len(frames) - 1  # the 5000 outlier went
    assert count[4, 4] == len(frames) - 1 and count[9, 11] == 0 and np.isnan(data[9, 11])
    with np.errstate(all="ignore"):
        reduce = np.ma.median if params.method == "median" else np.ma.mean
        expected = reduce(clipped, axis=0).filled(np.nan)
        sd = np.ma.std(clipped, axis=0, ddof=1).filled(np.nan)
    factor = np.sqrt(np.pi / 2) if params.method == "median" else 1.0
    np.testing.assert_allclose(data, expected, rtol=1e-5)
    np.testing.assert_allclose(error, factor * sd / np.sqrt(survivors), rtol=1e-4)


def test_the_stack_graph_reads_bands_without_any_rechunk(tmp_path):
    store, frames, _ = _store(tmp_path)
    stack = stack_from_cubes(frames, store, rows=4)
    assert stack.chunks == ((len(frames),), (4, 4, 2), (12,))
    result = combine_calibrated(frames, store, CombineParams(), budget=None)
    names = {key_split(key) for key in dict(result.data.__dask_graph__())}
    assert not any("rechunk" in name for name in names), names
    reads = [key for key in dict(result.data.__dask_graph__()) if key_split(key) == "stack-read"]
    assert len(reads) == result.data.numblocks[0] >= 1


def test_band_rows_follow_the_task_budget():
    # 9 bytes read and 24 of combine work per value: 40 frames x 100 columns fit 10 rows in 132 kB
    assert stack_rows(40, (64, 100), 40 * 100 * 13 * 10, align=1) == 10
    assert stack_rows(40, (64, 100), 40 * 100 * 13 * 10, align=4) == 8  # whole inner chunks
    assert stack_rows(40, (64, 100), 40 * 100 * 13 * 3, align=4) == 3  # less than one chunk
    assert stack_rows(40, (64, 100), 1, align=4) == 1
    assert stack_rows(2, (64, 100), None, align=4) == 64


class _Graphs(Callback):
    """Every graph a local scheduler runs."""

    def __init__(self):
        super().__init__()
        self.graphs = []

    def _start(self, dsk):
        self.graphs.append(list(dict(dsk)))


def _night(folder: Path) -> Path:
    syn.write_night(folder, instrument=syn.Instrument(ny=40, nx=40, n_overscan=8),
                    filters=("V", "R"), n_bias=3, n_dark=3, dark_exptimes=(60.0,), n_flat=3,
                    n_light=3, seed=2)
    (folder / "night.yaml").write_text(yaml.safe_dump({
        "input": {"filelist": "night.csv"}, "output": "reduced", "stack_lights": True,
        "calibration": {"overscans": "header", "image_area": "header"},
        # astropy's rejection, asked for explicitly, so the stacks can be held against astropy
        "combine": {"light": {"method": "median", "clip": "sigma", "stdfunc": "mad_std"}}}))
    return folder / "night.yaml"


def test_a_nights_stacks_are_computed_together_and_equal_numpy(tmp_path):
    config = load_config(_night(tmp_path))
    with _Graphs() as seen:
        report = reduce_night(config, scheduler="synchronous", echo=lambda *_: None, progress=False)
    assert report.ok, report.failures
    # the band reads are fused into the combine tasks; the bands are gathered one by one
    stacking = [keys for keys in seen.graphs if any(key_split(k) == "blocks-getitem" for k in keys)]
    assert len(stacking) == 1
    assert not any("rechunk" in key_split(k) for k in stacking[0])
    combines = {k[0] for k in stacking[0] if key_split(k) == "combine_chunk"}
    assert len(combines) == 2  # both stacks in the one graph
    assert {s["status"] for s in report.stacks.values()} == {"built"} and len(report.stacks) == 2
    for band in ("V", "R"):
        lights = sorted((tmp_path / "reduced/lights").glob(f"light_{band}_*.fits"))
        values = np.stack([np.where(fits.getdata(p, "MASK") != 0, np.nan, fits.getdata(p))
                           for p in lights])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AstropyUserWarning)  # flagged pixels are NaN
            clipped = sigma_clip(values, axis=0, sigma=5, maxiters=5, cenfunc="median",
                                 stdfunc="mad_std", masked=True)
        product = tmp_path / f"reduced/stacks/{band}_SYNTH-FIELD.fits"
        np.testing.assert_array_equal(fits.getdata(product, "NCOMBINE"),
                                      (~np.ma.getmaskarray(clipped)).sum(axis=0))
        np.testing.assert_allclose(fits.getdata(product),
                                   np.ma.median(clipped, axis=0).filled(np.nan), rtol=1e-6)


def test_a_stack_that_cannot_be_read_fails_alone(tmp_path):
    config = load_config(_night(tmp_path))
    assert reduce_night(config, scheduler="synchronous", echo=lambda *_: None, progress=False).ok
    # only the stacks are built again, from cubes one of which no longer reads
    store = Store(tmp_path / "reduced/work.zarr")
    plan = plan_night(config)
    index = {cube: dict(zarr.open_group(str(store.path / "cubes" / cube)).attrs["index"])
             for cube in ("lights_V", "lights_R")}
    plan.frames = [replace(fp, index=index[fp.cube][fp.output.stem]) for fp in plan.frames]
    report = NightReport(output=str(config.output), config={}, started="", version="")
    report.frames = {str(fp.frame.path): {"status": "done"} for fp in plan.frames}
    for shard in (store.path / "cubes/lights_V/image/c").rglob("*"):
        if shard.is_file():
            shard.write_bytes(shard.read_bytes()[:40])
    for stack in (tmp_path / "reduced/stacks").glob("*.fits"):
        stack.unlink()
    out = stack_lights(plan, store, config, report)
    assert out["V_SYNTH-FIELD"]["status"] == "failed"
    assert out["V_SYNTH-FIELD"]["error"]
    assert out["R_SYNTH-FIELD"]["status"] == "built"
    assert (tmp_path / "reduced/stacks/R_SYNTH-FIELD.fits").exists()
    assert not (tmp_path / "reduced/stacks/V_SYNTH-FIELD.fits").exists()


def test_compute_stacks_equals_each_stack_alone(tmp_path):
    store, frames, _ = _store(tmp_path)
    params = CombineParams(method="mean", clip="none")
    both = compute_stacks({"a": combine_calibrated(frames, store, params, budget=40_000),
                           "b": combine_calibrated(frames[:4], store, params)})
    a = combine_calibrated(frames, store, params)
    np.testing.assert_array_equal(both["a"][0], a.data.compute())
    np.testing.assert_array_equal(both["b"][2], (~np.isnan(_store(tmp_path / "x")[2][:4])).sum(0))
