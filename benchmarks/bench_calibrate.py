"""Calibrating lights (overscan, trim, bias, dark, flat, errors, two-extension FITS out).

    python benchmarks/bench_calibrate.py [--quick]

Contenders: a ccdflow `Calibrator` called per frame in a loop, the same calls as dask.delayed tasks on
2 threads, the same calls on a 2-process `distributed.LocalCluster`, and a ccdproc loop
(`CCDData.read` -> `ccd_process(..., error=True)` -> `ccd.write`). Each runs in a fresh process with
its inputs evicted from the page cache first; its time ends when every output file is fsync'ed, like
the write floor (float32 written with ``numpy.tofile`` then fsync).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import astropy.units as u
import ccdproc
import dask
import numpy as np
from astropy.io import fits
from astropy.nddata import CCDData

from ccdflow.array.overscan import OverscanMethods
from ccdflow.calibrator import Calibrator
from ccdflow.synthetic import Instrument, make_frame, make_truth

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BENCH_DIR, GB, paired_ratio, run_isolated, summarize, write_record  # noqa: E402

SCRIPT = Path(__file__).resolve()
N_OVERSCAN = 32
LIGHT_EXPTIME = 120.0
WRITE_FLOOR_BYTES = 2**30


# -- data ------------------------------------------------------------------------------------------

def make_data(n: int, size: int, seed: int = 7) -> dict:
    """Raw lights (uint16, BZERO) and float32 master bias, dark rate and flat from the truth (cached)."""
    inst = Instrument(ny=size, nx=size, n_overscan=N_OVERSCAN)
    folder = BENCH_DIR / "calibrate" / f"{size}_s{seed}"
    raw = folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    truth = None
    masters = {k: folder / f"master_{k}.fits" for k in ("bias", "dark", "flat")}
    if not all(p.exists() for p in masters.values()):
        truth = make_truth(inst, seed=seed)
        planes = {"bias": truth.bias, "dark": truth.dark_rate, "flat": truth.flats["V"]}
        for kind, path in masters.items():
            hdu = fits.PrimaryHDU(np.asarray(planes[kind], dtype=np.float32))
            hdu.header["EXPTIME"] = (1.0 if kind == "dark" else 0.0)
            hdu.header["IMAGETYP"] = f"MASTER {kind.upper()}"
            hdu.writeto(path, overwrite=True)
    lights = []
    t0 = time.perf_counter()
    for i in range(n):
        path = raw / f"light_{i:03d}.fits"
        if not path.exists():
            truth = truth or make_truth(inst, seed=seed)
            frame = make_frame(truth, imagetyp="light", exptime=LIGHT_EXPTIME, seed=seed * 1000 + i)
            frame.hdu.writeto(path.with_suffix(".part"), overwrite=True)
            os.replace(path.with_suffix(".part"), path)
        lights.append(path)
    if truth is not None:
        print(f"data: {n} lights of {inst.raw_shape} in {raw} ({time.perf_counter() - t0:.0f} s)")
    return {"lights": [str(p) for p in lights], "masters": {k: str(p) for k, p in masters.items()},
            "overscan": inst.overscan_region, "image_area": inst.image_region,
            "biassec": inst.biassec, "datasec": inst.datasec, "gain": inst.gain,
            "read_noise": inst.read_noise}


def _fsync_all(paths) -> None:
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _fresh(folder: str) -> Path:
    out = Path(folder)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    return out


def _result(outputs, t0: float) -> dict:
    written = time.perf_counter() - t0  # every file closed, but maybe still in the page cache
    _fsync_all(outputs)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "seconds_before_fsync": written, "frames": len(outputs),
            "frames_per_s": len(outputs) / seconds,
            "output_bytes": sum(os.path.getsize(p) for p in outputs)}


# -- contenders (each runs in its own process) ----------------------------------------------------------

def _calibrator(data: dict) -> Calibrator:
    m = data["masters"]
    return Calibrator(overscans=[data["overscan"]], overscan_method=OverscanMethods.median_per_line,
                      master_bias=m["bias"], master_dark=m["dark"], master_flat=m["flat"],
                      gain=data["gain"], read_noise=data["read_noise"], image_area=data["image_area"])


def _warm(func, warm: dict | None, out: str) -> float | None:
    """Run a contender once on two tiny frames in this process, untimed: one-time costs (lazy
    imports, loading numba's compiled kernels, dask's first compute) then stay out of the timing."""
    if not warm:
        return None
    t0 = time.perf_counter()
    func(warm, out + "-warm")
    shutil.rmtree(out + "-warm", ignore_errors=True)
    return time.perf_counter() - t0


def ccdflow_loop(data: dict, out: str, warm: dict | None = None) -> dict:
    """One Calibrator, called frame after frame."""
    warm_s = _warm(ccdflow_loop, warm, out)
    folder = _fresh(out)
    t0 = time.perf_counter()
    calibrate = _calibrator(data)
    outputs = [calibrate(raw=raw, calibrated=folder / Path(raw).name) for raw in data["lights"]]
    return dict(_result(outputs, t0), warm_up_s=warm_s)


def ccdflow_threads(data: dict, out: str, warm: dict | None = None, workers: int = 2) -> dict:
    """The same calls as dask.delayed tasks on the threaded scheduler."""
    warm_s = _warm(ccdflow_threads, warm, out)
    folder = _fresh(out)
    t0 = time.perf_counter()
    calibrate = _calibrator(data)
    tasks = [dask.delayed(calibrate, pure=False)(raw=raw, calibrated=folder / Path(raw).name)
             for raw in data["lights"]]
    outputs = dask.compute(*tasks, scheduler="threads", num_workers=workers)
    return dict(_result(list(outputs), t0), warm_up_s=warm_s)


def ccdflow_distributed(data: dict, out: str, warm: dict | None = None, workers: int = 2) -> dict:
    """One Calibrator scattered to a LocalCluster (2 processes x 1 thread), one task per frame."""
    from distributed import Client, LocalCluster, wait

    folder = _fresh(out)
    t_start = time.perf_counter()
    with LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=None,
                      processes=True) as cluster, Client(cluster) as client:
        client.wait_for_workers(workers)
        startup = time.perf_counter() - t_start
        warm_s = None
        if warm:  # every worker calibrates the tiny frames once, untimed
            t1 = time.perf_counter()
            small = client.scatter(_calibrator(warm), broadcast=True)
            Path(out + "-warm").mkdir(parents=True, exist_ok=True)
            jobs = [client.submit(Calibrator.__call__, small, raw=raw, pure=False, workers=[addr],
                                  calibrated=f"{out}-warm/{i}-{Path(raw).name}")
                    for i, addr in enumerate(client.scheduler_info()["workers"])
                    for raw in warm["lights"]]
            client.gather(jobs)
            shutil.rmtree(out + "-warm", ignore_errors=True)
            warm_s = time.perf_counter() - t1
        t0 = time.perf_counter()
        calibrate = client.scatter(_calibrator(data), broadcast=True)
        # Calibrator.__call__ by reference: the workers import ccdflow, not this script
        futures = [client.submit(Calibrator.__call__, calibrate, raw=raw,
                                 calibrated=str(folder / Path(raw).name), pure=False)
                   for raw in data["lights"]]
        wait(futures)
        outputs = client.gather(futures)
        result = _result(outputs, t0)
    return dict(result, cluster_startup_s=startup, warm_up_s=warm_s)


def ccdproc_loop(data: dict, out: str, warm: dict | None = None) -> dict:
    """ccdproc: read, ccd_process (overscan per line, trim, bias, scaled dark, flat, error), write.

    Products are cast to float32 before writing so that both packages write the same bytes.
    """
    warm_s = _warm(ccdproc_loop, warm, out)
    folder = _fresh(out)
    t0 = time.perf_counter()
    m = {k: CCDData.read(p, unit="adu") for k, p in data["masters"].items()}
    gain = data["gain"] * u.electron / u.adu
    readnoise = data["read_noise"] * u.electron
    outputs = []
    for raw in data["lights"]:
        ccd = CCDData.read(raw, unit="adu")
        done = ccdproc.ccd_process(
            ccd, oscan=data["biassec"], trim=data["datasec"], error=True, master_bias=m["bias"],
            dark_frame=m["dark"], master_flat=m["flat"], gain=gain, readnoise=readnoise,
            oscan_median=True, dark_exposure=1.0 * u.s, data_exposure=ccd.header["EXPTIME"] * u.s,
            dark_scale=True, gain_corrected=False)
        done.data = done.data.astype(np.float32)
        done.uncertainty.array = done.uncertainty.array.astype(np.float32)
        path = folder / Path(raw).name
        done.write(path, overwrite=True)
        outputs.append(path)
    return dict(_result(outputs, t0), warm_up_s=warm_s)


def write_floor(out: str, nbytes: int = WRITE_FLOOR_BYTES, tries: int = 3) -> dict:
    """The disk's write throughput: ``nbytes`` of float32 written with numpy ``tofile`` + fsync.

    Written ``tries`` times in a row: the first write (fresh page-cache pages, as the contenders'
    outputs get) and the best one are both reported; on a VM they can differ several times over.
    """
    folder = _fresh(out)
    data = np.random.default_rng(0).standard_normal(nbytes // 4, dtype=np.float32)
    path = folder / "floor.bin"
    times = []
    for _ in range(tries):
        t0 = time.perf_counter()
        with open(path, "wb") as fh:
            data.tofile(fh)
            fh.flush()
            os.fsync(fh.fileno())
        times.append(time.perf_counter() - t0)
        path.unlink()
    return {"seconds": times[0], "write_gb_per_s": nbytes / GB / times[0],
            "best_write_gb_per_s": nbytes / GB / min(times),
            "all_write_gb_per_s": [nbytes / GB / t for t in times]}


def warm_up(data: dict, out: str) -> dict:
    """Fill numba's on-disk cache once (a compile would otherwise land in the first timed run)."""
    ccdflow_loop(data, out)
    return {}


# -- driver -------------------------------------------------------------------------------------------

FLOOR = "write floor (1 GiB tofile + fsync, 3 in a row)"
CONTENDERS = {
    "ccdflow loop (1 thread)": "ccdflow_loop",
    "ccdflow dask threads (2)": "ccdflow_threads",
    "ccdflow LocalCluster (2 procs x 1 thread)": "ccdflow_distributed",
    "ccdproc loop": "ccdproc_loop",
}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8 lights of 1024^2, one repetition")
    parser.add_argument("--frames", type=int, help="lights (default 50, quick 8)")
    parser.add_argument("--size", type=int, help="image-area rows = columns (default 2048, quick 1024)")
    parser.add_argument("--reps", type=int, help="repetitions (default 3, quick 1)")
    parser.add_argument("--no-warm-up", action="store_true",
                        help="count one-time costs (lazy imports, kernel loading) in the timed run")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    n = args.frames or (8 if args.quick else 50)
    size = args.size or (1024 if args.quick else 2048)
    reps = args.reps or (1 if args.quick else 3)
    data = make_data(n, size)
    warm = make_data(2, 256)
    out = str(BENCH_DIR / "calibrate" / "out")
    print(f"calibrate: {n} lights of {size}x{size + N_OVERSCAN} uint16", flush=True)
    run_isolated(SCRIPT, "warm_up", kwargs=dict(data=warm, out=out), label="warm-up (numba)")
    runs = {label: [] for label in [FLOOR, *CONTENDERS]}
    for rep in range(reps):
        print(f" repetition {rep + 1}/{reps}", flush=True)
        runs[FLOOR].append(
            run_isolated(SCRIPT, "write_floor", kwargs=dict(out=out), label="write floor"))
        for label, func in CONTENDERS.items():
            kwargs = dict(data=data, out=out, warm=None if args.no_warm_up else warm)
            runs[label].append(run_isolated(SCRIPT, func, kwargs=kwargs, label=label,
                                            cold=[*data["lights"], *data["masters"].values()]))
    shutil.rmtree(out, ignore_errors=True)
    floor_gbps = float(np.median([r["write_gb_per_s"] for r in runs[FLOOR]]))
    best_gbps = float(np.median([r["best_write_gb_per_s"] for r in runs[FLOOR]]))
    summary = {}
    for label in CONTENDERS:
        s = summarize(runs[label])
        out_bytes = runs[label][0]["output_bytes"]
        floor_s = out_bytes / GB / floor_gbps
        unsynced = float(np.median([r["seconds_before_fsync"] for r in runs[label]]))
        best_s = out_bytes / GB / best_gbps
        summary[label] = dict(s, frames_per_s=n / s["median_s"], output_bytes=out_bytes,
                              write_floor_s=floor_s, fraction_of_write_floor=floor_s / s["median_s"],
                              best_write_s=best_s, fraction_of_best_write=best_s / s["median_s"],
                              median_s_before_fsync=unsynced, frames_per_s_before_fsync=n / unsynced)
    ratios = {f"{label} vs ccdproc loop (frames/s)": paired_ratio(runs["ccdproc loop"], runs[label])
              for label in CONTENDERS if label != "ccdproc loop"}
    for label in CONTENDERS:
        if label != "ccdproc loop":
            ratios[f"{label} vs ccdproc loop (frames/s, before fsync)"] = {
                "of_medians": summary["ccdproc loop"]["median_s_before_fsync"]
                / summary[label]["median_s_before_fsync"]}
    ratios["dask threads (2) vs loop (1)"] = paired_ratio(runs["ccdflow loop (1 thread)"],
                                                          runs["ccdflow dask threads (2)"])
    ratios["LocalCluster (2) vs loop (1)"] = paired_ratio(
        runs["ccdflow loop (1 thread)"], runs["ccdflow LocalCluster (2 procs x 1 thread)"])
    results = {"frames": n, "image_area": [size, size], "write_floor_gb_per_s": floor_gbps,
               "best_write_gb_per_s": best_gbps,
               "summary": summary, "ratios": ratios, "runs": runs}
    params = {"frames": n, "size": size, "n_overscan": N_OVERSCAN, "reps": reps,
              "overscan": "median per line (ccdflow median_per_line, ccdproc oscan_median=True)",
              "masters": "float32 primary-only FITS from the synthetic truth (bias, dark rate, flat)",
              "ccdproc": "CCDData.read -> ccd_process(error=True, dark_scale=True, gain_corrected=False)"
                         " -> float32 cast -> write"}
    notes = ["time = from constructing the calibrator (masters read inside) to every output fsync'ed, "
             "after an untimed run of the same contender on 2 lights of 256^2 in the same process "
             "(unless --no-warm-up)",
             "fraction_of_write_floor = (output bytes / write-floor throughput) / time; the floor is "
             "the first of 3 consecutive 1 GiB writes (fresh pages, like the outputs), "
             "fraction_of_best_write uses the fastest of the 3",
             "*_before_fsync: the same runs timed when the last file is closed (outputs possibly still "
             "in the page cache), for comparison only",
             "LocalCluster time excludes the cluster start-up (cluster_startup_s in the runs)",
             "peak_tree_rss_mb sums the contender and its descendants (the LocalCluster workers)"]
    write_record("bench_calibrate", quick=args.quick, params=params, results=results, notes=notes,
                 started=started)


if __name__ == "__main__":
    main()
