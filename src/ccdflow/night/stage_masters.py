"""Building the night's masters on the cluster and persisting them to zarr and FITS.

Masters that need none of each other (all biases, then all darks, then all flats) are computed
together; each row band is written into the store by the task that combined it, and the FITS
product is written from the store on a worker, so the client never holds a master.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path

import dask
import dask.array as da
import numpy as np
from dask.delayed import Delayed
from distributed import Client

from ccdflow.array.calibration import flat_norm
from ccdflow.array.combination import rejected_fraction
from ccdflow.array.detector import Units
from ccdflow.array.masters import (
    StackGeometry,
    corrected_stack,
    flat_levels,
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

__all__ = ["FLAT_LEVEL_SIGMAS", "MasterResult", "build_masters"]

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


def _need(plan: MasterPlan, kind: str) -> str | None:
    """The name of the master of ``kind`` applied to the plan's frames, if any."""
    return next((n for n in plan.needs if n.split("_")[0] == kind), None)


def _stacks(plan: MasterPlan, budget: int):
    paths = [f.path for f in plan.frames]
    layout = plan.params.layout
    if plan.params.multi_amplifier and layout.hdus != (plan.frames[0].hdu,):
        # one stack per HDU the detector reads, chunked alike so the assembly adds no rechunk
        return {h: open_stack(paths, hdu=[h] * len(paths), budget=budget // len(layout.hdus))
                for h in layout.hdus}
    return open_stack(paths, hdu=[f.hdu for f in plan.frames], budget=budget)


def _combine(plan: MasterPlan, store: Store, budget: int):
    """The lazy combine, and for flats each frame's level (which must be finite and > 0)."""
    stack = _stacks(plan, budget)
    geometry = StackGeometry(params=plan.params, exptimes=plan.exptimes)
    # the masters applied are read in the bands of this stack: no rechunk between them
    bands = corrected_stack(stack, geometry).chunks[1:]
    applied = {}
    for kind, labels in (("bias", ("data", "error")), ("dark", ("data",))):
        name = _need(plan, kind)
        for label in labels if name else ():
            # a name of this graph's own: a cluster may still be releasing the same key of the
            # previous level's graph, which would cancel this one's tasks ("lost dependencies")
            applied[kind, label] = da.from_zarr(store.master_arrays(name)[label], chunks=bands,
                                                name=f"{name}-{label}-{uuid.uuid4().hex}")
    bias, dark = applied.get(("bias", "data")), applied.get(("dark", "data"))
    if plan.kind == "bias":
        return master_bias(stack, geometry, params=plan.combine), None
    if plan.kind == "dark":
        return master_dark(stack, geometry, bias=bias, bias_error=applied.get(("bias", "error")),
                           params=plan.combine), None
    # the levels the combine scales by: a negative level would flip the flat's sign unseen
    levels = flat_levels(stack, geometry, bias=bias, dark_rate=dark, params=plan.combine)
    return master_flat(stack, geometry, bias=bias, dark_rate=dark, params=plan.combine,
                       levels=levels), levels


def _lazy(plan: MasterPlan, store: Store, output: Path, budget: int) -> Delayed:
    """One master's graph, its store entry made afresh (incomplete) to receive it.

    The row bands are written to the store by the tasks that compute them, then one task
    finishes the master (`_finish`).
    """
    result, levels = _combine(plan, store, budget)
    rows = max(result.data.chunks[0])
    # bands of equal rows (a rechunk only when the assembly left uneven ones), so that every
    # band fills whole chunks of the store's arrays and no two tasks write one chunk
    arrays = [a.rechunk({0: rows, 1: -1}) for a in (result.data, result.error, result.count)]
    store.begin_master(plan.name, shape=result.data.shape, rows=rows)
    written = da.map_blocks(_write_band, *arrays, store=store, master=plan.name, dtype=np.float32,
                            chunks=((1,) * arrays[0].numblocks[0], (1,)),
                            meta=np.empty((0, 0), np.float32))
    return dask.delayed(_finish, pure=False)(written, levels, plan=plan, store=store, output=output)


def _write_band(data: np.ndarray, error: np.ndarray, count: np.ndarray, *, store: Store,
                master: str, block_info=None) -> np.ndarray:
    """Write one band of a master into the store; a placeholder out."""
    start = block_info[0]["array-location"][0][0]
    store.write_master_rows(master, start, data=data, error=error, count=count)
    return np.zeros((1, 1), np.float32)


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


def _finish(written, levels, *, plan: MasterPlan, store: Store, output: Path) -> dict:
    """On a worker, once every band is stored: check, normalise a flat, write the FITS product.

    Returns the master's attributes for the store (digests of the stored arrays included),
    or ``{"unusable": reasons}`` when flats must be left out. Only this small dict goes back
    to the client: the master itself never does.
    """
    if levels is not None:
        unusable = _unusable_flats(plan, levels)
        if unusable:
            return {"unusable": unusable}
    arrays = store.master_arrays(plan.name, mode="r+")
    data = arrays["data"][...]
    norm = _check_values(plan, data)
    error, count = arrays["error"][...], arrays["count"][...]
    extra, attrs = {}, {}
    if plan.kind == "flat":
        data, error = normalise_flat(data, error, norm)
        arrays["data"][...], arrays["error"][...] = data, error
        extra["FLATNORM"] = (norm, "clipped mean divided out")
        # the level the lights divide by, computed here once (about 1 after the division)
        attrs["norm"] = flat_norm(data)
    if plan.kind == "dark" and _need(plan, "bias"):
        # the rate carries -<1/t> times the master bias: lights calibrated with both need it
        inv_exptime = StackGeometry(params=plan.params, exptimes=plan.exptimes).inv_exptime
        extra["DKINVEXP"] = (inv_exptime, "[1/s] mean 1/t of the darks (bias share)")
        attrs["inv_exptime"] = inv_exptime
    rejected = rejected_fraction(count, len(plan.frames))
    exptime = {"bias": 0.0, "dark": 1.0, "flat": None}[plan.kind]
    inputs = [str(f.path) for f in plan.frames]
    header = master_header(kind=plan.kind, inputs=inputs, params=plan.combine,
                           n_frames=len(plan.frames), rejected_fraction=rejected, exptime=exptime,
                           filter=plan.filter, extra=extra, units=plan.params.units.value)
    add_fallback_notes(header, [note for _, note in plan.notes
                                if any(f.label == _ for f in plan.frames)])
    write_master(output, data=data, error=error, count=count, header=header)
    del data, error, count
    return {"key": plan.key, "kind": plan.kind, "filter": plan.filter, "exptime": exptime,
            "inputs": inputs, "combine": plan.combine.to_dict(),
            "calibration": plan.params.to_dict(), "rejected_fraction": rejected,
            "fits_name": output.name, "fits_sha1": file_sha1(output),
            "fits_stamp": file_stamp(output), **attrs,
            "digests": store.master_digests(plan.name)}


def _run(lazies: dict[str, Delayed], client: Client | None) -> dict[str, dict | CcdflowError]:
    """Compute masters together; each one's attributes, or the error that failed it alone."""
    if client is not None:
        futures = dict(zip(lazies, client.compute(list(lazies.values())), strict=True))
        out = {}
        try:
            for name, future in futures.items():
                try:
                    out[name] = future.result()
                except CcdflowError as err:
                    out[name] = err
        finally:  # another error or an interrupt: the level's masters still running are stopped
            pending = [future for future in futures.values() if not future.done()]
            if pending:
                client.cancel(pending)
        return out
    try:
        return dict(zip(lazies, dask.compute(*lazies.values()), strict=True))
    except CcdflowError as err:
        if len(lazies) == 1:
            return {next(iter(lazies)): err}
    # the local schedulers stop at the first error: each master again alone, to fail alone
    return {name: _run({name: lazy}, None)[name] for name, lazy in lazies.items()}


@dataclass
class _Build:
    """A master being built: its plan (frames left out so far removed) and what was left out."""

    plan: MasterPlan
    output: Path
    budget: int
    dropped: dict[str, str] = field(default_factory=dict)


def _next_plan(build: _Build, outcome: dict | CcdflowError) -> MasterPlan | None:
    """The plan without the inputs an outcome found unusable; None if it is not about inputs.

    Raises the master's error when no input is left.
    """
    if isinstance(outcome, dict):
        reasons = outcome.get("unusable")
    else:
        reasons = {outcome.path: _text(outcome)} if isinstance(outcome, FrameError) else None
    plan = build.plan
    if not reasons or not set(reasons) <= {str(f.path) for f in plan.frames}:
        return None
    build.dropped.update(reasons)
    left = tuple(f for f in plan.frames if str(f.path) not in reasons)
    if not left:
        raise MissingCalibrationError(f"master {plan.name}: no usable input frame left "
                                      "(see the frames left out)")
    return replace(plan, frames=left)


def build_masters(plans: list[tuple[MasterPlan, int]], store: Store, config: NightConfig, *,
                  client: Client | None = None) -> dict[str, MasterResult]:
    """Build (or reuse) masters that need none of each other, all in one computation.

    Each master's row bands are combined and written into its zarr arrays by the same tasks,
    and one task per master then checks it, normalises a flat and writes its FITS product;
    the client receives only attributes and writes them, ``complete = True`` last. A master
    that fails does so alone, with its reason. An input is left out (and reported) when it
    cannot be read, or (a flat) when its level after bias and dark subtraction is not above
    zero by `FLAT_LEVEL_SIGMAS` times the read noise (in ADU); the masters concerned are then
    computed again without it. A master fails (and so do the lights that need it) when no
    input is left, when it has no finite pixel, or (a flat) when its level is not a finite
    positive number.

    Parameters
    ----------
    plans : list of (MasterPlan, int)
        The masters, each with the bytes of one stack chunk (`ccdflow.night.memory.stack_budget`).
    store : Store
        The night's zarr store, holding the masters these ones need.
    config : NightConfig
        For the output folder.
    client : distributed.Client, optional
        The cluster's client; the local dask scheduler otherwise.

    Returns
    -------
    dict of str to MasterResult
        By master name, in the order given.
    """
    start = time.perf_counter()
    results: dict[str, MasterResult] = {}
    builds: dict[str, _Build] = {}
    for plan, budget in plans:
        output = config.output / "masters" / f"{plan.name}.fits"
        if store.master_is_current(plan.name, plan.key) and file_problem(
                output, store.master_attrs(plan.name).get("fits_stamp")) is None:
            results[plan.name] = MasterResult(plan.name, ProductStatus.reused, str(output),
                                              [str(f.path) for f in plan.frames],
                                              notes=_notes(plan))
        else:
            builds[plan.name] = _Build(plan, output, budget)
    while builds:
        outcomes, lazies = {}, {}
        for name, build in builds.items():
            try:
                # a P2P rechunk (dask's choice under a client for big ones) cannot feed a
                # delayed task: its barrier's futures are lost; these rechunks are small
                with dask.config.set({"array.rechunk.method": "tasks"}):
                    lazies[name] = _lazy(build.plan, store, build.output, build.budget)
            except CcdflowError as err:
                outcomes[name] = err
        outcomes.update(_run(lazies, client) if lazies else {})
        builds = {name: build for name, build in builds.items()
                  if _settle(build, outcomes[name], store, results, start)}
    return {plan.name: results[plan.name] for plan, _ in plans}


def _settle(build: _Build, outcome: dict | CcdflowError, store: Store,
            results: dict[str, MasterResult], start: float) -> bool:
    """Record a master's outcome; True when it must be computed again without some inputs."""
    plan = build.plan
    try:
        left = _next_plan(build, outcome)
    except CcdflowError as err:
        outcome, left = err, None
    if left is not None:
        build.plan = left
        return True
    if isinstance(outcome, dict) and "unusable" not in outcome:
        store.complete_master(plan.name, outcome)
        results[plan.name] = MasterResult(
            plan.name, ProductStatus.built, str(build.output), [str(f.path) for f in plan.frames],
            time.perf_counter() - start, outcome["rejected_fraction"], build.dropped or None,
            notes=_notes(plan))
        return False
    error = _text(outcome) if isinstance(outcome, Exception) else "; ".join(outcome["unusable"].values())
    results[plan.name] = MasterResult(plan.name, ProductStatus.failed, str(build.output),
                                      [str(f.path) for f in plan.frames], error=error,
                                      dropped=build.dropped or None, notes=_notes(plan))
    return False


def _notes(plan: MasterPlan) -> dict[str, list[str]] | None:
    out: dict[str, list[str]] = {}
    for path, note in plan.notes:
        if any(f.label == path for f in plan.frames):
            out.setdefault(path, []).append(note)
    return out or None


def _text(err: Exception) -> str:
    return f"{type(err).__name__}: {err}"
