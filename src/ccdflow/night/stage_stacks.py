"""Stacked lights: the calibrated frames of one filter and object combined from the zarr cube.

Every stack of the night is one lazy graph of band tasks, each reading its rows of every frame
straight from the sharded cube and combining them (no rechunk); all stacks are computed together
and gathered band by band, so a worker's memory is bounded by one band, whatever the stack size.
"""

from __future__ import annotations

import functools
import itertools
import logging
import time
from collections import defaultdict

import dask
import dask.array as da
import numpy as np
from astropy.io import fits
from dask.base import tokenize
from distributed import KilledWorker

from ccdflow.array.combination import Combined, CombineParams, combine
from ccdflow.errors import CcdflowError, IncompatibleFramesError
from ccdflow.io.fits import read_header
from ccdflow.io.names import safe_name
from ccdflow.io.products import stack_header, write_master
from ccdflow.night.config import NightConfig
from ccdflow.night.memory import stack_rows
from ccdflow.night.plan import FramePlan, Plan, stable_hash
from ccdflow.night.progress import stage_progress
from ccdflow.night.report import FrameStatus, NightReport, ProductStatus
from ccdflow.night.store import Store
from ccdflow.night.verify import STORE_ERRORS, file_problem, file_stamp

__all__ = ["combine_calibrated", "compute_stacks", "stack_from_cubes", "stack_lights", "stack_name"]

logger = logging.getLogger(__name__)

#: What fails one stack rather than the night: our own errors, a damaged cube, a lost worker.
STACK_ERRORS = (CcdflowError, KilledWorker, *STORE_ERRORS)


def stack_name(frame: FramePlan) -> str:
    """The stack a light goes into: ``<filter>_<object>`` (``_<CCD>`` for one CCD of several).

    Made safe by `safe_name`.

    Examples
    --------
    >>> from types import SimpleNamespace as NS
    >>> stack_name(NS(frame=NS(filter="V", object="M 31", ccd="")))
    'V_M-31'
    """
    ccd = f"_{frame.frame.ccd}" if frame.frame.ccd else ""
    return safe_name(f"{frame.frame.filter or 'none'}_{frame.frame.object or 'field'}{ccd}")


def _groups(plan: Plan, report: NightReport) -> dict[str, list[FramePlan]]:
    groups: dict[str, list[FramePlan]] = defaultdict(list)
    for fp in plan.frames:
        if fp.frame.type != "light":
            continue
        if report.frames.get(fp.frame.label, {}).get("status") in (FrameStatus.done, FrameStatus.reused):
            groups[stack_name(fp)].append(fp)
    return groups


def _header(frames: list[FramePlan], params: dict) -> fits.Header:
    # the first calibrated light's header: its WCS already describes the image area
    return stack_header(read_header(frames[0].output)[1], exptimes=[fp.params.exptime for fp in frames],
                        params=params, inputs=[str(fp.frame.path) for fp in frames])


def stack_from_cubes(frames: list[FramePlan], store: Store, *, rows: int) -> da.Array:
    """The lazy ``(N, rows, columns)`` float32 stack of calibrated frames, read band by band.

    One task per band of ``rows`` full-width rows reads those rows of every frame from their
    cubes (`Store.read_rows`: flagged pixels NaN), so each chunk already holds the whole stack
    and `combine` uses it as it is: no rechunk, and a band task touches only its own rows.

    Parameters
    ----------
    frames : list of FramePlan
        Calibrated frames of one image area (their ``cube`` and ``index`` are used).
    store : Store
        The night's zarr store.
    rows : int
        Rows per band (see `ccdflow.night.memory.stack_rows`).

    Returns
    -------
    dask.array.Array
        Chunks ``(N, rows, columns)``; tasks named ``stack-read-*``.

    Raises
    ------
    IncompatibleFramesError
        If the frames' cubes hold images of different shapes.

    Examples
    --------
    >>> import tempfile
    >>> from types import SimpleNamespace as NS
    >>> store = Store(tempfile.mkdtemp() + "/work.zarr")
    >>> index = store.ensure_cube("lights_V", stems=["a", "b"], shape=(6, 4), rows=2)
    >>> for i in (0, 1):
    ...     store.write_frame("lights_V", i, np.full((6, 4), i, np.float32),
    ...                       np.ones((6, 4), np.float32), np.zeros((6, 4), np.uint8))
    >>> stack = stack_from_cubes([NS(cube="lights_V", index=i) for i in (1, 0)], store, rows=4)
    >>> stack.chunks, float(stack[0].mean().compute())
    (((2,), (4, 2), (4,)), 1.0)
    """
    sources = [(cube, [fp.index for fp in run])
               for cube, run in itertools.groupby(frames, key=lambda fp: fp.cube)]
    shapes = {cube: tuple(store.cube_arrays(cube)["image"].shape[1:]) for cube, _ in sources}
    shape = shapes[sources[0][0]]
    for cube, other in shapes.items():
        if other != shape:
            raise IncompatibleFramesError(
                str(next(fp.frame.path for fp in frames if fp.cube == cube)),
                f"cube {cube} holds images of shape {other}, not {shape} like {sources[0][0]}")
    bands = tuple(min(rows, shape[0] - r0) for r0 in range(0, shape[0], rows))
    starts = tuple(range(0, shape[0], rows))
    read = functools.partial(_read_band, store, sources, starts, bands)
    return da.map_blocks(read, chunks=((len(frames),), bands, (shape[1],)), dtype=np.float32,
                         meta=np.empty((0, 0, 0), np.float32),
                         name=f"stack-read-{tokenize(str(store.path), sources, bands)}")


def _read_band(store: Store, sources: list, starts: tuple, bands: tuple, block_id=None) -> np.ndarray:
    r0 = starts[block_id[1]]
    return store.read_rows(sources, (r0, r0 + bands[block_id[1]]))


def combine_calibrated(frames: list[FramePlan], store: Store, params: CombineParams, *,
                       budget: int | None = None) -> Combined:
    """Lazily combine calibrated frames from the night's cubes: the one way lights are stacked.

    Both the night's stacks and `ImageReduction` use it. The frames' rows are read from their
    cubes (several cubes may be mixed) in full-width bands sized to ``budget`` (`stack_rows`,
    aligned to the cube's inner chunks) and combined band by band, so memory is bounded whatever
    the number of frames. Pixels flagged in a frame's mask are treated as NaN: they do not
    enter, and the count map shows it.

    Parameters
    ----------
    frames : list of FramePlan
        Calibrated frames of one image area.
    store : Store
        The night's zarr store.
    params : CombineParams
        How to combine.
    budget : int or None
        Bytes one task may use (`ccdflow.night.memory.worker_budget`); None for no limit.

    Returns
    -------
    Combined
        Lazy data, error and count.

    Examples
    --------
    >>> import tempfile
    >>> from types import SimpleNamespace as NS
    >>> store = Store(tempfile.mkdtemp() + "/work.zarr")
    >>> index = store.ensure_cube("lights_V", stems=["a", "b", "c"], shape=(4, 4), rows=2)
    >>> for i, level in enumerate((1.0, 2.0, 6.0)):
    ...     store.write_frame("lights_V", i, np.full((4, 4), level, np.float32),
    ...                       np.ones((4, 4), np.float32), np.zeros((4, 4), np.uint8))
    >>> frames = [NS(cube="lights_V", index=i) for i in range(3)]
    >>> result = combine_calibrated(frames, store, CombineParams(method="mean", clip="none"))
    >>> float(result.data[0, 0].compute()), int(result.count[0, 0].compute())
    (3.0, 3)
    """
    image = store.cube_arrays(frames[0].cube)["image"]
    shape = tuple(image.shape[1:])
    rows = stack_rows(len(frames), shape, budget, align=image.chunks[1])
    return combine(stack_from_cubes(frames, store, rows=rows), params=params)


def compute_stacks(stacks: dict[str, Combined]) -> dict[str, tuple[np.ndarray, ...]]:
    """Compute several lazy stacks in one pass (one graph, one compute), band by band.

    Each band's data, error and count are gathered on their own and joined here, so no worker
    ever holds a whole stacked image.

    Parameters
    ----------
    stacks : dict of str to Combined
        Lazy stacks by name (`combine_calibrated`).

    Returns
    -------
    dict of str to tuple of numpy.ndarray
        ``(data, error, count)`` per name.

    Examples
    --------
    >>> a = combine(np.ones((3, 4, 5), np.float32), params=CombineParams(method="sum", clip="none"))
    >>> out = compute_stacks({"a": a})
    >>> float(out["a"][0].sum()), out["a"][2].dtype.name
    (60.0, 'uint16')
    """
    pieces = {name: [[array.blocks[i] for i in range(array.numblocks[0])]
                     for array in (result.data, result.error, result.count)]
              for name, result in stacks.items()}
    flat = [block for parts in pieces.values() for blocks in parts for block in blocks]
    computed = iter(dask.compute(*flat))
    return {name: tuple(np.concatenate([next(computed) for _ in blocks]) for blocks in parts)
            for name, parts in pieces.items()}


def stack_lights(plan: Plan, store: Store, config: NightConfig, report: NightReport, *,
                 budget: int | None = None, show: bool = False) -> dict[str, dict]:
    """Combine the calibrated lights of each filter and object into ``stacks/<filter>_<object>``.

    Every stack that is not reused (same inputs and parameters, intact product) is built in one
    graph computed at once, each in band tasks that read the cube's rows with no rechunk
    (`combine_calibrated`), with ``config.combine["light"]``. If that fails, each stack is
    computed on its own so that a failure is reported for the stack it belongs to.

    Parameters
    ----------
    budget : int or None
        Bytes one task may use on the workers; None for no limit.

    Returns
    -------
    dict
        Per stack: status, output, inputs, seconds (of the joint computation and its write).
    """
    params = config.combine["light"]
    groups = _groups(plan, report)
    out: dict[str, dict] = {}
    lazy: dict[str, Combined] = {}
    for name, frames in groups.items():
        entry = _reused(name, frames, store, config, params)
        if entry is None:
            try:
                lazy[name] = combine_calibrated(frames, store, params, budget=budget)
            except STACK_ERRORS as err:
                entry = _failed(name, frames, config, err)
        if entry is not None:
            out[name] = entry
    with stage_progress("stacks", len(groups), show=show) as advance:
        advance(len(out))
        start = time.perf_counter()
        for name, arrays in _compute_each_apart_on_failure(lazy, groups, config, out):
            out[name] = _write(name, groups[name], arrays, store, config, params, start)
            advance(1)
        advance(sum(1 for name in lazy if out[name]["status"] == ProductStatus.failed))
    return {name: out[name] for name in groups}


def _compute_each_apart_on_failure(lazy: dict[str, Combined], groups: dict, config: NightConfig,
                                   out: dict):
    """(name, arrays) of every stack: all computed together, or one by one if that fails."""
    if not lazy:
        return
    try:
        yield from compute_stacks(lazy).items()
        return
    except STACK_ERRORS as err:
        logger.warning("stacks computed together failed (%s: %s); computing each apart",
                       type(err).__name__, err)
    for name, result in lazy.items():
        try:
            arrays = compute_stacks({name: result})[name]
        except STACK_ERRORS as err:
            out[name] = _failed(name, groups[name], config, err)
            continue
        yield name, arrays


def _reused(name: str, frames: list[FramePlan], store: Store, config: NightConfig,
            params: CombineParams) -> dict | None:
    """The report entry of a stack whose inputs, parameters and product are unchanged, or None."""
    path = config.output / "stacks" / f"{name}.fits"
    try:
        attrs = dict(store.root("r")[f"stacks/{name}"].attrs)
    except STORE_ERRORS:
        attrs = {}
    if attrs.get("key") == _key(frames, params) and file_problem(path, attrs.get("fits_stamp")) is None:
        return {"status": ProductStatus.reused, "output": str(path), "seconds": 0.0,
                "inputs": [str(fp.frame.path) for fp in frames]}
    return None


def _key(frames: list[FramePlan], params: CombineParams) -> str:
    return stable_hash([fp.key for fp in frames], params.to_dict())


def _failed(name: str, frames: list[FramePlan], config: NightConfig, err: BaseException) -> dict:
    logger.error("stack %s: %s: %s", name, type(err).__name__, err)
    return {"status": ProductStatus.failed, "output": str(config.output / "stacks" / f"{name}.fits"),
            "error": f"{type(err).__name__}: {err}", "seconds": 0.0,
            "inputs": [str(fp.frame.path) for fp in frames]}


def _write(name: str, frames: list[FramePlan], arrays: tuple[np.ndarray, ...], store: Store,
           config: NightConfig, params: CombineParams, start: float) -> dict:
    """Write one computed stack (atomically), then record it in the store."""
    path = config.output / "stacks" / f"{name}.fits"
    data, error, count = arrays
    write_master(path, data=data, error=error, count=count,
                 header=_header(frames, params.to_dict()))
    store.root().require_group(f"stacks/{name}").attrs.update(
        {"key": _key(frames, params), "fits_stamp": file_stamp(path)})
    return {"status": ProductStatus.built, "output": str(path),
            "seconds": time.perf_counter() - start, "inputs": [str(fp.frame.path) for fp in frames]}
