"""Calibration of one frame: overscan, trim, bias, exposure-scaled dark, normalised flat, errors."""

from __future__ import annotations

import math
import threading
import warnings
from dataclasses import dataclass
from typing import Any

import dask
import dask.array as da
import numpy as np
from astropy.io import fits

from ccdflow.array.frame_quality import QualityParams, flag_counts, flag_frame
from ccdflow.array.overscan import OverscanMethods, OverscanParams, UserOverscan, overscan_correction
from ccdflow.array.sections import Region
from ccdflow.errors import ConfigError, ExposureTimeWarning, IncompatibleFramesError, MissingCalibrationError
from ccdflow.kernels.calibrate import FLAG_BAD_INPUT, FLAG_FLAT, FLAG_MASTER, calibrate_pixels
from ccdflow.kernels.stats import clipped_mean

_UNCALIBRATABLE = FLAG_BAD_INPUT | FLAG_FLAT | FLAG_MASTER

__all__ = ["CalibratedFrame", "CalibrationParams", "Master", "Masters", "calibrate_array",
           "dark_bias_share", "dark_scale", "flat_norm"]

# one flat's norm is computed once however many threads calibrate with it
_NORM_LOCK = threading.Lock()


@dataclass(frozen=True, eq=False)
class Master:
    """A master bias, dark or flat, as the `Calibrator` uses it.

    Parameters
    ----------
    data : numpy.ndarray
        The master, image-area shaped, float32. NaN marks pixels without a value.
    error : numpy.ndarray, optional
        Its per-pixel 1-sigma error; ``None`` (no ``ERROR`` extension) counts as 0.
    exptime : float, optional
        Exposure time the master's values correspond to (``EXPTIME``; 1 for a dark rate);
        ``None`` when unknown (a dark is then taken as a rate, with a warning).
    name : str, optional
        File name recorded in calibrated headers.
    sha1 : str, optional
        SHA-1 of the master file, recorded in calibrated headers.
    header : astropy.io.fits.Header, optional
        The master's primary header.
    norm : float, optional
        For a flat: the level it is divided by when applied (`flat_norm`), when already known
        (a night records it with the master); computed on first use otherwise.
    inv_exptime : float, optional
        For a dark built from frames minus a master bias (ccdflow's master darks, card
        ``DKINVEXP``): the mean of ``1/t`` over its input darks, 1/s. The dark then carries
        ``-inv_exptime * EXPTIME`` times that master bias, and its error includes that share;
        a light calibrated with the same bias gets the bias term ``(1 - t_raw inv_exptime)^2
        var_B``. ``None``: the dark is independent of the bias.

    Examples
    --------
    >>> bias = Master(np.zeros((4, 4), np.float32), name="bias.fits")
    >>> bias.shape
    (4, 4)
    >>> Master(np.full((4, 4), 2.0, np.float32)).flat_norm()
    2.0
    """

    data: np.ndarray
    error: np.ndarray | None = None
    exptime: float | None = 1.0
    name: str | None = None
    sha1: str | None = None
    header: fits.Header | None = None
    norm: float | None = None
    inv_exptime: float | None = None

    def __post_init__(self):
        object.__setattr__(self, "data", np.asarray(self.data, dtype=np.float32))
        if self.inv_exptime is not None and not (self.inv_exptime >= 0
                                                 and math.isfinite(self.inv_exptime)):
            raise ValueError(f"inv_exptime must be a non-negative number, got {self.inv_exptime!r}")
        if self.error is not None:
            error = np.asarray(self.error, dtype=np.float32)
            if error.shape != self.data.shape:
                raise ValueError(f"error shape {error.shape} differs from data {self.data.shape}")
            object.__setattr__(self, "error", error)

    def __dask_tokenize__(self):
        # identify by provenance, not by hashing the pixels on every graph build
        return ("ccdflow.Master", self.name, self.sha1, id(self))

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the master."""
        return self.data.shape

    def flat_norm(self) -> float:
        """The level this master is divided by as a flat: `flat_norm` of its data, computed once."""
        if self.norm is None:
            with _NORM_LOCK:
                if self.norm is None:
                    object.__setattr__(self, "norm", flat_norm(self.data))
        return self.norm


@dataclass(frozen=True, kw_only=True)
class CalibrationParams:
    """Everything one frame's calibration needs besides the pixels and the masters, resolved.

    Parameters
    ----------
    image_area : Region
        The image pixels kept after the overscan correction.
    overscans : tuple of Region
        Overscan areas; empty means no overscan step.
    overscan_method : OverscanMethods or callable
        Built-in method or user callable ``f(image, overscans)``.
    overscan_params : OverscanParams
        Knobs of the built-in methods.
    gain : float
        e-/ADU (> 0).
    read_noise : float
        Electrons (>= 0).
    exptime : float
        The raw frame's exposure time, s.
    saturation : float, optional
        Raw ADU level flagged as saturated.
    """

    image_area: Region
    overscans: tuple[Region, ...] = ()
    overscan_method: OverscanMethods | UserOverscan = OverscanMethods.median
    overscan_params: OverscanParams = OverscanParams()
    gain: float = 1.0
    read_noise: float = 0.0
    exptime: float = 1.0
    saturation: float | None = None

    def __post_init__(self):
        if not (self.gain > 0 and math.isfinite(self.gain)):
            raise ConfigError("gain", f"must be a positive number, got {self.gain!r}")
        if not (self.read_noise >= 0 and math.isfinite(self.read_noise)):
            raise ConfigError("read_noise", f"must be a non-negative number, got {self.read_noise!r}")
        if not (self.exptime >= 0 and math.isfinite(self.exptime)):
            raise ConfigError("exptime", f"must be a non-negative number, got {self.exptime!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain values for provenance (a user overscan callable is recorded by name)."""
        method = self.overscan_method
        return {
            "image_area": self.image_area.to_dict(),
            "overscans": [r.to_dict() for r in self.overscans],
            "overscan_method": method.value if isinstance(method, OverscanMethods)
            else getattr(method, "__name__", repr(method)),
            "overscan_params": self.overscan_params.to_dict(),
            "gain": self.gain,
            "read_noise": self.read_noise,
            "exptime": self.exptime,
            "saturation": self.saturation,
        }


@dataclass(frozen=True)
class Masters:
    """The masters applied to a frame; ``None`` means the step is skipped."""

    bias: Master | None = None
    dark: Master | None = None
    flat: Master | None = None
    bpm: Master | None = None  # bad-pixel mask over the image area, nonzero = bad

    def items(self):
        """(kind, master) pairs of the masters present."""
        return [(k, getattr(self, k)) for k in ("bias", "dark", "flat", "bpm")
                if getattr(self, k) is not None]


@dataclass(frozen=True)
class CalibratedFrame:
    """The lazy result of calibrating one frame.

    Attributes
    ----------
    image, error : dask.array.Array
        float32 calibrated image (ADU) and its 1-sigma error; NaN where not calibratable.
    mask : dask.array.Array
        uint8 bit flags (1 bad input, 2 saturated, 4 flat <= 0, 8 master without value).
    stats : dask.delayed.Delayed
        Dict of numbers known only after computing (overscan level, pixels whose master error is
        undefined, flagged pixels).
    params : CalibrationParams
        The resolved parameters.
    masters : Masters
        The masters applied.
    dark_scale, flat_norm : float
        ``t_raw / t_dark`` and the flat's clipped mean (NaN when the step is skipped).
    """

    image: da.Array
    error: da.Array
    mask: da.Array
    stats: Any
    params: CalibrationParams
    masters: Masters
    dark_scale: float
    flat_norm: float


def flat_norm(flat: np.ndarray) -> float:
    """The level a flat is divided by: its sigma-clipped mean over the image area.

    3 sigma about the median, std, 5 iterations: astropy `sigma_clipped_stats`' defaults, so a
    flat already normalised by another package keeps its scale. NaN pixels are ignored.

    Examples
    --------
    >>> flat_norm(np.array([[0.9, 1.1], [1.0, np.nan]], np.float32))
    1.0
    """
    return clipped_mean(flat, sigma=3.0, maxiters=5)[0]


def dark_scale(t_raw: float, t_dark: float | None, *, name: str | None = None) -> float:
    """The factor ``t_raw / t_dark`` a dark is multiplied by before it is subtracted.

    The one rule for scaling darks: the `Calibrator`, the night's lights and the night's flats
    (whose dark is ccdflow's master dark rate, ``t_dark = 1``) all use it.

    Parameters
    ----------
    t_raw : float
        The frame's exposure time, s (already resolved: a missing one was reported there).
    t_dark : float or None
        The exposure the dark's values correspond to (the master's ``EXPTIME``; 1 for a rate).
    name : str, optional
        The dark, named in the warning or error.

    Returns
    -------
    float

    Raises
    ------
    MissingCalibrationError
        If ``t_dark`` is zero or negative (the dark cannot be scaled).

    Notes
    -----
    A dark without an exposure time is taken as a rate per second (``t_dark = 1``), with an
    `ExposureTimeWarning` naming it.

    Examples
    --------
    >>> dark_scale(120.0, 60.0)
    2.0
    """
    if t_dark is None:
        warnings.warn(f"{name}: master dark has no exposure time keyword; taking it as a "
                      "rate per second (EXPTIME = 1)", ExposureTimeWarning, stacklevel=2)
        t_dark = 1.0
    if not t_dark > 0:
        raise MissingCalibrationError(f"{name}: master dark EXPTIME is {t_dark}; it cannot be scaled")
    return float(t_raw) / float(t_dark)


def dark_bias_share(masters: Masters, dark_scale: float) -> float:
    """``phi``: the share of the master bias the subtracted dark ``s D`` carries.

    A master dark built from darks minus the master bias (``Master.inv_exptime`` known) holds
    ``-t_dark <1/t>`` times that bias per unit of its value, so ``s D`` holds ``phi = s t_dark
    <1/t> = t_raw <1/t>`` of it; 0 without a bias or without the record.

    Examples
    --------
    >>> masters = Masters(bias=Master(np.zeros((2, 2))),
    ...                   dark=Master(np.zeros((2, 2)), exptime=1.0, inv_exptime=1 / 60))
    >>> dark_bias_share(masters, 600.0)
    10.0
    """
    dark = masters.dark
    if masters.bias is None or dark is None or dark.inv_exptime is None:
        return 0.0
    t_dark = 1.0 if dark.exptime is None else dark.exptime
    return float(dark_scale) * t_dark * dark.inv_exptime


def calibrate_array(raw: np.ndarray, *, params: CalibrationParams, masters: Masters,
                    dark_scale: float = 1.0, norm: float = 1.0,
                    quality: QualityParams | None = None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """Calibrate one raw frame held in memory (the per-frame task of every higher layer).

    Parameters
    ----------
    raw : numpy.ndarray
        The whole raw frame, float32, overscan included.
    params : CalibrationParams
        Resolved parameters.
    masters : Masters
        Masters matching ``params.image_area``.
    dark_scale : float
        ``t_raw / t_dark``.
    norm : float
        The flat's normalisation (see `flat_norm`).
    quality : QualityParams, optional
        The data-quality step after calibration (bleed trails, cosmic rays, fill; see
        `ccdflow.array.frame_quality.flag_frame`); with ``masters.bpm`` its pixels are flagged
        `MaskBits.BAD`. ``None`` and no bad-pixel mask: the four calibration flags only.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray, numpy.ndarray, dict)
        float32 image and error, uint8 mask bits (`ccdflow.array.masks.MaskBits`), and the
        frame's statistics (``flags``: pixels per named plane).
    """
    level, var_level = 0.0, 0.0
    level_median = 0.0
    if params.overscans:
        level, var_level = overscan_correction(raw, params.overscans, params.overscan_method,
                                               params.overscan_params)
        finite = np.asarray(level)[np.isfinite(level)]
        level_median = float(np.median(finite)) if finite.size else float("nan")
    bias, dark, flat = masters.bias, masters.dark, masters.flat
    image, error, mask, undefined = calibrate_pixels(
        raw, area=params.image_area.bounds, level=level, var_level=var_level,
        bias=None if bias is None else bias.data, bias_err=None if bias is None else bias.error,
        dark=None if dark is None else dark.data, dark_err=None if dark is None else dark.error,
        dark_scale=dark_scale, dark_bias=dark_bias_share(masters, dark_scale),
        flat=None if flat is None else flat.data,
        flat_err=None if flat is None else flat.error, norm=norm, gain=params.gain,
        read_noise=params.read_noise, saturation=params.saturation,
    )
    if quality is not None or masters.bpm is not None:
        image, error, mask = flag_frame(
            raw[params.image_area.slices], image, error, mask, params=quality or QualityParams(),
            bad_pixels=None if masters.bpm is None else masters.bpm.data,
            saturation=params.saturation, gain=params.gain, read_noise=params.read_noise)
    stats = {
        "overscan_level": level_median,
        "undefined_master_error": undefined,
        "flagged": int(np.count_nonzero(mask)),
        "not_calibrated": int(np.count_nonzero(mask & _UNCALIBRATABLE)),
        "flags": flag_counts(mask),
    }
    return image, error, mask, stats


def check_geometry(shape: tuple[int, int], params: CalibrationParams, masters: Masters, *,
                   path: str, hdu: int = 0) -> None:
    """Raise `IncompatibleFramesError` if an area lies outside the frame or a master mismatches."""
    for region in params.overscans:
        if not region.fits_in(shape):
            raise IncompatibleFramesError(
                path, f"overscan area {region.to_dict()} lies outside the {shape[0]}x{shape[1]} "
                "frame", hdu=hdu)
    if not params.image_area.fits_in(shape):
        raise IncompatibleFramesError(
            path, f"image_area {params.image_area.to_dict()} lies outside the "
            f"{shape[0]}x{shape[1]} frame", hdu=hdu)
    for kind, master in masters.items():
        if master.shape != params.image_area.shape:
            raise IncompatibleFramesError(
                master.name or f"<master {kind}>",
                f"master {kind} has shape {master.shape} but the image area of {path} is "
                f"{params.image_area.shape}")


def calibrate_lazy(data: da.Array, *, params: CalibrationParams, masters: Masters,
                   dark_scale: float, norm: float,
                   quality: QualityParams | None = None) -> CalibratedFrame:
    """Wrap `calibrate_array` over a frame's dask array: one task, nothing computed."""
    block = data.rechunk(data.shape) if data.numblocks != (1, 1) else data
    task = dask.delayed(calibrate_array, pure=True, nout=4)(
        block.to_delayed().ravel()[0], params=params, masters=masters,
        dark_scale=dark_scale, norm=norm, quality=quality,
    )
    shape = params.image_area.shape
    image, error, mask = (
        da.from_delayed(task[i], shape=shape, dtype=dtype, meta=np.empty((0, 0), dtype))
        for i, dtype in ((0, np.float32), (1, np.float32), (2, np.uint8))
    )
    return CalibratedFrame(
        image=image, error=error, mask=mask, stats=task[3],
        params=params, masters=masters, dark_scale=dark_scale, flat_norm=norm,
    )
