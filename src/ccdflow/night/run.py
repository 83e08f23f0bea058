"""`reduce_night`: plan, masters, calibrated lights and stacks of a whole night on dask."""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import gc
import json
import logging
import os
import time
from pathlib import Path

import dask
from distributed import Client, as_completed
from distributed.deploy import Cluster
from distributed.security import Security

from ccdflow._version import __version__
from ccdflow.errors import CcdflowError, NightAbortedError, WorkerMemoryError
from ccdflow.io.filelist import drop_duplicates, read_filelist, scan_directory
from ccdflow.io.report_cache import ProductSummaries
from ccdflow.io.report_page import write_report_page_or_warn
from ccdflow.io.write import check_output_tree, guard_inputs, remove_stale_temporaries
from ccdflow.night.cluster import open_cluster, recording_performance
from ccdflow.night.config import NightConfig, ResumeMode
from ccdflow.night.frames import describe_frames
from ccdflow.night.header_cache import CACHE_NAME, load_header_cache, save_header_cache
from ccdflow.night.memory import stack_budget, worker_budget
from ccdflow.night.plan import MasterPlan, Plan, make_plan
from ccdflow.night.progress import stage_progress
from ccdflow.night.records import RecordTable
from ccdflow.night.report import FrameStatus, NightReport, ProductStatus
from ccdflow.night.reuse import frame_jobs
from ccdflow.night.stage_bpm import BpmPlan, build_bpm
from ccdflow.night.stage_lights import FrameJob, FrameResult, calibrate_frame_job
from ccdflow.night.stage_masters import build_masters
from ccdflow.night.stage_page import summarize_for_page
from ccdflow.night.stage_stacks import stack_lights, stack_name
from ccdflow.night.store import Store
from ccdflow.night.verify import repair_store

__all__ = ["NightReport", "abort_reason", "plan_night", "reduce_night"]

logger = logging.getLogger(__name__)

PRODUCT_FOLDERS = ("masters", "lights", "arcs", "stacks", "work.zarr")
#: Errors of the machine rather than of a frame: they stop the night instead of failing one light.
ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO}


def plan_night(config: NightConfig) -> Plan:
    """List, describe (headers only) and plan a night without computing anything.

    Raises
    ------
    ConfigError
        If the file list or folder cannot be read.
    """
    with _cyclic_gc_paused():
        return _plan_night(config)


@contextlib.contextmanager
def _cyclic_gc_paused():
    """Pause Python's cyclic garbage collector while a plan is made.

    A plan allocates tens of thousands of small objects that live as long as it does (frames,
    their values, parameters, paths); the collector scanning them again and again was a third of
    a rerun's plan of 1,000 frames (0.23 s against 0.15 s without it). Reference counting still
    frees everything as usual; the collector resumes after, if it was on.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _plan_night(config: NightConfig) -> Plan:
    listed = (read_filelist(config.filelist, storage_options=config.storage_options)
              if config.filelist else scan_directory(config.directory))
    listed, repeated = drop_duplicates(listed)
    wanted = [f for f in listed if not f.ignored]
    known = load_header_cache(config.output, storage_options=config.storage_options)
    frames = describe_frames(wanted, content=config.resume == ResumeMode.content, known=known)
    plan = make_plan(frames, config)
    # a file read through several CCDs gives several frames: pair each with its listed HDU
    listed_hdu = {(e.path, e.type): e.hdu for e in wanted}
    plan.described = [(frame, listed_hdu.get((frame.path, frame.type), frame.hdu))
                      for frame in frames]
    if config.output.is_dir():  # a plan alone (validate, plan) never creates the output folder
        _save_header_cache(config, plan, known=known)
    plan.ignored.update({str(f.path): f.ignored for f in listed if f.ignored})
    plan.warnings[:0] = [*repeated, *(f"{path}: ignored: {why}" for path, why in plan.ignored.items())]
    plan.warnings.extend(note for notes in plan.notes.values() for note in notes)
    plan.warnings.extend(note for fp in plan.frames for note in fp.notes)
    return plan


def _save_header_cache(config: NightConfig, plan: Plan, *,
                       known: dict | None = None) -> None:
    try:
        save_header_cache(config.output, plan.described, known=known)
    except OSError as err:  # only a speed-up: a read-only output is reported by the run itself
        logger.warning("%s: header cache not written (%s)", config.output, err)


#: The night's report files in its output folder.
REPORT_FILES = ("report.json", "report.html", "report.cache.json")


def _guard(plan: Plan, config: NightConfig) -> None:
    """Refuse, before any work, a night whose products would land on its inputs or outside its tree."""
    check_output_tree(config.output, PRODUCT_FOLDERS)
    inputs = [*(f.path for m in plan.masters for f in m.frames), *(fp.frame.path for fp in plan.frames),
              *plan.failures, *(p for p in (config.filelist, config.source) if p is not None),
              *(b.user_mask for b in plan.bpms.values() if b.user_mask is not None)]
    outputs = [*(config.output / "masters" / f"{m.name}.fits" for m in plan.masters),
               *(config.output / "masters" / f"{name}.fits" for name in plan.bpms),
               *(fp.output for fp in plan.frames),
               *(config.output / "stacks" / f"{stack_name(fp)}.fits" for fp in plan.frames
                 if config.stack_lights and fp.frame.type == "light"),
               *(config.output / name for name in REPORT_FILES)]
    guard_inputs(outputs, inputs=inputs)


def abort_reason(err: BaseException) -> str:
    """One line saying why a night stopped, for the terminal and ``report.json``.

    Examples
    --------
    >>> abort_reason(OSError(28, "No space left on device", "lights/a.fits"))
    'disk full writing lights/a.fits: [Errno 28] No space left on device'
    >>> abort_reason(KeyboardInterrupt())
    'interrupted (Ctrl-C); a rerun resumes'
    """
    if isinstance(err, KeyboardInterrupt):
        return "interrupted (Ctrl-C); a rerun resumes"
    if _is_disk_full(err):
        where = f" writing {err.filename}" if err.filename else ""
        code = err.errno if err.errno in (errno.ENOSPC, errno.EDQUOT) else errno.ENOSPC
        return f"disk full{where}: [Errno {code}] {err.strerror or os.strerror(code)}"
    if isinstance(err, OSError) and err.errno in ENVIRONMENT_ERRNOS:
        return f"output not writable: {err}"
    return f"{type(err).__name__}: {err}"


def _is_disk_full(err: BaseException) -> bool:
    # astropy re-raises a full disk as a bare OSError("Not enough space on disk: ...")
    return isinstance(err, OSError) and (err.errno in (errno.ENOSPC, errno.EDQUOT)
                                         or "Not enough space on disk" in str(err))


def _is_environment(err: BaseException) -> bool:
    return (isinstance(err, OSError) and not isinstance(err, CcdflowError)
            and (err.errno in ENVIRONMENT_ERRNOS or _is_disk_full(err)))


def _failed(job: FrameJob, err: BaseException) -> FrameResult:  # no record: redone next time
    return FrameResult(job.plan.frame.label, str(job.plan.output), FrameStatus.failed,
                       error=f"{type(err).__name__}: {err}")


def _isolated(job: FrameJob) -> FrameResult:
    """One light on a local scheduler: whatever it raises fails that light only (not the machine)."""
    try:
        return calibrate_frame_job(job)
    except Exception as err:
        if _is_environment(err):
            raise
        logger.error("%s: %s: %s", job.plan.frame.path, type(err).__name__, err)
        return _failed(job, err)


def _keep(result: FrameResult, job: FrameJob, table: RecordTable) -> FrameResult:
    """Put a finished frame's record in the table (written in batches) as its result arrives."""
    if result.record is not None:
        table.add(job.plan.cube, job.plan.output.stem, result.record)
    return result


def _run_jobs(jobs: list[FrameJob], client: Client | None, show: bool,
              table: RecordTable) -> list[FrameResult]:
    if not jobs:
        return []
    if client is None:
        tasks = [dask.delayed(_isolated, pure=False)(job) for job in jobs]
        results = []
        with stage_progress("lights", len(tasks), show=show) as advance:
            for start in range(0, len(tasks), 8):  # batches, so the bar moves
                done = dask.compute(*tasks[start:start + 8])
                results.extend(map(_keep, done, jobs[start:start + 8], [table] * len(done)))
                advance(len(done))
        return results
    keys = [f"calibrate-{job.plan.output.stem}-{job.plan.key[:10]}" for job in jobs]
    futures = client.map(calibrate_frame_job, jobs, key=keys, pure=False)
    by_key = {future.key: job for future, job in zip(futures, jobs, strict=True)}
    results = []
    with stage_progress("lights", len(futures), show=show) as advance:
        for future in as_completed(futures):
            advance(1)
            try:
                results.append(_keep(future.result(), by_key[future.key], table))
            except Exception as err:  # KilledWorker or anything the task raised: this light only
                if _is_environment(err):
                    client.cancel(futures)
                    raise
                logger.error("%s: %s: %s", by_key[future.key].plan.frame.path, type(err).__name__, err)
                results.append(_failed(by_key[future.key], err))
    return results


def _masters(plan: Plan, store: Store, config: NightConfig, report: NightReport, *,
             client: Client | None, budget: int | None, echo, progress: bool) -> dict[str, str]:
    """Build the masters level by level (biases, darks, flats), each level in one computation."""
    failed: dict[str, str] = {}
    with stage_progress("masters", len(plan.masters), show=progress) as advance:
        for level in _levels(plan.masters):
            todo = []
            for master in level:
                band = stack_budget(master.params.image_area.shape, budget)
                why = _blocked(master, failed, band, budget)
                if why is None:
                    todo.append((master, band))
                    logger.info("master %s: %d frames", master.name, len(master.frames))
                    continue
                failed[master.name] = why
                report.masters[master.name] = {"name": master.name, "status": ProductStatus.failed,
                                               "error": why, "seconds": 0.0}
                advance(1)
            for name, result in build_masters(todo, store, config, client=client).items():
                report.masters[name] = result.to_dict()
                if result.status == ProductStatus.failed:
                    failed[name] = result.error
                advance(1)
    for bpm in plan.bpms.values():
        _bad_pixel_mask(bpm, plan, store, config, failed, report)
    return failed


def _levels(masters: list[MasterPlan]) -> list[list[MasterPlan]]:
    """The masters in dependency levels: each needs only masters of earlier levels."""
    depth: dict[str, int] = {}
    for master in masters:  # planned in dependency order
        depth[master.name] = 1 + max((depth[n] for n in master.needs if n in depth), default=-1)
    return [[m for m in masters if depth[m.name] == d] for d in sorted(set(depth.values()))]


def _blocked(master: MasterPlan, failed: dict[str, str], band: int, budget: int | None) -> str | None:
    """Why a master cannot be built: a master it needs failed, or it cannot fit a worker."""
    if any(need in failed for need in master.needs):
        return f"needs master {next(n for n in master.needs if n in failed)}"
    if band == 0:
        return (f"{WorkerMemoryError.__name__}: master {master.name} needs more "
                f"than the {budget / 2**20:.0f} MiB a worker may use per task")
    return None


def _bad_pixel_mask(bpm: BpmPlan, plan: Plan, store: Store, config: NightConfig,
                    failed: dict[str, str], report: NightReport) -> None:
    """Build one bad-pixel mask for the lights that use it, unless a master it needs failed."""
    shape = next((fp.params.image_area.shape for fp in plan.frames if fp.bpm == bpm.name), None)
    if shape is None:
        return  # no light uses it
    broken = [n for n in (bpm.dark, *bpm.flats) if n and n in failed]
    if broken:
        why = f"needs master {broken[0]}"
        failed[bpm.name] = why
        report.masters[bpm.name] = {"name": bpm.name, "status": ProductStatus.failed,
                                    "error": why, "seconds": 0.0}
        return
    result = build_bpm(bpm, store, config.output, shape=shape)
    report.masters[bpm.name] = result
    if result["status"] == ProductStatus.failed:
        failed[bpm.name] = result["error"]


def _work(plan: Plan, config: NightConfig, report: NightReport, client: Client | None, *,
          echo, progress: bool) -> ProductSummaries:
    """Everything that writes: output folder, masters, lights, stacks; the report after each stage."""
    config.output.mkdir(parents=True, exist_ok=True)
    if not (config.output / CACHE_NAME).exists():
        _save_header_cache(config, plan)
    for folder in PRODUCT_FOLDERS[:4]:
        remove_stale_temporaries(config.output / folder)
    remove_stale_temporaries(config.output)
    report.write(config.output / "report.json")  # at once: an earlier report never outlives a rerun
    store = Store(config.output / "work.zarr")
    report.warnings.extend(repair_store(store.path))
    store.root()
    budget = worker_budget(client)
    t = time.perf_counter()
    failed = _masters(plan, store, config, report, client=client, budget=budget, echo=echo,
                      progress=progress)
    report.seconds["masters"] = time.perf_counter() - t
    report.write(config.output / "report.json")
    t = time.perf_counter()
    _lights(plan, store, config, failed, report, client=client, budget=budget, progress=progress)
    report.order_frames(plan.inputs)
    report.seconds["lights"] = time.perf_counter() - t
    report.write(config.output / "report.json")
    if config.stack_lights:
        t = time.perf_counter()
        report.stacks.update(stack_lights(plan, store, config, report, budget=budget, show=progress))
        report.seconds["stacks"] = time.perf_counter() - t
    t = time.perf_counter()
    summaries = summarize_for_page(config.output, report, client)
    report.seconds["page"] = time.perf_counter() - t
    return summaries


def _lights(plan: Plan, store: Store, config: NightConfig, failed: dict[str, str],
            report: NightReport, *, client: Client | None, budget: int | None,
            progress: bool) -> None:
    """Reuse verified frames, calibrate the rest; the record table is written as results arrive."""
    remove_stale_temporaries(store.path / "records")
    table = RecordTable(store.path)
    if table.problem:
        report.warnings.append(f"{store.path.name}/{table.problem}; its frames are redone")
    jobs = frame_jobs(plan, store, table, config, failed, report, budget)
    try:
        for result in _run_jobs(jobs, client, progress, table):
            report.frames[result.path] = result.report_entry()
    finally:
        # what arrived is finished work, also when the run stops here
        try:
            table.flush()
        except OSError as err:  # a full disk: those frames are redone by the rerun
            logger.error("%s: record table not written (%s)", table.path, err)


def _write_aborted(report: NightReport, config: NightConfig) -> None:
    path = config.output / "report.json"
    try:
        report.write(path)
    except OSError:
        try:
            # a full disk has no room for a second copy beside the first: rewrite it in place
            # with only what must be known, which fits in the blocks the old report used
            path.write_text(json.dumps({"ok": False, "aborted": report.aborted,
                                        "output": report.output, "started": report.started}))
        except OSError as err:  # the terminal still says why
            logger.error("could not write %s: %s", path, err)


def reduce_night(config: NightConfig, *, scheduler: str | Client | Cluster | None = None,
                 n_workers: int | None = None, security: Security | bool | None = None,
                 performance_report: str | Path | None = None, echo=print,
                 progress: bool = True) -> NightReport:
    """Reduce a whole night: masters, calibrated lights (and arcs), optional stacks, report.

    Finished work whose inputs and parameters are unchanged is reused; a light that fails, for any
    reason (including a killed worker), is reported with its reason and the rest completes.
    ``report.json`` is written as the night goes, saying ``aborted`` until the night has ended.

    Parameters
    ----------
    config : NightConfig
        The night (see `ccdflow.night.load_config`).
    scheduler : str, distributed.Client or Cluster, optional
        Overrides ``config.cluster.scheduler`` (``tcp://host:port``, ``threads``, ...); a client or
        cluster object is used as is and left open.
    n_workers : int, optional
        Overrides ``config.cluster.n_workers``.
    security : distributed.security.Security or True, optional
        Overrides ``config.cluster.security``: TLS credentials for a ``tls://`` scheduler (or the
        cluster started here); True makes temporary self-signed ones for a cluster started here.
    performance_report : str or Path, optional
        Write dask's performance report (HTML) of the night there; needs a distributed cluster.
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
        If the inputs cannot be listed or the cluster cannot be reached or started, or a
        performance report is asked of a local scheduler (nothing is written).
    InputOverwriteError, OutputTreeError
        If a product would replace an input or leave the output folder (nothing is written).
    NightAbortedError
        If the environment stopped the night (disk full, unwritable output, ...); ``report.json``
        says why.
    KeyboardInterrupt
        On Ctrl-C, after ``report.json`` says the night was interrupted.

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
    (True, 1, ['bias', 'bpm_V', 'dark', 'flat_V'])
    """
    t0 = time.perf_counter()
    report = NightReport(output=str(config.output), config=config.to_dict(), version=__version__,
                         started=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                         aborted="the run did not finish")
    plan = plan_night(config)
    _guard(plan, config)
    report.warnings.extend(plan.warnings)
    for message in plan.warnings:
        echo(f"warning: {message}")
    for path, reason in plan.failures.items():
        report.frames[path] = FrameResult(path, "", FrameStatus.failed, 0.0, reason,
                                          warnings=plan.notes.get(path)).report_entry()
    report.ignored.update(plan.ignored)
    report.seconds["plan"] = time.perf_counter() - t0
    with open_cluster(config.cluster, scheduler=scheduler, n_workers=n_workers, security=security,
                      echo=echo) as client, recording_performance(client, performance_report):
        try:
            summaries = _work(plan, config, report, client, echo=echo, progress=progress)
        except (Exception, KeyboardInterrupt) as err:
            report.aborted = abort_reason(err)
            report.seconds["total"] = time.perf_counter() - t0
            _write_aborted(report, config)
            if isinstance(err, KeyboardInterrupt):
                raise
            raise NightAbortedError(report.aborted) from err
    report.aborted = None
    report.seconds["total"] = time.perf_counter() - t0
    report.write(config.output / "report.json")
    write_report_page_or_warn(config.output, summaries=summaries)
    return report
