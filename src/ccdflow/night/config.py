"""The night configuration (YAML): parsed and validated up front, every error naming its key."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml

from ccdflow.array.badpixels import BadPixelParams
from ccdflow.array.combination import CombineParams
from ccdflow.array.detector import Detector, Units
from ccdflow.array.frame_quality import QualityParams
from ccdflow.array.overscan import OverscanMethods, OverscanParams
from ccdflow.array.params import check_keys, parse_enum, parse_int, parse_number
from ccdflow.array.sections import Region, parse_region
from ccdflow.errors import ConfigError
from ccdflow.io.detectors import load_instrument
from ccdflow.io.frame_settings import HEADER, OFF, FrameSettings
from ccdflow.io.location import Location, as_location
from ccdflow.night.cluster_config import ClusterConfig, check_scheduler

__all__ = ["CalibrationConfig", "ClusterConfig", "NightConfig", "ResumeMode", "check_scheduler",
           "load_config"]

FRAME_KINDS = ("bias", "dark", "flat", "light")


@dataclass(frozen=True, kw_only=True)
class CombineByKind:
    """`CombineParams` per frame type; ``combine["flat"]`` reads like a mapping.

    Examples
    --------
    >>> CombineByKind()["flat"].scale.value
    'median'
    """

    bias: CombineParams = CombineParams()
    # a mean: the median of a few Poisson values sits below their mean, which would leave a
    # dark-dominated light biased (IRAF's darkcombine averages too); rejection keeps it robust
    dark: CombineParams = CombineParams(method="mean")
    flat: CombineParams = CombineParams(scale="median")
    light: CombineParams = CombineParams()

    def __post_init__(self):
        for kind in FRAME_KINDS:
            if not isinstance(getattr(self, kind), CombineParams):
                raise ConfigError(f"combine.{kind}",
                                  f"expected CombineParams, got {getattr(self, kind)!r}")

    def __getitem__(self, kind: str) -> CombineParams:
        return getattr(self, kind)

    def items(self) -> list[tuple[str, CombineParams]]:
        """(frame type, parameters) pairs."""
        return [(kind, getattr(self, kind)) for kind in FRAME_KINDS]


@dataclass(frozen=True, kw_only=True)
class MinFrames:
    """The number of calibration frames per type below which the plan warns.

    Examples
    --------
    >>> MinFrames(flat=5)["flat"]
    5
    """

    bias: int = 3
    dark: int = 3
    flat: int = 3

    def __post_init__(self):
        for kind in ("bias", "dark", "flat"):
            parse_int(getattr(self, kind), key=f"min_frames.{kind}", minimum=0)

    def __getitem__(self, kind: str) -> int:
        return getattr(self, kind)

    def get(self, kind: str, default: int = 0) -> int:
        """The minimum for ``kind``, ``default`` for a type without one (lights)."""
        return getattr(self, kind, default)

    def items(self) -> list[tuple[str, int]]:
        """(frame type, minimum) pairs."""
        return [(kind, getattr(self, kind)) for kind in ("bias", "dark", "flat")]


class ResumeMode(StrEnum):
    """How a rerun decides that an input file is unchanged.

    Examples
    --------
    >>> ResumeMode("content").value
    'content'
    """

    metadata = "metadata"
    """Path, size and modification time: cheap, but misses pixels rewritten in place with the
    size and the time restored."""
    content = "content"
    """Also the SHA-1 of every input file's bytes: reads every input on every run."""


def _mapping(value: Any, key: str) -> dict[str, Any]:
    """A config section as a dict (``None`` is an empty section); anything else names ``key``."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(key, f"expected a mapping, got {type(value).__name__} {value!r}")
    return dict(value)


def _location(value: Any, key: str, *, base: Path, storage_options: Mapping[str, Any]) -> Location:
    """A path relative to ``base``, or a URL (``s3://...``) opened with ``storage_options``."""
    if isinstance(value, bool) or not isinstance(value, str | Path) or not str(value).strip():
        raise ConfigError(key, f"expected a path or URL, got {value!r}")
    return as_location(value, storage_options=storage_options, base=base)


def _storage_options(value: Any) -> dict[str, Any]:
    """The ``storage_options`` mapping: string keys, passed to fsspec as they are."""
    options = _mapping(value, "storage_options")
    for name in options:
        if not isinstance(name, str) or not name:
            raise ConfigError("storage_options", f"keys must be option names, got {name!r}")
    return options


def _path_value(value: Any, key: str) -> Path:
    if isinstance(value, bool) or not isinstance(value, str | Path) or not str(value).strip():
        raise ConfigError(key, f"expected a path, got {value!r}")
    return Path(value).expanduser()


@dataclass(frozen=True, kw_only=True)
class CalibrationConfig:
    """The ``calibration`` section: geometry and detector numbers, each a value or ``"header"``."""

    overscans: tuple[Region, ...] | str | None = None
    overscan_method: OverscanMethods = OverscanMethods.median
    overscan_params: OverscanParams = OverscanParams()
    image_area: Region | str | None = None
    gain: float | str = HEADER
    read_noise: float | str = HEADER
    saturation: float | str | None = HEADER
    mask: bool = True
    float_frames_are_processed: bool = True
    strict: bool = False
    instrument: Path | None = None
    units: Units = Units.adu

    def __post_init__(self):
        key = "calibration"
        object.__setattr__(self, "units", parse_enum(Units, self.units, key=f"{key}.units"))
        if self.instrument is not None:
            try:
                self.__dict__["_detector"] = load_instrument(self.instrument)
            except (ConfigError, OSError) as err:
                raise ConfigError(f"{key}.instrument", f"{self.instrument}: {err}") from None
        if self.overscans not in (None, HEADER):
            overscans = (self.overscans,) if isinstance(self.overscans, Region) else self.overscans
            if not all(isinstance(r, Region) for r in overscans):
                raise ConfigError(f"{key}.overscans",
                                  f"expected regions or 'header', got {overscans!r}")
            object.__setattr__(self, "overscans", tuple(overscans))
        object.__setattr__(self, "overscan_method", parse_enum(
            OverscanMethods, self.overscan_method, key=f"{key}.overscan_method"))
        if not isinstance(self.overscan_params, OverscanParams):
            raise ConfigError(f"{key}.overscan_params",
                              f"expected OverscanParams, got {self.overscan_params!r}")
        if not (self.image_area in (None, HEADER) or isinstance(self.image_area, Region)):
            raise ConfigError(f"{key}.image_area",
                              f"expected a region or 'header', got {self.image_area!r}")
        for name in ("gain", "read_noise", "saturation"):
            value = getattr(self, name)
            if value != HEADER and not (value is None and name == "saturation"):
                object.__setattr__(self, name, parse_number(value, key=f"{key}.{name}",
                                                            strict=name == "gain"))
        for name in ("mask", "float_frames_are_processed", "strict"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{key}.{name}",
                                  f"expected true or false, got {getattr(self, name)!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, key: str = "calibration",
                  base: Path = Path(".")) -> CalibrationConfig:
        """Validate the section; a bad value raises `ConfigError` naming ``calibration.<key>``.

        ``instrument`` is the name of a shipped instrument file (``kast_blue``) or a path,
        relative to ``base``.
        """
        data = _mapping(data, key)
        check_keys(cls, data, key=key)
        out: dict[str, Any] = {}
        overscans = data.get("overscans")
        if overscans == HEADER or overscans is None:
            out["overscans"] = overscans
        else:
            if isinstance(overscans, Mapping | str):
                overscans = [overscans]
            if not isinstance(overscans, list):
                raise ConfigError(f"{key}.overscans", "expected a list of regions or 'header'")
            out["overscans"] = tuple(parse_region(r, key=f"{key}.overscans[{i}]")
                                     for i, r in enumerate(overscans))
        if "overscan_method" in data:
            out["overscan_method"] = parse_enum(OverscanMethods, data["overscan_method"],
                                                key=f"{key}.overscan_method")
        if "overscan_params" in data:
            params = _mapping(data["overscan_params"], f"{key}.overscan_params")
            check_keys(OverscanParams, params, key=f"{key}.overscan_params")
            try:
                out["overscan_params"] = OverscanParams(**params)
            except ConfigError as err:
                raise ConfigError(f"{key}.overscan_params.{err.key}", _reason(err)) from None
        area = data.get("image_area")
        out["image_area"] = area if area in (None, HEADER) else parse_region(
            area, key=f"{key}.image_area")
        for name, strict in (("gain", True), ("read_noise", False), ("saturation", False)):
            if name in data:
                value = data[name]
                if value == HEADER or (value is None and name == "saturation"):
                    out[name] = value
                else:
                    out[name] = parse_number(value, key=f"{key}.{name}", strict=strict)
        for name in ("mask", "float_frames_are_processed", "strict"):
            if name in data:
                if not isinstance(data[name], bool):
                    raise ConfigError(f"{key}.{name}", f"expected true or false, got {data[name]!r}")
                out[name] = data[name]
        if data.get("instrument") is not None:
            out["instrument"] = instrument_path(data["instrument"], base=base,
                                                key=f"{key}.instrument")
        if "units" in data:
            out["units"] = parse_enum(Units, data["units"], key=f"{key}.units")
        return cls(**out)

    @property
    def detector(self) -> Detector | None:
        """The amplifier layout of ``instrument`` (loaded and checked with the config)."""
        return self.__dict__.get("_detector")

    def frame_settings(self, *, strict: bool | None = None) -> FrameSettings:
        """The settings every frame of the night is resolved with (`resolve_params`).

        ``strict`` (default: the section's own ``strict``) makes a frame without an exposure
        time a failure instead of taking 1 s.
        """
        strict = self.strict if strict is None else strict
        return FrameSettings(
            overscans=self.overscans if self.overscans is not None else (),
            overscan_method=self.overscan_method, overscan_params=self.overscan_params,
            image_area=self.image_area, gain=self.gain, read_noise=self.read_noise,
            saturation=OFF if self.saturation is None else self.saturation, strict=strict,
            prefix="calibration.", detector=self.detector, units=self.units)


@dataclass(frozen=True, kw_only=True)
class QualityConfig:
    """The ``quality`` section: what is flagged in the calibrated lights, and the bad-pixel mask.

    Attributes
    ----------
    lights : QualityParams
        Cosmic rays (``off``/``flag``/``clean``, default ``flag``), bleed trails, fill.
    bad_pixel_mask : bool
        Build ``masters/bpm.fits`` from the master dark and flats and flag those pixels.
    bad_pixel_params : BadPixelParams
        Its thresholds.
    bad_pixels : Path, optional
        The user's own bad-pixel mask (FITS, nonzero = bad), merged with the built one.

    Examples
    --------
    >>> QualityConfig().lights.cosmic_rays.value
    'flag'
    """

    lights: QualityParams = QualityParams(cosmic_rays="flag")
    bad_pixel_mask: bool = True
    bad_pixel_params: BadPixelParams = BadPixelParams()
    bad_pixels: Path | None = None

    def __post_init__(self):
        if not isinstance(self.lights, QualityParams):
            raise ConfigError("quality", f"expected QualityParams, got {self.lights!r}")
        if not isinstance(self.bad_pixel_mask, bool):
            raise ConfigError("quality.bad_pixel_mask",
                              f"expected true or false, got {self.bad_pixel_mask!r}")
        if not isinstance(self.bad_pixel_params, BadPixelParams):
            raise ConfigError("quality.bad_pixel_params",
                              f"expected BadPixelParams, got {self.bad_pixel_params!r}")
        if self.bad_pixels is not None:
            object.__setattr__(self, "bad_pixels", Path(self.bad_pixels))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, base: Path, key: str = "quality") -> QualityConfig:
        """Validate the section; relative paths are relative to ``base``."""
        data = _mapping(data, key)
        own = {"bad_pixel_mask", "bad_pixel_params", "bad_pixels"}
        lights = {k: v for k, v in data.items() if k not in own}
        out: dict[str, Any] = {"lights": QualityParams.from_dict(
            {"cosmic_rays": "flag", **lights}, key=key)}
        if "bad_pixel_mask" in data:
            out["bad_pixel_mask"] = data["bad_pixel_mask"]
        if "bad_pixel_params" in data:
            out["bad_pixel_params"] = BadPixelParams.from_dict(
                _mapping(data["bad_pixel_params"], f"{key}.bad_pixel_params"),
                key=f"{key}.bad_pixel_params")
        if data.get("bad_pixels") is not None:
            out["bad_pixels"] = (base / _path_value(data["bad_pixels"], f"{key}.bad_pixels")).resolve()
        return cls(**out)

    def to_dict(self) -> dict[str, Any]:
        """Plain values, in the config's own layout."""
        return {**self.lights.to_dict(), "bad_pixel_mask": self.bad_pixel_mask,
                "bad_pixel_params": self.bad_pixel_params.to_dict(),
                "bad_pixels": str(self.bad_pixels) if self.bad_pixels else None}


@dataclass(frozen=True, kw_only=True)
class NightConfig:
    """A whole night's configuration (``ccdflow init`` writes every key).

    Attributes
    ----------
    filelist : Path, optional
        CSV file list ``type, path[, hdu]``.
    directory : Path, optional
        Folder of raw frames to scan and classify by ``IMAGETYP``/``OBSTYPE`` (instead of a list).
    output : Path
        Output folder.
    calibration : CalibrationConfig
        Geometry and detector numbers.
    combine : CombineByKind
        Per frame type (``bias``, ``dark``, ``flat``, ``light``).
    min_frames : MinFrames
        Fewer frames of a type give a warning.
    stack_lights : bool
        Also combine the calibrated lights per filter and object.
    keep_cube : bool
        Keep the calibrated lights in ``work.zarr`` (their filter's cube) even when the night does
        not stack them (`ImageReduction` combines from it). A night that stacks always keeps it;
        one that does not writes only the FITS products.
    resume : ResumeMode
        How a rerun tells an unchanged input: ``metadata`` (path, size, time) or ``content``.
    cluster : ClusterConfig
        Where to compute.
    quality : QualityConfig
        What is flagged in the lights; the bad-pixel mask.
    source : Path, optional
        The YAML file read, if any.
    storage_options : dict
        fsspec options (``key``, ``secret``, ``client_kwargs``, ...) for the inputs and the output
        when they are URLs (``s3://bucket/night``, ``gs://...``).

    Examples
    --------
    >>> config = NightConfig(filelist=Path("night.csv"), output=Path("reduced"))
    >>> config.combine["bias"] == CombineParams(), config.min_frames["flat"]
    (True, 3)
    """

    filelist: Location | None = None
    directory: Location | None = None
    output: Location = Path("reduced")
    calibration: CalibrationConfig = CalibrationConfig()
    combine: CombineByKind = CombineByKind()
    min_frames: MinFrames = MinFrames()
    stack_lights: bool = False
    keep_cube: bool = False
    resume: ResumeMode = ResumeMode.metadata
    cluster: ClusterConfig = ClusterConfig()
    quality: QualityConfig = QualityConfig()
    source: Path | None = None
    storage_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if (self.filelist is None) == (self.directory is None):
            raise ConfigError("input", "give exactly one of 'filelist' and 'directory'")
        object.__setattr__(self, "storage_options", _storage_options(self.storage_options))
        for name in ("filelist", "directory", "output", "source"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, as_location(value, storage_options=self.storage_options))
        for name, kind in (("calibration", CalibrationConfig), ("combine", CombineByKind),
                           ("min_frames", MinFrames), ("cluster", ClusterConfig),
                           ("quality", QualityConfig)):
            if not isinstance(getattr(self, name), kind):
                raise ConfigError(name, f"expected {kind.__name__}, got {getattr(self, name)!r}")
        for name in ("stack_lights", "keep_cube"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(name, f"expected true or false, got {getattr(self, name)!r}")
        object.__setattr__(self, "resume", parse_enum(ResumeMode, self.resume, key="resume"))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, base: str | Path = ".",
                  source: Path | None = None) -> NightConfig:
        """Validate a parsed config; relative paths are taken relative to ``base``."""
        if not isinstance(data, Mapping):
            raise ConfigError("<config>", f"expected a mapping at the top, got {type(data).__name__}")
        known = {"input", "output", "calibration", "combine", "min_frames", "stack_lights", "keep_cube",
                 "cluster", "quality", "resume", "storage_options"}
        for name in data:
            if name not in known:
                raise ConfigError(str(name), f"unknown key; expected one of {sorted(known)}")
        base = Path(base)
        source_in = data.get("input") or {}
        if not isinstance(source_in, Mapping):
            raise ConfigError("input", "expected a mapping with 'filelist' or 'directory', "
                              f"got {source_in!r}")
        for name in source_in:
            if name not in ("filelist", "directory"):
                raise ConfigError(f"input.{name}", "unknown key; expected 'filelist' or 'directory'")
        if ("filelist" in source_in) == ("directory" in source_in):
            raise ConfigError("input", "give exactly one of 'filelist' and 'directory'")
        options = _storage_options(data.get("storage_options"))
        resolve = lambda value, key: _location(value, key, base=base,  # noqa: E731
                                               storage_options=options)
        combine = {}
        for kind, params in _mapping(data.get("combine"), "combine").items():
            if kind not in FRAME_KINDS:
                raise ConfigError(f"combine.{kind}", f"unknown frame type; expected {FRAME_KINDS}")
            combine[kind] = _combine_params(params, kind)
        min_frames = {}
        for kind, count in _mapping(data.get("min_frames"), "min_frames").items():
            if kind not in ("bias", "dark", "flat"):
                raise ConfigError(f"min_frames.{kind}", "expected bias, dark or flat")
            min_frames[kind] = parse_int(count, key=f"min_frames.{kind}", minimum=0)
        return cls(
            filelist=resolve(source_in["filelist"], "input.filelist")
            if "filelist" in source_in else None,
            directory=resolve(source_in["directory"], "input.directory")
            if "directory" in source_in else None,
            output=resolve(data.get("output", "reduced"), "output"),
            calibration=CalibrationConfig.from_dict(_mapping(data.get("calibration"), "calibration"),
                                                    base=base),
            combine=CombineByKind(**combine),
            min_frames=MinFrames(**min_frames),
            stack_lights=data.get("stack_lights", False),
            keep_cube=data.get("keep_cube", False),
            quality=QualityConfig.from_dict(_mapping(data.get("quality"), "quality"), base=base),
            resume=parse_enum(ResumeMode, data.get("resume", "metadata"), key="resume"),
            cluster=ClusterConfig.from_dict(_mapping(data.get("cluster"), "cluster"), base=base),
            source=source,
            storage_options=options,
        )

    @property
    def writes_cube(self) -> bool:
        """Whether the calibrated lights go into ``work.zarr`` too (stacks read them there)."""
        return self.stack_lights or self.keep_cube

    def to_dict(self) -> dict[str, Any]:
        """Plain values, for the report and the provenance hash (``storage_options`` left out)."""
        cal = self.calibration
        region = lambda r: r.to_dict() if isinstance(r, Region) else r  # noqa: E731
        return {
            "input": {"filelist": str(self.filelist) if self.filelist else None,
                      "directory": str(self.directory) if self.directory else None},
            "output": str(self.output),
            "calibration": {
                "overscans": ([region(r) for r in cal.overscans]
                              if isinstance(cal.overscans, tuple) else cal.overscans),
                "overscan_method": cal.overscan_method.value,
                "overscan_params": cal.overscan_params.to_dict(),
                "image_area": region(cal.image_area),
                "gain": cal.gain, "read_noise": cal.read_noise, "saturation": cal.saturation,
                "mask": cal.mask, "float_frames_are_processed": cal.float_frames_are_processed,
                "strict": cal.strict,
                "instrument": str(cal.instrument) if cal.instrument else None,
                "units": cal.units.value,
            },
            "combine": {k: v.to_dict() for k, v in self.combine.items()},
            "min_frames": dict(self.min_frames.items()),
            "stack_lights": self.stack_lights,
            "keep_cube": self.keep_cube,
            "quality": self.quality.to_dict(),
            "resume": self.resume.value,
            "cluster": self.cluster.to_dict(),
            # no storage_options: they hold credentials, and the report is shared
        }


#: Instrument files shipped with the package, named in a config by their stem.
INSTRUMENTS = Path(__file__).resolve().parents[1] / "configs" / "instruments"


def instrument_path(value: Any, *, base: Path, key: str = "calibration.instrument") -> Path:
    """A shipped instrument's file by name (``kast_blue``), or a path relative to ``base``.

    Examples
    --------
    >>> instrument_path("kast_blue", base=Path(".")).name
    'kast_blue.yaml'
    """
    text = str(_path_value(value, key))
    shipped = INSTRUMENTS / f"{text}.yaml"
    if "/" not in text and not text.endswith((".yaml", ".yml")) and shipped.is_file():
        return shipped
    path = (base / text).resolve()
    if not path.is_file():
        known = sorted(p.stem for p in INSTRUMENTS.glob("*.yaml"))
        raise ConfigError(key, f"no instrument file {path} (shipped: {', '.join(known)})")
    return path


def _reason(err: ConfigError) -> str:
    return str(err).split(": ", 1)[-1]


def _combine_params(params: Any, kind: str) -> CombineParams:
    """The frame type's defaults (e.g. ``scale: median`` for flats) updated with the given fields."""
    if params is not None and not isinstance(params, Mapping):
        raise ConfigError(f"combine.{kind}", f"expected a mapping, got {params!r}")
    check_keys(CombineParams, dict(params or {}), key=f"combine.{kind}")
    merged = {**CombineByKind()[kind].to_dict(), **(params or {})}
    return CombineParams.from_dict(merged, key=f"combine.{kind}")


def load_config(path: str | Path) -> NightConfig:
    """Read and validate a YAML night configuration.

    Parameters
    ----------
    path : str or Path
        The YAML file; relative paths inside it are relative to its folder.

    Returns
    -------
    NightConfig

    Raises
    ------
    ConfigError
        If the file is missing, not YAML, or a key or value is invalid (the key is named).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "night.yaml"
    >>> _ = path.write_text("{input: {filelist: night.csv}, output: reduced/, stack_lights: true}")
    >>> config = load_config(path)
    >>> config.filelist.name, config.output.name, config.stack_lights, config.combine["flat"].scale
    ('night.csv', 'reduced', True, <FrameScale.median: 'median'>)
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as err:
        raise ConfigError(str(path), f"cannot read the config: {err.strerror}") from err
    except UnicodeDecodeError as err:
        raise ConfigError(str(path), f"not a text file: {err}") from err
    except yaml.YAMLError as err:
        # the parser only saw a string: name the file and the line here
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(str(path), f"not valid YAML{where}: "
                                     f"{getattr(err, 'problem', None) or err}") from err
    return NightConfig.from_dict(data or {}, base=path.resolve().parent, source=path.resolve())
