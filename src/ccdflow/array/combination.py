"""Sigma-clipped, NaN-aware combination of a frame stack along its first axis, lazily on dask."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import dask.array as da
import numpy as np

from ccdflow.array.chunks import CHUNK_BUDGET, rows_for_budget
from ccdflow.array.params import check_keys, parse_enum, parse_int, parse_number, to_plain_dict
from ccdflow.errors import ConfigError
from ccdflow.kernels.clip import combine_block

if TYPE_CHECKING:
    from astropy.nddata import NDData

__all__ = ["ClipMethod", "CombineMethod", "CombineParams", "Combined", "combine"]

_MODEL_CLIPS = frozenset({"pooled", "ccdclip", "avsigclip"})


class CombineMethod(StrEnum):
    """How the surviving values of a pixel are reduced."""

    median = "median"
    """Median (mean of the two middle values for an even count)."""
    mean = "mean"
    """Arithmetic mean."""
    sum = "sum"
    """Sum of the survivors (not rescaled for rejected values)."""


class ClipMethod(StrEnum):
    """How outliers are rejected before reducing."""

    auto = "auto"
    """``ccdclip`` when ``gain`` or ``read_noise`` is given (and no ``scale``), else ``pooled``."""
    pooled = "pooled"
    """Spread from a noise model ``sigma^2 = a + b*max(0, level)`` (a, b >= 0) fitted along each
    image line; IRAF semantics as ``ccdclip``. Holds in the read-noise and the Poisson regime."""
    ccdclip = "ccdclip"
    """IRAF ccdclip: ``sigma = sqrt((read_noise/gain)^2 + max(0, c)/gain + (sensitivity_noise*c)^2)``
    in ADU at the centre ``c`` (median of the survivors)."""
    avsigclip = "avsigclip"
    """IRAF avsigclip: ``sigma = sqrt(g*max(1, c))`` with ``g`` pooled along each image line."""
    sigma = "sigma"
    """Iterative sigma clipping, as `astropy.stats.sigma_clip` along the stack axis."""
    minmax = "minmax"
    """Drop the ``nlow`` lowest and ``nhigh`` highest values of each pixel."""
    none = "none"
    """Keep every finite value."""


class CenterFunc(StrEnum):
    """Centre of the sigma-clipping band."""

    median = "median"
    """Median of the survivors."""
    mean = "mean"
    """Mean of the survivors."""


class StdFunc(StrEnum):
    """Width of the sigma-clipping band."""

    mad_std = "mad_std"
    """1.4826 x median absolute deviation: robust, so one outlier among five can be rejected."""
    std = "std"
    """Population standard deviation (ddof=0), as astropy's ``std``."""


class Uncertainty(StrEnum):
    """Which formula gives the error of a combined pixel."""

    auto = "auto"
    """``model`` with a noise-model clip (pooled, ccdclip, avsigclip), else ``empirical``."""
    model = "model"
    """Expected error of the combined value from the clip's noise model ``sigma`` at the
    survivors' median: mean ``sigma/sqrt(n)``, median ``sqrt(f_n)*sigma/sqrt(n)`` with ``f_n`` the
    exact Gaussian ``n var(median)/sigma^2`` (1.434 for 5 values, pi/2 for many), sum
    ``sigma*sqrt(n)``. Defined for one survivor too."""
    empirical = "empirical"
    """Standard error from the survivors' sample scatter (ddof=1); NaN where one value survives."""
    ccdflow = "ccdflow"
    """Former name of ``empirical``, kept for saved parameters."""
    ccdproc = "ccdproc"
    """ccdproc's formulas (mean: std(ddof=0)/sqrt(n); median: 1.482602218505602 MAD/sqrt(n))."""


class FrameScale(StrEnum):
    """Per-frame level each frame is divided by before combining (for flats)."""

    median = "median"
    """The exact median of all finite pixels of the frame (whatever the chunking)."""
    mean = "mean"
    """The NaN-ignoring mean of the frame."""


@dataclass(frozen=True, kw_only=True)
class CombineParams:
    """Parameters of `combine`, named as in `astropy.stats.sigma_clip` and IRAF ``imcombine``.

    Parameters
    ----------
    method : {"median", "mean", "sum"}
        Reduction of the surviving values.
    clip : {"auto", "pooled", "ccdclip", "avsigclip", "sigma", "minmax", "none"}
        Outlier rejection (see `ClipMethod` and Notes). ``"auto"``, the default, is ``ccdclip``
        when ``gain`` or ``read_noise`` is given and ``pooled`` otherwise.
    sigma_lower, sigma_upper : float
        Clipping band below and above the centre, in units of the spread.
    maxiters : int or None
        Clipping iterations at most; ``None`` iterates until nothing changes.
    cenfunc : {"median", "mean"}
        Centre of the band (``clip="sigma"`` only).
    stdfunc : {"mad_std", "std"}
        Width of the band (``clip="sigma"`` only).
    nlow, nhigh : int
        Values dropped at each end by ``clip="minmax"``.
    nkeep : int
        Noise-model clips: minimum number of values kept per pixel (negative: maximum number
        rejected), restoring the rejected values with the smallest residuals, as IRAF's ``nkeep``.
    read_noise : float or None
        Read noise, electrons (``ccdclip``; 0 when only ``gain`` is given).
    gain : float or None
        Gain, e-/ADU (``ccdclip``; 1 when only ``read_noise`` is given).
    sensitivity_noise : float
        Fractional sensitivity noise (``ccdclip``).
    scale : {None, "median", "mean"}
        Divide each frame by its own level first (flats).
    uncertainty : {"auto", "model", "empirical", "ccdproc"}
        Error formula (see `Uncertainty` and `combine`); ``"auto"`` is ``model`` with a
        noise-model clip and ``empirical`` otherwise.

    Notes
    -----
    The noise-model clips use IRAF's ``mclip=yes`` semantics: centre ``c`` = median of the current
    survivors, spread ``sigma(c)``, strict rejection ``x < c - sigma_lower*sigma`` or
    ``x > c + sigma_upper*sigma``, rejections permanent, iterated until nothing changes or
    ``maxiters``, then ``nkeep``. Spreads, per image line (a row of the frame; combine keeps rows
    whole, so chunking cannot change them):

    - ``ccdclip``: ``sigma^2 = (read_noise/gain)^2 + max(0, c)/gain + (sensitivity_noise*c)^2``,
      in the data's units (ADU); the read noise is its floor. Rejects from 2 values on.
    - ``avsigclip``: ``g = sum over pixels with >= 3 values and their values of
      (x - m)^2 / max(1, m)``, ``m`` the pixel's median, divided by (number of those values - 1);
      ``sigma^2 = g*max(1, c)``. Faithful to IRAF, including its scaling with sqrt(level) only.
    - ``pooled``: each pixel with n >= 2 values gives a sample variance ``v`` (about its mean,
      n - 1 degrees of freedom) at level ``L = max(0, median)``; ``v ~ a + b*L`` with a, b >= 0
      is fitted along the line by least squares weighted by ``(n-1)/model^2``, leaving out pixels
      with ``v > 10*model`` (cosmic rays), repeated 5 times from a constant start;
      ``sigma^2 = a + b*max(0, c)``. On integer-valued lines sigma is at least the quantisation
      noise 1/sqrt(12). Rejects from 3 values on.

    Examples
    --------
    >>> CombineParams(method="mean", sigma_lower=3).to_dict()["sigma_lower"]
    3.0
    >>> CombineParams(gain=2.0, read_noise=5.0).effective_clip.value
    'ccdclip'
    """

    method: CombineMethod = CombineMethod.median
    clip: ClipMethod = ClipMethod.auto
    sigma_lower: float = 5.0
    sigma_upper: float = 5.0
    maxiters: int | None = 5
    cenfunc: CenterFunc = CenterFunc.median
    stdfunc: StdFunc = StdFunc.mad_std
    nlow: int = 1
    nhigh: int = 1
    nkeep: int = 1
    read_noise: float | None = None
    gain: float | None = None
    sensitivity_noise: float = 0.0
    scale: FrameScale | None = None
    uncertainty: Uncertainty = Uncertainty.auto

    def __post_init__(self):
        setter = object.__setattr__.__get__(self)
        setter("method", parse_enum(CombineMethod, self.method, key="method"))
        setter("clip", parse_enum(ClipMethod, self.clip, key="clip"))
        setter("cenfunc", parse_enum(CenterFunc, self.cenfunc, key="cenfunc"))
        setter("stdfunc", parse_enum(StdFunc, self.stdfunc, key="stdfunc"))
        setter("uncertainty", parse_enum(Uncertainty, self.uncertainty, key="uncertainty"))
        if self.scale is not None:
            setter("scale", parse_enum(FrameScale, self.scale, key="scale"))
        for key in ("sigma_lower", "sigma_upper"):
            setter(key, parse_number(getattr(self, key), key=key, strict=True))
        setter("maxiters", parse_int(self.maxiters, key="maxiters", minimum=1, allow_none=True))
        setter("nlow", parse_int(self.nlow, key="nlow"))
        setter("nhigh", parse_int(self.nhigh, key="nhigh"))
        setter("nkeep", parse_int(self.nkeep, key="nkeep", minimum=-(2**31)))
        setter("read_noise", parse_number(self.read_noise, key="read_noise", allow_none=True))
        setter("gain", parse_number(self.gain, key="gain", strict=True, allow_none=True))
        setter("sensitivity_noise", parse_number(self.sensitivity_noise, key="sensitivity_noise"))
        self._check_combinations()

    def _check_combinations(self) -> None:
        clip = self.effective_clip
        if clip == ClipMethod.ccdclip and self.gain is None and self.read_noise is None:
            raise ConfigError("clip", "ccdclip needs gain and/or read_noise")
        if clip == ClipMethod.ccdclip and self.scale is not None:
            # The model is in the frames' own ADU; scaled frames would need one model per frame.
            raise ConfigError("clip", "ccdclip cannot be combined with scale; use pooled")
        if self.uncertainty == Uncertainty.model and clip not in _MODEL_CLIPS:
            raise ConfigError("uncertainty", f"'model' needs a noise-model clip, not {clip.value!r}")

    @property
    def effective_clip(self) -> ClipMethod:
        """The clip that runs: ``auto`` resolved."""
        if self.clip != ClipMethod.auto:
            return self.clip
        noise_model = self.gain is not None or self.read_noise is not None
        return ClipMethod.ccdclip if noise_model and self.scale is None else ClipMethod.pooled

    @property
    def effective_uncertainty(self) -> Uncertainty:
        """The error formula used: ``auto`` resolved, ``ccdflow`` spelt ``empirical``."""
        if self.uncertainty == Uncertainty.auto:
            model = self.effective_clip in _MODEL_CLIPS
            return Uncertainty.model if model else Uncertainty.empirical
        return Uncertainty.empirical if self.uncertainty == Uncertainty.ccdflow else self.uncertainty

    def kernel_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of `ccdflow.kernels.clip.combine_block` for these parameters."""
        kwargs = {k: v for k, v in self.to_dict().items() if k not in ("scale", "gain", "read_noise")}
        kwargs.update(clip=self.effective_clip.value, uncertainty=self.effective_uncertainty.value,
                      gain=1.0 if self.gain is None else self.gain,
                      read_noise=0.0 if self.read_noise is None else self.read_noise)
        return kwargs

    def to_dict(self) -> dict[str, Any]:
        """The parameters as plain values (round-trips through `from_dict`, YAML and FITS)."""
        return to_plain_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, key: str = "combine") -> CombineParams:
        """Build from a mapping; an unknown field raises `ConfigError` naming ``key.field``."""
        check_keys(cls, data, key=key)
        try:
            return cls(**data)
        except ConfigError as err:
            raise ConfigError(f"{key}.{err.key}", str(err).split(": ", 1)[-1]) from None

    def replace(self, **changes: Any) -> CombineParams:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class Combined:
    """The lazy result of `combine`; compute the three arrays together for a single pass.

    Attributes
    ----------
    data : dask.array.Array
        Combined image, float32; NaN where no value survived.
    error : dask.array.Array
        Standard error of each combined pixel, float32.
    count : dask.array.Array
        Surviving values per pixel, uint16.
    n_frames : int
        Frames in the stack.
    params : CombineParams
        The parameters used.
    unit : astropy.units.UnitBase or None
        The unit of ``data`` and ``error``: the input frames' common unit when they were
        `~astropy.nddata.NDData` with one, else ``None``.

    Examples
    --------
    >>> import dask
    >>> stack = np.stack([np.full((2, 3), v, np.float32) for v in (1.0, 2.0, 3.0)])
    >>> result = combine(stack, params=CombineParams(method="mean"))
    >>> data, count = dask.compute(result.data, result.count)
    >>> float(data[0, 0]), int(count[0, 0]), result.n_frames
    (2.0, 3, 3)
    """

    data: da.Array
    error: da.Array
    count: da.Array
    n_frames: int
    params: CombineParams
    unit: Any = None


def _combine_chunk(block: np.ndarray, levels: np.ndarray | None, kwargs: dict) -> np.ndarray:
    if levels is not None:
        # a frame of level 0 or NaN gives inf/NaN values here; the caller judges the levels
        with np.errstate(divide="ignore", invalid="ignore"):
            block = block / levels.astype(np.float32)
    return combine_block(block, **kwargs)


def _band_sums(block: np.ndarray) -> np.ndarray:
    flat = block.reshape(block.shape[0], -1)
    finite = np.isfinite(flat)
    # sum and count, so that bands combine into an exact mean
    return np.stack([np.where(finite, flat, 0).sum(1, dtype=np.float64),
                     finite.sum(1).astype(np.float64)], axis=1)[:, :, None]


def _frame_median(block: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        values = block.reshape(block.shape[0], -1).astype(np.float64)
        finite = np.isfinite(values)
        medians = [np.median(row[ok]) if ok.any() else np.nan for row, ok in zip(values, finite, strict=True)]
    return np.asarray(medians, dtype=np.float64)


def frame_levels(stack: da.Array, how: FrameScale | str) -> da.Array:
    """Each frame's level, lazily: the NaN-ignoring mean, or the exact median of the whole frame.

    Parameters
    ----------
    stack : dask.array.Array
        (N, rows, columns), whole stack in every chunk.
    how : {"median", "mean"}
        Which level.

    Returns
    -------
    dask.array.Array
        (N,) float64.

    Notes
    -----
    The median is that of all finite pixels of each frame (``numpy.median``), computed in a first
    pass that gathers one whole frame per task, so it does not depend on the chunking. The mean
    is summed per chunk in float64.
    """
    how = parse_enum(FrameScale, how, key="scale")
    if how == FrameScale.median:
        frames = stack.rechunk({0: 1, 1: -1, 2: -1})
        return frames.map_blocks(_frame_median, dtype=np.float64, drop_axis=(1, 2),
                                 chunks=(frames.chunks[0],), meta=np.empty((0,), np.float64)).rechunk(-1)
    parts = stack.map_blocks(
        _band_sums, dtype=np.float64, meta=np.empty((0, 0, 0), np.float64),
        chunks=(stack.chunks[0], (2,) * len(stack.chunks[1]), (1,) * len(stack.chunks[2])),
    )
    sums = parts.sum(axis=(2,))
    return sums[:, 0::2].sum(axis=1) / sums[:, 1::2].sum(axis=1)


def _whole_stack_chunks(stack: da.Array, budget: int) -> da.Array:
    """Rechunk so that every chunk holds the whole stack in full-width rows.

    Axis 0 is never split (dask/dask#6810) and rows are whole (the noise-model clips pool along
    image lines).
    """
    if stack.numblocks[0] == 1 and stack.numblocks[2] == 1:
        return stack
    rows = rows_for_budget(stack.shape[0], stack.shape[2], stack.shape[1], budget=budget)
    return stack.rechunk({0: -1, 1: rows, 2: -1})


def combine(stack: da.Array | np.ndarray | Sequence[NDData], *, params: CombineParams = CombineParams(),
            budget: int = CHUNK_BUDGET, levels: da.Array | np.ndarray | None = None) -> Combined:
    """Combine a stack of frames along axis 0, lazily, one task per spatial chunk.

    Parameters
    ----------
    stack : dask.array.Array, numpy.ndarray or list of astropy.nddata.NDData
        (N, rows, columns) frames, for instance from `ccdflow.io.open_stack`. A stack split along
        axis 0 is rechunked into full-width row bands of about ``budget`` bytes. A list of
        `~astropy.nddata.CCDData` (or `~astropy.nddata.NDData`) frames is stacked by
        `ccdflow.array.ndstack.stack_nddata`: masked pixels are left out (the count map shows
        it), the frames must share one unit, which ``Combined.unit`` records, and their
        uncertainties are not used (a warning says so).
    params : CombineParams
        Rejection, reduction and error settings.
    budget : int
        Bytes per chunk used when the stack must be rechunked.
    levels : array, optional
        (N,) the frames' levels when ``params.scale`` is set, if already known (e.g. over a
        whole detector of which ``stack`` is one amplifier); default `frame_levels` of ``stack``.

    Returns
    -------
    Combined
        Lazy ``data``, ``error`` (float32) and ``count`` (uint16) sharing one graph: compute them
        together (``dask.compute(c.data, c.error, c.count)``) to read the input once.

    Raises
    ------
    ConfigError
        If ``stack`` is not 3-D, or NDData frames have mixed units or shapes.

    Notes
    -----
    NaN is ignored everywhere. Sigma clipping rejects ``x < c - sigma_lower*s`` or
    ``x > c + sigma_upper*s`` among the survivors, iterated up to ``maxiters`` times, exactly as
    ``astropy.stats.sigma_clip(stack, axis=0, ...)``. With n survivors and ``sd`` their sample
    standard deviation (ddof=1), the error is ``sd/sqrt(n)`` (mean), ``sqrt(pi/2) sd/sqrt(n)``
    (median) or ``sd*sqrt(n)`` (sum); with one survivor it is NaN. A pixel with no survivor is NaN
    in ``data`` and ``error`` and 0 in ``count``. With ``scale`` set, each frame is first divided by
    its own level (see `frame_levels`).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> stack = rng.normal(100.0, 3.0, (5, 2, 200)).astype(np.float32); stack[2, 0, 0] = 1000.0
    >>> result = combine(stack)
    >>> round(float(result.data[0, 0].compute())), int(result.count[0, 0].compute())
    (100, 4)
    """
    unit = None
    if isinstance(stack, list | tuple):
        # imported here: astropy.nddata would double the import time of every combine user
        from ccdflow.array.ndstack import is_nddata_list, stack_nddata

        if is_nddata_list(stack):
            stacked = stack_nddata(stack)
            stack, unit = stacked.data, stacked.unit
    stack = da.asarray(stack)
    if stack.ndim != 3:
        raise ConfigError("stack", f"expected a 3-D (N, rows, columns) stack, got shape {stack.shape}")
    if stack.dtype != np.float32:
        stack = stack.astype(np.float32)
    stack = _whole_stack_chunks(stack, budget)
    # (N, 1, 1) with one block, so that map_blocks broadcasts it against every spatial chunk
    if params.scale is None:
        levels = None
    else:
        levels = frame_levels(stack, params.scale) if levels is None else da.asarray(levels)
        levels = levels.rechunk(-1)[:, None, None]
    kwargs = params.kernel_kwargs()
    out = da.map_blocks(
        _combine_chunk, stack, levels, kwargs,
        dtype=np.float32, meta=np.empty((0, 0, 0), np.float32),
        chunks=((3,), stack.chunks[1], stack.chunks[2]),
    )
    return Combined(data=out[0], error=out[1], count=out[2].astype(np.uint16),
                    n_frames=int(stack.shape[0]), params=params, unit=unit)


def rejected_fraction(count: np.ndarray, n_frames: int, n_finite: int | None = None) -> float:
    """Fraction of input values rejected, from a computed count map."""
    total = n_finite if n_finite is not None else n_frames * count.size
    return float(1.0 - count.sum(dtype=np.int64) / total) if total else math.nan
