"""Building the night's masters on the cluster and persisting them to zarr and FITS."""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from dataclasses import dataclass, replace

import dask
import dask.array as da
from dask.diagnostics import ProgressBar
from distributed import Client, progress

from ccdflow.array.calibration import flat_norm
from ccdflow.array.chunks import CHUNK_BUDGET
from ccdflow.array.combination import rejected_fraction
from ccdflow.array.masters import StackGeometry, master_bias, master_dark, master_flat, normalise_flat
from ccdflow.errors import CcdflowError, FrameError
from ccdflow.io.fits import open_stack
from ccdflow.io.products import file_sha1, master_header, write_master
from ccdflow.night.config import NightConfig
from ccdflow.night.plan import MasterPlan
from ccdflow.night.report import ProductStatus
from ccdflow.night.store import Store

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
    dropped: dict[str, str] | None = None  # unreadable inputs left out, with reasons
    error: str | None = None

    def to_dict(self) -> dict:
        """Plain values for ``report.json``."""
        return dict(self.__dict__)


def _combine(plan: MasterPlan, store: Store, budget: int):
    stack = open_stack([f.path for f in plan.frames], hdu=[f.hdu for f in plan.frames], budget=budget)
    geometry = StackGeometry(params=plan.params, exptimes=plan.exptimes)
    bias = bias_error = dark = None
    if "bias" in plan.needs:
        bias = da.from_zarr(store.root("r")["masters/bias/data"])
        bias_error = da.from_zarr(store.root("r")["masters/bias/error"])
    if "dark" in plan.needs:
        dark = da.from_zarr(store.root("r")["masters/dark/data"])
    if plan.kind == "bias":
        return master_bias(stack, geometry, params=plan.combine)
    if plan.kind == "dark":
        return master_dark(stack, geometry, bias=bias, bias_error=bias_error, params=plan.combine)
    return master_flat(stack, geometry, bias=bias, dark_rate=dark, params=plan.combine)


def _compute(result, client: Client | None, show: bool):
    """Compute a combine's three arrays in one pass, with a progress bar on the terminal."""
    arrays = (result.data, result.error, result.count)
    if client is not None:
        futures = client.compute(list(arrays))
        if show:
            progress(futures, notebook=False)
        return client.gather(futures)
    with ProgressBar(out=sys.stderr) if show else contextlib.nullcontext():
        return dask.compute(*arrays)


def build_master(plan: MasterPlan, store: Store, config: NightConfig, *,
                 client: Client | None = None, show: bool = False,
                 budget: int = CHUNK_BUDGET) -> MasterResult:
    """Build (or reuse) one master; unreadable input frames are dropped and reported.

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
    show : bool
        Show a progress bar.
    budget : int
        Bytes of one stack chunk (row bands are sized to it; see `ccdflow.night.memory`).

    Returns
    -------
    MasterResult
    """
    output = config.output / "masters" / f"{plan.name}.fits"
    inputs = [str(f.path) for f in plan.frames]
    if store.master_is_current(plan.name, plan.key) and output.exists():
        return MasterResult(plan.name, ProductStatus.reused, str(output), inputs)
    start = time.perf_counter()
    dropped: dict[str, str] = {}
    while True:
        try:
            result = _combine(plan, store, budget)
            data, error, count = _compute(result, client, show)
            break
        except FrameError as err:
            # a corrupt input: leave it out and combine the rest
            names = [str(f.path) for f in plan.frames]
            if err.path not in names or len(plan.frames) == 1:
                return MasterResult(plan.name, ProductStatus.failed, str(output), inputs, error=_text(err),
                                    dropped=dropped or None)
            dropped[err.path] = _text(err)
            plan = replace(plan, frames=tuple(f for f in plan.frames if str(f.path) != err.path))
        except CcdflowError as err:
            return MasterResult(plan.name, ProductStatus.failed, str(output), inputs, error=_text(err),
                                dropped=dropped or None)
    extra, attrs = {}, {}
    if plan.kind == "flat":
        norm = flat_norm(data)
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
                           extra=extra)
    write_master(output, data=data, error=error, count=count, header=header)
    store.write_master(plan.name, data=data, error=error, count=count, attrs={
        "key": plan.key, "kind": plan.kind, "filter": plan.filter, "exptime": exptime,
        "inputs": [str(f.path) for f in plan.frames], "combine": plan.combine.to_dict(),
        "calibration": plan.params.to_dict(), "rejected_fraction": rejected,
        "fits_name": output.name, "fits_sha1": file_sha1(output), **attrs,
    })
    return MasterResult(plan.name, ProductStatus.built, str(output), [str(f.path) for f in plan.frames],
                        time.perf_counter() - start, rejected, dropped or None)


def _text(err: Exception) -> str:
    return f"{type(err).__name__}: {err}"
