"""Every light is isolated: a killed worker fails that light only; workers' memory limits size the
stack bands and refuse, by name, a light that cannot fit."""

import os
from pathlib import Path

import dask
import numpy as np
import yaml
from astropy.io import fits
from distributed import LocalCluster
from distributed.diagnostics.plugin import WorkerPlugin

from ccdflow import synthetic as syn
from ccdflow.night import load_config, reduce_night


def _night(folder: Path, *, size=48, n_light=3, **cluster) -> Path:
    night = syn.write_night(folder, instrument=syn.Instrument(ny=size, nx=size, n_overscan=8),
                            n_bias=3, n_dark=3, dark_exptimes=(30.0,), n_flat=3, n_light=n_light,
                            filters=("V",), seed=4)
    (folder / "night.yaml").write_text(yaml.safe_dump({
        "input": {"filelist": night.filelist.name}, "output": "reduced",
        "calibration": {"overscans": "header", "image_area": "header"}, "cluster": cluster}))
    return folder / "night.yaml"


class _KillOn(WorkerPlugin):
    """Kills its worker process when the task of one light starts (a real crash, not an exception)."""

    def __init__(self, stem: str):
        self.stem = stem

    def transition(self, key, start, finish, **kwargs):
        if finish == "executing" and self.stem in str(key):
            os._exit(1)


def test_a_killed_worker_fails_only_its_light(tmp_path):
    config = load_config(_night(tmp_path))
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), \
            LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0") as cluster:
        cluster.get_client().register_plugin(_KillOn("light_V_001"))
        report = reduce_night(config, scheduler=cluster, echo=lambda *_: None, progress=False)
    assert report.aborted is None and not report.ok
    failed = {Path(p).name: f["error"] for p, f in report.frames.items() if f["status"] == "failed"}
    # a light queued on the same worker dies with it (dask's own rule); the others are done
    assert "light_V_001.fits" in failed and len(failed) < 3
    assert all(reason.startswith("KilledWorker: ") for reason in failed.values())
    assert report.count("done") == 3 - len(failed)
    assert set(report.failures) == {str(tmp_path / "raw" / name) for name in failed}
    # the night was not lost: a rerun does exactly the failed lights
    rerun = reduce_night(config, scheduler="synchronous", echo=lambda *_: None, progress=False)
    assert rerun.ok and rerun.count("done") == len(failed)


def test_a_memory_limit_keeps_the_products_and_refuses_a_light_that_cannot_fit(tmp_path):
    small = tmp_path / "small"
    small.mkdir()
    config = load_config(_night(small, size=512, n_light=1))
    with LocalCluster(n_workers=1, threads_per_worker=1, memory_limit="600MB",
                      dashboard_address=":0") as cluster:
        report = reduce_night(config, scheduler=cluster, echo=lambda *_: None, progress=False)
    assert report.ok, report.failures
    # against an unconstrained run: the bands change nothing
    reference = load_config(_night(tmp_path / "ref", size=512, n_light=1))
    assert reduce_night(reference, scheduler="synchronous", echo=lambda *_: None, progress=False).ok
    for name in ("masters/bias.fits", "masters/flat_V.fits", "lights/light_V_000.fits"):
        np.testing.assert_array_equal(fits.getdata(small / "reduced" / name),
                                      fits.getdata(tmp_path / "ref/reduced" / name), err_msg=name)

    big = tmp_path / "big"
    big.mkdir()
    light = big / "huge.fits"
    fits.writeto(light, np.zeros((4096, 4096), np.int16))
    (big / "night.csv").write_text(f"light, {light.name}\n")
    (big / "night.yaml").write_text(yaml.safe_dump({"input": {"filelist": "night.csv"}}))
    with LocalCluster(n_workers=1, threads_per_worker=1, memory_limit="400MB",
                      dashboard_address=":0") as cluster:
        report = reduce_night(load_config(big / "night.yaml"), scheduler=cluster,
                              echo=lambda *_: None, progress=False)
    error = report.frames[str(light)]["error"]
    assert error.startswith("WorkerMemoryError: ") and "huge.fits" in error
    assert "needs about 704 MiB" in error
