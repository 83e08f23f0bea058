"""`Calibrator`: the per-frame calibration interface of the SuperPhot design, file in, file out."""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import astropy.units as u
import dask
import numpy as np
from astropy.io import fits
from astropy.nddata import CCDData, NDData

from ccdflow.array.calibration import (
    CalibratedFrame,
    CalibrationParams,
    Master,
    Masters,
    calibrate_array,
    calibrate_lazy,
    check_geometry,
    dark_scale,
)
from ccdflow.array.detector import Detector, Units
from ccdflow.array.frame_quality import QualityParams
from ccdflow.array.overscan import OverscanMethods, OverscanParams
from ccdflow.array.params import parse_enum, parse_number
from ccdflow.array.sections import parse_region
from ccdflow.errors import ConfigError
from ccdflow.io.detectors import header_detectors, load_instrument, open_detector_frame, pick_detector
from ccdflow.io.fits import Frame
from ccdflow.io.frame_settings import FrameSettings, resolve_params
from ccdflow.io.location import PATH_TYPES, as_location
from ccdflow.io.nddata import IN_MEMORY, as_frame, as_master, parse_quantity, to_ccddata
from ccdflow.io.products import calibrated_header, read_master, write_calibrated
from ccdflow.io.write import guard_inputs

__all__ = ["Calibrator"]

logger = logging.getLogger(__name__)

_SETTINGS = ("overscans", "overscan_method", "overscan_params", "master_bias", "master_dark",
             "master_flat", "gain", "read_noise", "image_area", "exptime", "saturation", "raw_hdu",
             "mask", "overwrite", "bad_pixels", "quality", "amplifiers", "ccd", "units")
# numbers that may be given as astropy Quantities, and their units
_UNITS = {"gain": u.electron / u.adu, "read_noise": u.electron, "exptime": u.s, "saturation": u.adu}
# what a master may be given as
_MASTER_TYPES = (*PATH_TYPES, Master, NDData, np.ndarray)


class Calibrator:
    """Calibrate raw frames: overscan, trim, bias, exposure-scaled dark, normalised flat, errors.

    Every parameter is an attribute that may be changed between calls, and every one may be
    overridden for a single call by keyword (masters included; ``master_flat=None`` skips the
    flat, e.g. to calibrate a raw flat).

    Parameters
    ----------
    overscans : list of dict, optional
        Overscan areas ``dict(xmin=, xmax=, ymin=, ymax=)`` (0-based, half-open, numpy order) or
        FITS section strings; ``None`` (default) means no overscan step.
    overscan_method : OverscanMethods or callable
        A built-in method or ``f(image, overscans) -> corrected image``.
    master_bias, master_dark, master_flat : path, Master, CCDData or numpy.ndarray, optional
        Masters to apply; ``None`` skips the step. A master dark is scaled by
        ``t_raw / EXPTIME_dark``; a master flat is divided by its sigma-clipped mean. A
        `~astropy.nddata.CCDData` brings its uncertainty, mask and ``EXPTIME`` (see
        `ccdflow.io.nddata.as_master`); a plain array has no error (a dark array is a rate).
    gain : float or astropy.units.Quantity, optional
        e-/ADU (a Quantity in ``u.electron / u.adu``); default: the raw header's ``GAIN``, else 1.
    read_noise : float or astropy.units.Quantity, optional
        Electrons (a Quantity in ``u.electron``); default: the raw header's ``RDNOISE`` (or
        ``READNOIS``), else 0.
    image_area : dict, optional
        The image pixels kept; masters must have its shape. Default: the whole frame.
    exptime : float, optional
        Exposure-time override for the raw frame, s.
    saturation : float, optional
        Raw ADU level flagged as saturated; default: the raw header's ``SATURATE`` if present.
    raw_hdu : int
        HDU of the raw frames.
    overscan_params : OverscanParams
        Knobs of the built-in overscan methods (clip sigma, iterations, polynomial order).
    mask : bool
        Write the uint8 ``MASK`` extension (`ccdflow.array.masks.MaskBits`, documented in its
        header); on by default.
    bad_pixels : path or Master, optional
        A bad-pixel mask over the image area (FITS, nonzero = bad): those pixels are flagged
        ``BAD`` and keep their value.
    quality : QualityParams
        The data-quality step: bleed trails (always, where a saturation level is known), cosmic
        rays (``QualityParams(cosmic_rays="flag")``; off by default here, as this interface also
        calibrates flats and arcs, and on by default for a night's lights), fill.
    overwrite : bool
        Replace existing outputs (else `OutputExistsError`).
    amplifiers : list of dict, Detector or path, optional
        A frame read through several amplifiers: ``[dict(data=..., overscan=..., gain=...,
        read_noise=...), ...]`` (see `Detector.from_amplifiers`; sections as dicts or FITS
        strings), a `Detector`, or an instrument file (YAML, see `ccdflow.io.load_instrument`).
        Each amplifier is overscan-corrected from its own strip with its own gain and read noise
        and placed in the assembled image; ``overscans`` and ``image_area`` then do not apply and
        a ``gain``/``read_noise``/``saturation`` given here replaces every amplifier's own.
        Default: the layout the raw file's headers describe (lettered ``DATASECA``... keys, or one
        extension per amplifier with ``DATASEC``/``BIASSEC``/``DETSEC``/``CCDSUM``), else one
        amplifier.
    ccd : str, optional
        For a file holding several CCDs: the one to calibrate (its ``CCDNAME``).
    units : {"adu", "electron"}
        Output units; ``"electron"`` multiplies each amplifier by its own gain right after its
        overscan, so the masters given must be in electrons too.

    Raises
    ------
    ConfigError
        If a parameter is invalid (named), a Quantity included (``gain=2 * u.electron``).

    Notes
    -----
    With ``x = raw - overscan - B``, ``s = t_raw/t_dark`` and ``F_n = F/m``:
    ``I = (x - s D)/F_n`` and ``var_I = (var_O + (1 - phi)^2 var_B + (s^2 var_D - phi^2 var_B)
    + max(E, 0)/g + (RN/g)^2)/F_n^2 + I^2 var_Fn/F_n^2``, where ``phi = t_raw <1/t_dark>`` for a
    master dark that records its darks' ``<1/t>`` (``DKINVEXP``: it was built from darks minus
    the master bias, and its error includes that share), else 0, and ``E = F_n S + s D`` is the
    expected counts with ``S`` the 7x7 box mean of the calibrated image around the pixel, the
    pixel left out (its own ``x`` beyond 5 sigma); see
    `ccdflow.kernels.calibrate.calibrate_pixels`.
    Pixels that cannot be calibrated are NaN in image and error and flagged in the mask.

    Examples
    --------
    >>> calibrate = Calibrator(overscans=[dict(xmin=0, xmax=4096, ymin=0, ymax=20)],
    ...                        overscan_method=OverscanMethods.median,
    ...                        master_bias="masters/bias.fits", gain=16.0,
    ...                        image_area=dict(xmin=0, xmax=4096, ymin=20, ymax=4116))
    >>> calibrate.set_masters(dark="masters/dark.fits")  # doctest: +SKIP
    >>> calibrate(raw="raw1.fits", calibrated="calib1.fits")  # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        overscans: Sequence[Mapping[str, int] | str] | None = None,
        overscan_method: OverscanMethods | str | Any = OverscanMethods.median,
        master_bias: str | os.PathLike | Master | None = None,
        master_dark: str | os.PathLike | Master | None = None,
        master_flat: str | os.PathLike | Master | None = None,
        gain: float | None = None,
        read_noise: float | None = None,
        image_area: Mapping[str, int] | str | None = None,
        exptime: float | None = None,
        saturation: float | None = None,
        raw_hdu: int = 0,
        overscan_params: OverscanParams = OverscanParams(),
        mask: bool = True,
        overwrite: bool = True,
        bad_pixels: str | os.PathLike | Master | None = None,
        quality: QualityParams = QualityParams(),
        amplifiers: Sequence[Mapping[str, Any]] | Detector | str | os.PathLike | None = None,
        ccd: str | None = None,
        units: Units | str = Units.adu,
    ):
        self.overscans = overscans
        self.overscan_method = overscan_method
        self.master_bias = master_bias
        self.master_dark = master_dark
        self.master_flat = master_flat
        self.gain = gain
        self.read_noise = read_noise
        self.image_area = image_area
        self.exptime = exptime
        self.saturation = saturation
        self.raw_hdu = raw_hdu
        self.overscan_params = overscan_params
        self.mask = mask
        self.bad_pixels = bad_pixels
        self.quality = quality
        self.overwrite = overwrite
        self.amplifiers = amplifiers
        self.ccd = ccd
        self.units = units
        self._master_cache: dict[tuple, Master] = {}
        self._lock = threading.RLock()
        self._settings({})  # validate at construction

    def __getstate__(self) -> dict[str, Any]:
        # parameters only: loaded masters and the lock stay in this process
        state = dict(self.__dict__)
        for name in ("_master_cache", "_lock"):
            state.pop(name)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._master_cache = {}
        self._lock = threading.RLock()

    def set_masters(self, *, bias: Any = ..., dark: Any = ..., flat: Any = ...) -> None:
        """Set (or with ``None`` remove) masters; masters not named keep their value."""
        for kind, value in (("bias", bias), ("dark", dark), ("flat", flat)):
            if value is not ...:
                setattr(self, f"master_{kind}", value)

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={getattr(self, k)!r}" for k in _SETTINGS[:10])
        return f"Calibrator({shown}, ...)"

    # -- resolving parameters ---------------------------------------------------------------

    def _settings(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(overrides) - set(_SETTINGS))
        if unknown:
            raise ConfigError(unknown[0], f"not a Calibrator parameter; expected one of {_SETTINGS}")
        raw = {k: overrides.get(k, getattr(self, k)) for k in _SETTINGS}
        method = raw["overscan_method"]
        if not callable(method) or isinstance(method, str):
            method = parse_enum(OverscanMethods, method, key="overscan_method")
        overscans = raw["overscans"]
        if isinstance(overscans, Mapping | str):
            overscans = [overscans]
        settings = dict(raw)
        settings["overscan_method"] = method
        settings["overscans"] = tuple(
            parse_region(r, key=f"overscans[{i}]") for i, r in enumerate(overscans or ())
        )
        settings["image_area"] = (None if raw["image_area"] is None
                                  else parse_region(raw["image_area"], key="image_area"))
        for key in ("gain", "read_noise", "exptime", "saturation"):
            value = parse_quantity(raw[key], key=key, unit=_UNITS[key])
            settings[key] = parse_number(value, key=key, strict=key == "gain", allow_none=True)
        if not isinstance(raw["overscan_params"], OverscanParams):
            settings["overscan_params"] = OverscanParams.from_dict(dict(raw["overscan_params"]))
        if isinstance(raw["raw_hdu"], bool) or not isinstance(raw["raw_hdu"], int):
            raise ConfigError("raw_hdu", f"expected an HDU index, got {raw['raw_hdu']!r}")
        for kind in ("bias", "dark", "flat"):
            value = raw[f"master_{kind}"]
            if value is not None and not isinstance(value, _MASTER_TYPES):
                raise ConfigError(f"master_{kind}", "expected a path, Master, CCDData or array, got "
                                                    f"{type(value).__name__}")
        if raw["bad_pixels"] is not None and not isinstance(raw["bad_pixels"], _MASTER_TYPES):
            raise ConfigError("bad_pixels", "expected a path, Master, CCDData or array, got "
                                            f"{type(raw['bad_pixels']).__name__}")
        if not isinstance(raw["quality"], QualityParams):
            raise ConfigError("quality", f"expected QualityParams, got {raw['quality']!r}")
        settings["amplifiers"] = _detector(raw["amplifiers"])
        settings["units"] = parse_enum(Units, raw["units"], key="units")
        if raw["ccd"] is not None and not isinstance(raw["ccd"], str):
            raise ConfigError("ccd", f"expected a detector name, got {raw['ccd']!r}")
        return settings

    def _load_master(self, value: Any, kind: str) -> Master | None:
        if not isinstance(value, PATH_TYPES):
            return as_master(value, kind=kind)
        path = as_location(value)
        try:
            st = path.stat()
        except OSError:
            st = None  # read_master raises the FrameReadError naming the file
        key = (str(path.resolve()), st and st.st_mtime_ns, st and st.st_size)
        with self._lock:  # one read per master, however many threads calibrate
            if key not in self._master_cache:
                self._master_cache[key] = read_master(path)
            return self._master_cache[key]

    # -- calibrating ----------------------------------------------------------------------------

    def calibrate(self, frame: Frame | Any, **overrides: Any) -> CalibratedFrame:
        """Calibrate a lazily opened frame without touching any output file.

        Parameters
        ----------
        frame : Frame, CCDData or numpy.ndarray
            From `ccdflow.io.open_frame`, or an in-memory image (see `ccdflow.io.nddata.as_frame`).
        **overrides
            Any parameter, for this frame only.

        Returns
        -------
        CalibratedFrame
            Lazy image, error and mask (one task) and the resolved parameters.

        Raises
        ------
        ConfigError, FrameReadError, IncompatibleFramesError, MissingCalibrationError
        """
        settings = self._settings(overrides)
        if isinstance(frame, Frame):
            frame, images, detector = frame, frame.data, settings["amplifiers"]
        else:
            frame, images, detector = _open(frame, None, settings)
        params, masters, dark_scale, norm = self._resolve(frame, settings, images, detector)
        return calibrate_lazy(images, params=params, masters=masters,
                              dark_scale=dark_scale, norm=norm, quality=settings["quality"])

    def _resolve(self, frame: Frame, s: dict[str, Any], images: Any, detector: Detector | None
                 ) -> tuple[CalibrationParams, Masters, float, float]:
        """Parameters, masters, dark scale and flat norm of one frame, checked against it."""
        settings = FrameSettings(
            overscans=s["overscans"], overscan_method=s["overscan_method"],
            overscan_params=s["overscan_params"], image_area=s["image_area"], gain=s["gain"],
            read_noise=s["read_noise"], saturation=s["saturation"], exptime=frame.exptime,
            detector=detector, units=s["units"])
        params = resolve_params(frame.header, frame.shape, settings, path=str(frame.path),
                                hdu=frame.hdu).params
        masters = Masters(*(self._load_master(s[f"master_{k}"], k) for k in ("bias", "dark", "flat")),
                          bpm=self._load_master(s["bad_pixels"], "bpm"))
        shapes = ({h: tuple(a.shape) for h, a in images.items()} if isinstance(images, Mapping)
                  else frame.shape)
        check_geometry(shapes, params, masters, path=str(frame.path), hdu=frame.hdu)
        scale = math.nan if masters.dark is None else dark_scale(params.exptime, masters.dark.exptime,
                                                              name=masters.dark.name)
        norm = math.nan if masters.flat is None else masters.flat.flat_norm()
        return params, masters, scale, norm

    def __call__(self, *, raw: str | os.PathLike | NDData | np.ndarray,
                 calibrated: str | os.PathLike | None = None, header: fits.Header | None = None,
                 **overrides: Any) -> Path | CCDData:
        """Calibrate one raw frame into a two-extension FITS file, or into memory.

        Parameters
        ----------
        raw : path-like, CCDData or numpy.ndarray
            The raw frame: a file, or an image in memory (a CCDData's masked pixels are flagged
            as bad input; an array without ``header`` has an empty header, so its parameters
            come from the settings and the defaults and its exposure is 1 s unless ``exptime``).
        calibrated : path-like, optional
            The output: primary image, ``ERROR`` (and ``MASK`` if asked), written atomically;
            the same file whether ``raw`` was a file or in memory. ``None``: nothing is written
            and the result is returned as a `~astropy.nddata.CCDData`.
        header : astropy.io.fits.Header, optional
            The header of an in-memory ``raw`` (default: a CCDData's ``meta`` and WCS).
        **overrides
            Any parameter, for this frame only.

        Returns
        -------
        pathlib.Path or astropy.nddata.CCDData
            The output path; or, with ``calibrated=None``, the calibrated image in ADU with its
            `~astropy.nddata.StdDevUncertainty`, a boolean mask (pixels with any flag) and the
            product's header (WCS shifted to the image area) as ``meta`` and ``wcs``.

        Raises
        ------
        InputOverwriteError
            If ``calibrated`` is the raw frame or a master in use, however spelled; nothing is read.

        Examples
        --------
        >>> import astropy.units as u
        >>> calibrate = Calibrator(gain=2.0 * u.electron / u.adu, read_noise=4.0 * u.electron)
        >>> ccd = calibrate(raw=np.full((4, 5), 1000.0), master_bias=np.full((4, 5), 200.0),
        ...                 exptime=10.0)
        >>> ccd.unit, float(ccd.data[0, 0]), round(float(ccd.uncertainty.array[0, 0]), 3)
        (Unit("adu"), 800.0, 20.1)
        """
        s = self._settings(overrides)
        if calibrated is not None:
            guard_inputs([calibrated], inputs=[*([raw] if isinstance(raw, PATH_TYPES) else []),
                                               *(s[f"master_{k}"] for k in ("bias", "dark", "flat")
                                                 if isinstance(s[f"master_{k}"], PATH_TYPES))])
        frame, images, detector = _open(raw, header, s)
        params, masters, dark_scale, norm = self._resolve(frame, s, images, detector)
        # one frame is one task: run it here, never ship it (and the masters) to a scheduler
        raw_pixels = (images.compute(scheduler="sync") if not isinstance(images, Mapping)
                      else dict(zip(images, dask.compute(*images.values(), scheduler="sync"),
                                    strict=True)))
        image, error, mask, stats = calibrate_array(raw_pixels, params=params, masters=masters,
                                                    dark_scale=dark_scale, norm=norm,
                                                    quality=s["quality"])
        name = IN_MEMORY if str(frame.path) == IN_MEMORY else as_location(raw).name
        header = calibrated_header(frame.header, params=params, masters=masters,
                                   dark_scale=dark_scale, flat_norm=norm, stats=stats,
                                   history=f"raw file {name}")
        if calibrated is None:
            return to_ccddata(image, error=error, mask=mask, header=header)
        logger.info("%s -> %s", name, calibrated)
        return write_calibrated(calibrated, image=image, error=error, header=header,
                                mask=mask if s["mask"] else None, overwrite=s["overwrite"])


def _open(raw: Any, header: fits.Header | None, s: dict[str, Any]
          ) -> tuple[Frame, Any, Detector | None]:
    """The frame (header, exposure), its pixels and the detector it is read through.

    The pixels are one lazy image, or one per HDU read. A file whose headers describe several
    amplifiers or HDUs is read through that detector unless ``amplifiers`` says otherwise; a
    given detector reading other HDUs than ``raw_hdu`` opens them all.
    """
    detector, from_header = s["amplifiers"], False
    is_path = isinstance(raw, PATH_TYPES)
    if is_path and detector is None:
        found = header_detectors(raw, hdu=s["raw_hdu"])
        if found:
            detector, from_header = pick_detector(found, ccd=s["ccd"], path=str(raw)), True
    if detector is None or (not from_header and detector.hdus == (s["raw_hdu"],)):
        frame = as_frame(raw, header=header, hdu=s["raw_hdu"], exptime=s["exptime"])
        return frame, frame.data, detector
    if not is_path:
        raise ConfigError("amplifiers", f"detector {detector.name} reads HDUs {detector.hdus}; "
                          "an in-memory frame has one image (give a file)")
    opened = open_detector_frame(raw, detector, exptime=s["exptime"])
    return opened.frame, opened.images, detector


def _detector(value: Any) -> Detector | None:
    """The ``amplifiers`` parameter as a `Detector` (``None`` stays ``None``)."""
    if value is None or isinstance(value, Detector):
        return value
    if isinstance(value, str | os.PathLike):
        return load_instrument(value)
    return Detector.from_amplifiers(value)
