"""Lazy master frames: overscan-corrected, trimmed stacks combined in full-width row bands.

Each calibration frame is treated as a light would be (overscan, trim, bias, scaled dark), but
stack-wise: the overscan levels of all frames come from one small task over their strips, and
everything else is elementwise and fuses into the combine's row-band tasks, so memory stays
bounded by the chunk budget whatever the number of frames, and a master is a few tasks per band.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dask.array as da
import numpy as np

from ccdflow.array.calibration import CalibrationParams, dark_scale
from ccdflow.array.combination import Combined, CombineParams, combine, frame_levels
from ccdflow.array.detector import Amplifier, Detector, Units
from ccdflow.array.overscan import OverscanMethods, OverscanParams, UserOverscan, overscan_correction
from ccdflow.array.sections import Region
from ccdflow.errors import ConfigError

__all__ = [
    "StackGeometry", "combine_amplifiers", "corrected_stack", "flat_levels", "master_bias",
    "master_dark", "master_flat", "normalise_flat", "overscan_levels",
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


def _level_of(block: np.ndarray, regions: list[Region], method, params: OverscanParams) -> np.ndarray:
    """The levels of every frame of the block, frame by frame (exactly as one frame alone)."""
    levels = [overscan_correction(frame, regions, method, params)[0] for frame in block]
    return np.stack([np.asarray(level, dtype=np.float32) for level in levels])


def _level_shape(method, regions: Sequence[Region], crop: tuple[int, int]) -> tuple[int, int]:
    """Shape of one frame's level: one value, one per row, one per column, or a whole frame."""
    if not isinstance(method, OverscanMethods):
        return crop
    if method in (OverscanMethods.median_per_line, OverscanMethods.polynomial):
        return (crop[0], 1) if all(r.shape[0] > r.shape[1] for r in regions) else (1, crop[1])
    return (1, 1)


def overscan_levels(stack: da.Array, overscans: Sequence[Region], *,
                    method: OverscanMethods | UserOverscan = OverscanMethods.median,
                    params: OverscanParams = OverscanParams()) -> da.Array | None:
    """Each frame's overscan level, lazily, broadcastable against ``stack``: (N, rows|1, cols|1).

    ``overscans``: one amplifier's strips (``None`` when it has none). Reads only the strips
    (plus the lines a per-line method spans), all frames in one task: a strip is a small part
    of a frame, and one task instead of one per frame keeps a master's graph small. A user
    callable needs, and is given, whole frames, one frame per task; its levels are then
    frame-sized, so memory grows with the number of frames in that case only.
    """
    if not overscans:
        return None
    if isinstance(method, OverscanMethods):
        crop, regions = _crop_for(overscans, stack.shape[1:], method)
        frames = -1
    else:
        crop, regions = (slice(None), slice(None)), list(overscans)
        frames = 1
    strips = stack[:, crop[0], crop[1]].rechunk({0: frames, 1: -1, 2: -1})
    shape = _level_shape(method, regions, strips.shape[1:])
    return strips.map_blocks(_level_of, regions, method, params, dtype=np.float32,
                             chunks=(strips.chunks[0], (shape[0],), (shape[1],)),
                             meta=np.empty((0, 0, 0), np.float32))


Stacks = Any  # a dask stack, or HDU -> dask stack for a detector read from several HDUs


def _grid(layout: Detector) -> list[list[Amplifier]]:
    """The amplifiers as rows of blocks that tile the detector (what `dask.array.block` takes)."""
    rows: dict[tuple[int, int], list[Amplifier]] = {}
    for amp in layout.amplifiers:
        rows.setdefault((amp.destination.ymin, amp.destination.ymax), []).append(amp)
    grid = [sorted(r, key=lambda a: a.destination.xmin) for _, r in sorted(rows.items())]
    y = 0
    for (y0, y1), row in zip(sorted(rows), grid, strict=True):
        xs = [(a.destination.xmin, a.destination.xmax) for a in row]
        tiled = xs[0][0] == 0 and xs[-1][1] == layout.shape[1] and all(
            xs[i][1] == xs[i + 1][0] for i in range(len(xs) - 1))
        if y0 != y or not tiled:
            raise ConfigError("detector", f"masters of {layout.name} need amplifiers that tile the "
                              "detector in rows; this layout leaves gaps or overlaps")
        y = y1
    if y != layout.shape[0]:
        raise ConfigError("detector", f"the amplifiers of {layout.name} do not cover its rows")
    return grid


def _amplifier_piece(stack: da.Array, amp: Amplifier, params: CalibrationParams) -> da.Array:
    """One amplifier of every frame: overscan-corrected, trimmed, mirrored into place, scaled."""
    levels = overscan_levels(stack, amp.overscans, method=params.overscan_method,
                             params=params.overscan_params)
    rows, cols = amp.data.slices
    piece = stack[:, rows, cols]
    if levels is not None:
        levels = levels[:, rows if levels.shape[1] > 1 else slice(None),
                        cols if levels.shape[2] > 1 else slice(None)]
        # levels in the piece's own chunks (the whole stack, its bands), so the subtraction
        # fuses into the band tasks instead of splitting every band frame by frame
        levels = levels.rechunk({0: piece.chunks[0], **{axis: piece.chunks[axis] for axis in (1, 2)
                                                        if levels.shape[axis] > 1}})
        piece = piece - levels
    if params.units == Units.electron:
        piece = piece * np.float32(amp.gain)
    if amp.saturation is not None:
        # a saturated raw pixel says nothing of the level: it never enters a master
        piece = da.where(stack[:, rows, cols] >= np.float32(amp.saturation), np.float32(np.nan),
                         piece)
    return piece[:, :: -1 if amp.flip_y else 1, :: -1 if amp.flip_x else 1]


def corrected_stack(stack: Stacks, geometry: StackGeometry, *, bias: ArrayLike | None = None,
                    dark_rate: ArrayLike | None = None, per_second: bool = False) -> da.Array:
    """Overscan-correct, trim, assemble, subtract bias and scaled dark, all lazily.

    Parameters
    ----------
    stack : dask.array.Array or mapping of HDU to dask.array.Array
        Raw (N, rows, columns) frames (`ccdflow.io.open_stack`); for a detector read from
        several HDUs, one stack per HDU (``geometry.params.layout.hdus``).
    geometry : StackGeometry
        The frames' parameters (their detector: each amplifier's overscan, data section,
        placement, gain, saturation; the units) and each frame's exposure time.
    bias : array-like, optional
        Master bias (assembled shape, the output's units), numpy or dask; subtracted when given.
    dark_rate : array-like, optional
        Master dark rate (units/s); ``t_i * dark_rate`` is subtracted from frame i when given.
    per_second : bool
        Divide each frame by its exposure time (for darks).

    Returns
    -------
    dask.array.Array
        (N, rows, columns) of the assembled detector, float32; NaN where the raw pixel is at or
        above its amplifier's saturation (so it does not enter the combination, and the count
        map shows it). Every step is elementwise or a slice, so it fuses into the combine's
        row-band tasks; only the overscan levels come from a first pass over the strips.
    """
    params = geometry.params
    layout = params.layout
    stacks = stack if isinstance(stack, Mapping) else {layout.hdus[0]: stack}
    pieces = [[_amplifier_piece(stacks[a.hdu], a, params) for a in row] for row in _grid(layout)]
    out = pieces[0][0] if len(layout.amplifiers) == 1 else da.block(pieces)
    times = np.asarray(geometry.exptimes, dtype=np.float32)[:, None, None]
    if bias is not None:
        out = out - bias
    if dark_rate is not None:
        scales = [dark_scale(t, 1.0, name="master dark rate") for t in geometry.exptimes]
        out = out - np.asarray(scales, dtype=np.float32)[:, None, None] * dark_rate
    if per_second:
        out = out / np.maximum(times, np.float32(1e-30))
    return out.astype(np.float32)


def combine_amplifiers(stack: da.Array, params: CombineParams, calibration: CalibrationParams, *,
                       levels: da.Array | None = None) -> Combined:
    """Combine an assembled stack amplifier by amplifier, each with its own noise model.

    With one amplifier in ADU this is `combine`. Otherwise, when ``params`` carries a CCD noise
    model (``gain``), each amplifier's block is combined with ``gain`` scaled by its gain
    relative to the first amplifier's (in electrons: by ``1 / first gain``, every amplifier's
    gain being 1 e-/e-) and its own ``read_noise``, and the results are assembled again. Frames
    scaled to a level (flats) are scaled by the level of the whole detector, computed once,
    never per amplifier (which would erase real differences between amplifiers).
    """
    layout = calibration.layout
    electrons = calibration.units == Units.electron
    if len(layout.amplifiers) == 1 and not electrons:
        return combine(stack, params=params, levels=levels)
    if params.scale is not None and levels is None:
        levels = frame_levels(stack, params.scale)
    first = layout.amplifiers[0].gain
    blocks = []
    for row in _grid(layout):
        out_row = []
        for amp in row:
            amp_params = params
            if params.gain is not None:
                gain = params.gain * (1.0 if electrons else amp.gain) / first
                amp_params = params.replace(gain=gain, read_noise=amp.read_noise)
            rows, cols = amp.destination.slices
            out_row.append(combine(stack[:, rows, cols], params=amp_params, levels=levels))
        blocks.append(out_row)
    if len(layout.amplifiers) == 1:
        return blocks[0][0]
    parts = {k: da.block([[getattr(c, k) for c in row] for row in blocks])
             for k in ("data", "error", "count")}
    return dataclasses.replace(blocks[0][0], **parts)


def master_bias(stack: da.Array, geometry: StackGeometry, *,
                params: CombineParams = CombineParams()) -> Combined:
    """Lazy master bias (ADU): overscan-corrected, trimmed bias frames combined."""
    return combine_amplifiers(corrected_stack(stack, geometry), params, geometry.params)


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
    result = combine_amplifiers(corrected_stack(stack, geometry, bias=bias, per_second=True),
                                params, geometry.params)
    if bias is None or bias_error is None:
        return result
    k = np.float32(geometry.inv_exptime)
    error = da.sqrt(result.error ** 2 + (k * bias_error) ** 2).astype(np.float32)
    return dataclasses.replace(result, error=error)


def master_flat(stack: da.Array, geometry: StackGeometry, *, bias: ArrayLike | None,
                dark_rate: ArrayLike | None,
                params: CombineParams = CombineParams(scale="median"),
                levels: da.Array | None = None) -> Combined:
    """Lazy master flat: each flat minus bias and ``t * dark_rate``, scaled to its own level.

    Without ``scale`` in ``params``, ``scale="median"`` is used: flats of different levels must be
    brought to one before combining. ``levels``: the frames' levels when already in the graph
    (`flat_levels`), so that they are computed once. The result still has to be divided by its
    clipped mean once computed (`normalise_flat` with `ccdflow.array.calibration.flat_norm`).
    """
    if params.scale is None:
        params = params.replace(scale="median")
    return combine_amplifiers(corrected_stack(stack, geometry, bias=bias, dark_rate=dark_rate),
                              params, geometry.params, levels=levels)


def flat_levels(stack: Stacks, geometry: StackGeometry, *, bias: ArrayLike | None,
                dark_rate: ArrayLike | None, params: CombineParams) -> da.Array:
    """Each flat's level after bias and dark subtraction, lazily: (N,) float64.

    The level `master_flat` scales each frame by (``params.scale``, median when unset), over
    the whole assembled detector.

    Examples
    --------
    >>> import dask.array as da
    >>> from ccdflow.array.sections import Region
    >>> params = CalibrationParams(image_area=Region(xmin=0, xmax=4, ymin=0, ymax=4))
    >>> stack = da.from_array(np.stack([np.full((4, 4), v, np.float32) for v in (10, 20)]))
    >>> geometry = StackGeometry(params=params, exptimes=(1.0, 1.0))
    >>> flat_levels(stack, geometry, bias=None, dark_rate=None, params=CombineParams()).compute()
    array([10., 20.])
    """
    corrected = corrected_stack(stack, geometry, bias=bias, dark_rate=dark_rate)
    return frame_levels(corrected, params.scale or "median")


def normalise_flat(data: np.ndarray, error: np.ndarray,
                   norm: float) -> tuple[np.ndarray, np.ndarray]:
    """Divide a computed master flat and its error by ``norm``, so that it averages 1."""
    return (data / np.float32(norm)).astype(np.float32), (error / np.float32(norm)).astype(np.float32)
