"""Master combine from FITS files on disk: ccdflow versus ccdproc.combine, and the I/O floor.

    python benchmarks/bench_combine.py [--quick] [--cases NAME ...] [--methods median mean]

Every contender runs in a fresh process with the page cache dropped first (when allowed), contenders
interleaved within each repetition; the record holds medians, paired ratios and peak RSS.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import ccdproc
import dask
import numpy as np
from astropy.stats import mad_std

from ccdflow.combine import CombineParams, combine
from ccdflow.io import open_stack

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    BENCH_DIR,
    GB,
    paired_ratio,
    run_isolated,
    summarize,
    synthetic_stack,
    total_bytes,
    write_record,
)

SCRIPT = Path(__file__).resolve()
CHECK_DIR = BENCH_DIR / "check"

# name: (frames, rows = columns, dtype)
CASES = {
    "f32_20x2048": (20, 2048, "float32"),
    "u16_40x4096": (40, 4096, "uint16"),
    "f32_10x1024": (10, 1024, "float32"),
    "u16_10x2048": (10, 2048, "uint16"),
}
FULL_CASES = ("f32_20x2048", "u16_40x4096")
QUICK_CASES = ("f32_10x1024", "u16_10x2048")
CCDPROC_DEFAULT_MEM = 16e9
CCDPROC_TILED_MEM = 64e6


# -- contenders (each runs in its own process) ---------------------------------------------------------

def io_floor(paths: list[str]) -> dict:
    """Read every byte of every file once, into one reused buffer."""
    buf = bytearray(16 * 2**20)
    nbytes = 0
    t0 = time.perf_counter()
    for path in paths:
        with open(path, "rb", buffering=0) as fh:
            while got := fh.readinto(buf):
                nbytes += got
    return {"seconds": time.perf_counter() - t0, "bytes_read": nbytes}


def run_ccdflow(paths: list[str], method: str, maxiters: int | None, uncertainty: str,
                save: str | None = None) -> dict:
    """ccdflow: lazy stack, lazy combine, one threaded compute of the three products."""
    params = CombineParams(method=method, sigma_lower=5, sigma_upper=5, maxiters=maxiters,
                           uncertainty=uncertainty)
    t0 = time.perf_counter()
    stack = open_stack(paths)
    result = combine(stack, params=params)
    data, error, count = dask.compute(result.data, result.error, result.count, scheduler="threads")
    seconds = time.perf_counter() - t0
    if save:
        np.save(save, data)
    return {"seconds": seconds, "chunk_rows": stack.chunks[1][0], "n_chunks": len(stack.chunks[1]),
            "rejected_fraction": float(1 - count.sum(dtype=np.int64) / (len(paths) * count.size)),
            "median_of_result": float(np.nanmedian(data))}


def run_ccdproc(paths: list[str], method: str, mem_limit: float, save: str | None = None) -> dict:
    """ccdproc.combine with a 5-sigma clip about the median, scale mad_std (one pass, as it does)."""
    t0 = time.perf_counter()
    ccd = ccdproc.combine(paths, method=method, sigma_clip=True, sigma_clip_low_thresh=5,
                          sigma_clip_high_thresh=5, sigma_clip_func=np.ma.median,
                          sigma_clip_dev_func=mad_std, mem_limit=mem_limit, unit="adu")
    seconds = time.perf_counter() - t0
    if save:
        np.save(save, np.asarray(ccd.data, dtype=np.float32))
    return {"seconds": seconds, "median_of_result": float(np.nanmedian(ccd.data))}


def warm_up(paths: list[str]) -> dict:
    """Load (or compile into numba's cache) the kernels, so no timed run pays for compiling."""
    for method in ("median", "mean"):
        run_ccdflow(paths, method, 1, "ccdproc")
        run_ccdflow(paths, method, 5, "ccdflow")
    return {}


# -- driver -------------------------------------------------------------------------------------------

def contenders(method: str, tiled_mem: float) -> dict[str, tuple[str, dict]]:
    return {
        f"ccdflow {method} maxiters=1": ("run_ccdflow",
                                         dict(method=method, maxiters=1, uncertainty="ccdproc")),
        f"ccdflow {method} defaults": ("run_ccdflow",
                                       dict(method=method, maxiters=5, uncertainty="ccdflow")),
        f"ccdproc {method} mem_limit=16e9": ("run_ccdproc",
                                             dict(method=method, mem_limit=CCDPROC_DEFAULT_MEM)),
        f"ccdproc {method} mem_limit={tiled_mem:.0e}": ("run_ccdproc",
                                                        dict(method=method, mem_limit=tiled_mem)),
    }


def agreement(a: Path, b: Path) -> dict:
    """How closely two saved results agree (ccdflow maxiters=1 against ccdproc)."""
    x, y = np.load(a), np.load(b)
    diff = np.abs(x.astype(np.float64) - y)
    scale = np.maximum(np.abs(y), 1.0)
    close = np.isclose(x, y, rtol=1e-5, atol=1e-3, equal_nan=True)
    return {"max_abs_diff": float(np.nanmax(diff)), "max_rel_diff": float(np.nanmax(diff / scale)),
            "fraction_not_close": float(1 - close.mean())}


def bench_case(name: str, *, methods, reps: int, ccdproc_reps: int, tiled_mem: float,
               timeout: float) -> dict:
    n, size, dtype = CASES[name]
    paths = [str(p) for p in synthetic_stack(n, size, size, dtype=dtype)]
    nbytes = total_bytes(paths)
    print(f"case {name}: {n} x {size}x{size} {dtype}, {nbytes / GB:.3f} GB on disk", flush=True)
    run_isolated(SCRIPT, "warm_up", kwargs=dict(paths=paths[:5]), cold=False, label="warm-up (numba)")
    CHECK_DIR.mkdir(parents=True, exist_ok=True)
    plan = {"I/O floor (read every byte)": ("io_floor", {})}
    for method in methods:
        plan.update(contenders(method, tiled_mem))
    runs: dict[str, list[dict]] = {label: [] for label in plan}
    for rep in range(reps):
        print(f" repetition {rep + 1}/{reps}", flush=True)
        for label, (func, kwargs) in plan.items():
            if func == "run_ccdproc" and rep >= ccdproc_reps:
                continue
            kw = dict(kwargs, paths=paths)
            if rep == 0 and label in (f"ccdflow {m} maxiters=1" for m in methods):
                kw["save"] = str(CHECK_DIR / f"{name}-ccdflow-{kwargs['method']}.npy")
            if rep == 0 and label in (f"ccdproc {m} mem_limit=16e9" for m in methods):
                kw["save"] = str(CHECK_DIR / f"{name}-ccdproc-{kwargs['method']}.npy")
            runs[label].append(run_isolated(SCRIPT, func, kwargs=kw, timeout=timeout, label=label))
    summary = {label: dict(summarize(r), input_gb_per_s=nbytes / GB / summarize(r)["median_s"])
               for label, r in runs.items() if r}
    floor = runs["I/O floor (read every byte)"]
    ratios, checks = {}, {}
    for method in methods:
        like, dflt = runs[f"ccdflow {method} maxiters=1"], runs[f"ccdflow {method} defaults"]
        for label in (f"ccdproc {method} mem_limit=16e9", f"ccdproc {method} mem_limit={tiled_mem:.0e}"):
            if runs[label]:
                ratios[f"{label} / ccdflow maxiters=1"] = paired_ratio(runs[label], like)
                ratios[f"{label} / ccdflow defaults"] = paired_ratio(runs[label], dflt)
        ratios[f"ccdflow {method} maxiters=1 / I/O floor"] = paired_ratio(like, floor)
        ratios[f"ccdflow {method} defaults / I/O floor"] = paired_ratio(dflt, floor)
        a = CHECK_DIR / f"{name}-ccdflow-{method}.npy"
        b = CHECK_DIR / f"{name}-ccdproc-{method}.npy"
        if a.exists() and b.exists():
            checks[method] = agreement(a, b)
    return {"frames": n, "shape": [size, size], "dtype": dtype, "input_bytes": nbytes,
            "summary": summary, "ratios": ratios, "ccdflow_vs_ccdproc_result": checks,
            "runs": runs}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small cases, one repetition")
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES), help="override the case list")
    parser.add_argument("--methods", nargs="+", default=["median", "mean"], choices=["median", "mean"])
    parser.add_argument("--reps", type=int, help="repetitions (default 3, quick 1)")
    parser.add_argument("--big-ccdproc-reps", type=int, default=1,
                        help="repetitions of ccdproc on the 40 x 4096^2 case (default 1: minutes each)")
    parser.add_argument("--big-tiled-mem", type=float, default=1.5e9,
                        help="ccdproc mem_limit of the tiled run on the 40 x 4096^2 case")
    parser.add_argument("--timeout", type=float, default=2400, help="seconds per contender run")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    cases = args.cases or (QUICK_CASES if args.quick else FULL_CASES)
    reps = args.reps or (1 if args.quick else 3)
    results = {}
    for name in cases:
        big = name == "u16_40x4096"
        results[name] = bench_case(
            name, methods=args.methods, reps=reps,
            ccdproc_reps=min(reps, args.big_ccdproc_reps) if big else reps,
            tiled_mem=args.big_tiled_mem if big else CCDPROC_TILED_MEM, timeout=args.timeout)
    params = {"cases": {c: CASES[c] for c in cases}, "methods": args.methods, "reps": reps,
              "sigma": 5, "ccdproc": {"sigma_clip_func": "np.ma.median", "sigma_clip_dev_func": "mad_std",
                                      "default_mem_limit": CCDPROC_DEFAULT_MEM,
                                      "tiled_mem_limit": CCDPROC_TILED_MEM,
                                      "big_tiled_mem_limit": args.big_tiled_mem,
                                      "big_reps": args.big_ccdproc_reps},
              "ccdflow": "open_stack + combine, dask.compute(data, error, count, scheduler='threads')"}
    notes = ["time = the contender's work inside a fresh process (imports excluded); page cache dropped "
             "before every run when cold_cache is true",
             "peak_rss_mb = ru_maxrss of the contender's process (imports included, see baseline_rss_mb)"]
    write_record("bench_combine", quick=args.quick, params=params, results=results, notes=notes,
                 started=started)


if __name__ == "__main__":
    main()
