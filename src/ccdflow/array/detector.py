"""Frozen description of a detector read through one or several amplifiers, and where each goes.

An `Amplifier` says which pixels of which HDU hold its data and overscan, where its data land in the
assembled detector image (flipped or not), and its gain, read noise and saturation together with the
source of each value. A `Detector` is the validated set of amplifiers of one CCD; a single-amplifier
frame is a detector with one amplifier, so every frame takes the same code path.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ccdflow.array.params import check_keys, parse_number
from ccdflow.array.sections import Region, parse_region
from ccdflow.errors import ConfigError

__all__ = ["SOURCE_KINDS", "Amplifier", "Detector", "Units"]

#: How a provenance string of a gain, read noise or saturation starts: ``"header GAINA"``,
#: ``"instrument file"``, ``"config"`` (optionally followed by why, e.g. ``"config (header
#: GAIN='unavail')"``) or ``"default"``.
SOURCE_KINDS = ("header", "instrument file", "config", "default")
_VALUES = ("gain", "read_noise", "saturation")


class Units(StrEnum):
    """Units of a calibrated image.

    Examples
    --------
    >>> Units("electron").value
    'electron'
    """

    adu = "adu"
    """Raw units: each amplifier's ADU, overscan-corrected."""
    electron = "electron"
    """Each amplifier multiplied by its own gain right after its overscan correction."""


def _parse_source(value: Any, *, key: str) -> str:
    if not isinstance(value, str) or not value.startswith(SOURCE_KINDS):
        raise ConfigError(key, f"a value source starts with one of {SOURCE_KINDS}, got {value!r}")
    return value


def _parse_hdu(value: Any) -> int | str:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 0:
        return int(value)
    raise ConfigError("hdu", f"expected an HDU index >= 0 or an extension name, got {value!r}")


def _regions(values: Any, *, key: str) -> tuple[Region, ...]:
    if values is None:
        return ()
    if isinstance(values, Region | Mapping | str):
        values = [values]
    return tuple(parse_region(v, key=key) for v in values)


@dataclass(frozen=True, kw_only=True)
class Amplifier:
    """One amplifier's pixels in a raw HDU, their place in the detector image, and its electronics.

    Parameters
    ----------
    name : str
        Unique within its detector (``"A"``, ``"im1"``, ``"1"``).
    data : Region
        The data section in the raw HDU (0-based, half-open, numpy order; binned pixels).
    destination : Region
        Where the data go in the assembled detector image (binned pixels); same shape as `data`.
    overscans : tuple of Region
        Serial overscan strip(s) in the raw HDU; empty when the amplifier has none.
    parallel_overscans : tuple of Region
        Parallel overscan strip(s) (rows read after the image), where present. Recorded only.
    hdu : int or str
        Index or extension name of the HDU the amplifier is stored in.
    flip_x, flip_y : bool
        Whether the data are stored mirrored along x (columns) or y (rows) relative to the
        assembled image, e.g. a ``DETSEC`` given reversed as ``[2048:1025,1:2056]``.
    gain : float
        e-/ADU, > 0.
    read_noise : float
        Electrons, >= 0.
    saturation : float or None
        ADU in the raw frame; ``None`` when unknown.
    gain_source, read_noise_source, saturation_source : str
        Where each value came from; one of the `SOURCE_KINDS` forms.

    Examples
    --------
    >>> amp = Amplifier(name="A", data=Region(xmin=0, xmax=4, ymin=0, ymax=3),
    ...                 destination=Region(xmin=4, xmax=8, ymin=0, ymax=3), flip_x=True)
    >>> amp.shape, amp.provenance["gain"]
    ((3, 4), 'default')
    """

    name: str
    data: Region
    destination: Region
    overscans: tuple[Region, ...] = ()
    parallel_overscans: tuple[Region, ...] = ()
    hdu: int | str = 0
    flip_x: bool = False
    flip_y: bool = False
    gain: float = 1.0
    read_noise: float = 0.0
    saturation: float | None = None
    gain_source: str = "default"
    read_noise_source: str = "default"
    saturation_source: str = "default"

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError("name", f"an amplifier needs a non-empty name, got {self.name!r}")
        key = f"amplifiers.{self.name}"
        set_ = object.__setattr__
        set_(self, "data", parse_region(self.data, key=f"{key}.data"))
        set_(self, "destination", parse_region(self.destination, key=f"{key}.destination"))
        set_(self, "overscans", _regions(self.overscans, key=f"{key}.overscans"))
        set_(self, "parallel_overscans",
             _regions(self.parallel_overscans, key=f"{key}.parallel_overscans"))
        set_(self, "hdu", _parse_hdu(self.hdu))
        for flag in ("flip_x", "flip_y"):
            if not isinstance(getattr(self, flag), bool):
                raise ConfigError(f"{key}.{flag}", f"expected true or false, got {getattr(self, flag)!r}")
        set_(self, "gain", parse_number(self.gain, key=f"{key}.gain", strict=True))
        set_(self, "read_noise", parse_number(self.read_noise, key=f"{key}.read_noise"))
        set_(self, "saturation", parse_number(self.saturation, key=f"{key}.saturation",
                                              strict=True, allow_none=True))
        for name in _VALUES:
            _parse_source(getattr(self, f"{name}_source"), key=f"{key}.{name}_source")
        if self.data.shape != self.destination.shape:
            raise ConfigError(f"{key}.destination", f"shape {self.destination.shape} differs from "
                              f"the data section's {self.data.shape}")

    @property
    def shape(self) -> tuple[int, int]:
        """The (rows, columns) of the amplifier's data."""
        return self.data.shape

    @property
    def provenance(self) -> dict[str, str]:
        """Where ``gain``, ``read_noise`` and ``saturation`` came from, by value name."""
        return {name: getattr(self, f"{name}_source") for name in _VALUES}

    def to_dict(self) -> dict[str, Any]:
        """Plain values (regions as dicts) that `from_dict` and YAML round-trip."""
        out: dict[str, Any] = {"name": self.name, "hdu": self.hdu, "data": self.data.to_dict(),
                               "destination": self.destination.to_dict(),
                               "overscans": [r.to_dict() for r in self.overscans],
                               "parallel_overscans": [r.to_dict() for r in self.parallel_overscans],
                               "flip_x": self.flip_x, "flip_y": self.flip_y}
        for name in _VALUES:
            out[name] = getattr(self, name)
            out[f"{name}_source"] = getattr(self, f"{name}_source")
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, key: str = "amplifier") -> Amplifier:
        """Build from a mapping; regions may be dicts or FITS section strings."""
        if not isinstance(data, Mapping):
            raise ConfigError(key, f"expected a mapping, got {type(data).__name__}")
        check_keys(cls, dict(data), key=key)
        return cls(**data)


@dataclass(frozen=True, kw_only=True)
class Detector:
    """One CCD: its amplifiers and the shape of the assembled image.

    Parameters
    ----------
    name : str
        Detector name (``CCDNAME``, the instrument file's name, ...).
    amplifiers : tuple of Amplifier
        At least one; names unique; destinations inside `shape` and not overlapping.
    shape : tuple of int
        (rows, columns) of the assembled image in binned pixels.
    binning : tuple of int
        (x, y) binning factors (``CCDSUM``), >= 1.

    Raises
    ------
    ConfigError
        When any of the rules above is broken, naming the amplifier.

    Examples
    --------
    >>> det = Detector.single((10, 12), overscans=[dict(xmin=10, xmax=12, ymin=0, ymax=10)],
    ...                       image_area=dict(xmin=0, xmax=10, ymin=0, ymax=10), gain=2.0)
    >>> det.shape, det.amplifiers[0].overscans[0].xmin, det.amplifiers[0].gain_source
    ((10, 10), 10, 'config')
    """

    name: str
    amplifiers: tuple[Amplifier, ...]
    shape: tuple[int, int]
    binning: tuple[int, int] = (1, 1)
    _by_name: dict[str, Amplifier] = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        set_ = object.__setattr__
        amps = tuple(a if isinstance(a, Amplifier) else Amplifier.from_dict(a)
                     for a in self.amplifiers)
        if not amps:
            raise ConfigError("amplifiers", "a detector needs at least one amplifier")
        set_(self, "amplifiers", amps)
        set_(self, "shape", _pair(self.shape, key="shape", minimum=1))
        set_(self, "binning", _pair(self.binning, key="binning", minimum=1))
        names = [a.name for a in amps]
        if len(set(names)) != len(names):
            raise ConfigError("amplifiers", f"amplifier names must be unique, got {names}")
        for i, amp in enumerate(amps):
            if not amp.destination.fits_in(self.shape):
                raise ConfigError(f"amplifiers.{amp.name}.destination", f"{amp.destination.to_dict()} "
                                  f"lies outside the detector shape {self.shape}")
            for other in amps[:i]:
                if _overlap(amp.destination, other.destination):
                    raise ConfigError(f"amplifiers.{amp.name}.destination",
                                      f"overlaps amplifier {other.name}'s destination")
        set_(self, "_by_name", {a.name: a for a in amps})

    @classmethod
    def single(cls, shape: Sequence[int], *, overscans: Sequence[Any] | None = None,
               image_area: Any = None, gain: float | None = None, read_noise: float | None = None,
               saturation: float | None = None, hdu: int | str = 0,
               name: str = "detector") -> Detector:
        """A one-amplifier detector from the parameters the `Calibrator` takes.

        Parameters
        ----------
        shape : tuple of int
            (rows, columns) of the raw frame.
        overscans : list of region, optional
            Overscan regions (dicts, `Region` or FITS sections); ``None`` means none.
        image_area : region, optional
            The data section; default the whole frame.
        gain, read_noise, saturation : float, optional
            Given values are recorded as coming from ``"config"``; omitted ones take the defaults
            1.0 e-/ADU, 0 e- and no saturation, recorded as ``"default"``.
        hdu : int or str
            The HDU of the raw frame.
        name : str
            The detector's name.

        Returns
        -------
        Detector
            Its one amplifier ``"A"`` lands at the origin of a detector of the image area's shape.
        """
        ny, nx = _pair(shape, key="shape", minimum=1)
        data = (Region(xmin=0, xmax=nx, ymin=0, ymax=ny) if image_area is None
                else parse_region(image_area, key="image_area"))
        if not data.fits_in((ny, nx)):
            raise ConfigError("image_area", f"{data.to_dict()} lies outside the frame {(ny, nx)}")
        values = {"gain": gain, "read_noise": read_noise, "saturation": saturation}
        given = {k: v for k, v in values.items() if v is not None}
        sources = {f"{k}_source": "config" if k in given else "default" for k in values}
        amp = Amplifier(name="A", data=data, overscans=_regions(overscans, key="overscans"),
                        destination=Region(xmin=0, xmax=data.shape[1], ymin=0, ymax=data.shape[0]),
                        hdu=hdu, **given, **sources)
        return cls(name=name, amplifiers=(amp,), shape=data.shape)

    @classmethod
    def from_amplifiers(cls, amplifiers: Sequence[Mapping[str, Any]], *, name: str = "detector",
                        binning: Sequence[int] = (1, 1)) -> Detector:
        """A detector from short amplifier descriptions, as the `Calibrator` takes them.

        Parameters
        ----------
        amplifiers : list of dict
            Each with ``data`` (a region: dict, `Region` or FITS section) and optionally
            ``overscan`` (one region or a list), ``destination`` (default: the data section
            shifted so that the data sections' common corner is the origin: a trimmed image that
            keeps the amplifiers' arrangement), ``name`` (default ``"A"``, ``"B"``, ...),
            ``hdu``, ``flip_x``, ``flip_y``, ``gain``, ``read_noise``, ``saturation``. Values
            given are recorded as coming from ``"config"``.
        name : str
            The detector's name.
        binning : (int, int)
            (x, y) binning.

        Returns
        -------
        Detector
            Its shape is the smallest holding every destination.

        Raises
        ------
        ConfigError
            An unknown key, a bad region, overlapping destinations.

        Examples
        --------
        >>> det = Detector.from_amplifiers([
        ...     dict(data="[1:1024,1:350]", overscan="[2050:2080,1:350]", gain=1.2, read_noise=3.7),
        ...     dict(data="[1025:2048,1:350]", overscan="[2081:2111,1:350]", gain=1.2)])
        >>> det.shape, det.amplifiers[1].destination.xmin, det.amplifiers[1].read_noise_source
        ((350, 2048), 1024, 'default')
        """
        if isinstance(amplifiers, Mapping | str) or not isinstance(amplifiers, Sequence) \
                or not amplifiers:
            raise ConfigError("amplifiers", f"expected a non-empty list of dicts, got {amplifiers!r}")
        known = {"name", "data", "overscan", "overscans", "destination", "hdu", "flip_x", "flip_y",
                 *_VALUES}
        items = []
        for i, raw in enumerate(amplifiers):
            if not isinstance(raw, Mapping):
                raise ConfigError(f"amplifiers[{i}]", f"expected a dict, got {type(raw).__name__}")
            unknown = sorted(set(raw) - known)
            if unknown:
                raise ConfigError(f"amplifiers[{i}].{unknown[0]}",
                                  f"unknown key; expected some of {sorted(known)}")
            if "data" not in raw:
                raise ConfigError(f"amplifiers[{i}].data", "every amplifier needs its data section")
            item = dict(raw)
            item["data"] = parse_region(item["data"], key=f"amplifiers[{i}].data")
            overscans = item.pop("overscan", None)
            item["overscans"] = _regions(item.get("overscans", overscans),
                                         key=f"amplifiers[{i}].overscan")
            item.setdefault("name", chr(ord("A") + i) if i < 26 else str(i + 1))
            for value in _VALUES:
                if item.get(value) is not None:
                    item[f"{value}_source"] = "config"
                else:
                    item.pop(value, None)
            items.append(item)
        x0 = min(it["data"].xmin for it in items)
        y0 = min(it["data"].ymin for it in items)
        for it in items:
            d = it["data"]
            it.setdefault("destination", Region(xmin=d.xmin - x0, xmax=d.xmax - x0,
                                                ymin=d.ymin - y0, ymax=d.ymax - y0))
        amps = tuple(Amplifier(**it) for it in items)
        shape = (max(a.destination.ymax for a in amps), max(a.destination.xmax for a in amps))
        return cls(name=name, amplifiers=amps, shape=shape, binning=tuple(binning))

    def amplifier(self, name: str) -> Amplifier:
        """The amplifier called `name`; `KeyError` if there is none."""
        return self._by_name[name]

    @property
    def hdus(self) -> tuple[int | str, ...]:
        """The HDUs the amplifiers read from, in order of first use, without repeats."""
        return tuple(dict.fromkeys(a.hdu for a in self.amplifiers))

    @property
    def layout_key(self) -> tuple:
        """What must agree between a frame and a master: name, shape, binning and geometry."""
        geometry = tuple((a.name, a.hdu, a.data.bounds, a.destination.bounds, a.flip_x, a.flip_y)
                         for a in self.amplifiers)
        return (self.name, self.shape, self.binning, geometry)

    def to_dict(self) -> dict[str, Any]:
        """Plain values that `from_dict` and YAML round-trip."""
        return {"name": self.name, "shape": list(self.shape), "binning": list(self.binning),
                "amplifiers": [a.to_dict() for a in self.amplifiers]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, key: str = "detector") -> Detector:
        """Build from a mapping as written by `to_dict` (regions may also be FITS sections)."""
        if not isinstance(data, Mapping):
            raise ConfigError(key, f"expected a mapping, got {type(data).__name__}")
        data = dict(data)
        known = ("name", "amplifiers", "shape", "binning")
        for name in data:
            if name not in known:
                raise ConfigError(f"{key}.{name}", f"unknown key; expected one of {list(known)}")
        amps = data.get("amplifiers")
        if not isinstance(amps, list | tuple):
            raise ConfigError(f"{key}.amplifiers", f"expected a list, got {type(amps).__name__}")
        data["amplifiers"] = tuple(Amplifier.from_dict(a, key=f"{key}.amplifiers[{i}]")
                                   for i, a in enumerate(amps))
        return cls(**data)


def _pair(value: Any, *, key: str, minimum: int) -> tuple[int, int]:
    if (not isinstance(value, Sequence) or isinstance(value, str) or len(value) != 2
            or any(isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < minimum
                   for v in value)):
        raise ConfigError(key, f"expected two integers >= {minimum}, got {value!r}")
    return (int(value[0]), int(value[1]))


def _overlap(a: Region, b: Region) -> bool:
    return a.xmin < b.xmax and b.xmin < a.xmax and a.ymin < b.ymax and b.ymin < a.ymax
