"""Master combine from FITS files on disk: ccdflow versus ccdproc.combine, and the I/O floor.

    python benchmarks/bench_combine.py [--quick] [--cases NAME ...] [--methods median mean]

Every contender runs in a fresh process with its input files evicted from the page cache, contenders
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

from ccdflow.array.combination import CombineParams, combine
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
                save: str | None = None, warm_paths: list[str] | None = None,
                clip: str = "auto") -> dict:
    """ccdflow: lazy stack, lazy combine, one threaded compute of the three products."""
    warm = _warm(run_ccdflow, warm_paths, method=method, maxiters=maxiters, uncertainty=uncertainty,
                 clip=clip)
    params = CombineParams(method=method, clip=clip, sigma_lower=5, sigma_upper=5, maxiters=maxiters,
                           uncertainty=uncertainty)
    t0 = time.perf_counter()
    stack = open_stack(paths)
    result = combine(stack, params=params)
    data, error, count = dask.compute(result.data, result.error, result.count, scheduler="threads")
    seconds = time.perf_counter() - t0
    if save:
        np.save(save, data)
    return {"seconds": seconds, "warm_up_s": warm, "chunk_rows": stack.chunks[1][0],
            "n_chunks": len(stack.chunks[1]),
            "rejected_fraction": float(1 - count.sum(dtype=np.int64) / (len(paths) * count.size)),
            "median_of_result": float(np.nanmedian(data))}


def run_ccdproc(paths: list[str], method: str, mem_limit: float, save: str | None = None,
                warm_paths: list[str] | None = None) -> dict:
    """ccdproc.combine with a 5-sigma clip about the median, scale mad_std (one pass, as it does)."""
    warm = _warm(run_ccdproc, warm_paths, method=method, mem_limit=mem_limit)
    t0 = time.perf_counter()
    ccd = ccdproc.combine(paths, method={"mean": "average"}.get(method, method), sigma_clip=True,
                          sigma_clip_low_thresh=5, sigma_clip_high_thresh=5, sigma_clip_func=np.ma.median,
                          sigma_clip_dev_func=mad_std, mem_limit=mem_limit, unit="adu")
    seconds = time.perf_counter() - t0
    if save:
        np.save(save, np.asarray(ccd.data, dtype=np.float32))
    return {"seconds": seconds, "warm_up_s": warm, "median_of_result": float(np.nanmedian(ccd.data))}


def _warm(func, warm_paths, **kwargs) -> float | None:
    """Run a contender once on a tiny stack in this process: one-time costs (lazy imports, loading
    numba's compiled kernels, dask's first compute) are then not counted in the timed run."""
    if not warm_paths:
        return None
    t0 = time.perf_counter()
    func(warm_paths, **kwargs)
    return time.perf_counter() - t0


def warm_up(paths: list[str]) -> dict:
    """Fill numba's on-disk cache once (a compile would otherwise land in the first timed run)."""
    for method in ("median", "mean"):
        run_ccdflow(paths, method, 1, "ccdproc", clip="sigma")
        run_ccdflow(paths, method, 5, "empirical", clip="sigma")
        run_ccdflow(paths, method, 5, "auto")
    return {}


# -- driver -------------------------------------------------------------------------------------------

FLOOR = "I/O floor (read every byte)"


def plan_for(methods, tiled_mem: float, with_ccdproc: bool) -> list[dict]:
    """The contenders of one case: label, function, keyword arguments, role, method."""
    plan = [dict(label=FLOOR, func="io_floor", kwargs={}, role="floor", method=None)]
    for m in methods:
        plan += [
            dict(label=f"ccdflow {m} maxiters=1", func="run_ccdflow", role="ccdflow_like", method=m,
                 kwargs=dict(method=m, maxiters=1, uncertainty="ccdproc", clip="sigma")),
            dict(label=f"ccdflow {m} sigma mad_std (former default)", func="run_ccdflow",
                 role="ccdflow_sigma", method=m,
                 kwargs=dict(method=m, maxiters=5, uncertainty="empirical", clip="sigma")),
            dict(label=f"ccdflow {m} defaults", func="run_ccdflow", role="ccdflow_default", method=m,
                 kwargs=dict(method=m, maxiters=5, uncertainty="auto")),
        ]
        if with_ccdproc:
            plan += [
                dict(label=f"ccdproc {m} mem_limit=16e9", func="run_ccdproc", role="ccdproc_default",
                     method=m, kwargs=dict(method=m, mem_limit=CCDPROC_DEFAULT_MEM)),
                dict(label=f"ccdproc {m} mem_limit={tiled_mem / 1e6:g}MB", func="run_ccdproc",
                     role="ccdproc_tiled", method=m, kwargs=dict(method=m, mem_limit=tiled_mem)),
            ]
    return plan


def agreement(a: Path, b: Path) -> dict:
    """How closely two saved results agree (ccdflow maxiters=1 against ccdproc)."""
    x, y = np.load(a), np.load(b)
    diff = np.abs(x.astype(np.float64) - y)
    close = np.isclose(x, y, rtol=1e-5, atol=1e-3, equal_nan=True)
    return {"max_abs_diff": float(np.nanmax(diff)),
            "max_rel_diff": float(np.nanmax(diff / np.maximum(np.abs(y), 1.0))),
            "fraction_not_close": float(1 - close.mean())}


def bench_case(name: str, *, methods, reps: int, ccdproc_reps: int, tiled_mem: float, timeout: float,
               with_ccdproc: bool = True, in_process_warm_up: bool = True) -> dict:
    n, size, dtype = CASES[name]
    paths = [str(p) for p in synthetic_stack(n, size, size, dtype=dtype)]
    nbytes = total_bytes(paths)
    print(f"case {name}: {n} x {size}x{size} {dtype}, {nbytes / GB:.3f} GB on disk", flush=True)
    warm_paths = [str(p) for p in synthetic_stack(5, 256, 256, dtype=dtype)]
    run_isolated(SCRIPT, "warm_up", kwargs=dict(paths=warm_paths), label="warm-up (numba)")
    CHECK_DIR.mkdir(parents=True, exist_ok=True)
    plan = plan_for(methods, tiled_mem, with_ccdproc)
    runs: dict[str, list[dict]] = {c["label"]: [] for c in plan}
    for rep in range(reps):
        print(f" repetition {rep + 1}/{reps}", flush=True)
        for c in plan:
            if c["func"] == "run_ccdproc" and rep >= ccdproc_reps:
                continue
            kw = dict(c["kwargs"], paths=paths)
            if c["func"] != "io_floor" and in_process_warm_up:
                kw["warm_paths"] = warm_paths
            if rep == 0 and c["role"] in ("ccdflow_like", "ccdproc_default"):
                kw["save"] = str(CHECK_DIR / f"{name}-{c['label'].split()[0]}-{c['method']}.npy")
            runs[c["label"]].append(run_isolated(SCRIPT, c["func"], kwargs=kw, timeout=timeout,
                                                 cold=paths, label=c["label"]))
    summary = {}
    for label, r in runs.items():
        if r:
            s = summarize(r)
            summary[label] = dict(s, input_gb_per_s=nbytes / GB / s["median_s"])
    by_role = {(c["role"], c["method"]): runs[c["label"]] for c in plan}
    ratios, checks = {}, {}
    for m in methods:
        for flow in ("ccdflow_like", "ccdflow_default"):
            flow_label = f"ccdflow {m} {'maxiters=1' if flow == 'ccdflow_like' else 'defaults'}"
            ratios[f"{flow_label} / I/O floor"] = paired_ratio(by_role[flow, m], by_role["floor", None])
            for peer in ("ccdproc_default", "ccdproc_tiled"):
                peer_runs = by_role.get((peer, m))
                if peer_runs:
                    peer_label = next(c["label"] for c in plan if (c["role"], c["method"]) == (peer, m))
                    ratios[f"{peer_label} / {flow_label}"] = paired_ratio(peer_runs, by_role[flow, m])
        ratios[f"ccdflow {m} defaults / ccdflow {m} sigma mad_std (former default)"] = paired_ratio(
            by_role["ccdflow_default", m], by_role["ccdflow_sigma", m])
        a, b = CHECK_DIR / f"{name}-ccdflow-{m}.npy", CHECK_DIR / f"{name}-ccdproc-{m}.npy"
        if with_ccdproc and a.exists() and b.exists():
            checks[m] = agreement(a, b)
    return {"frames": n, "shape": [size, size], "dtype": dtype, "input_bytes": nbytes,
            "summary": summary, "ratios": ratios, "ccdflow_maxiters1_vs_ccdproc_result": checks,
            "runs": runs}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small cases, one repetition")
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES), help="override the case list")
    parser.add_argument("--methods", nargs="+", default=["median", "mean"], choices=["median", "mean"])
    parser.add_argument("--reps", type=int, help="repetitions (default 3, quick 1)")
    parser.add_argument("--big-ccdproc-reps", type=int, default=1,
                        help="repetitions of ccdproc on the 40 x 4096^2 case (default 1: minutes each)")
    parser.add_argument("--big-tiled-mem", type=float, default=CCDPROC_TILED_MEM,
                        help="ccdproc mem_limit of the tiled run on the 40 x 4096^2 case")
    parser.add_argument("--timeout", type=float, default=2400, help="seconds per contender run")
    parser.add_argument("--skip-ccdproc", action="store_true", help="ccdflow and the I/O floor only")
    parser.add_argument("--no-warm-up", action="store_true",
                        help="count one-time costs (lazy imports, kernel loading) in the timed run")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    cases = args.cases or (QUICK_CASES if args.quick else FULL_CASES)
    reps = args.reps or (1 if args.quick else 3)
    results = {}
    for name in cases:
        big = name == "u16_40x4096"
        # --quick stays under a minute: the uint16 case there runs the median only
        methods = ["median"] if args.quick and name == "u16_10x2048" else args.methods
        results[name] = bench_case(
            name, methods=methods, reps=reps,
            ccdproc_reps=min(reps, args.big_ccdproc_reps) if big else reps,
            tiled_mem=args.big_tiled_mem if big else CCDPROC_TILED_MEM, timeout=args.timeout,
            with_ccdproc=not args.skip_ccdproc, in_process_warm_up=not args.no_warm_up)
    params = {"cases": {c: CASES[c] for c in cases}, "methods": args.methods, "reps": reps,
              "sigma": 5, "ccdproc": {"sigma_clip_func": "np.ma.median", "sigma_clip_dev_func": "mad_std",
                                      "default_mem_limit": CCDPROC_DEFAULT_MEM,
                                      "tiled_mem_limit": CCDPROC_TILED_MEM,
                                      "big_tiled_mem_limit": args.big_tiled_mem,
                                      "big_reps": args.big_ccdproc_reps},
              "ccdflow": "open_stack + combine, dask.compute(data, error, count, scheduler='threads')"}
    notes = ["time = the contender's work inside a fresh process, after an untimed run of the same "
             "contender on 5 x 256^2 frames in that process (unless --no-warm-up); the input files are "
             "evicted from the page cache (posix_fadvise DONTNEED) before every run (cold_cache)",
             "peak_rss_mb = ru_maxrss of the contender's process (imports included, see baseline_rss_mb)"]
    write_record("bench_combine", quick=args.quick, params=params, results=results, notes=notes,
                 started=started)


if __name__ == "__main__":
    main()
