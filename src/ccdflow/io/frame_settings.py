"""From a user's settings and a frame's header to the frozen parameters that calibrate it.

`resolve_params` is the one place where a setting, a header card and a default meet: the
`Calibrator` and the night planner both call it, so they cannot disagree about a frame.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, replace
from typing import Any, Literal

from astropy.io import fits

from ccdflow.array.calibration import CalibrationParams
from ccdflow.array.detector import Detector, Units
from ccdflow.array.overscan import OverscanMethods, OverscanParams, UserOverscan
from ccdflow.array.params import parse_enum, parse_number
from ccdflow.array.sections import Region, region_from_section
from ccdflow.errors import ConfigError, FrameError, IncompatibleFramesError
from ccdflow.io.headers import (
    EXPTIME_KEYS,
    GAIN_KEYS,
    IMAGE_AREA_KEYS,
    OVERSCAN_KEYS,
    READ_NOISE_KEYS,
    SATURATION_KEYS,
    find_exposure_time,
    header_number,
    header_section,
)

__all__ = ["HEADER", "OFF", "FrameSettings", "Resolved", "resolve_params"]

#: The setting value that means "read it from the frame's header".
HEADER = "header"
#: The saturation setting that means "flag no saturation", whatever the header says.
OFF = "off"

# setting -> (header cards, default when no card holds a number, unit for messages)
_NUMBERS = {
    "gain": (GAIN_KEYS, 1.0, "e-/ADU"),
    "read_noise": (READ_NOISE_KEYS, 0.0, "e-"),
    "saturation": (SATURATION_KEYS, None, "ADU"),
}


@dataclass(frozen=True, kw_only=True)
class FrameSettings:
    """What a user asked for, before any frame is seen; validated at construction.

    Parameters
    ----------
    overscans : tuple of Region or "header"
        Overscan areas; ``()`` for no overscan step; ``"header"`` for the frame's ``BIASSEC``.
    overscan_method : OverscanMethods or callable
        Built-in method or ``f(image, overscans) -> corrected image``.
    overscan_params : OverscanParams
        Knobs of the built-in methods.
    image_area : Region, "header" or None
        The pixels kept; ``None`` for the whole frame, ``"header"`` for ``TRIMSEC``/``DATASEC``.
    gain, read_noise, saturation : float, "header" or None
        A number, or ``None``/``"header"``: the header's card (see `ccdflow.io.headers`), else
        the default (gain 1 e-/ADU, read noise 0 e-, no saturation level); ``saturation="off"``
        flags no saturation whatever the header says.
    exptime : float, optional
        Exposure-time override, s; by default the header's.
    strict : bool
        A frame without an exposure time is an error instead of taking 1 s.
    prefix : str
        Put before a setting's name in errors (``"calibration."`` for a night's config).
    detector : Detector, optional
        The amplifier layout (an instrument file, the `Calibrator`'s ``amplifiers``); it wins
        over a layout the frame's headers describe. ``overscans`` and ``image_area`` then do not
        apply; a ``gain``, ``read_noise`` or ``saturation`` given here replaces every
        amplifier's own.
    units : Units or str
        ``"adu"`` or ``"electron"`` (each amplifier times its gain after its overscan).

    Examples
    --------
    >>> settings = FrameSettings(gain=2.0, image_area=Region(xmin=0, xmax=90, ymin=0, ymax=80))
    >>> settings.read_noise is None
    True
    """

    overscans: tuple[Region, ...] | Literal["header"] = ()
    overscan_method: OverscanMethods | UserOverscan = OverscanMethods.median
    overscan_params: OverscanParams = OverscanParams()
    image_area: Region | Literal["header"] | None = None
    gain: float | Literal["header"] | None = None
    read_noise: float | Literal["header"] | None = None
    saturation: float | Literal["header", "off"] | None = None
    exptime: float | None = None
    strict: bool = False
    prefix: str = ""
    detector: Detector | None = None
    units: Units = Units.adu

    def __post_init__(self):
        object.__setattr__(self, "units", parse_enum(Units, self.units, key=f"{self.prefix}units"))
        if self.detector is not None and not isinstance(self.detector, Detector):
            raise ConfigError("detector", f"expected a Detector, got {type(self.detector).__name__}")
        if self.overscans != HEADER:
            if not all(isinstance(r, Region) for r in self.overscans):
                raise ConfigError("overscans", f"expected regions or 'header', got {self.overscans!r}")
            object.__setattr__(self, "overscans", tuple(self.overscans))
        if not (self.image_area in (None, HEADER) or isinstance(self.image_area, Region)):
            raise ConfigError("image_area", f"expected a region or 'header', got {self.image_area!r}")
        for name in _NUMBERS:
            value = getattr(self, name)
            if value == HEADER:
                object.__setattr__(self, name, None)  # one spelling for "from the header"
            elif value is not None and not (name == "saturation" and value == OFF):
                object.__setattr__(self, name, parse_number(value, key=name, strict=name == "gain"))
        if self.exptime is not None:
            object.__setattr__(self, "exptime", parse_number(self.exptime, key="exptime"))

    def replace(self, **changes: Any) -> FrameSettings:
        """A copy with some settings changed (validated again)."""
        return replace(self, **changes)


@dataclass(frozen=True)
class Resolved:
    """A frame's resolved parameters and what was assumed for it.

    Attributes
    ----------
    params : CalibrationParams
        The frozen per-frame parameters.
    sources : tuple of (str, str)
        Where each detector number came from: ``("gain", "header GAIN")``, ``("read_noise",
        "default")``, ``("exptime", "setting")``, ...
    notes : tuple of str
        Every fallback used (a missing or unparsable card), in words, for the report.
    """

    params: CalibrationParams
    sources: tuple[tuple[str, str], ...]
    notes: tuple[str, ...]


def resolve_params(header: fits.Header, shape: tuple[int, int], settings: FrameSettings, *,
                   path: str = "<frame>", hdu: int = 0, detector: Detector | None = None
                   ) -> Resolved:
    """Resolve one frame's calibration parameters: settings first, then header, then defaults.

    Parameters
    ----------
    header : astropy.io.fits.Header
        The raw frame's header.
    shape : (int, int)
        The raw frame's (rows, columns).
    settings : FrameSettings
        The user's settings.
    path, hdu : str, int
        The frame, named in errors and notes.
    detector : Detector, optional
        The amplifier layout the frame's headers describe (`ccdflow.io.detectors`), when they
        describe several amplifiers or HDUs; ``settings.detector`` wins over it.

    Returns
    -------
    Resolved

    Raises
    ------
    ConfigError
        If ``"header"`` is asked for a section the header lacks or cannot be parsed.
    IncompatibleFramesError
        If an overscan or the image area lies outside the frame.
    FrameError
        If the header's exposure time is invalid, or missing with ``strict``.

    Examples
    --------
    >>> header = fits.Header([("EGAIN", 2.0), ("SATLEVEL", 60000), ("EXPOSURE", 30.0)])
    >>> resolved = resolve_params(header, (100, 120), FrameSettings())
    >>> p = resolved.params
    >>> p.gain, p.read_noise, p.saturation, p.exptime, p.image_area.shape
    (2.0, 0.0, 60000.0, 30.0, (100, 120))
    >>> dict(resolved.sources)["gain"]
    'header EGAIN'
    """
    detector = settings.detector or detector
    if detector is not None:
        return _resolve_detector(header, settings, detector, path=path, hdu=hdu)
    sources, notes = [], []
    ny, nx = shape
    overscans = settings.overscans
    if overscans == HEADER:
        overscans = (_section(header, OVERSCAN_KEYS, f"{settings.prefix}overscans", path),)
    area = settings.image_area
    if area == HEADER:
        area = _section(header, IMAGE_AREA_KEYS, f"{settings.prefix}image_area", path)
    elif area is None:
        area = Region(xmin=0, xmax=nx, ymin=0, ymax=ny)
    for region, what in [*((r, "overscan area") for r in overscans), (area, "image_area")]:
        if not region.fits_in(shape):
            raise IncompatibleFramesError(
                path, f"{what} {region.to_dict()} lies outside the {ny}x{nx} frame", hdu=hdu)
    numbers = {}
    for name, (keys, default, unit) in _NUMBERS.items():
        value = getattr(settings, name)
        if value is not None:
            numbers[name] = None if value == OFF else value
            sources.append((name, "setting"))
            continue
        found = header_number(header, keys)
        if found.problem:
            notes.append(f"{path}: {found.problem}")
        if found.value is not None:
            numbers[name], source = found.value, f"header {found.key}"
        else:
            numbers[name], source = default, "default"
            if default is not None:
                notes.append(f"{path}: no {'/'.join(keys)} card; {name} {default} {unit} assumed")
        sources.append((name, source))
    exptime = _exptime(header, settings, sources, notes, path=path, hdu=hdu)
    params = CalibrationParams(
        image_area=area, overscans=tuple(overscans), overscan_method=settings.overscan_method,
        overscan_params=settings.overscan_params, exptime=exptime, units=settings.units, **numbers)
    return Resolved(params, tuple(sources), tuple(notes))


def _exptime(header: fits.Header, settings: FrameSettings, sources: list, notes: list, *,
             path: str, hdu: int) -> float:
    if settings.exptime is not None:
        sources.append(("exptime", "setting"))
        return settings.exptime
    exptime = find_exposure_time(header, path=path)
    if exptime is not None:
        sources.append(("exptime", "header"))
        return exptime
    if settings.strict:
        raise FrameError(path, f"no exposure time card (looked for {', '.join(EXPTIME_KEYS)})",
                         hdu=hdu)
    notes.append(f"{path}: no exposure time card ({', '.join(EXPTIME_KEYS)}); 1 s assumed")
    sources.append(("exptime", "default"))
    return 1.0


def _resolve_detector(header: fits.Header, settings: FrameSettings, detector: Detector, *,
                      path: str, hdu: int) -> Resolved:
    """Apply the settings to every amplifier of a detector.

    A number given in the settings replaces the amplifier's own, whose source (header card,
    instrument file, default) is kept otherwise; every default is noted.
    """
    sources, amps = [], []
    said: dict[str, list[str]] = {}  # what was assumed -> the amplifiers it was assumed for
    for amp in detector.amplifiers:
        changes = {}
        for name, (_, default, unit) in _NUMBERS.items():
            given, source = getattr(settings, name), getattr(amp, f"{name}_source")
            why = source[source.index("(") + 1:-1] if "(" in source else ""
            if given is not None:
                changes[name] = None if given == OFF else given
                changes[f"{name}_source"] = f"config ({why})" if why else "config"
                if why:
                    said.setdefault(f"{why} is not a number; the configured {name} {given} "
                                    f"{unit} used", []).append(amp.name)
            elif source.startswith("default") and default is not None:
                said.setdefault(f"no usable {name}{f' ({why})' if why else ''}; {name} {default} "
                                f"{unit} assumed", []).append(amp.name)
            sources.append((f"{name}[{amp.name}]", changes.get(f"{name}_source", source)))
        amps.append(dataclasses.replace(amp, **changes))
    notes = [f"{path}: amplifier{'s' if len(names) > 1 else ''} {', '.join(names)}: {text}"
             for text, names in said.items()]
    exptime = _exptime(header, settings, sources, notes, path=path, hdu=hdu)
    detector = dataclasses.replace(detector, amplifiers=tuple(amps))
    params = CalibrationParams(detector=detector, overscan_method=settings.overscan_method,
                               overscan_params=settings.overscan_params, exptime=exptime,
                               units=settings.units)
    return Resolved(params, tuple(sources), tuple(notes))


def _section(header: fits.Header, keys: tuple[str, ...], setting: str, path: str) -> Region:
    key, text = header_section(header, keys)
    if key is None:
        raise ConfigError(setting, f"'header' asked for, but {path} has no {' or '.join(keys)} card")
    try:
        return region_from_section(text)
    except (ConfigError, ValueError) as err:
        raise ConfigError(setting, f"{path}: {key} = {text!r} is not a FITS section ({err})") from None
