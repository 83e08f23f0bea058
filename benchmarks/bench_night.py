"""A synthetic night end to end through `reduce_night`, with a per-stage breakdown, on 1 and 2
LocalCluster workers.

    python benchmarks/bench_night.py [--quick] [--size 1024] [--lights 20] [--workers 1 2]

Each worker count reduces the same raw frames into a fresh output folder (nothing reused), and the
report's stage timings (plan, masters, lights, stacks) and the per-frame step timings (read,
calibrate, zarr, fits) are recorded. The lights-stage speed-up of 2 workers over 1 is the ratio of
the two lights-stage wall times, measured in the same run.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import time
from pathlib import Path

import yaml

from _common import BENCH_DIR, write_record
from ccdflow import synthetic
from ccdflow.night import load_config, reduce_night


def make_night(size: int, lights: int) -> Path:
    """The synthetic night (cached): 2 filters, biases, darks of two exposures, flats, lights."""
    folder = BENCH_DIR / f"night-{size}-{lights}"
    if not (folder / "night.csv").exists():
        shutil.rmtree(folder, ignore_errors=True)
        instrument = synthetic.Instrument(ny=size, nx=size, n_overscan=max(8, size // 64))
        synthetic.write_night(folder, instrument=instrument, filters=("V", "R"), n_bias=10,
                              n_dark=5, n_flat=5, n_light=lights // 2, seed=1)
    return folder


def run_once(night: Path, workers: int) -> dict:
    output = night / f"reduced-{workers}w"
    shutil.rmtree(output, ignore_errors=True)
    config = {"input": {"filelist": str(night / "night.csv")}, "output": str(output),
              "calibration": {"overscans": "header", "overscan_method": "median_per_line",
                              "image_area": "header"},
              "stack_lights": True, "cluster": {"n_workers": workers}}
    path = night / f"night-{workers}w.yaml"
    path.write_text(yaml.safe_dump(config))
    start = time.perf_counter()
    report = reduce_night(load_config(path), echo=lambda *_: None, progress=False)
    wall = time.perf_counter() - start
    assert report.ok, report.failures
    steps: dict[str, list[float]] = {}
    for frame in report.frames.values():
        for step, seconds in (frame.get("stats") or {}).get("timings", {}).items():
            steps.setdefault(step, []).append(seconds)
    n = report.count("done")
    return {"workers": workers, "wall_s": round(wall, 2),
            "stages_s": {k: round(v, 2) for k, v in report.seconds.items()},
            "lights": n, "lights_per_s": round(n / report.seconds["lights"], 2),
            "frame_step_median_s": {k: round(statistics.median(v), 4) for k, v in steps.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="256x256, 8 lights")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--lights", type=int, default=40)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    started = time.perf_counter()
    size, lights = (256, 8) if args.quick else (args.size, args.lights)
    night = make_night(size, lights)
    results = [run_once(night, w) for w in args.workers]
    for r in results:
        print(f"{r['workers']} worker(s): wall {r['wall_s']} s, stages {r['stages_s']}, "
              f"{r['lights_per_s']} lights/s, per frame {r['frame_step_median_s']}")
    by_workers = {r["workers"]: r for r in results}
    speedup = None
    if 1 in by_workers and 2 in by_workers:
        speedup = round(by_workers[1]["stages_s"]["lights"] / by_workers[2]["stages_s"]["lights"], 2)
        print(f"lights stage, 2 workers vs 1: {speedup}x")
    write_record("bench_night", quick=args.quick, started=started,
                 params={"size": size, "lights": lights, "workers": args.workers},
                 results={"runs": results, "lights_speedup_2_vs_1": speedup})


if __name__ == "__main__":
    main()
