"""Planning a night of many small frames: headers read in parallel, parsed once, cached for reruns.

    python benchmarks/bench_plan.py [--quick] [--frames 1000] [--latency-ms 10] [--reps 3]

Writes N small FITS files (16x16 uint16, about 60 header cards each: biases, darks, flats and
lights of two filters) and a file list, then times `plan_night` three ways, each on a fresh output
folder unless said otherwise:

- cold: no header cache, the files evicted from the page cache first;
- latency: cold, with a fixed delay added to every header read (a wrapper around the reading
  function used by `ccdflow.night.frames`), as on a network file system;
- warm: a rerun on the output folder of a cold plan (the header cache present, files unchanged).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import time
from pathlib import Path

import numpy as np
from astropy.io import fits

from _common import BENCH_DIR, evict, write_record
from ccdflow.night import frames as night_frames
from ccdflow.night.config import CalibrationConfig, NightConfig
from ccdflow.night.run import plan_night

KINDS = (("bias", 0.0, ""), ("dark", 30.0, ""), ("flat", 5.0, "V"), ("flat", 5.0, "R"),
         ("light", 60.0, "V"), ("light", 60.0, "R"))


def make_frames(n: int) -> Path:
    """N small FITS files and ``night.csv`` (cached between runs)."""
    folder = BENCH_DIR / f"plan-{n}"
    filelist = folder / "night.csv"
    if filelist.exists():
        return filelist
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "raw").mkdir(parents=True)
    rng = np.random.default_rng(1)
    lines = []
    for i in range(n):
        kind, exptime, filt = KINDS[i % len(KINDS)]
        header = fits.Header([("IMAGETYP", kind), ("EXPTIME", exptime), ("GAIN", 1.5),
                              ("RDNOISE", 5.0), ("OBJECT", f"field{i % 7}")])
        if filt:
            header["FILTER"] = filt
        for k in range(52):
            header[f"KEY{k:03d}"] = (float(rng.normal()), "a card like an observatory writes")
        data = rng.integers(900, 1100, size=(16, 16)).astype(np.uint16)
        path = folder / "raw" / f"f{i:05d}.fits"
        fits.PrimaryHDU(data, header=header).writeto(path)
        lines.append(f"{kind}, raw/{path.name}")
    filelist.write_text("\n".join(lines) + "\n")
    return filelist


def config_for(filelist: Path, output: Path) -> NightConfig:
    shutil.rmtree(output, ignore_errors=True)
    output.mkdir(parents=True)  # the header cache is kept only in an existing output folder
    return NightConfig(filelist=filelist, output=output,
                       calibration=CalibrationConfig(gain="header", read_noise="header"))


def timed_plan(config: NightConfig) -> float:
    start = time.perf_counter()
    plan = plan_night(config)
    seconds = time.perf_counter() - start
    assert not plan.failures, plan.failures
    return seconds


def with_latency(seconds: float):
    """Replace the header reader of `ccdflow.night.frames` by one that waits first."""
    original = night_frames.read_header_text

    def slow_read_header_text(path, *, hdu=0):
        time.sleep(seconds)
        return original(path, hdu=hdu)

    night_frames.read_header_text = slow_read_header_text
    return lambda: setattr(night_frames, "read_header_text", original)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--latency-ms", type=float, default=10.0)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    started = time.perf_counter()
    n, reps = (200, 1) if args.quick else (args.frames, args.reps)
    filelist = make_frames(n)
    paths = sorted((filelist.parent / "raw").glob("*.fits"))
    output = filelist.parent / "reduced"
    timed_plan(config_for(filelist, output))  # imports and first-call costs, not counted
    runs: dict[str, list[float]] = {"cold": [], "latency": [], "warm": []}
    for _ in range(reps):
        evict(paths)
        runs["cold"].append(timed_plan(config_for(filelist, output)))
        runs["warm"].append(timed_plan(NightConfig(filelist=filelist, output=output,
                                                   calibration=CalibrationConfig(
                                                       gain="header", read_noise="header"))))
        restore = with_latency(args.latency_ms / 1000)
        try:
            evict(paths)
            runs["latency"].append(timed_plan(config_for(filelist, output)))
        finally:
            restore()
    summary = {name: round(statistics.median(values), 3) for name, values in runs.items()}
    for name, value in summary.items():
        print(f"{name:8s} {n} headers: {value:.3f} s  (runs: {[round(v, 3) for v in runs[name]]})")
    write_record("bench_plan", quick=args.quick, started=started,
                 params={"frames": n, "latency_ms": args.latency_ms, "reps": reps},
                 results={"runs_s": runs, "median_s": summary})


if __name__ == "__main__":
    main()
