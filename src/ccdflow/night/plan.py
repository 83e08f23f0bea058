"""Planning a night without touching pixels: which masters from which frames, what each light needs.

Pure: a frame table and a config in, a `Plan` out.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path

from ccdflow._version import __version__
from ccdflow.array.calibration import CalibrationParams
from ccdflow.array.combination import ClipMethod, CombineParams
from ccdflow.errors import CcdflowError, ConfigError, IncompatibleFramesError, MissingCalibrationError
from ccdflow.io.detectors import parse_binning
from ccdflow.io.frame_settings import Resolved, resolve_params
from ccdflow.io.names import safe_name
from ccdflow.night.config import NightConfig
from ccdflow.night.frames import FrameInfo, file_identity
from ccdflow.night.stage_bpm import BPM, BpmPlan

__all__ = ["FramePlan", "MasterPlan", "Plan", "flat_name", "make_plan", "master_combine",
           "stable_hash"]


def stable_hash(*parts) -> str:
    """SHA-1 of JSON-serialisable parts (with the package version), for resume decisions."""
    text = json.dumps([__version__, *parts], sort_keys=True, default=str)
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()


@dataclass(frozen=True)
class MasterPlan:
    """One master to build: its frames, how they are corrected, and how they are combined."""

    name: str  # bias, dark, flat_<FILTER>
    kind: str
    filter: str
    frames: tuple[FrameInfo, ...]
    params: CalibrationParams
    combine: CombineParams
    needs: tuple[str, ...]  # names of the masters applied to its frames
    key: str = ""
    notes: tuple[tuple[str, str], ...] = ()  # (frame path, fallback used), for report and header

    @property
    def exptimes(self) -> tuple[float, ...]:
        """Each frame's exposure time (1 s where the header has none)."""
        return tuple(f.exptime if f.exptime is not None else 1.0 for f in self.frames)


@dataclass(frozen=True)
class FramePlan:
    """One light or arc to calibrate."""

    frame: FrameInfo
    params: CalibrationParams
    bias: str | None
    dark: str | None
    flat: str | None
    output: Path
    cube: str  # zarr cube group, per filter
    index: int  # position in its cube: list order here; the run assigns the slice the store keeps
    key: str = ""
    bpm: str | None = None  # the night's bad-pixel mask, for lights
    notes: tuple[str, ...] = ()  # fallbacks used (a default gain, 1 s assumed), for report and header


@dataclass
class Plan:
    """Everything a night will do, decided before any pixel is read."""

    masters: list[MasterPlan] = field(default_factory=list)
    frames: list[FramePlan] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)  # path -> reason
    warnings: list[str] = field(default_factory=list)
    bpms: dict[str, BpmPlan] = field(default_factory=dict)  # name -> plan, per filter
    inputs: list[str] = field(default_factory=list)  # every listed frame, in the list's order
    ignored: dict[str, str] = field(default_factory=dict)  # path -> why it is not reduced
    notes: dict[str, list[str]] = field(default_factory=dict)  # path -> fallbacks used
    # every described frame with the HDU it was listed with, for the header cache
    described: list[tuple[FrameInfo, int]] = field(default_factory=list)

    def cubes(self) -> dict[str, list[FramePlan]]:
        """Frames of each zarr cube, in cube order."""
        out: dict[str, list[FramePlan]] = defaultdict(list)
        for frame in self.frames:
            out[frame.cube].append(frame)
        return dict(out)


def is_processed(frame: FrameInfo, config: NightConfig) -> bool:
    """Whether a calibration frame or arc is a reduced product, used without overscan/bias/dark.

    Raw CCD readouts are plain integers; a floating-point (or BSCALE-rescaled) bias, dark, flat or
    arc is taken as already processed (overscan-corrected, trimmed, bias-subtracted), so it is
    never corrected twice.
    """
    return (config.calibration.float_frames_are_processed and frame.processed
            and frame.type != "light")


def frame_resolved(frame: FrameInfo, config: NightConfig) -> Resolved:
    """Resolve one frame with `ccdflow.io.frame_settings`: parameters, sources and fallbacks.

    A processed (floating-point) calibration frame is used whole, without overscan.
    """
    settings = config.calibration.frame_settings()
    detector = frame.header_detector()
    if is_processed(frame, config):
        settings = settings.replace(overscans=(), image_area=None, detector=None)
        detector = None
    return resolve_params(frame.plan_header(), frame.shape, settings, path=str(frame.path),
                          hdu=frame.hdu, detector=detector)


def master_combine(kind: str, frames: list[FrameInfo], config: NightConfig, *,
                   resolved: list[Resolved] | None = None) -> CombineParams:
    """The `CombineParams` of a master: the config's, with the frames' CCD noise model filled in.

    When the config's ``combine.<kind>`` names no noise model (``gain`` and ``read_noise``
    unset), leaves ``clip`` to ``auto`` (or asks for ``ccdclip``) and scales no frame, the
    frames' gain and read noise (resolved per frame by `resolve_params`, from a setting or a
    header card, not a default, and common to the group) are filled in: ``clip="auto"`` then
    runs ``ccdclip`` and the master's error is the model's. Darks are combined as rates: a dark
    of ``t`` seconds has ``gain * t`` electrons per ADU/s and its read noise in electrons, so
    the model is ``gain * t`` and ``read_noise`` (only when the darks share one ``t``). Flats
    are scaled per frame and keep the ``pooled`` model fitted in their own units. Raw frames
    only: a processed frame's units are not the detector's.

    Examples
    --------
    >>> config = NightConfig(filelist=Path("night.csv"), output=Path("out"))
    >>> master_combine("bias", [], config) == config.combine["bias"]
    True
    """
    params = config.combine[kind]
    if (not frames or params.gain is not None or params.read_noise is not None
            or params.clip not in (ClipMethod.auto, ClipMethod.ccdclip) or params.scale is not None
            or any(is_processed(f, config) for f in frames)):
        return params
    if resolved is None:  # else: the frames' own, resolved by the caller
        resolved = [frame_resolved(f, config) for f in frames]
    if any(source == "default" or source.startswith("default ")
           for r in resolved for name, source in r.sources
           if name.split("[")[0] in ("gain", "read_noise")):
        return params
    # per amplifier, the first's: `combine_amplifiers` scales the others by their gain ratio
    gains = {tuple(a.gain for a in r.params.layout.amplifiers) for r in resolved}
    noises = {tuple(a.read_noise for a in r.params.layout.amplifiers) for r in resolved}
    times = {r.params.exptime for r in resolved}
    if len(gains) != 1 or len(noises) != 1 or (kind == "dark" and len(times) != 1):
        return params
    gain = gains.pop()[0] * (times.pop() if kind == "dark" else 1.0)
    return params.replace(gain=gain, read_noise=noises.pop()[0])


def frame_params(frame: FrameInfo, config: NightConfig) -> CalibrationParams:
    """The calibration parameters of one frame (see `frame_resolved`)."""
    return frame_resolved(frame, config).params


def flat_name(filter: str) -> str:
    """The name of the master flat of a ``FILTER`` value (a safe name: it is a file and a key).

    Examples
    --------
    >>> flat_name("V"), flat_name(""), flat_name("B/V")
    ('flat_V', 'flat_none', 'flat_B-V-51538d')
    """
    return f"flat_{safe_name(filter or 'none')}"


def _zero_second_darks_are_biases(frames: list[FrameInfo], plan: Plan) -> list[FrameInfo]:
    """A dark of 0 s has no dark current to measure: it is a bias (cameras label biases so)."""
    out = []
    for frame in frames:
        if frame.type == "dark" and frame.exptime == 0:
            frame = replace(frame, type="bias")
            plan.notes.setdefault(frame.label, []).append(
                f"{frame.path}: a dark with an exposure time of 0 s is a bias; used as a bias")
        out.append(frame)
    return out


def binning(frame: FrameInfo) -> tuple[int, int]:
    """The frame's (x, y) binning: its detector's, else its ``CCDSUM`` card, else 1 x 1."""
    detector = frame.header_detector()
    if detector is not None:
        return detector.binning
    try:
        return parse_binning(frame.plan_header().get("CCDSUM"))
    except ConfigError:
        return (1, 1)  # an unreadable CCDSUM: the layout check names any mismatch


def _for_ccd(name: str, frame: FrameInfo, binned: bool = False) -> str:
    """A master's name for the frame's CCD and, in a night of several binnings, its binning.

    Masters of a file holding several CCDs are per CCD, and of each binning.
    """
    if binned:
        bx, by = binning(frame)
        name = f"{name}_{bx}x{by}"
    return f"{name}_{safe_name(frame.ccd)}" if frame.ccd else name


def _master_groups(frames: list[FrameInfo], binned: bool) -> dict[str, list[FrameInfo]]:
    groups: dict[str, list[FrameInfo]] = defaultdict(list)
    for frame in frames:
        if frame.type == "flat":
            groups[_for_ccd(flat_name(frame.filter), frame, binned)].append(frame)
        elif frame.type in ("bias", "dark"):
            groups[_for_ccd(frame.type, frame, binned)].append(frame)
    return groups


def _majority_layout(name: str, group: list[FrameInfo], config: NightConfig,
                     plan: Plan) -> list[tuple[FrameInfo, Resolved]]:
    """Keep the frames sharing the group's most common layout; report the others as failures."""
    failures = plan.failures
    layouts: dict[tuple, list[tuple[FrameInfo, Resolved]]] = defaultdict(list)
    for frame in group:
        try:
            resolved = frame_resolved(frame, config)
        except CcdflowError as err:
            failures[frame.label] = f"{type(err).__name__}: {err}"
            continue
        params = resolved.params
        if resolved.notes:
            plan.notes.setdefault(frame.label, []).extend(resolved.notes)
        layouts[(frame.shape, params.image_area, params.overscans, params.layout.layout_key,
                 is_processed(frame, config))].append((frame, resolved))
    if not layouts:
        raise IncompatibleFramesError(group[0].path, f"no usable frame in the {name} group")
    keep = max(layouts.values(), key=len)
    odd_ones = [member for members in layouts.values() if members is not keep for member in members]
    reference = keep[0][0]
    for frame, _ in odd_ones:
        # a raw frame among processed ones also differs in shape: name the mix, the real cause
        why = ("mixes raw (integer) and processed (floating-point) frames"
               if is_processed(frame, config) != is_processed(reference, config)
               else "shape or layout differs")
        failures[frame.label] = (f"IncompatibleFramesError: {frame.path}: {why} from "
                                     f"{reference.path} in the {name} group; left out")
    return keep


def _plan_master(name: str, group: list[FrameInfo], config: NightConfig,
                 available: dict[str, MasterPlan], plan: Plan, *, binned: bool) -> MasterPlan:
    kind = name.split("_")[0]
    kept = _majority_layout(name, group, config, plan)
    group, first = [frame for frame, _ in kept], kept[0][1].params
    processed = is_processed(group[0], config)
    needs = {"bias": (), "dark": ("bias",), "flat": ("bias", "dark")}[kind]
    if processed:
        needs = ()
    # the masters of this group's CCD and binning (bias_2x2, dark_N4), as its lights use
    needs = tuple(n for n in (_for_ccd(k, group[0], binned) for k in needs) if n in available)
    for need in needs:
        _check_match(group[0], first, need, available[need])
    notes = tuple((f.label, note) for f in group for note in plan.notes.get(f.label, ()))
    master = MasterPlan(name=name, kind=kind, filter=group[0].filter if kind == "flat" else "",
                        frames=tuple(group), params=first,
                        combine=master_combine(kind, group, config,
                                               resolved=[r for _, r in kept]),
                        needs=needs, notes=notes)
    # gain, read noise and saturation do not enter a master: leave them out of its key
    layout = {k: v for k, v in first.to_dict().items()
              if k in ("image_area", "overscans", "overscan_method", "overscan_params", "units",
                       "detector")}
    key = stable_hash(name, [f.identity for f in group], layout, master.combine.to_dict(),
                      [available[n].key for n in needs])
    return MasterPlan(**{**master.__dict__, "key": key})


def _describe_layout(params: CalibrationParams) -> str:
    layout = params.layout
    return (f"detector {layout.name} ({len(layout.amplifiers)} amplifiers, binned "
            f"{layout.binning[0]}x{layout.binning[1]}, {layout.shape[1]}x{layout.shape[0]} px)")


def _check_match(frame: FrameInfo, params: CalibrationParams, name: str, master: MasterPlan) -> None:
    """A frame and a master it needs must share the detector, binning, amplifier layout, units."""
    theirs = master.params
    if params.multi_amplifier or theirs.multi_amplifier:
        if (params.layout.layout_key != theirs.layout.layout_key
                or params.units != theirs.units):
            raise MissingCalibrationError(
                f"{frame.path}: no {master.kind} master for {_describe_layout(params)} in "
                f"{params.units.value}; master {name} is for {_describe_layout(theirs)} in "
                f"{theirs.units.value}")
    elif theirs.shape != params.shape:
        raise IncompatibleFramesError(
            frame.path, f"image area {params.shape} differs from master {name}'s {theirs.shape}")


def _pick(kind: str, frame: FrameInfo, masters: dict[str, MasterPlan], wanted: str,
          types_present: set[str]) -> str | None:
    if wanted in masters:
        return wanted
    if kind in types_present:
        looked = f"{kind} master" + (f" for FILTER={frame.filter!r}" if kind == "flat" else "")
        have = sorted(m for m in masters if m.startswith(kind))
        raise MissingCalibrationError(
            f"{frame.path}: no {looked} (looked for {wanted}; available: "
            f"{', '.join(have) or 'none usable'})")
    return None


def make_plan(frames: list[FrameInfo], config: NightConfig) -> Plan:
    """Decide the masters to build and the frames to calibrate.

    Parameters
    ----------
    frames : list of FrameInfo
        The described frames of the night.
    config : NightConfig
        The night's configuration.

    Returns
    -------
    Plan
        Masters in dependency order (bias, dark, flats), frames with their masters, outputs and
        resume keys, and the frames that cannot be done (with reasons).
    """
    plan = Plan(inputs=[f.label for f in frames])
    readable = []
    for frame in frames:
        if frame.error:
            plan.failures[frame.label] = frame.error
        else:
            readable.append(frame)
    readable = _zero_second_darks_are_biases(readable, plan)
    types_present = {f.type for f in readable}
    masters: dict[str, MasterPlan] = {}
    # calibrations of several binnings make masters of each (named by it), each light uses its own
    binned = len({binning(f) for f in readable if f.type in ("bias", "dark", "flat")}) > 1
    for name, group in sorted(_master_groups(readable, binned).items(),
                              key=lambda item: ("bias", "dark", "flat").index(item[0][:4])):
        kind = name.split("_")[0]
        if len(group) < config.min_frames.get(kind, 0):
            plan.warnings.append(f"{name}: only {len(group)} frame(s), fewer than the "
                                 f"{config.min_frames[kind]} asked for (min_frames.{kind})")
        try:
            masters[name] = _plan_master(name, group, config, masters, plan, binned=binned)
        except CcdflowError as err:
            for frame in group:
                plan.failures[frame.label] = f"{type(err).__name__}: {err}"
    plan.masters = list(masters.values())
    plan.bpms = _plan_bpms(masters, config)
    for kind in ("bias", "dark", "flat"):
        if kind not in types_present and any(f.type in ("light", "arc") for f in readable):
            plan.warnings.append(f"no {kind} frames: the {kind} step is skipped")
    stems = Counter(f.stem for f in readable if f.type in ("light", "arc"))
    # lights of several binnings go to cubes of each (a cube holds frames of one shape)
    binned_lights = len({binning(f) for f in readable if f.type in ("light", "arc")}) > 1
    counters: Counter = Counter()
    for frame in readable:
        if frame.type not in ("light", "arc"):
            continue
        try:
            plan.frames.append(_plan_frame(frame, config, masters, types_present, stems, counters,
                                           plan.bpms, binned=binned, binned_lights=binned_lights))
        except CcdflowError as err:
            plan.failures[frame.label] = f"{type(err).__name__}: {err}"
    return plan


def _plan_bpms(masters: dict[str, MasterPlan], config: NightConfig) -> dict[str, BpmPlan]:
    """The bad-pixel masks, one per filter: the master dark, that filter's flat, the user's mask.

    Per filter, so that a new flat redoes only its own filter's lights; ``bpm`` without flats.
    """
    quality = config.quality
    dark = "dark" if quality.bad_pixel_mask and "dark" in masters else None
    flats = sorted(n for n in masters if n.startswith("flat_")) if quality.bad_pixel_mask else []
    user = quality.bad_pixels
    sources = {f"bpm_{n.removeprefix('flat_')}": (n,) for n in flats}
    if dark is not None or user is not None:
        sources.setdefault(BPM, ())
    plans = {}
    for name, flat in sources.items():
        key = stable_hash(name, [masters[n].key for n in (dark, *flat) if n],
                          quality.bad_pixel_params.to_dict(), file_identity(user) if user else None)
        plans[name] = BpmPlan(name=name, dark=dark, flats=flat, user_mask=user,
                              params=quality.bad_pixel_params, key=key)
    return plans


def _plan_frame(frame: FrameInfo, config: NightConfig, masters: dict[str, MasterPlan],
                types_present: set[str], stems: Counter, counters: Counter,
                bpms: dict[str, BpmPlan], *, binned: bool = False,
                binned_lights: bool = False) -> FramePlan:
    resolved = frame_resolved(frame, config)
    params = resolved.params
    bias = dark = flat = None
    if not is_processed(frame, config):
        bias = _pick("bias", frame, masters, _for_ccd("bias", frame, binned), types_present)
        dark = _pick("dark", frame, masters, _for_ccd("dark", frame, binned), types_present)
    if frame.type == "light":
        flat = _pick("flat", frame, masters, _for_ccd(flat_name(frame.filter), frame, binned),
                     types_present)
    for name in (bias, dark, flat):
        if name:
            _check_match(frame, params, name, masters[name])
    stem = frame.stem
    if stems[stem] > 1:  # same file name in two folders
        stem = f"{stem}_{hashlib.sha1(str(frame.path).encode()).hexdigest()[:6]}"
    folder = "lights" if frame.type == "light" else "arcs"
    cube = _for_ccd(f"{folder}_{safe_name(frame.filter or 'none')}", frame, binned_lights)
    index = counters[cube]
    counters[cube] += 1
    quality = config.quality.lights.to_dict() if frame.type == "light" else None
    bpm_name = None
    if frame.type == "light":
        own = f"bpm_{flat.removeprefix('flat_')}" if flat else None
        bpm_name = own if own in bpms else (BPM if BPM in bpms else None)
    key = stable_hash(frame.identity, frame.hdu, params.to_dict(), config.calibration.mask,
                      [masters[n].key for n in (bias, dark, flat) if n], quality,
                      bpms[bpm_name].key if bpm_name else None)
    return FramePlan(frame=frame, params=params, bias=bias, dark=dark, flat=flat,
                     output=config.output / folder / f"{stem}.fits", cube=cube, index=index,
                     key=key, bpm=bpm_name, notes=resolved.notes)
