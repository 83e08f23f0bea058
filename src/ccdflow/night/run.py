"""`reduce_night`: plan, masters, calibrated lights and stacks of a whole night on dask."""

from __future__ import annotations

import datetime as dt
import io
import logging
import sys
import time
from dataclasses import asdict

import click
import dask
from distributed import Client, as_completed

from ccdflow._version import __version__
from ccdflow.io.filelist import drop_duplicates, read_filelist, scan_directory
from ccdflow.io.report_page import write_report_page_or_warn
from ccdflow.night.cluster import open_cluster
from ccdflow.night.config import NightConfig, ResumeMode
from ccdflow.night.frames import describe_frames
from ccdflow.night.plan import Plan, make_plan
from ccdflow.night.report import FrameStatus, NightReport, ProductStatus
from ccdflow.night.stage_lights import FrameJob, FrameResult, calibrate_frame_job
from ccdflow.night.stage_masters import build_master
from ccdflow.night.stage_stacks import stack_lights
from ccdflow.night.store import Store, cube_rows
from ccdflow.night.verify import repair_store, reuse_problem

__all__ = ["NightReport", "plan_night", "reduce_night"]

logger = logging.getLogger(__name__)


def plan_night(config: NightConfig) -> Plan:
    """List, describe (headers only) and plan a night without computing anything.

    Raises
    ------
    ConfigError
        If the file list or folder cannot be read.
    """
    listed = read_filelist(config.filelist) if config.filelist else scan_directory(config.directory)
    listed, repeated = drop_duplicates(listed)
    plan = make_plan(describe_frames([f for f in listed if not f.ignored],
                                     content=config.resume == ResumeMode.content), config)
    plan.ignored.update({str(f.path): f.ignored for f in listed if f.ignored})
    plan.warnings[:0] = [*repeated, *(f"{path}: ignored: {why}" for path, why in plan.ignored.items())]
    plan.warnings.extend(note for notes in plan.notes.values() for note in notes)
    plan.warnings.extend(note for fp in plan.frames for note in fp.notes)
    return plan


def _progress(iterable, total: int, label: str, show: bool):
    return click.progressbar(iterable, length=total, label=label, show_pos=True,
                             file=sys.stderr if show else io.StringIO())


def _run_jobs(jobs: list[FrameJob], client: Client | None, show: bool) -> list[FrameResult]:
    if not jobs:
        return []
    if client is None:
        tasks = [dask.delayed(calibrate_frame_job, pure=False)(job) for job in jobs]
        results = []
        with _progress(range(len(tasks)), len(tasks), "lights", show) as bar:
            for start in range(0, len(tasks), 8):  # batches, so the bar moves
                results.extend(dask.compute(*tasks[start:start + 8]))
                bar.update(len(tasks[start:start + 8]))
        return results
    keys = [f"calibrate-{job.plan.output.stem}-{job.plan.key[:10]}" for job in jobs]
    futures = client.map(calibrate_frame_job, jobs, key=keys, pure=False)
    results = []
    with _progress(as_completed(futures), len(futures), "lights", show) as bar:
        for future in bar:
            results.append(future.result())
    return results


def _frame_jobs(plan: Plan, store: Store, config: NightConfig, failed_masters: dict[str, str],
                report: NightReport) -> list[FrameJob]:
    for cube, frames in plan.cubes().items():
        shape = frames[0].params.image_area.shape
        store.ensure_cube(cube, frames=[f.output.stem for f in frames], shape=shape,
                          rows=cube_rows(shape))
    jobs = []
    for fp in plan.frames:
        missing = [n for n in (fp.bias, fp.dark, fp.flat) if n in failed_masters]
        if missing:
            report.frames[str(fp.frame.path)] = asdict(FrameResult(
                str(fp.frame.path), str(fp.output), FrameStatus.failed,
                error=f"MissingCalibrationError: master {missing[0]} could not be built "
                      f"({failed_masters[missing[0]]})"))
            continue
        record = store.record(fp.cube, fp.output.stem)
        if record and record.get("key") == fp.key:
            damage = reuse_problem(fp, record, store)
            if damage is None:
                report.frames[str(fp.frame.path)] = asdict(FrameResult(
                    str(fp.frame.path), str(fp.output), FrameStatus.skipped, 0.0, None,
                    record.get("stats"), list(fp.notes) or None))
                continue
            report.warnings.append(f"{fp.output}: {damage}; redone")
        store.forget_record(fp.cube, fp.output.stem)
        jobs.append(FrameJob(fp, store, config.calibration.mask))
    return jobs


def _remove_stale_temporaries(config: NightConfig) -> None:
    """Delete the temporary files a killed run left behind (finished files are never touched)."""
    for folder in ("masters", "lights", "arcs", "stacks"):
        for path in (config.output / folder).glob(".*.part"):
            path.unlink(missing_ok=True)


def reduce_night(config: NightConfig, *, scheduler: str | None = None,
                 n_workers: int | None = None, echo=print, progress: bool = True) -> NightReport:
    """Reduce a whole night: masters, calibrated lights (and arcs), optional stacks, report.

    Finished work whose inputs and parameters are unchanged is reused; a bad frame is reported
    and the rest of the night completes.

    Parameters
    ----------
    config : NightConfig
        The night (see `ccdflow.night.load_config`).
    scheduler : str, optional
        Overrides ``config.cluster.scheduler`` (``tcp://host:port``, ``threads``, ...).
    n_workers : int, optional
        Overrides ``config.cluster.n_workers``.
    echo : callable
        Where progress lines go.
    progress : bool
        Show a progress bar for the lights on standard error.

    Returns
    -------
    NightReport
        Also written to ``<output>/report.json``; ``report.ok`` is false if anything failed.

    Raises
    ------
    ConfigError
        If the inputs cannot be listed or the cluster cannot be reached.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from ccdflow.night.config import CalibrationConfig
    >>> from ccdflow.synthetic import Instrument, write_night
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> night = write_night(folder, instrument=Instrument(ny=32, nx=32, n_overscan=4), n_bias=3,
    ...                     n_dark=3, dark_exptimes=(30.0,), n_flat=3, n_light=1, filters=("V",))
    >>> config = NightConfig(filelist=night.filelist, output=folder / "reduced",
    ...                      calibration=CalibrationConfig(overscans="header", image_area="header"))
    >>> report = reduce_night(config, scheduler="synchronous", echo=lambda *_: None,
    ...                       progress=False)
    >>> report.ok, report.count("done"), sorted(report.masters)
    (True, 1, ['bias', 'dark', 'flat_V'])
    """
    t0 = time.perf_counter()
    report = NightReport(output=str(config.output), config=config.to_dict(), version=__version__,
                         started=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
    plan = plan_night(config)
    report.warnings.extend(plan.warnings)
    for message in plan.warnings:
        echo(f"warning: {message}")
    for path, reason in plan.failures.items():
        report.frames[path] = asdict(FrameResult(path, "", FrameStatus.failed, 0.0, reason,
                                                 warnings=plan.notes.get(path)))
    report.ignored.update(plan.ignored)
    config.output.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(config)
    store = Store(config.output / "work.zarr")
    report.warnings.extend(repair_store(store.path))
    store.root()
    report.seconds["plan"] = time.perf_counter() - t0
    with open_cluster(config.cluster, scheduler=scheduler, n_workers=n_workers,
                      echo=echo) as client:
        t = time.perf_counter()
        failed: dict[str, str] = {}
        for master in plan.masters:
            if any(need in failed for need in master.needs):
                failed[master.name] = f"needs master {next(n for n in master.needs if n in failed)}"
                report.masters[master.name] = {"name": master.name, "status": ProductStatus.failed,
                                               "error": failed[master.name], "seconds": 0.0}
                continue
            echo(f"master {master.name}: {len(master.frames)} frames")
            result = build_master(master, store, config, client=client, show=progress)
            report.masters[master.name] = result.to_dict()
            if result.status == ProductStatus.failed:
                failed[master.name] = result.error
        report.seconds["masters"] = time.perf_counter() - t
        t = time.perf_counter()
        jobs = _frame_jobs(plan, store, config, failed, report)
        for result in _run_jobs(jobs, client, progress):
            report.frames[result.path] = asdict(result)
        report.seconds["lights"] = time.perf_counter() - t
        if config.stack_lights:
            t = time.perf_counter()
            report.stacks.update(stack_lights(plan, store, config, report))
            report.seconds["stacks"] = time.perf_counter() - t
    report.seconds["total"] = time.perf_counter() - t0
    report.write(config.output / "report.json")
    write_report_page_or_warn(config.output)
    return report
