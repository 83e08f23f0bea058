"""The night's per-light fixed cost and store metadata operations, at scale, and where a big night saturates.

    python benchmarks/bench_scale.py [--quick] [--frames 1000] [--big-frames 24] [--skip-big]

(a) N lights of 512^2 (one filter) reduced on a loopback cluster of 2 single-threaded workers,
    fresh and then rerun with nothing to do: lights/s, the fixed cost per light (the light task's
    time minus its calibration step), client and scheduler CPU and peak memory per light, tasks per
    light, store metadata operations per light (``zarr.json`` reads and writes, listings, deletes
    and renames, counted in every process by wrapping zarr's ``LocalStore`` and ``os.replace``)
    and the rerun's plan time.
(b) 1 vs 2 workers on 2048^2 lights, with the disk's write throughput measured in the same run
    (1 GiB written with ``fsync``).
(c) A table extrapolating to 1,000 exposures of 4096^2 on 50 workers from the measured per-light
    costs, naming the resource that saturates first.

The scheduler and the workers are separate processes (``dask scheduler`` / ``dask worker`` on
127.0.0.1, as a ``LocalCluster`` with processes would start them) so that the client's and the
scheduler's CPU time and memory are measured apart.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil
import yaml

from _common import BENCH_DIR, write_record
from ccdflow import synthetic
from ccdflow.night import load_config, reduce_night

BIN = Path(sys.executable).parent


# -- counting, installed in every process of the run ------------------------------------------------

def install_counters() -> None:
    """Wrap zarr's LocalStore and ``os.replace`` so that this process counts metadata operations."""
    import zarr.storage

    store = zarr.storage.LocalStore
    if getattr(store, "_bench_counts", None) is not None:
        store._bench_counts.clear()
        return
    counts: collections.Counter = collections.Counter()
    store._bench_counts = counts

    def wrap(name, kind):
        original = getattr(store, name)

        async def method(self, key, *args, **kwargs):
            if kind != "meta" or str(key).endswith("zarr.json"):
                counts[name] += 1
            return await original(self, key, *args, **kwargs)
        return method

    for name, kind in (("get", "meta"), ("set", "meta"), ("exists", "meta"),
                       ("delete", "any"), ("delete_dir", "any")):
        setattr(store, name, wrap(name, kind))
    original_list = store.list_dir

    def list_dir(self, prefix):
        counts["list_dir"] += 1
        return original_list(self, prefix)
    store.list_dir = list_dir
    original_replace = os.replace

    def replace(src, dst, *args, **kwargs):
        # zarr writes every key through a temporary and a rename: tell metadata from chunks
        dst = Path(dst)
        kind = ("zarr.json" if dst.name == "zarr.json" else "chunk" if "work.zarr" in dst.parts
                else f"{dst.parent.name}/")
        counts[f"rename {kind}"] += 1
        return original_replace(src, dst, *args, **kwargs)
    os.replace = replace


def read_counters() -> dict[str, int]:
    import zarr.storage

    return dict(getattr(zarr.storage.LocalStore, "_bench_counts", None) or {})


def count_tasks(dask_scheduler=None) -> int:
    """Tasks finished (in memory or erred) since the plugin was installed."""
    plugin = dask_scheduler.plugins.get("bench-task-count")
    if plugin is None:
        from distributed.diagnostics.plugin import SchedulerPlugin

        class TaskCount(SchedulerPlugin):
            name = "bench-task-count"

            def __init__(self):
                self.n = 0

            def transition(self, key, start, finish, *args, **kwargs):
                if finish in ("memory", "erred") and start == "processing":
                    self.n += 1

        dask_scheduler.add_plugin(TaskCount())
        return 0
    n, plugin.n = plugin.n, 0
    return n


# -- the cluster ------------------------------------------------------------------------------------

class LoopbackCluster:
    """``dask scheduler`` and ``dask worker`` processes on 127.0.0.1; the client is this process."""

    def __init__(self, workers: int, folder: Path):
        folder.mkdir(parents=True, exist_ok=True)
        self.file = folder / "scheduler.json"
        self.file.unlink(missing_ok=True)
        self.scheduler = subprocess.Popen(
            [BIN / "dask", "scheduler", "--host", "127.0.0.1", "--port", "0", "--dashboard-address",
             ":0", "--scheduler-file", str(self.file)], stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        while not self.file.exists():
            time.sleep(0.05)
        self.worker = subprocess.Popen(
            [BIN / "dask", "worker", "--scheduler-file", str(self.file), "--nworkers", str(workers),
             "--nthreads", "1", "--memory-limit", "3GiB", "--no-dashboard"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ,
                                                                       "PYTHONPATH": _pythonpath()})
        from distributed import Client

        self.client = Client(scheduler_file=str(self.file))
        self.client.wait_for_workers(workers)

    def close(self) -> None:
        self.client.close()
        for proc in (self.worker, self.scheduler):
            proc.terminate()
            proc.wait(timeout=30)


def _pythonpath() -> str:
    here = str(Path(__file__).resolve().parent)
    return os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p)


def _cpu(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system


def _hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# -- one run ----------------------------------------------------------------------------------------

def make_night(size: int, lights: int) -> Path:
    folder = BENCH_DIR / f"scale-{size}-{lights}"
    if not (folder / "night.csv").exists():
        shutil.rmtree(folder, ignore_errors=True)
        instrument = synthetic.Instrument(ny=size, nx=size, n_overscan=8)
        synthetic.write_night(folder, instrument=instrument, filters=("V",), n_bias=5, n_dark=3,
                              dark_exptimes=(120.0,), n_flat=3, n_light=lights, seed=1)
    return folder


def config_file(night: Path, output: Path) -> Path:
    config = {"input": {"filelist": str(night / "night.csv")}, "output": str(output),
              "calibration": {"overscans": "header", "overscan_method": "median",
                              "image_area": "header"}, "stack_lights": False,
              # the brief's calibration-only light: cosmic-ray detection off (it dominates)
              "quality": {"cosmic_rays": "off"}}
    path = night / f"{output.name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def reduce_once(cluster: LoopbackCluster, config: Path, lights: int) -> dict:
    """One night through `reduce_night` on the cluster, with everything counted."""
    client = cluster.client
    client.run(install_counters)
    install_counters()
    client.run_on_scheduler(count_tasks)
    me, sched = psutil.Process(), psutil.Process(cluster.scheduler.pid)
    cpu0, sched0 = _cpu(me), _cpu(sched)
    start = time.perf_counter()
    report = reduce_night(load_config(config), scheduler=client, echo=lambda *_: None,
                          progress=False)
    wall = time.perf_counter() - start
    cpu, sched_cpu = _cpu(me) - cpu0, _cpu(sched) - sched0
    assert report.ok, report.failures
    tasks = client.run_on_scheduler(count_tasks)
    ops = collections.Counter(read_counters())
    for worker_ops in client.run(read_counters).values():
        ops.update(worker_ops)
    done = [f for f in report.frames.values() if f["status"] == "done"]
    fixed = [f["seconds"] - f["stats"]["timings"]["calibrate"] for f in done]
    steps = collections.defaultdict(list)
    for frame in done:
        for step, seconds in frame["stats"]["timings"].items():
            steps[step].append(seconds)
    return {
        "wall_s": round(wall, 3), "stages_s": {k: round(v, 3) for k, v in report.seconds.items()},
        "done": len(done), "reused": report.count("reused"),
        "lights_per_s": round(len(done) / report.seconds["lights"], 2) if done else None,
        "fixed_ms_per_light_median": round(1e3 * statistics.median(fixed), 2) if fixed else None,
        "fixed_ms_per_light_mean": round(1e3 * statistics.fmean(fixed), 2) if fixed else None,
        "task_ms_per_light_median": (round(1e3 * statistics.median(f["seconds"] for f in done), 2)
                                     if done else None),
        "step_ms_median": {k: round(1e3 * statistics.median(v), 2) for k, v in steps.items()},
        "client_cpu_ms_per_light": round(1e3 * cpu / lights, 2),
        "scheduler_cpu_ms_per_light": round(1e3 * sched_cpu / lights, 2),
        "client_peak_mb": round(_hwm_mb(me.pid), 1), "scheduler_peak_mb": round(_hwm_mb(sched.pid), 1),
        "tasks": tasks, "tasks_per_light": round(tasks / lights, 2),
        "store_ops": dict(sorted(ops.items())),
        "store_metadata_ops_per_light": round(sum(v for k, v in ops.items()
                                                  if k != "rename chunk") / lights, 2),
        "zarr_json_ops_per_light": round(sum(v for k, v in ops.items()
                                             if k in ("get", "set", "exists")) / lights, 2),
        "temporary_files_per_light": round(sum(v for k, v in ops.items() if k.startswith("rename")
                                               and k != "rename chunk") / lights, 2),
    }


def disk_write_mb_s(folder: Path, size: int = 2**30) -> float:
    """Write ``size`` bytes in 8 MiB blocks and ``fsync``: the disk's sequential write rate."""
    path = folder / "disk-probe.bin"
    block = os.urandom(8 * 2**20)
    start = time.perf_counter()
    with open(path, "wb") as f:
        for _ in range(size // len(block)):
            f.write(block)
        f.flush()
        os.fsync(f.fileno())
    seconds = time.perf_counter() - start
    path.unlink()
    return size / seconds / 1e6


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


# -- the three parts --------------------------------------------------------------------------------

def part_a(frames: int) -> dict:
    night = make_night(512, frames)
    output = night / "reduced"
    shutil.rmtree(output, ignore_errors=True)
    config = config_file(night, output)
    cluster = LoopbackCluster(2, night / "cluster")
    try:
        fresh = reduce_once(cluster, config, frames)
        rerun = reduce_once(cluster, config, frames)
    finally:
        cluster.close()
    assert rerun["reused"] == frames, rerun
    return {"frames": frames, "fresh": fresh, "rerun": rerun}


def part_b(frames: int) -> dict:
    night = make_night(2048, frames)
    disk = disk_write_mb_s(night)
    runs = {}
    for workers in (1, 2):
        output = night / f"reduced-{workers}w"
        shutil.rmtree(output, ignore_errors=True)
        cluster = LoopbackCluster(workers, night / "cluster")
        try:
            runs[workers] = reduce_once(cluster, config_file(night, output), frames)
        finally:
            cluster.close()
        runs[workers]["bytes_per_light"] = (folder_bytes(output / "lights")
                                            + folder_bytes(output / "work.zarr" / "cubes")) // frames
    return {"frames": frames, "disk_write_mb_s": round(disk, 1), "runs": runs,
            "speedup_2_vs_1": round(runs[2]["lights_per_s"] / runs[1]["lights_per_s"], 2)}


def part_c(a: dict, b: dict, *, lights: int = 1000, workers: int = 50) -> dict:
    """Seconds each resource needs for ``lights`` 4096^2 exposures on ``workers`` workers.

    Pixel-bound costs (the light task, bytes written) scale as the pixel count from the 2048^2
    run (x4); per-light costs of the client and the scheduler do not depend on the frame size and
    come from the 512^2 run.
    """
    one = b["runs"][1]
    task_s = 4 * one["task_ms_per_light_median"] / 1e3
    need = {
        "workers' CPU": lights * task_s / workers,
        "disk (as measured here, shared by all workers)":
            lights * 4 * one["bytes_per_light"] / (b["disk_write_mb_s"] * 1e6),
        "scheduler": lights * a["fresh"]["scheduler_cpu_ms_per_light"] / 1e3,
        "client": lights * a["fresh"]["client_cpu_ms_per_light"] / 1e3,
    }
    first = max(need, key=need.get)
    return {"lights": lights, "workers": workers, "seconds_needed": {k: round(v, 1) for k, v in
                                                                     need.items()},
            "saturates_first": first, "store_metadata_ops":
                round(lights * a["fresh"]["store_metadata_ops_per_light"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="40 lights of 512^2, 4 of 2048^2")
    parser.add_argument("--frames", type=int, default=1000, help="lights of 512^2 in part (a)")
    parser.add_argument("--big-frames", type=int, default=24, help="lights of 2048^2 in part (b)")
    parser.add_argument("--skip-big", action="store_true", help="part (a) only")
    args = parser.parse_args()
    started = time.perf_counter()
    frames, big = (40, 4) if args.quick else (args.frames, args.big_frames)
    results: dict = {"a": part_a(frames)}
    print(yaml.safe_dump(results["a"], sort_keys=False))
    if not args.skip_big:
        results["b"] = part_b(big)
        results["c"] = part_c(results["a"], results["b"])
        print(yaml.safe_dump({k: results[k] for k in "bc"}, sort_keys=False))
    write_record("bench_scale", quick=args.quick, started=started,
                 params={"frames": frames, "big_frames": big}, results=results)


if __name__ == "__main__":
    main()
