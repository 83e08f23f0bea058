"""ccdflow combine time and peak memory versus the number of frames N and the frame size.

    python benchmarks/bench_scaling.py [--quick]

Each point is `combine(open_stack(paths))` (median, 5-sigma, defaults) computed on the threaded
scheduler in a fresh process, the input files evicted from the page cache first. Memory should follow
the chunk budget and the size of the products (3 planes of one frame), never N x the frame size.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import dask
import numpy as np

from ccdflow.array.chunks import CHUNK_BUDGET
from ccdflow.array.combination import CombineParams, combine
from ccdflow.io import open_stack

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import GB, run_isolated, summarize, synthetic_stack, total_bytes, write_record  # noqa: E402

SCRIPT = Path(__file__).resolve()


def run_ccdflow(paths: list[str], warm_paths: list[str] | None = None) -> dict:
    """One combine of the stack, after an untimed one of a tiny stack (one-time costs)."""
    warm = None
    if warm_paths:
        t0 = time.perf_counter()
        run_ccdflow(warm_paths)
        warm = time.perf_counter() - t0
    t0 = time.perf_counter()
    stack = open_stack(paths)
    result = combine(stack, params=CombineParams(method="median", sigma_lower=5, sigma_upper=5))
    data, error, count = dask.compute(result.data, result.error, result.count, scheduler="threads")
    seconds = time.perf_counter() - t0
    rows = stack.chunks[1][0]
    return {"seconds": seconds, "warm_up_s": warm, "chunk_rows": rows, "n_chunks": len(stack.chunks[1]),
            "chunk_mb": len(paths) * rows * stack.shape[2] * 4 / 1e6,
            "products_mb": (data.nbytes + error.nbytes + count.nbytes) / 1e6,
            "nan_pixels": int(np.isnan(data).sum())}


def warm_up(paths: list[str]) -> dict:
    """Fill numba's on-disk cache once."""
    run_ccdflow(paths)
    return {}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N in 5, 10 and sizes 1k, 2k; one run each")
    parser.add_argument("--frames", type=int, nargs="+", help="N values (default 5 10 20 40)")
    parser.add_argument("--sizes", type=int, nargs="+", help="rows = columns (default 1024 2048 4096)")
    parser.add_argument("--reps", type=int, help="runs per point (default 3, quick 1)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    frames = args.frames or ([5, 10] if args.quick else [5, 10, 20, 40])
    sizes = args.sizes or ([1024, 2048] if args.quick else [1024, 2048, 4096])
    reps = args.reps or (1 if args.quick else 3)
    warm_paths = [str(p) for p in synthetic_stack(5, 256, 256, dtype="uint16")]
    run_isolated(SCRIPT, "warm_up", kwargs=dict(paths=warm_paths), label="warm-up (numba)")
    points = []
    for size in sizes:
        all_paths = [str(p) for p in synthetic_stack(max(frames), size, size, dtype="uint16")]
        for n in frames:
            paths = all_paths[:n]
            nbytes = total_bytes(paths)
            runs = [run_isolated(SCRIPT, "run_ccdflow", kwargs=dict(paths=paths, warm_paths=warm_paths),
                                 cold=paths, label=f"N={n:2d} {size}x{size}") for _ in range(reps)]
            s = summarize(runs)
            points.append(dict(
                s, frames=n, size=size, input_bytes=nbytes, input_gb_per_s=nbytes / GB / s["median_s"],
                working_mb=s["peak_rss_mb"] - s["baseline_rss_mb"], chunk_rows=runs[0]["chunk_rows"],
                chunk_mb=runs[0]["chunk_mb"], n_chunks=runs[0]["n_chunks"],
                products_mb=runs[0]["products_mb"], runs_detail=runs))
    growth = {}
    for size in sizes:
        row = [p for p in points if p["size"] == size]
        first, last = row[0], row[-1]
        growth[str(size)] = {
            "frames": [p["frames"] for p in row],
            "peak_rss_mb": [round(p["peak_rss_mb"]) for p in row],
            "working_mb": [round(p["working_mb"]) for p in row],
            "working_minus_products_mb": [round(p["working_mb"] - p["products_mb"]) for p in row],
            "input_mb": [round(p["input_bytes"] / 1e6) for p in row],
            "peak_ratio_last_first": last["peak_rss_mb"] / first["peak_rss_mb"],
            "input_ratio_last_first": last["input_bytes"] / first["input_bytes"],
            "seconds": [round(p["median_s"], 3) for p in row],
            "seconds_per_frame": [round(p["median_s"] / p["frames"], 4) for p in row],
            "median_seconds_per_mpixel_frame": statistics.median(
                p["median_s"] / (p["frames"] * size * size / 1e6) for p in row),
        }
        print(f"size {size}: peak MB {growth[str(size)]['peak_rss_mb']} for N {growth[str(size)]['frames']}")
    params = {"frames": frames, "sizes": sizes, "reps": reps, "dtype": "uint16 (BZERO 32768)",
              "combine": "median, sigma 5/5, maxiters 5, mad_std (CombineParams defaults)",
              "chunk_budget_bytes": CHUNK_BUDGET}
    notes = ["working_mb = peak RSS - RSS after imports; products (data, error, count of one frame) "
             "are part of it and grow with the frame size, not with N",
             "time after an untimed combine of 5 x 256^2 frames in the same process; inputs evicted from "
             "the page cache before each run"]
    write_record("bench_scaling", quick=args.quick, params=params,
                 results={"points": points, "memory_vs_n": growth}, notes=notes, started=started)


if __name__ == "__main__":
    main()
