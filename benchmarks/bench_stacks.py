"""The night's stacks stage: worker peak memory per stack size, and its time against the lights.

    python benchmarks/bench_stacks.py [--size 512] [--frames 10 80 500] [--ratio-size 2048]
                                      [--ratio-frames 80] [--workers 2] [--memory-limit 2GB]

Memory: a synthetic night with two filters (two stacks of N lights each) is reduced once on a
LocalCluster (``--workers`` processes of one thread, ``--memory-limit`` each); then its stacks
are deleted and the night rerun on a new cluster of the same kind (fresh high-water marks):
the lights are reused, only the stacks are built, and each worker's ``VmHWM`` (resident peak,
imports included) is read at the end. Time: one night of one filter (one stack) is reduced from
scratch and the report's stage times give the stacks/lights ratio.

``--direct N``: without a night, two cubes of N random 512^2 frames are written straight into a
store, in today's sharded layout and in the earlier one (whole-frame chunks, read through a
rechunk), and two stacks (mean, no clipping: the reads, not the kernel, are measured) are
computed on the threaded scheduler (2 threads) in a fresh process each; its peak resident memory
above the imports is reported. The sharded cube is stacked twice: read as the stacks read it
(its shard files by hand) and with every band read through zarr's partial shard reads, the way
before the hand reader.

Only the stacks stage against the lights stage at a night's size (``--ratio-size 2048
--ratio-frames 80 --frames``, no memory runs): see ``stacks_vs_lights``.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import time
from pathlib import Path

import yaml
from distributed import Client, LocalCluster

from _common import BENCH_DIR, write_record
from ccdflow import synthetic
from ccdflow.night import load_config, reduce_night


def _vm_hwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / 1e6
    return float("nan")


def make_night(size: int, lights: int, filters: tuple[str, ...]) -> Path:
    """The synthetic night (cached): few calibration frames, ``lights`` lights per filter."""
    folder = BENCH_DIR / f"stacks-night-{size}-{lights}-{''.join(filters)}"
    if not (folder / "night.csv").exists():
        shutil.rmtree(folder, ignore_errors=True)
        t0 = time.perf_counter()
        instrument = synthetic.Instrument(ny=size, nx=size, n_overscan=max(8, size // 64))
        synthetic.write_night(folder, instrument=instrument, filters=filters, n_bias=3, n_dark=3,
                              dark_exptimes=(60.0,), n_flat=3, n_light=lights, seed=1)
        print(f"data: {folder} ({time.perf_counter() - t0:.0f} s)", flush=True)
    return folder


def _config(night: Path, label: str) -> Path:
    """The night's config, with its output apart per label (runs of two versions may overlap)."""
    folder = BENCH_DIR / "runs" / (label or "run") / night.name
    folder.mkdir(parents=True, exist_ok=True)
    output = folder / "reduced"
    path = folder / "night.yaml"
    path.write_text(yaml.safe_dump({
        "input": {"filelist": str(night / "night.csv")}, "output": str(output),
        "calibration": {"overscans": "header", "overscan_method": "median_per_line",
                        "image_area": "header"},
        "stack_lights": True,
        # the lights' cosmic-ray detection (astroscrappy) dominates their stage: without it the
        # stacks are measured against calibration alone (a label ending in "-nocosmics")
        **({"quality": {"cosmic_rays": "off"}} if label.endswith("-nocosmics") else {})}))
    return path


def _reduce(config: Path, client: Client) -> dict:
    report = reduce_night(load_config(config), scheduler=client, echo=lambda *_: None,
                          progress=False)
    assert report.ok, report.failures
    return report


@contextlib.contextmanager
def _client(workers: int, memory_limit: str):
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      memory_limit=memory_limit, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        yield client


def stacks_memory(size: int, frames: int, workers: int, memory_limit: str, label: str) -> dict:
    """Worker peak memory of building two stacks of ``frames`` lights (lights already done)."""
    config = _config(make_night(size, frames, ("V", "R")), label)
    output = config.parent / "reduced"
    shutil.rmtree(output, ignore_errors=True)
    with _client(workers, memory_limit) as client:
        _reduce(config, client)
    shutil.rmtree(output / "stacks")
    shutil.rmtree(output / "work.zarr" / "stacks", ignore_errors=True)
    with _client(workers, memory_limit) as client:
        baseline = client.run(_vm_hwm_mb)
        report = _reduce(config, client)
        peaks = client.run(_vm_hwm_mb)
    assert {s["status"] for s in report.stacks.values()} == {"built"}, report.stacks
    result = {"size": size, "frames": frames, "stacks": len(report.stacks),
              "stacks_s": round(report.seconds["stacks"], 2),
              "worker_peak_mb": round(max(peaks.values()), 1),
              "worker_baseline_mb": round(max(baseline.values()), 1)}
    print(result, flush=True)
    return result


def stacks_vs_lights(size: int, frames: int, workers: int, memory_limit: str, label: str) -> dict:
    """Stage times of one night of one filter reduced from scratch: stacks / lights.

    The stacks are then built again alone (`restack`) on a fresh cluster, a second figure with
    the machine's load of that moment.
    """
    config = _config(make_night(size, frames, ("V",)), label)
    shutil.rmtree(config.parent / "reduced", ignore_errors=True)
    with _client(workers, memory_limit) as client:
        report = _reduce(config, client)
    lights, stacks = report.seconds["lights"], report.seconds["stacks"]
    result = {"size": size, "frames": frames, "lights_s": round(lights, 2),
              "stacks_s": round(stacks, 2), "stacks_over_lights": round(stacks / lights, 3),
              "restack_s": restack(config, workers, memory_limit)}
    print(result, flush=True)
    return result


def restack(config: Path, workers: int, memory_limit: str) -> float:
    """Seconds of the stacks stage of a reduced night rebuilt alone (its lights reused)."""
    output = config.parent / "reduced"
    shutil.rmtree(output / "stacks")
    shutil.rmtree(output / "work.zarr" / "stacks", ignore_errors=True)
    with _client(workers, memory_limit) as client:
        report = _reduce(config, client)
    assert {s["status"] for s in report.stacks.values()} == {"built"}, report.stacks
    return round(report.seconds["stacks"], 2)


def _direct_store(folder: Path, frames: int, size: int, sharded: bool):
    import numpy as np
    import zarr

    from ccdflow.night.store import CODEC, Store, cube_rows

    store = Store(folder / "work.zarr")
    rng = np.random.default_rng(1)
    for cube in ("lights_V", "lights_R"):
        if sharded:
            store.ensure_cube(cube, stems=[str(i) for i in range(frames)], shape=(size, size),
                              rows=cube_rows((size, size)))
        else:  # the layout before: one chunk per frame, no shards
            group = store.root().require_group(f"cubes/{cube}")
            for label, dtype in (("image", "float32"), ("error", "float32"), ("mask", "uint8")):
                group.create_array(label, shape=(frames, size, size), dtype=dtype,
                                   chunks=(1, size, size), compressors=[CODEC])
        for i in range(frames):
            image = rng.normal(100.0, 3.0, (size, size)).astype(np.float32)
            mask = (rng.random((size, size)) < 1e-3).astype(np.uint8)
            group = zarr.open_group(str(store.path), path=f"cubes/{cube}", mode="r+")
            group["image"][i], group["mask"][i] = image, mask
    return store


def direct(frames: int, size: int, sharded: bool, zarr_reads: bool = False) -> dict:
    """Two stacks of ``frames`` frames from a store written here (run in a fresh process).

    ``zarr_reads``: the sharded cube read through zarr (the hand reader told that no layout is
    its own), to compare both readers on the same tree.
    """
    import tempfile
    from types import SimpleNamespace as NS

    import dask
    import dask.array as da
    import numpy as np

    from ccdflow.array.chunks import rows_for_budget
    from ccdflow.array.combination import CombineParams, combine
    from ccdflow.night.stage_stacks import combine_calibrated, compute_stacks

    params = CombineParams(method="mean", clip="none")
    if zarr_reads:
        import ccdflow.night.store

        class _NoLayout:
            of = staticmethod(lambda array: None)

        ccdflow.night.store.ShardLayout = _NoLayout  # this process only: read_rows uses zarr
    with tempfile.TemporaryDirectory(dir=BENCH_DIR) as folder:
        store = _direct_store(Path(folder), frames, size, sharded)
        before = _vm_hwm_mb()
        start = time.perf_counter()
        with dask.config.set(scheduler="threads", num_workers=2):
            for cube in ("lights_V", "lights_R") if not sharded else ():
                # the earlier stacks: whole-frame chunks rechunked into bands, one stack at a time
                arrays = store.cube_arrays(cube)
                stack = da.where(da.from_zarr(arrays["mask"]) != 0, np.float32(np.nan),
                                 da.from_zarr(arrays["image"]))
                rows = rows_for_budget(frames, size, size)
                result = combine(stack.rechunk({0: -1, 1: rows, 2: -1}), params=params)
                dask.compute(result.data, result.error, result.count)
            if sharded:
                compute_stacks({cube: combine_calibrated(
                    [NS(cube=cube, index=i) for i in range(frames)], store, params)
                    for cube in ("lights_V", "lights_R")})
        return {"frames": frames, "size": size, "sharded": sharded, "zarr_reads": zarr_reads,
                "seconds": time.perf_counter() - start,
                "stack_peak_above_setup_mb": round(_vm_hwm_mb() - before, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--frames", type=int, nargs="*", default=[10, 80, 500])
    parser.add_argument("--ratio-size", type=int, default=2048)
    parser.add_argument("--ratio-frames", type=int, nargs="*", default=[80])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--memory-limit", default="2GB")
    parser.add_argument("--label", default="", help="a name for the record (before, after, ...); "
                        "ending in -nocosmics: the lights without cosmic-ray detection")
    parser.add_argument("--direct", type=int, nargs="*", default=[])
    parser.add_argument("--restack", type=Path, default=None,
                        help="only rebuild the stacks of the night reduced with this config")
    args = parser.parse_args()
    started = time.perf_counter()
    if args.restack:
        print({"restack_s": restack(args.restack, args.workers, args.memory_limit)})
        return
    if args.direct:
        from _common import run_isolated

        results = [run_isolated(__file__, "direct", kwargs={"frames": n, "size": args.size,
                                                              "sharded": sharded,
                                                              "zarr_reads": zarr_reads})
                   for n in args.direct
                   for sharded, zarr_reads in ((False, False), (True, True), (True, False))]
        write_record("stacks-direct", quick=False, params=vars(args), results=results,
                     started=started)
        return
    memory = [stacks_memory(args.size, n, args.workers, args.memory_limit, args.label)
              for n in args.frames]
    ratio = [stacks_vs_lights(args.ratio_size, n, args.workers, args.memory_limit, args.label)
             for n in args.ratio_frames]
    write_record(f"stacks{'-' + args.label if args.label else ''}", quick=False,
                 params=vars(args), results={"memory": memory, "ratio": ratio}, started=started)


if __name__ == "__main__":
    main()
