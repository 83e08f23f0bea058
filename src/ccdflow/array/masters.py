"""Lazy master frames: overscan-corrected, trimmed stacks combined in full-width row bands.

Each calibration frame is treated as a light would be (overscan, trim, bias, scaled dark), but
stack-wise: the per-frame overscan levels come from a small first pass over the overscan strips,
and everything else is elementwise and fuses into the combine's row-band tasks, so memory stays
bounded by the chunk budget whatever the number of frames.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import dask.array as da
import numpy as np

from ccdflow.array.calibration import CalibrationParams, dark_scale
from ccdflow.array.combination import Combined, CombineParams, combine
from ccdflow.array.overscan import OverscanMethods, overscan_correction
from ccdflow.array.sections import Region

__all__ = [
    "StackGeometry", "corrected_stack", "master_bias", "master_dark", "master_flat", "normalise_flat",
    "overscan_levels",
]

ArrayLike = Any  # a numpy or dask array


@dataclass(frozen=True)
class StackGeometry:
    """How one stack of raw frames is corrected: the parameters and each frame's exposure time."""

    params: CalibrationParams
    exptimes: tuple[float, ...]

    @property
    def inv_exptime(self) -> float:
        """The mean of ``1/t`` over the frames, 1/s.

        How much of the master bias a dark rate built from them carries (sign reversed).
        """
        return float(np.mean([1.0 / max(t, 1e-30) for t in self.exptimes]))


def _crop_for(regions: Sequence[Region], shape: tuple[int, int],
              method) -> tuple[tuple[slice, slice], list[Region]]:
    """The smallest block of the frame the overscan method needs, and the regions within it.

    Per-row methods keep every row, per-column methods every column, so that their per-line
    output still indexes the whole frame.
    """
    y0, y1 = min(r.ymin for r in regions), max(r.ymax for r in regions)
    x0, x1 = min(r.xmin for r in regions), max(r.xmax for r in regions)
    per_line = method in (OverscanMethods.median_per_line, OverscanMethods.polynomial)
    tall = all(r.shape[0] > r.shape[1] for r in regions)
    if per_line and tall:
        y0, y1 = 0, shape[0]
    elif per_line:
        x0, x1 = 0, shape[1]
    shifted = [Region(xmin=r.xmin - x0, xmax=r.xmax - x0, ymin=r.ymin - y0, ymax=r.ymax - y0)
               for r in regions]
    return (slice(y0, y1), slice(x0, x1)), shifted


def _level_of(block: np.ndarray, regions: list[Region], params: CalibrationParams) -> np.ndarray:
    level, _ = overscan_correction(block[0], regions, params.overscan_method,
                                   params.overscan_params)
    return np.asarray(level, dtype=np.float32)[None]


def _level_shape(method, regions: Sequence[Region], crop: tuple[int, int]) -> tuple[int, int]:
    """Shape of one frame's level: one value, one per row, one per column, or a whole frame."""
    if not isinstance(method, OverscanMethods):
        return crop
    if method in (OverscanMethods.median_per_line, OverscanMethods.polynomial):
        return (crop[0], 1) if all(r.shape[0] > r.shape[1] for r in regions) else (1, crop[1])
    return (1, 1)


def overscan_levels(stack: da.Array, params: CalibrationParams) -> da.Array | None:
    """Each frame's overscan level, lazily, broadcastable against ``stack``: (N, rows|1, cols|1).

    Reads only the overscan strips (plus the lines a per-line method spans), one frame per task.
    A user callable needs, and is given, whole frames; its levels are then frame-sized, so memory
    grows with the number of frames in that case only.
    """
    if not params.overscans:
        return None
    method = params.overscan_method
    if isinstance(method, OverscanMethods):
        crop, regions = _crop_for(params.overscans, stack.shape[1:], method)
    else:
        crop, regions = (slice(None), slice(None)), list(params.overscans)
    strips = stack[:, crop[0], crop[1]].rechunk({0: 1, 1: -1, 2: -1})
    shape = _level_shape(method, regions, strips.shape[1:])
    return strips.map_blocks(_level_of, regions, params, dtype=np.float32,
                             chunks=((1,) * stack.shape[0], (shape[0],), (shape[1],)),
                             meta=np.empty((0, 0, 0), np.float32))


def corrected_stack(stack: da.Array, geometry: StackGeometry, *, bias: ArrayLike | None = None,
                    dark_rate: ArrayLike | None = None, per_second: bool = False) -> da.Array:
    """Overscan-correct, trim, subtract bias and scaled dark, all lazily and band by band.

    Parameters
    ----------
    stack : dask.array.Array
        Raw (N, rows, columns) frames, whole stack in every chunk (`ccdflow.io.open_stack`).
    geometry : StackGeometry
        Overscan and image-area parameters, and each frame's exposure time.
    bias : array-like, optional
        Master bias (image-area shaped, ADU), numpy or dask; subtracted when given.
    dark_rate : array-like, optional
        Master dark rate (ADU/s); ``t_i * dark_rate`` is subtracted from frame i when given.
    per_second : bool
        Divide each frame by its exposure time (for darks).

    Returns
    -------
    dask.array.Array
        (N, image rows, image columns) float32; NaN where the raw pixel is at or above
        ``params.saturation`` (so it does not enter the combination, and the count map shows it).
    """
    params = geometry.params
    levels = overscan_levels(stack, params)
    area = params.image_area.slices
    out = stack
    if levels is not None:
        if levels.shape[1] == stack.shape[1]:
            levels = levels.rechunk({1: stack.chunks[1]})
        if levels.shape[2] == stack.shape[2]:
            levels = levels.rechunk({2: stack.chunks[2]})
        out = out - levels
    out = out[:, area[0], area[1]]
    times = np.asarray(geometry.exptimes, dtype=np.float32)[:, None, None]
    if bias is not None:
        out = out - bias
    if dark_rate is not None:
        scales = [dark_scale(t, 1.0, name="master dark rate") for t in geometry.exptimes]
        out = out - np.asarray(scales, dtype=np.float32)[:, None, None] * dark_rate
    if per_second:
        out = out / np.maximum(times, np.float32(1e-30))
    if params.saturation is not None:
        # a saturated raw pixel says nothing of the level: it never enters a master
        out = da.where(stack[:, area[0], area[1]] >= np.float32(params.saturation),
                       np.float32(np.nan), out)
    return out.astype(np.float32)


def master_bias(stack: da.Array, geometry: StackGeometry, *,
                params: CombineParams = CombineParams()) -> Combined:
    """Lazy master bias (ADU): overscan-corrected, trimmed bias frames combined."""
    return combine(corrected_stack(stack, geometry), params=params)


def master_dark(stack: da.Array, geometry: StackGeometry, *, bias: ArrayLike | None,
                bias_error: ArrayLike | None = None,
                params: CombineParams = CombineParams()) -> Combined:
    """Lazy master dark rate (ADU/s): each dark minus the bias, divided by its exposure time.

    Parameters
    ----------
    stack : dask.array.Array
        Raw (N, rows, columns) darks.
    geometry : StackGeometry
        Their overscan and image-area parameters and exposure times.
    bias : array-like, optional
        Master bias subtracted from each dark.
    bias_error : array-like, optional
        Its error. Every dark carries the same bias error, so the scatter among the darks does
        not see it: the rate's error gets ``k^2 var_B`` added, ``k = <1/t>`` over the darks
        (`StackGeometry.inv_exptime`), as the rate carries ``-k`` times the bias's own error.
    params : CombineParams
        How the rates are combined. A CCD noise model (``gain``, ``read_noise``) must be in rate
        units: a dark of ``t`` seconds has ``gain * t`` electrons per ADU/s and the same read
        noise in electrons.

    Returns
    -------
    Combined
    """
    result = combine(corrected_stack(stack, geometry, bias=bias, per_second=True), params=params)
    if bias is None or bias_error is None:
        return result
    k = np.float32(geometry.inv_exptime)
    error = da.sqrt(result.error ** 2 + (k * bias_error) ** 2).astype(np.float32)
    return dataclasses.replace(result, error=error)


def master_flat(stack: da.Array, geometry: StackGeometry, *, bias: ArrayLike | None,
                dark_rate: ArrayLike | None,
                params: CombineParams = CombineParams(scale="median")) -> Combined:
    """Lazy master flat: each flat minus bias and ``t * dark_rate``, scaled to its own level.

    Without ``scale`` in ``params``, ``scale="median"`` is used: flats of different levels must be
    brought to one before combining. The result still has to be divided by its clipped mean once
    computed (`normalise_flat` with `ccdflow.array.calibration.flat_norm`).
    """
    if params.scale is None:
        params = params.replace(scale="median")
    return combine(corrected_stack(stack, geometry, bias=bias, dark_rate=dark_rate), params=params)


def normalise_flat(data: np.ndarray, error: np.ndarray,
                   norm: float) -> tuple[np.ndarray, np.ndarray]:
    """Divide a computed master flat and its error by ``norm``, so that it averages 1."""
    return (data / np.float32(norm)).astype(np.float32), (error / np.float32(norm)).astype(np.float32)
