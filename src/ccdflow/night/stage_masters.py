"""Building the night's masters on the cluster and persisting them to zarr and FITS."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace

import dask
import dask.array as da
import numpy as np
from distributed import Client

from ccdflow.array.calibration import flat_norm
from ccdflow.array.chunks import CHUNK_BUDGET
from ccdflow.array.combination import frame_levels, rejected_fraction
from ccdflow.array.detector import Units
from ccdflow.array.masters import (
    StackGeometry,
    corrected_stack,
    master_bias,
    master_dark,
    master_flat,
    normalise_flat,
)
from ccdflow.errors import CcdflowError, FrameError, MissingCalibrationError
from ccdflow.io.fits import open_stack
from ccdflow.io.products import add_fallback_notes, file_sha1, master_header, write_master
from ccdflow.night.config import NightConfig
from ccdflow.night.plan import MasterPlan
from ccdflow.night.report import ProductStatus
from ccdflow.night.store import Store
from ccdflow.night.verify import file_problem, file_stamp

__all__ = ["MasterResult", "build_master"]

logger = logging.getLogger(__name__)


@dataclass
class MasterResult:
    """The outcome of one master, for the night report."""

    name: str
    status: ProductStatus
    output: str
    inputs: list[str]
    seconds: float = 0.0
    rejected_fraction: float | None = None
    dropped: dict[str, str] | None = None  # unusable inputs left out, with reasons
    error: str | None = None
    notes: dict[str, list[str]] | None = None  # fallbacks used per input frame

    def to_dict(self) -> dict:
        """Plain values for ``report.json``."""
        return dict(self.__dict__)


class _Unusable(CcdflowError):
    """Inputs whose values cannot make this master (a flat at or below zero level)."""

    def __init__(self, reasons: dict[str, str]):
        self.reasons = reasons
        super().__init__("; ".join(reasons.values()))


def _combine(plan: MasterPlan, store: Store, budget: int):
    """The lazy combine, and for flats each frame's level (which must be finite and > 0)."""
    paths = [f.path for f in plan.frames]
    layout = plan.params.layout
    if plan.params.multi_amplifier and layout.hdus != (plan.frames[0].hdu,):
        # one stack per HDU the detector reads, chunked alike so the assembly adds no rechunk
        stack = {h: open_stack(paths, hdu=[h] * len(paths), budget=budget // len(layout.hdus))
                 for h in layout.hdus}
    else:
        stack = open_stack(paths, hdu=[f.hdu for f in plan.frames], budget=budget)
    geometry = StackGeometry(params=plan.params, exptimes=plan.exptimes)
    bias = bias_error = dark = None
    if "bias" in plan.needs:
        bias = da.from_zarr(store.root("r")["masters/bias/data"])
        bias_error = da.from_zarr(store.root("r")["masters/bias/error"])
    if "dark" in plan.needs:
        dark = da.from_zarr(store.root("r")["masters/dark/data"])
    if plan.kind == "bias":
        return master_bias(stack, geometry, params=plan.combine), None
    if plan.kind == "dark":
        return master_dark(stack, geometry, bias=bias, bias_error=bias_error,
                           params=plan.combine), None
    # the same graph the combine scales by: a negative level would flip the flat's sign unseen
    levels = frame_levels(corrected_stack(stack, geometry, bias=bias, dark_rate=dark),
                          plan.combine.scale or "median")
    return master_flat(stack, geometry, bias=bias, dark_rate=dark, params=plan.combine), levels


def _compute(result, levels, client: Client | None):
    """Compute a combine's three arrays (and the flats' levels) in one pass."""
    arrays = (result.data, result.error, result.count) + ((levels,) if levels is not None else ())
    values = client.gather(client.compute(list(arrays))) if client is not None else dask.compute(*arrays)
    return (*values[:3], values[3] if levels is not None else None)


#: A flat's level must stand this many read-noise sigmas above zero: a blank readout (all
#: zero, or at the bias level) has a level of a few ADU of bias structure, either sign.
FLAT_LEVEL_SIGMAS = 5.0


def _unusable_flats(plan: MasterPlan, levels) -> dict[str, str]:
    electrons = plan.params.units == Units.electron
    floor = FLAT_LEVEL_SIGMAS * max(a.read_noise / (1.0 if electrons else a.gain)
                                    for a in plan.params.layout.amplifiers)
    out = {}
    for frame, level in zip(plan.frames, levels, strict=True):
        if not (np.isfinite(level) and level > floor):
            out[str(frame.path)] = (
                f"{frame.path}: flat level {float(level):g} ADU after bias and dark subtraction; "
                f"a flat must be above zero by {FLAT_LEVEL_SIGMAS:g} read-noise sigmas "
                f"({floor:g} ADU)")
    return out


def _combine_usable(plan: MasterPlan, store: Store, client, dropped: dict[str, str], budget: int):
    """Combine, leaving out each input that cannot be read or used, until the rest combine."""
    while True:
        try:
            result, levels = _combine(plan, store, budget)
            data, error, count, levels = _compute(result, levels, client)
            unusable = _unusable_flats(plan, levels) if levels is not None else {}
            if unusable:
                raise _Unusable(unusable)
            return plan, data, error, count
        except (FrameError, _Unusable) as err:
            reasons = err.reasons if isinstance(err, _Unusable) else {err.path: _text(err)}
            if not set(reasons) <= {str(f.path) for f in plan.frames}:
                raise  # not about one input: the master fails with it
            dropped.update(reasons)
            left = tuple(f for f in plan.frames if str(f.path) not in reasons)
            if not left:
                raise MissingCalibrationError(f"master {plan.name}: no usable input frame left "
                                              "(see the frames left out)") from err
            plan = replace(plan, frames=left)


def _check_values(plan: MasterPlan, data: np.ndarray) -> float | None:
    """A master must have finite values, a flat a finite positive level; returns a flat's level."""
    if not np.isfinite(data).any():
        raise MissingCalibrationError(f"master {plan.name}: no pixel has a finite value")
    if plan.kind != "flat":
        return None
    norm = flat_norm(data)
    if not (np.isfinite(norm) and norm > 0):
        raise MissingCalibrationError(f"master {plan.name}: its level {norm:g} is not above zero; "
                                      "a flat cannot be divided by it")
    return norm


def build_master(plan: MasterPlan, store: Store, config: NightConfig, *,
                 client: Client | None = None, budget: int = CHUNK_BUDGET) -> MasterResult:
    """Build (or reuse) one master; unreadable or unusable input frames are dropped and reported.

    An input is unusable when it cannot be read, or (a flat) when its level after bias and
    dark subtraction is not above zero by `FLAT_LEVEL_SIGMAS` times the read noise (in ADU).
    The master fails (and so do the lights that need it) when no input is left, when it has no
    finite pixel, or (a flat) when its level is not a finite positive number.

    Parameters
    ----------
    plan : MasterPlan
        The master's frames and parameters.
    store : Store
        The night's zarr store.
    config : NightConfig
        For the output folder.
    client : distributed.Client, optional
        The cluster's client; the local dask scheduler otherwise.
    budget : int
        Bytes of one stack chunk (row bands are sized to it; see `ccdflow.night.memory`).

    Returns
    -------
    MasterResult
    """
    output = config.output / "masters" / f"{plan.name}.fits"
    inputs = [str(f.path) for f in plan.frames]
    notes = _notes(plan)
    if store.master_is_current(plan.name, plan.key) and file_problem(
            output, store.master_attrs(plan.name).get("fits_stamp")) is None:
        return MasterResult(plan.name, ProductStatus.reused, str(output), inputs, notes=notes)
    start = time.perf_counter()
    dropped: dict[str, str] = {}
    try:
        plan, data, error, count = _combine_usable(plan, store, client, dropped, budget)
        norm = _check_values(plan, data)
    except CcdflowError as err:
        return MasterResult(plan.name, ProductStatus.failed, str(output), inputs, error=_text(err),
                            dropped=dropped or None, notes=notes)
    rejected = _write(plan, store, config, output, data, error, count, norm)
    return MasterResult(plan.name, ProductStatus.built, str(output), [str(f.path) for f in plan.frames],
                        time.perf_counter() - start, rejected, dropped or None, notes=_notes(plan))


def _notes(plan: MasterPlan) -> dict[str, list[str]] | None:
    out: dict[str, list[str]] = {}
    for path, note in plan.notes:
        if any(f.label == path for f in plan.frames):
            out.setdefault(path, []).append(note)
    return out or None


def _write(plan: MasterPlan, store: Store, config: NightConfig, output, data, error, count,
           norm: float | None) -> float:
    extra, attrs = {}, {}
    if plan.kind == "flat":
        data, error = normalise_flat(data, error, norm)
        extra["FLATNORM"] = (norm, "clipped mean divided out")
        # the level the lights divide by, computed here once (about 1 after the division)
        attrs["norm"] = flat_norm(data)
    if plan.kind == "dark" and "bias" in plan.needs:
        # the rate carries -<1/t> times the master bias: lights calibrated with both need it
        inv_exptime = StackGeometry(params=plan.params, exptimes=plan.exptimes).inv_exptime
        extra["DKINVEXP"] = (inv_exptime, "[1/s] mean 1/t of the darks (bias share)")
        attrs["inv_exptime"] = inv_exptime
    rejected = rejected_fraction(count, len(plan.frames))
    exptime = {"bias": 0.0, "dark": 1.0, "flat": None}[plan.kind]
    header = master_header(kind=plan.kind, inputs=[str(f.path) for f in plan.frames],
                           params=plan.combine, n_frames=len(plan.frames),
                           rejected_fraction=rejected, exptime=exptime, filter=plan.filter,
                           extra=extra, units=plan.params.units.value)
    add_fallback_notes(header, [note for _, note in plan.notes
                                if any(f.label == _ for f in plan.frames)])
    write_master(output, data=data, error=error, count=count, header=header)
    store.write_master(plan.name, data=data, error=error, count=count, attrs={
        "key": plan.key, "kind": plan.kind, "filter": plan.filter, "exptime": exptime,
        "inputs": [str(f.path) for f in plan.frames], "combine": plan.combine.to_dict(),
        "calibration": plan.params.to_dict(), "rejected_fraction": rejected,
        "fits_name": output.name, "fits_sha1": file_sha1(output), "fits_stamp": file_stamp(output),
        **attrs,
    })
    return rejected


def _text(err: Exception) -> str:
    return f"{type(err).__name__}: {err}"
