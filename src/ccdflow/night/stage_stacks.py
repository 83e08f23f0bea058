"""Stacked lights: the calibrated frames of one filter and object combined from the zarr cube."""

from __future__ import annotations

import time
from collections import defaultdict

import dask
import dask.array as da
import numpy as np
from astropy.io import fits

from ccdflow.array.chunks import CHUNK_BUDGET, rows_for_budget
from ccdflow.array.combination import Combined, CombineParams, combine
from ccdflow.io.names import safe_name
from ccdflow.io.products import stack_header, write_master
from ccdflow.night.config import NightConfig
from ccdflow.night.plan import FramePlan, Plan, stable_hash
from ccdflow.night.progress import stage_progress
from ccdflow.night.report import FrameStatus, NightReport, ProductStatus
from ccdflow.night.store import Store
from ccdflow.night.verify import STORE_ERRORS, file_problem, file_stamp

__all__ = ["combine_calibrated", "stack_lights", "stack_name"]


def stack_name(frame: FramePlan) -> str:
    """The stack a light goes into: ``<filter>_<object>`` made safe by `safe_name`.

    Examples
    --------
    >>> from types import SimpleNamespace as NS
    >>> stack_name(NS(frame=NS(filter="V", object="M 31")))
    'V_M-31'
    """
    return safe_name(f"{frame.frame.filter or 'none'}_{frame.frame.object or 'field'}")


def _groups(plan: Plan, report: NightReport) -> dict[str, list[FramePlan]]:
    groups: dict[str, list[FramePlan]] = defaultdict(list)
    for fp in plan.frames:
        if fp.frame.type != "light":
            continue
        if report.frames.get(str(fp.frame.path), {}).get("status") in (FrameStatus.done, FrameStatus.reused):
            groups[stack_name(fp)].append(fp)
    return groups


def _header(frames: list[FramePlan], params: dict) -> fits.Header:
    # the first calibrated light's header: its WCS already describes the image area
    return stack_header(fits.getheader(frames[0].output), exptimes=[fp.params.exptime for fp in frames],
                        params=params, inputs=[str(fp.frame.path) for fp in frames])


def combine_calibrated(frames: list[FramePlan], store: Store, params: CombineParams, *,
                       budget: int = CHUNK_BUDGET) -> Combined:
    """Lazily combine calibrated frames from the night's cubes: the one way lights are stacked.

    Both the night's stacks and `ImageReduction` use it. The frames' slices are read from their
    cubes (several cubes may be mixed) and combined in full-width row bands sized to the chunk
    budget, so memory is bounded whatever the number of frames. Pixels flagged in a frame's
    mask are treated as NaN: they do not enter, and the count map shows it.

    Parameters
    ----------
    frames : list of FramePlan
        Calibrated frames of one image area.
    store : Store
        The night's zarr store.
    params : CombineParams
        How to combine.
    budget : int
        Bytes of one row band of the stack.

    Returns
    -------
    Combined
        Lazy data, error and count.
    """
    cubes: dict[str, da.Array] = {}
    for fp in frames:
        if fp.cube not in cubes:
            arrays = store.cube_arrays(fp.cube)
            # a flagged pixel (bad, saturated, bleed, cosmic ray, ...) never enters a stack
            cubes[fp.cube] = da.where(da.from_zarr(arrays["mask"]) != 0, np.float32(np.nan),
                                      da.from_zarr(arrays["image"]))
    stack = da.concatenate([cubes[fp.cube][fp.index][None] for fp in frames])
    rows = rows_for_budget(stack.shape[0], stack.shape[2], stack.shape[1], budget=budget)
    return combine(stack.rechunk({0: -1, 1: rows, 2: -1}), params=params)


def stack_lights(plan: Plan, store: Store, config: NightConfig, report: NightReport, *,
                 budget: int = CHUNK_BUDGET, show: bool = False) -> dict[str, dict]:
    """Combine the calibrated lights of each filter and object into ``stacks/<filter>_<object>``.

    Reads the cube slices of the frames, combines them with ``config.combine["light"]`` in row
    bands (bounded memory), and skips a stack whose inputs and parameters are unchanged.

    Returns
    -------
    dict
        Per stack: status, output, inputs, seconds.
    """
    out = {}
    params = config.combine["light"]
    groups = _groups(plan, report)
    with stage_progress("stacks", len(groups), show=show) as advance:
        for name, frames in groups.items():
            out[name] = _stack(name, frames, store, config, params, budget)
            advance(1)
    return out


def _stack(name: str, frames: list[FramePlan], store: Store, config: NightConfig,
           params: CombineParams, budget: int) -> dict:
    """Build (or reuse) one stack; its entry for the report."""
    start = time.perf_counter()
    path = config.output / "stacks" / f"{name}.fits"
    key = stable_hash([fp.key for fp in frames], params.to_dict())
    try:
        attrs = dict(store.root("r")[f"stacks/{name}"].attrs)
    except STORE_ERRORS:
        attrs = {}
    if attrs.get("key") == key and file_problem(path, attrs.get("fits_stamp")) is None:
        return {"status": ProductStatus.reused, "output": str(path), "seconds": 0.0,
                "inputs": [str(fp.frame.path) for fp in frames]}
    result = combine_calibrated(frames, store, params, budget=budget)
    data, error, count = dask.compute(result.data, result.error, result.count)
    write_master(path, data=data, error=error, count=count,
                 header=_header(frames, params.to_dict()))
    store.root().require_group(f"stacks/{name}").attrs.update(
        {"key": key, "fits_stamp": file_stamp(path)})
    return {"status": ProductStatus.built, "output": str(path),
            "seconds": time.perf_counter() - start, "inputs": [str(fp.frame.path) for fp in frames]}
