"""Fitting the work to the workers' memory: stack bands for masters, a check for each light.

A dask worker is restarted when its process passes the ``terminate`` fraction of its memory limit
and stops running tasks at ``pause``; the work of one task must therefore fit below ``pause`` minus
what the worker process already holds, shared by its threads.
"""

from __future__ import annotations

import math

import dask
from distributed import Client

from ccdflow.array.chunks import CHUNK_BUDGET
from ccdflow.night.plan import FramePlan

__all__ = ["light_bytes", "stack_budget", "stack_rows", "worker_budget"]

#: Bytes per image pixel of one light's task besides its masters (raw float32, image, error,
#: mask and float64 intermediates); measured with tracemalloc: 61 B/pixel with three masters.
LIGHT_BYTES_PER_PIXEL = 40
#: Bytes per image pixel of each master a light reads (data and error, float32).
MASTER_BYTES_PER_PIXEL = 8
#: Bytes per stacked value of a combine chunk (float32 input, float64 work copies, sorting).
COMBINE_BYTES_PER_VALUE = 6
#: Bytes per stacked value that a stack's band task reads: image (float32), mask (uint8) and the
#: image with flagged pixels made NaN (float32), before the combine's own work.
STACK_READ_BYTES_PER_VALUE = 4 + 1 + 4
#: Bytes per stacked value of the combine kernel's own work on a band (numba, per-line buffers):
#: measured with tracemalloc at 0.3 for the default lights' combine (median, pooled clip) on
#: 500 x 32 x 512 values; 4 leaves room for the other methods.
STACK_COMBINE_BYTES_PER_VALUE = 4
#: What one stack band task may use when the workers have no memory limit (and at most in any
#: case): bands this size already read thousands of rows per second, and larger ones only
#: multiply the memory by the threads.
STACK_TASK_BUDGET = 128 * 2**20
#: Bytes per pixel of a finished master read back whole from the store by the one task that
#: finishes it (data, error, count, a flat's normalised copies, the FITS product's buffers).
MASTER_RESULT_BYTES_PER_PIXEL = 20


def worker_budget(client: Client | None) -> int | None:
    """Bytes one task may use on the most constrained worker; None if no worker has a limit.

    Parameters
    ----------
    client : distributed.Client or None
        The night's client; None (a local scheduler) means no limit.

    Returns
    -------
    int or None
        ``pause * memory_limit - process memory now``, divided by the worker's threads, at least 0.

    Examples
    --------
    >>> worker_budget(None) is None
    True
    """
    if client is None:
        return None
    fraction = (dask.config.get("distributed.worker.memory.pause", 0.8)
                or dask.config.get("distributed.worker.memory.terminate", 0.95) or 1.0)
    budgets = []
    for worker in client.scheduler_info(n_workers=-1)["workers"].values():
        limit = worker.get("memory_limit") or 0
        if limit:
            used = worker.get("metrics", {}).get("memory", 0)
            budgets.append((fraction * limit - used) / max(1, worker.get("nthreads", 1)))
    return int(max(0.0, min(budgets))) if budgets else None


def light_bytes(frame: FramePlan) -> int:
    """Estimated peak memory of calibrating one light or arc, bytes.

    Examples
    --------
    >>> from ccdflow.night.plan import FramePlan
    >>> LIGHT_BYTES_PER_PIXEL * 2048 * 2048 // 2**20  # MiB for a 2048^2 frame without masters
    160
    """
    pixels = math.prod(frame.params.image_area.shape)
    raw = math.prod(frame.frame.shape)
    masters = sum(1 for name in (frame.bias, frame.dark, frame.flat) if name)
    return int(4 * raw + pixels * (LIGHT_BYTES_PER_PIXEL + MASTER_BYTES_PER_PIXEL * masters))


def stack_budget(shape: tuple[int, int], budget: int | None) -> int:
    """The bytes of one stack chunk (as `open_stack` counts them) that fit a worker's ``budget``.

    Parameters
    ----------
    shape : tuple of int
        The combined product's shape (a master or a stack).
    budget : int or None
        What one task may use (`worker_budget`); None for no limit.

    Returns
    -------
    int
        The default chunk budget when there is no limit; 0 when not even the finished product
        fits, so the caller can say so instead of letting the worker die.

    Examples
    --------
    >>> stack_budget((2048, 2048), None) // 2**20, stack_budget((2048, 2048), 2**30) // 2**20
    (32, 32)
    >>> stack_budget((2048, 2048), 200 * 2**20) // 2**20, stack_budget((2048, 2048), 50 * 2**20)
    (17, 0)
    """
    if budget is None:
        return CHUNK_BUDGET
    pixels = math.prod(shape)
    left = budget - MASTER_RESULT_BYTES_PER_PIXEL * pixels
    # open_stack counts 4 bytes per value; the combine's work is COMBINE_BYTES_PER_VALUE of them
    return int(max(0, min(CHUNK_BUDGET, left * 4 // (4 + COMBINE_BYTES_PER_VALUE * 4))))


def stack_rows(n_frames: int, shape: tuple[int, int], budget: int | None, *, align: int = 1) -> int:
    """Rows of one band task of a night's stack (read from the cube, then combined), >= 1.

    A band task holds ``n_frames x rows x columns`` values: read (`STACK_READ_BYTES_PER_VALUE`)
    and combined (the kernel's `STACK_COMBINE_BYTES_PER_VALUE`). Its size is the
    smaller of ``budget`` and `STACK_TASK_BUDGET`; the stacked product itself is gathered band
    by band on the client, never on one worker.

    Parameters
    ----------
    n_frames : int
        Frames in the stack.
    shape : tuple of int
        ``(rows, columns)`` of a frame.
    budget : int or None
        What one task may use (`worker_budget`); None for no limit.
    align : int
        The cube's inner chunk rows: a band larger than one chunk is rounded down to whole
        chunks, so that no chunk is read by two tasks.

    Returns
    -------
    int
        Rows per band; 1 when not even one row fits (the task then needs more than ``budget``).

    Examples
    --------
    >>> stack_rows(500, (512, 512), None, align=32)
    32
    >>> stack_rows(80, (2048, 2048), None, align=8), stack_rows(10, (100, 50), None, align=8)
    (56, 100)
    >>> stack_rows(80, (2048, 2048), 60 * 2**20, align=8)
    24
    """
    limit = STACK_TASK_BUDGET if budget is None else min(budget, STACK_TASK_BUDGET)
    per_row = n_frames * shape[1] * (STACK_READ_BYTES_PER_VALUE + STACK_COMBINE_BYTES_PER_VALUE)
    rows = max(1, min(shape[0], limit // max(1, per_row)))
    if align < rows < shape[0]:
        rows -= rows % align
    return int(rows)
