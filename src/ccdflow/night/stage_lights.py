"""The per-frame task run on the workers.

It reads a raw frame, calibrates it against the masters in the zarr store (read once per worker
process), and writes its cube slices and its FITS product; its record (what a rerun verifies before
reusing the frame) goes back to the client with the result, which keeps the record table.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np

from ccdflow.array.calibration import Masters, calibrate_array, check_geometry, dark_scale
from ccdflow.array.frame_quality import QualityParams
from ccdflow.errors import CcdflowError, FrameError
from ccdflow.io.fits import read_images, read_rows
from ccdflow.io.fits_plain import simple_cards
from ccdflow.io.names import header_text
from ccdflow.io.products import add_fallback_notes, calibrated_header, write_calibrated
from ccdflow.night.plan import FramePlan
from ccdflow.night.report import FrameStatus
from ccdflow.night.store import Store
from ccdflow.night.verify import array_digest, file_stamp
from ccdflow.night.worker_cache import cached_master, cube_handles

__all__ = ["FrameJob", "FrameResult", "calibrate_frame_job"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FrameJob:
    """What a worker needs for one frame: its plan and the store holding its masters."""

    plan: FramePlan
    store: Store
    write_mask: bool
    quality: QualityParams | None = None  # the data-quality step (lights only)
    # master name -> resume key: masters are then read once per worker process, not per light
    master_keys: dict[str, str] = field(default_factory=dict)
    # only a night that stacks reads the cube: otherwise the FITS product is all that is written
    write_cube: bool = True


@dataclass(frozen=True)
class FrameResult:
    """The outcome of one frame, for the night report."""

    path: str
    output: str
    status: FrameStatus
    seconds: float = 0.0
    error: str | None = None
    stats: dict | None = None
    warnings: list[str] | None = None  # fallbacks used (also in the product's header)
    # for the client's record table (not the report): key, product stamp, slices' digests
    record: dict | None = field(default=None, repr=False)

    def report_entry(self) -> dict:
        """The result as ``report.json`` lists it (without the record)."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__ if name != "record"}


def calibrate_frame_job(job: FrameJob) -> FrameResult:
    """Calibrate one frame on a worker; a `CcdflowError` becomes a failed result, not a crash.

    A raw frame without a single finite pixel, or a result without one, is a failure: there is
    nothing to calibrate, or nothing came out.

    Parameters
    ----------
    job : FrameJob
        The frame's plan and where the masters are.

    Returns
    -------
    FrameResult
    """
    plan = job.plan
    start = time.perf_counter()
    clock = _Stopwatch()
    try:
        masters = Masters(*(_master(job, name) if name else None
                            for name in (plan.bias, plan.dark, plan.flat, plan.bpm)))
        clock.lap("masters")
        raw, shapes = _read_raw(plan)
        check_geometry(shapes, plan.params, masters, path=str(plan.frame.path), hdu=plan.frame.hdu)
        if not any(np.isfinite(r).any() for r in (raw.values() if isinstance(raw, dict) else [raw])):
            raise FrameError(plan.frame.path, "no pixel has a finite value", hdu=plan.frame.hdu)
        clock.lap("read")
        scale = math.nan if masters.dark is None else dark_scale(plan.params.exptime, masters.dark.exptime,
                                                            name=masters.dark.name)
        norm = math.nan if masters.flat is None else masters.flat.flat_norm()
        image, error, mask, stats = calibrate_array(raw, params=plan.params, masters=masters,
                                                    dark_scale=scale, norm=norm,
                                                    quality=job.quality)
        if not np.isfinite(image).any():
            raise FrameError(plan.frame.path, "no pixel has a finite value after calibration",
                             hdu=plan.frame.hdu)
        clock.lap("calibrate")
        slices = _write_slices(job, image, error, mask)
        clock.lap("zarr")
        header = calibrated_header(plan.frame.fits_header(), params=plan.params, masters=masters,
                                   dark_scale=scale, flat_norm=norm, stats=stats,
                                   history=f"raw file {header_text(plan.frame.path.name)}")
        add_fallback_notes(header, plan.notes)
        digest = hashlib.sha1()  # of the bytes as written: the product is not read back
        write_calibrated(plan.output, image=image, error=error, header=header,
                         mask=mask if job.write_mask else None, sha1=digest,
                         raw_cards_checked=simple_cards(plan.frame.header))
        clock.lap("fits")
        seconds = time.perf_counter() - start
        stats = {**stats, "timings": clock.laps}
        record = {"key": plan.key, "output": str(plan.output), "seconds": seconds, "stats": stats,
                  "output_stamp": file_stamp(plan.output, sha1=digest.hexdigest()), **slices}
        return FrameResult(plan.frame.label, str(plan.output), FrameStatus.done, seconds, None,
                           stats, list(plan.notes) or None, record=record)
    except CcdflowError as err:
        logger.error("%s: %s", plan.frame.path, err)
        return FrameResult(plan.frame.label, str(plan.output), FrameStatus.failed,
                           time.perf_counter() - start, f"{type(err).__name__}: {err}",
                           warnings=list(plan.notes) or None)


def _write_slices(job: FrameJob, image: np.ndarray, error: np.ndarray,
                  mask: np.ndarray) -> dict[str, dict]:
    """Write the frame's cube slices when the night stacks; what its record says of them.

    The values' digests (what ``resume: content`` compares) and the shard files' sizes and
    modification times (what ``resume: metadata`` compares); nothing when no cube is written.
    """
    if not job.write_cube:
        return {}
    plan, store = job.plan, job.store
    cube = cube_handles(store, plan.cube, shape=image.shape, index=plan.index)
    store.write_frame(plan.cube, plan.index, image, error, mask, arrays=cube)
    # as the cube holds them, so that a rerun can compare its slices with these
    digests = {label: array_digest(np.asarray(array, dtype)) for label, array, dtype in
               (("image", image, np.float32), ("error", error, np.float32),
                ("mask", mask, np.uint8))}
    return {"digests": digests, "slice_stamps": store.slice_stamps(cube, plan.index)}


def _read_raw(plan: FramePlan):
    """The raw pixels: one image, or each HDU a detector reads; and their shapes."""
    path = plan.frame.path  # a local path or a URL: the readers take either
    hdus = plan.params.layout.hdus
    if plan.params.multi_amplifier and hdus != (plan.frame.hdu,):
        raw = read_images(path, hdus)
        return raw, {h: r.shape for h, r in raw.items()}
    raw = read_rows(path, plan.frame.hdu, slice(None))
    return raw, raw.shape


def _master(job: FrameJob, name: str):
    """A master from this process's cache when the plan gave its key, else from the store."""
    key = job.master_keys.get(name)
    return job.store.read_master(name) if key is None else cached_master(job.store, name, key=key)


class _Stopwatch:
    """Seconds spent in each named step of a task, for the report and the benchmarks."""

    def __init__(self):
        self.laps: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = now - self._last
        self._last = now
