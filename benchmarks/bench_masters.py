"""The masters of a night: dask tasks per master and the client's peak memory, per frame size.

A synthetic night of 20 biases, 20 darks and 20 flats (one filter, no lights):

- ``tasks``: reduced with ``reduce_night`` on the threaded scheduler in this process, every
  ``compute`` recorded with the number of tasks of its (optimised) graph (one per master, or one
  per level of masters built together);
- ``rss``: the masters stage alone (``ccdflow.night.run._masters``), in a fresh process, on a
  ``LocalCluster`` of 2 single-threaded worker processes; the client's peak RSS (``VmHWM``: the
  workers are other processes) before and right after the stage.

Run: ``python benchmarks/bench_masters.py [--sizes 512 2048] [--frames 20] [--quick]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import BENCH_DIR, run_isolated, write_record  # noqa: E402


def night(size: int, frames: int) -> Path:
    """The night's folder (written on first use): ``night.yaml`` reduces it to ``reduced/``."""
    from ccdflow import synthetic as syn

    folder = BENCH_DIR / f"masters-{size}-{frames}-nolights"
    config = folder / "night.yaml"
    if not config.exists():
        inst = syn.Instrument(ny=size, nx=size, n_overscan=32)
        written = syn.write_night(folder, instrument=inst, filters=("V",), n_bias=frames,
                                  n_dark=frames, dark_exptimes=(60.0,), n_flat=frames,
                                  n_light=0, seed=1)
        config.write_text(yaml.safe_dump({
            "input": {"filelist": written.filelist.name}, "output": "reduced",
            "calibration": {"overscans": "header", "image_area": "header"}}))
    return config


def count_tasks(size: int, frames: int) -> dict:
    """Reduce the night on the threaded scheduler; tasks of every compute of the masters stage."""
    import shutil

    from dask.callbacks import Callback

    from ccdflow.night import load_config
    from ccdflow.night.run import reduce_night

    config = load_config(night(size, frames))
    shutil.rmtree(config.output, ignore_errors=True)
    computes: list[int] = []

    class Counter(Callback):
        def _start(self, dsk):
            computes.append(len(dsk))

    t0 = time.perf_counter()
    with Counter():
        report = reduce_night(config, scheduler="threads", echo=lambda *_: None, progress=False)
    return {"computes": computes, "masters": sorted(report.masters), "ok": report.ok,
            "masters_s": report.seconds["masters"], "seconds": time.perf_counter() - t0}


def client_rss(size: int, frames: int) -> dict:
    """The masters stage alone on a 2-process LocalCluster; the client's peak RSS right after it.

    Run in a fresh process (`run_isolated`): its ``VmHWM`` is then the client's own.
    """
    import shutil

    from distributed import Client, LocalCluster

    from _common import vm_hwm_mb
    from ccdflow.night import load_config
    from ccdflow.night.memory import worker_budget
    from ccdflow.night.report import NightReport
    from ccdflow.night.run import _masters, plan_night
    from ccdflow.night.store import Store

    config = load_config(night(size, frames))
    shutil.rmtree(config.output, ignore_errors=True)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        plan = plan_night(config)
        (config.output / "masters").mkdir(parents=True)
        store = Store(config.output / "work.zarr")
        store.root()
        report = NightReport(output=str(config.output), config={}, started="", version="")
        before = vm_hwm_mb()
        t0 = time.perf_counter()
        failed = _masters(plan, store, config, report, client=client,
                          budget=worker_budget(client), echo=lambda *_: None, progress=False)
        seconds = time.perf_counter() - t0
        peak = vm_hwm_mb()
    return {"failed": failed, "seconds": seconds, "client_peak_before_masters_mb": before,
            "client_peak_after_masters_mb": peak, "load_average": os.getloadavg()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 2048])
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="256^2 and 512^2, 10 frames")
    parser.add_argument("--skip-rss", action="store_true")
    args = parser.parse_args()
    sizes, frames = ([256, 512], 10) if args.quick else (args.sizes, args.frames)
    started = time.perf_counter()
    results = []
    for size in sizes:
        night(size, frames)
        tasks = count_tasks(size, frames)
        print(f"{size}^2 x {frames}: tasks per compute {tasks['computes']}, masters "
              f"{tasks['masters_s']:.1f} s (threads)", flush=True)
        entry = {"size": size, "frames": frames, "tasks": tasks,
                 "load_average": os.getloadavg()}
        if not args.skip_rss:
            entry["client"] = run_isolated(__file__, "client_rss", label=f"client {size}^2",
                                           kwargs={"size": size, "frames": frames})
        results.append(entry)
    write_record("bench_masters", quick=args.quick, params={"sizes": sizes, "frames": frames},
                 results=results, started=started)


if __name__ == "__main__":
    main()
