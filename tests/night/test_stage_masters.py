"""Masters built level by level, written band by band from the tasks, against a plain reference.

The raw frames are made here with numpy (not `ccdflow.synthetic`) and the reference masters are
computed from them with numpy and `astropy.stats`: overscan (grouped-data) median per frame, trim, bias, dark
rate, flats scaled by their median (of the whole frame), sigma-clipped mean, flat divided by its clipped mean.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil

import dask
import numpy as np
import pytest
import yaml
import zarr
from astropy.io import fits
from astropy.stats import sigma_clip, sigma_clipped_stats
from dask.callbacks import Callback
from distributed import Client, LocalCluster

from ccdflow.night import load_config, reduce_night
from ccdflow.night.run import plan_night
from ccdflow.night.stage_masters import build_masters
from ccdflow.night.store import Store
from conftest import grouped_median

NY, NX, NO = 40, 24, 6  # image rows and columns, overscan columns (on the right)
CLIP = {"method": "mean", "clip": "sigma", "cenfunc": "median", "stdfunc": "std",
        "sigma_lower": 2.5, "sigma_upper": 2.5, "maxiters": 3}
DARK_TIMES = (20.0, 40.0, 20.0, 40.0, 30.0)
FLAT_TIME = 2.0


def _raw(rng, signal: np.ndarray, offset: float) -> np.ndarray:
    """A raw frame: bias pattern + offset + signal + noise, the overscan at the offset only."""
    frame = np.empty((NY, NX + NO))
    frame[:, :NX] = 1000.0 + offset + signal + 10.0 * np.sin(np.arange(NX) / 3.0)
    frame[:, NX:] = 1000.0 + offset
    return np.round(frame + rng.normal(0.0, 4.0, frame.shape)).astype(np.uint16)


def _write(path, data, *, kind, exptime, filt=None):
    header = fits.Header({"IMAGETYP": kind, "EXPTIME": exptime})
    if filt:
        header["FILTER"] = filt
    fits.PrimaryHDU(data, header=header).writeto(path)


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    """9 biases, 5 darks, 5 flats in V and in R; the config path and the frames by group."""
    root = tmp_path_factory.mktemp("masters")
    rng = np.random.default_rng(7)
    rate = 2.0 + np.linspace(0, 1, NY * NX).reshape(NY, NX)
    pattern = {"V": 0.9 + 0.2 * rng.random((NY, NX)), "R": 1.1 - 0.2 * rng.random((NY, NX))}
    groups, lines = {}, []

    def add(group, kind, name, signal, exptime, filt=None):
        path = root / f"{name}.fits"
        _write(path, _raw(rng, signal, offset=rng.uniform(-30, 30)), kind=kind, exptime=exptime,
               filt=filt)
        groups.setdefault(group, []).append((path, exptime))
        lines.append(f"{kind}, {path.name}")

    for i in range(9):
        signal = np.zeros((NY, NX))
        signal[5 + i, 7] = 400.0  # one hot value per frame, each at another pixel
        add("bias", "bias", f"bias{i}", signal, 0.0)
    for i, t in enumerate(DARK_TIMES):
        add("dark", "dark", f"dark{i}", rate * t, t)
    for filt in ("V", "R"):
        for i, level in enumerate((3000.0, 4000.0, 5000.0, 3500.0, 4500.0)):
            add(f"flat_{filt}", "flat", f"flat{filt}{i}",
                level * pattern[filt] + rate * FLAT_TIME, FLAT_TIME, filt)
    (root / "night.csv").write_text("\n".join(lines) + "\n")
    config = {"input": {"filelist": "night.csv"}, "output": "reduced",
              "calibration": {"overscans": [{"xmin": NX, "xmax": NX + NO, "ymin": 0, "ymax": NY}],
                              "image_area": {"xmin": 0, "xmax": NX, "ymin": 0, "ymax": NY},
                              "gain": 2.0, "read_noise": 8.0, "saturation": None},
              "combine": {"bias": CLIP, "dark": CLIP, "flat": {**CLIP, "scale": "median"}}}
    (root / "night.yaml").write_text(yaml.safe_dump(config))
    return root / "night.yaml", groups


def _corrected(paths) -> np.ndarray:
    frames = [fits.getdata(p).astype(np.float64) for p in paths]
    # the overscan level of integer data: the grouped-data median (as IRAF's)
    return np.stack([f[:, :NX] - grouped_median(f[:, NX:]) for f in frames])


def _clipped_mean(stack: np.ndarray):
    kept = sigma_clip(stack, axis=0, sigma_lower=2.5, sigma_upper=2.5, maxiters=3,
                      cenfunc="median", stdfunc="std")
    n = (~kept.mask).sum(axis=0)
    error = kept.std(axis=0, ddof=1) / np.sqrt(n)
    return kept.mean(axis=0).filled(np.nan), np.asarray(error.filled(np.nan)), n


def reference(groups, *, flats=None) -> dict[str, tuple]:
    """The masters computed plainly from the raw files (float64)."""
    out = {"bias": _clipped_mean(_corrected(p for p, _ in groups["bias"]))}
    bias, bias_error = out["bias"][:2]
    times = np.array([t for _, t in groups["dark"]])
    rates = (_corrected(p for p, _ in groups["dark"]) - bias) / times[:, None, None]
    data, error, n = _clipped_mean(rates)
    out["dark"] = (data, np.hypot(error, np.mean(1 / times) * bias_error), n)
    for name in flats or ("flat_V", "flat_R"):
        flat = _corrected(p for p, _ in groups[name]) - bias - FLAT_TIME * out["dark"][0]
        flat /= np.median(flat.reshape(len(flat), -1), axis=1)[:, None, None]
        data, error, n = _clipped_mean(flat)
        norm = sigma_clipped_stats(data, sigma=3.0, maxiters=5)[0]
        out[name] = (data / norm, error / norm, n)
    return out


def _stored(output, name):
    group = zarr.open_group(str(output / "work.zarr"), path=f"masters/{name}", mode="r")
    return [group[label][...] for label in ("data", "error", "count")], dict(group.attrs)


def _check(output, name, expected):
    (data, error, count), attrs = _stored(output, name)
    assert attrs["complete"] is True
    np.testing.assert_array_equal(count, expected[2])
    np.testing.assert_allclose(data, expected[0], rtol=2e-6, atol=2e-5)
    np.testing.assert_allclose(error, expected[1], rtol=1e-4, atol=1e-6)
    with fits.open(output / "masters" / f"{name}.fits") as hdul:  # the product equals the store
        np.testing.assert_array_equal(hdul[0].data, data)
        np.testing.assert_array_equal(hdul["ERROR"].data, error)
        np.testing.assert_array_equal(hdul["NCOMBINE"].data, count)


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster:
        yield cluster


class _FinishCounter(Callback):
    """Records, per local compute, how many masters it finished."""

    def __init__(self):
        super().__init__()
        self.levels: list[int] = []

    def _start(self, dsk):
        finished = sum(1 for key in dsk if str(key).startswith("_finish-"))
        if finished:
            self.levels.append(finished)


def test_masters_on_threads_match_the_reference_and_each_level_is_one_compute(night, tmp_path):
    config_path, groups = night
    config = load_config(config_path)
    counter = _FinishCounter()
    with counter:
        report = reduce_night(config, scheduler="threads", echo=lambda *_: None, progress=False)
    assert {n: m["status"] for n, m in report.masters.items()} == dict.fromkeys(
        ("bias", "dark", "flat_R", "flat_V"), "built")
    # biases, then darks, then both flats together
    assert counter.levels == [1, 1, 2]
    expected = reference(groups)
    for name, values in expected.items():
        _check(config.output, name, values)
    assert 0 < report.masters["bias"]["rejected_fraction"] < 0.05  # the hot values went


def test_masters_on_a_cluster_match_the_reference(night, cluster, tmp_path):
    config_path, groups = night
    config = dataclasses.replace(load_config(config_path), output=tmp_path / "reduced")
    report = reduce_night(config, scheduler=cluster.scheduler_address, echo=lambda *_: None,
                          progress=False)
    assert report.ok
    for name, values in reference(groups).items():
        _check(config.output, name, values)


def test_bands_are_written_by_the_tasks_in_few_tasks_each(night, tmp_path):
    config_path, groups = night
    config = dataclasses.replace(load_config(config_path), output=tmp_path / "out")
    (tmp_path / "out" / "masters").mkdir(parents=True)
    bias = next(m for m in plan_night(config).masters if m.name == "bias")
    store = Store(tmp_path / "out" / "work.zarr")
    tasks = []

    class Tasks(Callback):
        def _start(self, dsk):
            tasks.append(len(dsk))

    budget = 9 * (NX + NO) * 10 * 4  # 10 raw rows of the 9 frames (float32) per band: 4 bands
    with dask.config.set(scheduler="threads"), Tasks():
        result = build_masters([(bias, budget)], store, config, client=None)["bias"]
    assert result.status == "built"
    arrays = store.master_arrays("bias")
    assert arrays["data"].chunks == (10, NX)  # each band's task wrote its own chunks
    assert len(tasks) == 1 and tasks[0] <= 8 * 4 + 4, tasks
    _check(config.output, "bias", reference(groups, flats=())["bias"])


@pytest.mark.parametrize("scheduler", ["threads", "cluster"])
def test_a_failing_master_fails_alone_in_its_level(night, scheduler, cluster, tmp_path):
    config_path, groups = night
    root = tmp_path / "night"
    shutil.copytree(config_path.parent, root, ignore=shutil.ignore_patterns("reduced"))
    for path, _ in groups["flat_R"]:  # every R flat at the bias level: no usable one
        data = fits.getdata(root / path.name)
        data[:, :NX] = data[:, NX:].mean()
        fits.writeto(root / path.name, data, fits.getheader(root / path.name), overwrite=True)
    config = load_config(root / "night.yaml")
    plan = plan_night(config)
    (config.output / "masters").mkdir(parents=True)
    store = Store(config.output / "work.zarr")
    masters = {m.name: m for m in plan.masters}
    with contextlib.ExitStack() as stack:
        use = stack.enter_context(Client(cluster)) if scheduler == "cluster" else None
        stack.enter_context(dask.config.set(scheduler="threads"))
        for level in (["bias"], ["dark"]):
            build_masters([(masters[n], 2**20) for n in level], store, config, client=use)
        # planned readable, then cut short: its read fails while both flats are computed
        broken = root / groups["flat_V"][0][0].name
        broken.write_bytes(broken.read_bytes()[:4000])
        flats = build_masters([(masters[n], 2**20) for n in ("flat_V", "flat_R")], store, config,
                              client=use)
    flat_r, flat_v = flats["flat_R"], flats["flat_V"]
    assert flat_r.status == "failed"
    assert "no usable input frame left" in flat_r.error
    assert all("a flat must be above zero" in why for why in flat_r.dropped.values())
    assert flat_v.status == "built" and list(flat_v.dropped) == [str(broken)]
    assert str(broken) not in flat_v.inputs
    kept = {**groups, "flat_V": groups["flat_V"][1:]}
    _check(config.output, "flat_V", reference(kept, flats=("flat_V",))["flat_V"])
    assert not _stored(config.output, "flat_R")[1]["complete"]
    assert not (config.output / "masters" / "flat_R.fits").exists()


def test_the_night_reports_a_failed_master_with_the_others_built(night, tmp_path):
    config_path, groups = night
    root = tmp_path / "night"
    shutil.copytree(config_path.parent, root, ignore=shutil.ignore_patterns("reduced"))
    for path, _ in groups["flat_R"]:
        data = fits.getdata(root / path.name)
        data[:, :NX] = data[:, NX:].mean()
        fits.writeto(root / path.name, data, fits.getheader(root / path.name), overwrite=True)
    report = reduce_night(load_config(root / "night.yaml"), scheduler="threads",
                          echo=lambda *_: None, progress=False)
    assert {n: str(m["status"]) for n, m in report.masters.items()} == {
        "bias": "built", "dark": "built", "flat_V": "built", "flat_R": "failed"}
    assert "no usable input frame left" in report.masters["flat_R"]["error"]
    assert not report.ok
