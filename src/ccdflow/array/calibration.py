"""Calibration of one frame: overscan, trim, bias, exposure-scaled dark, normalised flat, errors."""

from __future__ import annotations

import functools
import math
import threading
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import dask
import dask.array as da
import numpy as np
from astropy.io import fits

from ccdflow.array.detector import Amplifier, Detector, Units
from ccdflow.array.frame_quality import QualityParams, flag_counts, flag_frame
from ccdflow.array.overscan import OverscanMethods, OverscanParams, UserOverscan, overscan_correction
from ccdflow.array.params import parse_enum
from ccdflow.array.sections import Region
from ccdflow.errors import ConfigError, ExposureTimeWarning, IncompatibleFramesError, MissingCalibrationError
from ccdflow.kernels.assemble import place_amplifier
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


@functools.lru_cache(maxsize=64)
def _one_amplifier(area: Region, overscans: tuple[Region, ...], gain: float, read_noise: float,
                   saturation: float | None) -> Detector:
    """The one-amplifier detector of these fields; frames of a night share it (it is immutable)."""
    amp = Amplifier(name="A", data=area, overscans=overscans,
                    destination=Region(xmin=0, xmax=area.shape[1], ymin=0, ymax=area.shape[0]),
                    gain=gain, read_noise=read_noise, saturation=saturation)
    return Detector(name="detector", amplifiers=(amp,), shape=area.shape)


@dataclass(frozen=True, kw_only=True)
class CalibrationParams:
    """Everything one frame's calibration needs besides the pixels and the masters, resolved.

    A frame is a `Detector`: one or several amplifiers, each overscan-corrected from its own
    strip, trimmed and placed in the assembled image. One amplifier is described by
    ``image_area``, ``overscans``, ``gain``, ``read_noise`` and ``saturation``; several by
    ``detector`` (those five then describe nothing and are set from it). Either way `layout` is
    the detector every calibration step iterates over.

    Parameters
    ----------
    image_area : Region, optional
        One amplifier: the image pixels kept after the overscan correction. With ``detector``:
        the whole assembled image (default).
    overscans : tuple of Region
        One amplifier: overscan areas; empty means no overscan step.
    overscan_method : OverscanMethods or callable
        Built-in method or user callable ``f(image, overscans)``, applied to every amplifier.
    overscan_params : OverscanParams
        Knobs of the built-in methods.
    gain : float
        One amplifier: e-/ADU (> 0).
    read_noise : float
        One amplifier: electrons (>= 0).
    exptime : float
        The raw frame's exposure time, s.
    saturation : float, optional
        One amplifier: raw ADU level flagged as saturated.
    detector : Detector, optional
        Several amplifiers (or HDUs): their sections, placement, gains, read noises, saturations.
    units : Units or str
        ``"adu"`` (default) or ``"electron"``: each amplifier times its own gain right after its
        overscan, so masters and products are in electrons.

    Examples
    --------
    >>> p = CalibrationParams(image_area=Region(xmin=0, xmax=4, ymin=0, ymax=3), gain=2.0)
    >>> p.shape, p.layout.amplifiers[0].gain, p.units.value
    ((3, 4), 2.0, 'adu')
    """

    image_area: Region | None = None
    overscans: tuple[Region, ...] = ()
    overscan_method: OverscanMethods | UserOverscan = OverscanMethods.median
    overscan_params: OverscanParams = OverscanParams()
    gain: float = 1.0
    read_noise: float = 0.0
    exptime: float = 1.0
    saturation: float | None = None
    detector: Detector | None = None
    units: Units = Units.adu

    def __post_init__(self):
        set_ = object.__setattr__
        set_(self, "units", parse_enum(Units, self.units, key="units"))
        if self.detector is not None:
            if not isinstance(self.detector, Detector):
                raise ConfigError("detector", f"expected a Detector, got {type(self.detector).__name__}")
            ny, nx = self.detector.shape
            first = self.detector.amplifiers[0]
            set_(self, "image_area", Region(xmin=0, xmax=nx, ymin=0, ymax=ny))
            set_(self, "overscans", ())
            set_(self, "gain", first.gain)
            set_(self, "read_noise", first.read_noise)
            set_(self, "saturation", first.saturation)
        elif self.image_area is None:
            raise ConfigError("image_area", "one amplifier needs its image area (or give a detector)")
        if not (self.gain > 0 and math.isfinite(self.gain)):
            raise ConfigError("gain", f"must be a positive number, got {self.gain!r}")
        if not (self.read_noise >= 0 and math.isfinite(self.read_noise)):
            raise ConfigError("read_noise", f"must be a non-negative number, got {self.read_noise!r}")
        if not (self.exptime >= 0 and math.isfinite(self.exptime)):
            raise ConfigError("exptime", f"must be a non-negative number, got {self.exptime!r}")

    @functools.cached_property
    def layout(self) -> Detector:
        """The detector calibrated: ``detector``, or the one amplifier the scalar fields describe."""
        if self.detector is not None:
            return self.detector
        return _one_amplifier(self.image_area, self.overscans, self.gain, self.read_noise,
                              self.saturation)

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, columns) of the calibrated image."""
        return self.layout.shape

    @property
    def multi_amplifier(self) -> bool:
        """Whether the frame is read through more than one amplifier or HDU."""
        return len(self.layout.amplifiers) > 1 or self.layout.hdus != (0,)

    @property
    def has_overscan(self) -> bool:
        """Whether any amplifier is overscan-corrected."""
        return any(a.overscans for a in self.layout.amplifiers)

    def to_dict(self) -> dict[str, Any]:
        """Plain values for provenance (a user overscan callable is recorded by name)."""
        method = self.overscan_method
        out = {
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
        if self.units != Units.adu:  # recorded only when not the default: old records stay valid
            out["units"] = self.units.value
        if self.detector is not None:
            out["detector"] = self.detector.to_dict()
        return out


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


RawFrame = np.ndarray | Mapping[int | str, np.ndarray]


def _hdu_image(raw: RawFrame, hdu: int | str) -> np.ndarray:
    return raw if isinstance(raw, np.ndarray) else raw[hdu]


def _new_planes(params: CalibrationParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Image, error and mask of the assembled shape; pixels no amplifier covers are bad input."""
    layout = params.layout
    covered = sum(math.prod(a.destination.shape) for a in layout.amplifiers)
    if covered == math.prod(layout.shape):  # destinations never overlap
        return (np.empty(layout.shape, np.float32), np.empty(layout.shape, np.float32),
                np.empty(layout.shape, np.uint8))
    return (np.full(layout.shape, np.nan, np.float32), np.full(layout.shape, np.nan, np.float32),
            np.full(layout.shape, FLAG_BAD_INPUT, np.uint8))


def _overscan(raw: np.ndarray, amp: Amplifier, params: CalibrationParams):
    if not amp.overscans:
        return 0.0, 0.0, float("nan")
    level, var = overscan_correction(raw, amp.overscans, params.overscan_method,
                                     params.overscan_params)
    finite = np.asarray(level)[np.isfinite(level)]
    return level, var, float(np.median(finite)) if finite.size else float("nan")


def _assembled_raw(raw: RawFrame, params: CalibrationParams) -> tuple[np.ndarray, float | None]:
    """The raw ADU over the image area in output orientation, for bleed trails.

    With several amplifiers each is divided by its own saturation level, so that one threshold
    (1.0) follows each amplifier's own (an amplifier without one never saturates).
    """
    layout = params.layout
    if not params.multi_amplifier:
        amp = layout.amplifiers[0]
        return _hdu_image(raw, amp.hdu)[amp.data.slices], amp.saturation
    if all(a.saturation is None for a in layout.amplifiers):
        return np.zeros(layout.shape, np.float32), None
    out = np.zeros(layout.shape, np.float32)
    for amp in layout.amplifiers:
        scale = 0.0 if amp.saturation is None else 1.0 / amp.saturation
        place_amplifier(out, _hdu_image(raw, amp.hdu)[amp.data.slices], dest=amp.destination.bounds,
                        scale=scale, flip_x=amp.flip_x, flip_y=amp.flip_y)
    return out, 1.0


def _noise_for_cosmics(params: CalibrationParams) -> tuple[float, float]:
    """Gain and read noise of the cosmic-ray noise model (its per-pixel variance is given too)."""
    amps = params.layout.amplifiers
    gain = 1.0 if params.units == Units.electron else float(np.mean([a.gain for a in amps]))
    return gain, float(np.mean([a.read_noise for a in amps]))


def calibrate_array(raw: RawFrame, *, params: CalibrationParams, masters: Masters,
                    dark_scale: float = 1.0, norm: float = 1.0,
                    quality: QualityParams | None = None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """Calibrate one raw frame held in memory (the per-frame task of every higher layer).

    Parameters
    ----------
    raw : numpy.ndarray or mapping of HDU to numpy.ndarray
        The whole raw frame, overscan included; for a detector read from several HDUs, each
        HDU's image by its index or name (``params.layout.hdus``).
    params : CalibrationParams
        Resolved parameters.
    masters : Masters
        Masters of the calibrated (assembled) shape, ``params.shape``.
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
        frame's statistics (``flags``: pixels per named plane; ``overscan_levels``: each
        amplifier's median overscan level, raw ADU).

    Notes
    -----
    Each amplifier is calibrated in turn by one fused kernel pass that reads its raw pixels
    (mirrored as its readout is) and writes straight into the assembled image, error and mask:
    no temporary of the frame's size. Its overscan, gain, read noise and saturation are its own.

    Examples
    --------
    >>> det = Detector.from_dict({"name": "ccd", "shape": [2, 4], "amplifiers": [
    ...     {"name": "L", "data": "[1:2,1:2]", "destination": "[1:2,1:2]", "gain": 2.0},
    ...     {"name": "R", "data": "[3:4,1:2]", "destination": "[3:4,1:2]", "flip_x": True}]})
    >>> raw = np.array([[1, 2, 3, 4], [5, 6, 7, 8]], np.float32)
    >>> image, *_ = calibrate_array(raw, params=CalibrationParams(detector=det), masters=Masters())
    >>> image.tolist()
    [[1.0, 2.0, 4.0, 3.0], [5.0, 6.0, 8.0, 7.0]]
    """
    bias, dark, flat = masters.bias, masters.dark, masters.flat
    image, error, mask = _new_planes(params)
    levels, undefined = {}, 0
    for amp in params.layout.amplifiers:
        frame = _hdu_image(raw, amp.hdu)
        level, var_level, levels[amp.name] = _overscan(frame, amp, params)
        undefined += calibrate_pixels(
            frame, area=amp.data.bounds, level=level, var_level=var_level,
            bias=None if bias is None else bias.data, bias_err=None if bias is None else bias.error,
            dark=None if dark is None else dark.data, dark_err=None if dark is None else dark.error,
            dark_scale=dark_scale, dark_bias=dark_bias_share(masters, dark_scale),
            flat=None if flat is None else flat.data,
            flat_err=None if flat is None else flat.error, norm=norm, gain=amp.gain,
            read_noise=amp.read_noise, saturation=amp.saturation,
            electrons=params.units == Units.electron, flip_x=amp.flip_x, flip_y=amp.flip_y,
            out=(image, error, mask), dest=(amp.destination.ymin, amp.destination.xmin),
        )[3]
    if quality is not None or masters.bpm is not None:
        raw_area, saturation = _assembled_raw(raw, params)
        gain, read_noise = _noise_for_cosmics(params)
        image, error, mask = flag_frame(
            raw_area, image, error, mask, params=quality or QualityParams(),
            bad_pixels=None if masters.bpm is None else masters.bpm.data,
            saturation=saturation, gain=gain, read_noise=read_noise)
    stats = {
        "overscan_level": next(iter(levels.values())),
        "overscan_levels": levels,
        "undefined_master_error": undefined,
        "flagged": int(np.count_nonzero(mask)),
        "not_calibrated": int(np.count_nonzero(mask & _UNCALIBRATABLE)),
        "flags": flag_counts(mask),
    }
    return image, error, mask, stats


def check_geometry(shapes: tuple[int, int] | Mapping[int | str, tuple[int, ...]],
                   params: CalibrationParams, masters: Masters, *, path: str, hdu: int = 0) -> None:
    """Raise `IncompatibleFramesError` if an area lies outside the frame or a master mismatches.

    ``shapes``: the raw frame's shape, or each HDU's shape for a detector read from several.
    """
    for amp in params.layout.amplifiers:
        shape = shapes if not isinstance(shapes, Mapping) else shapes.get(amp.hdu)
        where = hdu if not isinstance(shapes, Mapping) else amp.hdu
        if shape is None or len(shape) != 2:
            raise IncompatibleFramesError(path, f"amplifier {amp.name}: HDU {amp.hdu!r} holds no "
                                          "2-D image", hdu=where)
        label = "" if not params.multi_amplifier else f"amplifier {amp.name}: "
        for region in amp.overscans:
            if not region.fits_in(shape):
                raise IncompatibleFramesError(
                    path, f"{label}overscan area {region.to_dict()} lies outside the "
                    f"{shape[0]}x{shape[1]} frame", hdu=where)
        if not amp.data.fits_in(shape):
            what = "data section" if params.multi_amplifier else "image_area"
            raise IncompatibleFramesError(
                path, f"{label}{what} {amp.data.to_dict()} lies outside the "
                f"{shape[0]}x{shape[1]} frame", hdu=where)
    for kind, master in masters.items():
        if master.shape != params.shape:
            raise IncompatibleFramesError(
                master.name or f"<master {kind}>",
                f"master {kind} has shape {master.shape} but the image area of {path} is "
                f"{params.shape}")


def calibrate_lazy(data: da.Array | Mapping[int | str, da.Array], *, params: CalibrationParams,
                   masters: Masters, dark_scale: float, norm: float,
                   quality: QualityParams | None = None) -> CalibratedFrame:
    """Wrap `calibrate_array` over a frame's dask array(s): one task, nothing computed.

    ``data``: the raw frame, or each HDU's image for a detector read from several.
    """
    def block(array: da.Array):
        array = array.rechunk(array.shape) if array.numblocks != (1, 1) else array
        return array.to_delayed().ravel()[0]

    raw = block(data) if isinstance(data, da.Array) else {h: block(a) for h, a in data.items()}
    task = dask.delayed(calibrate_array, pure=True, nout=4)(
        raw, params=params, masters=masters, dark_scale=dark_scale, norm=norm, quality=quality,
    )
    shape = params.shape
    image, error, mask = (
        da.from_delayed(task[i], shape=shape, dtype=dtype, meta=np.empty((0, 0), dtype))
        for i, dtype in ((0, np.float32), (1, np.float32), (2, np.uint8))
    )
    return CalibratedFrame(
        image=image, error=error, mask=mask, stats=task[3],
        params=params, masters=masters, dark_scale=dark_scale, flat_norm=norm,
    )
