"""What a worker process keeps between light tasks: the masters it read and its cube handles.

Every light of a night uses the same few masters and writes into the same cube; reading the
masters' metadata and arrays, and opening the cube's arrays, once per process instead of once per
light is most of a light's fixed cost. Entries are keyed by the store's path and, for a master, its
resume key: a master rebuilt from other inputs has another key and is read afresh.
"""

from __future__ import annotations

import collections
import threading

import zarr

from ccdflow.array.calibration import Master
from ccdflow.night.store import Store

__all__ = ["cached_master", "cube_handles", "master_reads"]

#: Masters kept per process; a night uses one bias, one dark and a flat and a mask per filter.
MAX_MASTERS = 12

_lock = threading.Lock()  # guards the dictionaries below, never held while reading
_slot_locks: dict[tuple, threading.Lock] = {}
_masters: collections.OrderedDict[tuple[str, str], tuple[str, Master]] = collections.OrderedDict()
_cubes: dict[tuple[str, str], tuple[tuple, dict[str, zarr.Array]]] = {}
_reads: collections.Counter = collections.Counter()


def _slot_lock(slot: tuple) -> threading.Lock:
    with _lock:
        return _slot_locks.setdefault(slot, threading.Lock())


def cached_master(store: Store, name: str, *, key: str) -> Master:
    """Master ``name`` of ``store`` built with resume ``key``, read once per process.

    Threads asking for the same master wait for the one reading it (one lock per store and
    master), so it is never read twice; a different key replaces the kept one.

    Parameters
    ----------
    store : Store
        The night's store.
    name : str
        The master (``bias``, ``dark``, ``flat_V``, ``bpm_V``).
    key : str
        Its resume key, as the plan has it.

    Returns
    -------
    Master

    Raises
    ------
    MissingCalibrationError
        If the master is missing, damaged or was built with another key.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> store = Store(tempfile.mkdtemp() + "/work.zarr")
    >>> ones = np.ones((2, 2), np.float32)
    >>> store.write_master("bias", data=ones, error=ones, count=ones.astype(np.uint16),
    ...                    attrs={"key": "k1"})
    >>> before = master_reads(store, "bias")
    >>> a = cached_master(store, "bias", key="k1"); b = cached_master(store, "bias", key="k1")
    >>> a is b, master_reads(store, "bias") - before
    (True, 1)
    """
    slot = (str(store.path.resolve()), name)
    with _slot_lock(slot):
        with _lock:
            kept = _masters.get(slot)
        if kept is not None and kept[0] == key:
            return kept[1]
        master = store.read_master(name, key=key)
        with _lock:
            _reads[slot] += 1
            _masters[slot] = (key, master)
            _masters.move_to_end(slot)
            while len(_masters) > MAX_MASTERS:
                _masters.popitem(last=False)
        return master


def master_reads(store: Store, name: str) -> int:
    """How many times this process has read master ``name`` of ``store`` (for checks and tests)."""
    with _lock:
        return _reads[(str(store.path.resolve()), name)]


def cube_handles(store: Store, cube: str, *, shape: tuple[int, int],
                 index: int) -> dict[str, zarr.Array]:
    """Cube ``cube``'s arrays (``image``, ``error``, ``mask``) opened for writing, kept per process.

    Reopened when the frame shape differs from the kept handles' (a cube made afresh) or when
    ``index`` lies beyond their length (the cube grew since they were opened): a handle holds the
    array's metadata, and writing a slice only needs the shape and chunking to be current.

    Examples
    --------
    >>> import tempfile
    >>> store = Store(tempfile.mkdtemp() + "/work.zarr")
    >>> _ = store.ensure_cube("lights_V", stems=["a"], shape=(4, 4), rows=4)
    >>> cube_handles(store, "lights_V", shape=(4, 4), index=0)["image"].shape
    (1, 4, 4)
    >>> _ = store.ensure_cube("lights_V", stems=["a", "b"], shape=(4, 4), rows=4)
    >>> cube_handles(store, "lights_V", shape=(4, 4), index=1)["image"].shape
    (2, 4, 4)
    """
    slot = (str(store.path.resolve()), cube)
    with _slot_lock(slot):
        with _lock:
            kept = _cubes.get(slot)
        if kept is not None and kept[0] == tuple(shape) and index < kept[1]["image"].shape[0]:
            return kept[1]
        group = store.group(f"cubes/{cube}", mode="r+", zarr_format=3)
        arrays = {label: group[label] for label in ("image", "error", "mask")}
        with _lock:
            _cubes[slot] = (tuple(shape), arrays)
        return arrays
