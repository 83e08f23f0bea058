"""Which lights a night reuses and which it calibrates: each frame's slice, record and checks."""

from __future__ import annotations

from dataclasses import replace

from ccdflow.errors import WorkerMemoryError
from ccdflow.night.config import NightConfig, ResumeMode
from ccdflow.night.memory import light_bytes
from ccdflow.night.plan import Plan
from ccdflow.night.records import RecordTable
from ccdflow.night.report import FrameStatus, NightReport
from ccdflow.night.stage_lights import FrameJob, FrameResult
from ccdflow.night.store import Store, cube_rows
from ccdflow.night.verify import reuse_problem

__all__ = ["frame_jobs"]


def _place_in_cubes(plan: Plan, store: Store) -> None:
    """Give each frame its slice from its cube's persistent stem -> index map.

    The planner numbers frames in list order; the store's map keeps a frame's slice across runs
    (new frames are appended), so adding, removing or reordering frames moves no other frame.
    """
    index: dict[str, dict[str, int]] = {}
    for cube, frames in plan.cubes().items():
        shape = frames[0].params.image_area.shape
        index[cube] = store.ensure_cube(cube, stems=[f.output.stem for f in frames], shape=shape,
                                        rows=cube_rows(shape))
    plan.frames = [replace(fp, index=index[fp.cube][fp.output.stem]) for fp in plan.frames]


def frame_jobs(plan: Plan, store: Store, table: RecordTable, config: NightConfig,
                failed_masters: dict[str, str], report: NightReport,
                budget: int | None) -> list[FrameJob]:
    """The lights to calibrate; the reused and the impossible ones go straight into the report.

    A frame is reused when its record has the plan's resume key and `reuse_problem` finds its
    product (and, when the night stacks, its cube slices) as recorded; otherwise its record is
    dropped and it is redone.
    """
    if config.writes_cube:  # a night that does not stack writes no cube
        _place_in_cubes(plan, store)
    content = config.resume is ResumeMode.content
    keys = {**{m.name: m.key for m in plan.masters}, **{n: b.key for n, b in plan.bpms.items()}}
    cubes: dict = {}  # each cube's arrays, opened once for every frame's check
    jobs = []
    for fp in plan.frames:
        missing = [n for n in (fp.bias, fp.dark, fp.flat, fp.bpm) if n in failed_masters]
        record = table.get(fp.cube, fp.output.stem)
        damage = None
        if not missing and record and record.get("key") == fp.key:
            damage = reuse_problem(fp, record, store, cubes=cubes, stacking=config.writes_cube,
                                   content=content)
            if damage is None:
                report.frames[fp.frame.label] = FrameResult(
                    fp.frame.label, str(fp.output), FrameStatus.reused, 0.0, None,
                    record.get("stats"), list(fp.notes) or None).report_entry()
                continue
            report.warnings.append(f"{fp.output}: {damage}; redone")
        if missing:
            error = (f"MissingCalibrationError: master {missing[0]} could not be built "
                     f"({failed_masters[missing[0]]})")
        elif budget is not None and light_bytes(fp) > budget:
            error = (f"{WorkerMemoryError.__name__}: {fp.frame.path}: calibrating it needs about "
                     f"{light_bytes(fp) / 2**20:.0f} MiB; a worker may use {budget / 2**20:.0f} MiB "
                     "per task (raise cluster.memory_limit or use fewer threads per worker)")
        else:
            table.forget(fp.cube, fp.output.stem)
            quality = config.quality.lights if fp.frame.type == "light" else None
            used = {n: keys[n] for n in (fp.bias, fp.dark, fp.flat, fp.bpm) if n in keys}
            jobs.append(FrameJob(fp, store, config.calibration.mask, quality, used,
                                 write_cube=config.writes_cube))
            continue
        report.frames[fp.frame.label] = FrameResult(
            fp.frame.label, str(fp.output), FrameStatus.failed, error=error).report_entry()
    return jobs
