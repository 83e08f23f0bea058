"""The per-frame task run on the workers.

It reads a raw frame, calibrates it against the masters in the zarr store, and writes its cube
slices, its FITS product and, last, its record.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ccdflow.array.calibration import Masters, calibrate_array, check_geometry, dark_scale
from ccdflow.array.frame_quality import QualityParams
from ccdflow.errors import CcdflowError, FrameError
from ccdflow.io.fits import read_rows
from ccdflow.io.names import header_text
from ccdflow.io.products import add_fallback_notes, calibrated_header, write_calibrated
from ccdflow.night.plan import FramePlan
from ccdflow.night.report import FrameStatus
from ccdflow.night.store import Store
from ccdflow.night.verify import array_digest, file_stamp

__all__ = ["FrameJob", "FrameResult", "calibrate_frame_job"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FrameJob:
    """What a worker needs for one frame: its plan and the store holding its masters."""

    plan: FramePlan
    store: Store
    write_mask: bool
    quality: QualityParams | None = None  # the data-quality step (lights only)


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
    plan, store = job.plan, job.store
    start = time.perf_counter()
    clock = _Stopwatch()
    try:
        masters = Masters(*(store.read_master(name) if name else None
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
        store.write_frame(plan.cube, plan.index, image, error, mask)
        clock.lap("zarr")
        header = calibrated_header(plan.frame.fits_header(), params=plan.params, masters=masters,
                                   dark_scale=scale, flat_norm=norm, stats=stats,
                                   history=f"raw file {header_text(Path(plan.frame.path).name)}")
        add_fallback_notes(header, plan.notes)
        write_calibrated(plan.output, image=image, error=error, header=header,
                         mask=mask if job.write_mask else None)
        clock.lap("fits")
        seconds = time.perf_counter() - start
        stats = {**stats, "timings": clock.laps}
        # as the cube holds them, so that a rerun can compare its slices with these
        digests = {label: array_digest(np.asarray(array, dtype)) for label, array, dtype in
                   (("image", image, np.float32), ("error", error, np.float32),
                    ("mask", mask, np.uint8))}
        store.write_record(plan.cube, plan.output.stem, {
            "key": plan.key, "output": str(plan.output), "seconds": seconds, "stats": stats,
            "output_stamp": file_stamp(plan.output), "digests": digests})
        return FrameResult(str(plan.frame.path), str(plan.output), FrameStatus.done, seconds, None,
                           stats, list(plan.notes) or None)
    except CcdflowError as err:
        logger.error("%s: %s", plan.frame.path, err)
        return FrameResult(str(plan.frame.path), str(plan.output), FrameStatus.failed,
                           time.perf_counter() - start, f"{type(err).__name__}: {err}",
                           warnings=list(plan.notes) or None)


def _read_raw(plan: FramePlan):
    """The raw pixels: one image, or each HDU a detector reads; and their shapes."""
    path = str(plan.frame.path)
    hdus = plan.params.layout.hdus
    if plan.params.multi_amplifier and hdus != (plan.frame.hdu,):
        raw = {h: read_rows(path, h, slice(None)) for h in hdus}
        return raw, {h: r.shape for h, r in raw.items()}
    raw = read_rows(path, plan.frame.hdu, slice(None))
    return raw, raw.shape


class _Stopwatch:
    """Seconds spent in each named step of a task, for the report and the benchmarks."""

    def __init__(self):
        self.laps: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = now - self._last
        self._last = now
