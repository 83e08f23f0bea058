"""Shared helpers of the ccdflow benchmarks: cached synthetic data, isolated runs, provenance, JSON.

Every measured contender runs in a fresh Python process (``run_isolated``) so that its peak memory is
its own: the child imports the benchmark script, notes its RSS after the imports (the baseline), calls
one function and reports the time of that call and its peak RSS (``VmHWM``, all threads, imports
included); the parent also samples the RSS of the child's whole process tree every 20 ms (for
contenders that start worker processes).
"""

from __future__ import annotations

import datetime as _dt
import importlib.util
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

BENCH_DIR = Path(os.environ.get("CCDFLOW_BENCH_DIR", "/tmp/ccdflow-bench"))
OUT_DIR = Path(__file__).resolve().parent / "out"
REPO = Path(__file__).resolve().parent.parent
GB = 1e9
MiB = 2**20


# -- provenance -------------------------------------------------------------------------------------

def machine_info() -> dict[str, Any]:
    """Cores, memory, CPU model, OS and the free space of the benchmark folder."""
    import psutil

    model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    return {
        "cpu_model": model,
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "physical_cores": psutil.cpu_count(logical=False),
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 2),
        "ram_available_gib_at_start": round(psutil.virtual_memory().available / 2**30, 2),
        "load_average_at_start": os.getloadavg(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "bench_dir": str(BENCH_DIR),
        "bench_dir_free_gb": round(psutil.disk_usage(str(BENCH_DIR)).free / GB, 1),
    }


def versions() -> dict[str, Any]:
    """Versions of the packages that matter, and the repository commit (with a dirty flag)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("ccdflow", "dask", "distributed", "numpy", "astropy", "ccdproc", "numba", "psutil"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    try:
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "src"],
                               capture_output=True, text=True, check=True).stdout.strip()
        out["git_commit"] = head
        out["src_modified"] = bool(dirty)
    except (OSError, subprocess.CalledProcessError):
        out["git_commit"] = None
    return out


def write_record(name: str, *, quick: bool, params: dict, results: Any, notes: Sequence[str] = (),
                 started: float | None = None) -> Path:
    """Write the JSON record ``benchmarks/out/NAME[-quick]-<UTC time>.json`` (and a ``-latest`` copy)."""
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    now = _dt.datetime.now(_dt.UTC)
    record = {
        "benchmark": name,
        "quick": quick,
        "date_utc": now.isoformat(timespec="seconds"),
        "command": " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv]),
        "total_wall_s": None if started is None else round(time.perf_counter() - started, 1),
        "machine": machine_info(),
        "versions": versions(),
        "params": params,
        "notes": list(notes),
        "results": results,
    }
    stem = f"{name}{'-quick' if quick else ''}"
    path = OUT_DIR / f"{stem}-{now.strftime('%Y%m%dT%H%M%SZ')}.json"
    text = json.dumps(record, indent=1, default=_jsonable)
    path.write_text(text)
    (OUT_DIR / f"{stem}-latest.json").write_text(text)
    print(f"record: {path}")
    return path


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


# -- page cache -------------------------------------------------------------------------------------

def evict(paths: Sequence[str | Path]) -> bool:
    """Drop these files' pages from the page cache, so the next read comes from the disk.

    ``posix_fadvise(DONTNEED)`` on each file: no root needed, and unlike ``drop_caches`` it leaves
    the rest of the (shared) machine's cache alone, Python's own modules included.
    """
    try:
        for path in paths:
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fdatasync(fd)  # dirty pages are not dropped
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
    except (OSError, AttributeError):
        return False
    return True


# -- data -------------------------------------------------------------------------------------------

def _manifest_ok(folder: Path, spec: dict, n: int) -> bool:
    manifest = folder / "manifest.json"
    if not manifest.exists():
        return False
    saved = json.loads(manifest.read_text())
    return saved.get("spec") == spec and saved.get("n", 0) >= n and all(
        (folder / f"frame_{i:03d}.fits").exists() for i in range(n))


def synthetic_stack(n: int, ny: int, nx: int, *, dtype: str = "uint16", seed: int = 1) -> list[Path]:
    """Paths of ``n`` cached raw frames of ``ny x nx`` pixels from `ccdflow.synthetic`.

    ``uint16`` frames are darks (30 s, with cosmic rays; stored as BITPIX 16 with BZERO 32768), as a
    camera writes them. ``float32`` frames are flats (BITPIX -32), as a pre-processed stack is stored.
    Frame ``i`` depends only on ``seed`` and ``i``, so the first ``n`` of a larger set are reused.
    """
    from astropy.io import fits

    from ccdflow.synthetic import Instrument, make_frame, make_truth

    if dtype not in ("uint16", "float32"):
        raise ValueError(dtype)
    n_overscan = 32
    spec = {"ny": ny, "nx": nx, "dtype": dtype, "seed": seed, "n_overscan": n_overscan, "version": 1}
    folder = BENCH_DIR / "stacks" / f"{dtype}_{ny}x{nx}_s{seed}"
    if _manifest_ok(folder, spec, n):
        return [folder / f"frame_{i:03d}.fits" for i in range(n)]
    folder.mkdir(parents=True, exist_ok=True)
    truth = make_truth(Instrument(ny=ny, nx=nx - n_overscan, n_overscan=n_overscan), seed=seed)
    t0 = time.perf_counter()
    paths = []
    for i in range(n):
        path = folder / f"frame_{i:03d}.fits"
        if not path.exists():
            kind = dict(imagetyp="dark", exptime=30.0, n_cosmics=200) if dtype == "uint16" else \
                dict(imagetyp="flat", exptime=5.0)
            frame = make_frame(truth, seed=seed * 100_000 + i, **kind)
            hdu = frame.hdu
            if dtype == "float32":
                hdu = fits.PrimaryHDU(hdu.data.astype(np.float32), header=hdu.header)
                for key in ("BZERO", "BSCALE"):
                    hdu.header.remove(key, ignore_missing=True)
            tmp = path.with_suffix(".part")
            hdu.writeto(tmp, overwrite=True)
            os.replace(tmp, path)
        paths.append(path)
    (folder / "manifest.json").write_text(json.dumps({"spec": spec, "n": n}))
    print(f"data: {n} x {ny}x{nx} {dtype} in {folder} ({time.perf_counter() - t0:.0f} s)", flush=True)
    return paths


def total_bytes(paths: Sequence[Path]) -> int:
    """Sum of the file sizes."""
    return sum(os.path.getsize(p) for p in paths)


# -- isolated runs ----------------------------------------------------------------------------------

def _tree_rss(proc) -> int:
    import psutil

    total = 0
    try:
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


#: The machine is shared: a contender is killed when the memory still available falls below this.
MIN_AVAILABLE_BYTES = 1.5e9


def run_isolated(script: str | Path, func: str, *, kwargs: dict | None = None,
                 cold: Sequence[str | Path] = (), timeout: float = 3600,
                 label: str | None = None) -> dict[str, Any]:
    """Run ``func(**kwargs)`` from ``script`` in a fresh Python process and measure it.

    Parameters
    ----------
    script : path
        The benchmark script holding ``func`` (imported, not run as ``__main__``).
    func : str
        Function name; it returns a dict (JSON-able). If the dict holds ``"seconds"``, that is the
        measured time (for functions with a setup phase that must not count); otherwise the time
        of the whole call is.
    kwargs : dict
        JSON-able keyword arguments.
    cold : sequence of path
        Files evicted from the page cache first (see `evict`): the inputs, read from disk.
    timeout : float
        Seconds before the child is killed.

    Returns
    -------
    dict
        ``seconds``, ``call_seconds``, ``peak_rss_mb`` (the child's own high-water mark, ``VmHWM``),
        ``baseline_rss_mb`` (the same after the imports, before the call), ``peak_tree_rss_mb``
        (sampled sum over the child and its descendants), ``cold_cache``, and the function's own
        results.
    """
    import psutil

    cold_done = evict(cold) if cold else False
    fd, result_path = tempfile.mkstemp(prefix="ccdflow-bench-", suffix=".json")
    os.close(fd)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(script), func,
           json.dumps(kwargs or {}), result_path]
    wall0 = time.perf_counter()
    child = subprocess.Popen(cmd, cwd=str(REPO))
    ps = psutil.Process(child.pid)
    peak_tree = 0
    killed = []
    done = threading.Event()

    def sample():
        nonlocal peak_tree
        while not done.is_set():
            peak_tree = max(peak_tree, _tree_rss(ps))
            if psutil.virtual_memory().available < MIN_AVAILABLE_BYTES and not killed:
                killed.append("machine memory nearly exhausted")
                for p in [*ps.children(recursive=True), ps]:
                    p.kill()
            done.wait(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    timer = threading.Timer(timeout, lambda: (killed.append(f"timeout {timeout} s"), child.kill()))
    timer.start()
    try:
        _, status, _ = os.wait4(child.pid, 0)
    finally:
        timer.cancel()
        done.set()
        sampler.join()
    child.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - wall0
    try:
        text = Path(result_path).read_text()
    finally:
        os.unlink(result_path)
    if child.returncode != 0 or not text:
        reason = killed[0] if killed else f"exit {child.returncode}"
        raise RuntimeError(f"{label or func} failed ({reason}) after {wall:.0f} s")
    out = json.loads(text)
    res = out.pop("result")
    record = {
        "label": label or func,
        "seconds": res.pop("seconds", out["call_seconds"]),
        "call_seconds": out["call_seconds"],
        "process_wall_s": round(wall, 3),
        "peak_rss_mb": out["peak_rss_mb"],
        "baseline_rss_mb": out["baseline_rss_mb"],
        "peak_tree_rss_mb": peak_tree / 1e6,
        "cold_cache": cold_done,
        **res,
    }
    print(f"  {record['label']:<44s} {record['seconds']:8.2f} s   peak {record['peak_rss_mb']:7.0f} MB"
          f"   (tree {record['peak_tree_rss_mb']:6.0f} MB, base {record['baseline_rss_mb']:4.0f} MB)",
          flush=True)
    return record


def vm_hwm_mb() -> float:
    """This process's peak resident memory (``VmHWM``), MB.

    Not ``ru_maxrss``: Linux carries the parent's high-water mark into a child across fork + exec,
    so a child of a big parent would report the parent's peak.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / 1e6
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6


def _child_main(script: str, func: str, kwargs_json: str, result_path: str) -> None:
    spec = importlib.util.spec_from_file_location("_bench_script", script)
    module = importlib.util.module_from_spec(spec)
    sys.modules["_bench_script"] = module  # so that pickled functions of the script resolve
    spec.loader.exec_module(module)
    baseline = vm_hwm_mb()
    target: Callable[..., dict] = getattr(module, func)
    t0 = time.perf_counter()
    result = target(**json.loads(kwargs_json))
    call = time.perf_counter() - t0
    Path(result_path).write_text(json.dumps(
        {"result": result, "call_seconds": call, "baseline_rss_mb": baseline, "peak_rss_mb": vm_hwm_mb()},
        default=_jsonable))


# -- summaries --------------------------------------------------------------------------------------

def summarize(runs: Sequence[dict]) -> dict[str, Any]:
    """Median time and memory over repeated runs of one contender (with the individual times)."""
    seconds = [r["seconds"] for r in runs]
    return {
        "runs": len(runs),
        "median_s": statistics.median(seconds),
        "min_s": min(seconds),
        "max_s": max(seconds),
        "all_s": [round(s, 3) for s in seconds],
        "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in runs),
        "max_peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
        "peak_tree_rss_mb": statistics.median(r["peak_tree_rss_mb"] for r in runs),
        "baseline_rss_mb": statistics.median(r["baseline_rss_mb"] for r in runs),
        "cold_cache": all(r["cold_cache"] for r in runs),
    }


def paired_ratio(slow: Sequence[dict], fast: Sequence[dict]) -> dict[str, float] | None:
    """``slow/fast`` time ratio: of the medians, and the median of the per-repetition ratios."""
    if not slow or not fast:
        return None
    pairs = [a["seconds"] / b["seconds"] for a, b in zip(slow, fast, strict=False)]
    return {
        "of_medians": statistics.median(r["seconds"] for r in slow)
        / statistics.median(r["seconds"] for r in fast),
        "median_paired": statistics.median(pairs),
    }


if __name__ == "__main__" and len(sys.argv) == 6 and sys.argv[1] == "--child":
    _child_main(*sys.argv[2:])
