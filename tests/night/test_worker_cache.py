"""A worker process reads each master once, whatever number of threads asks for it, and again
only when the master's key changes."""

import threading
from collections import Counter

import numpy as np
import pytest
import zarr.storage

from ccdflow.errors import MissingCalibrationError
from ccdflow.night.store import Store
from ccdflow.night.worker_cache import cached_master, cube_handles, master_reads


@pytest.fixture
def chunk_reads(monkeypatch):
    """Keys read from any local zarr store in this process (zarr's own class, wrapped)."""
    reads: Counter = Counter()
    original = zarr.storage.LocalStore.get

    async def get(self, key, *args, **kwargs):
        reads[key] += 1
        return await original(self, key, *args, **kwargs)
    monkeypatch.setattr(zarr.storage.LocalStore, "get", get)
    return reads


def _write(store: Store, value: float, key: str) -> np.ndarray:
    data = np.full((8, 6), value, np.float32)
    store.write_master("bias", data=data, error=data / 10, count=np.ones((8, 6), np.uint16),
                       attrs={"key": key, "exptime": 1.0})
    return data


def test_many_threads_read_a_master_once(tmp_path, chunk_reads):
    store = Store(tmp_path / "work.zarr")
    data = _write(store, 3.0, "k1")
    chunk_reads.clear()  # writing read some metadata too
    start = threading.Barrier(8)
    got = []

    def use():
        start.wait()
        got.append(cached_master(Store(tmp_path / "work.zarr"), "bias", key="k1"))
    threads = [threading.Thread(target=use) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 8 and all(m is got[0] for m in got)
    np.testing.assert_array_equal(got[0].data, data)
    assert master_reads(store, "bias") == 1
    # the files say the same: the data chunk and the master's metadata read once
    assert chunk_reads["masters/bias/data/c/0/0"] == 1
    assert chunk_reads["masters/bias/zarr.json"] == 1


def test_a_new_key_reads_the_new_master(tmp_path):
    store = Store(tmp_path / "work.zarr")
    _write(store, 3.0, "k1")
    assert cached_master(store, "bias", key="k1").data[0, 0] == 3.0
    _write(store, 5.0, "k2")
    assert cached_master(store, "bias", key="k1").data[0, 0] == 3.0  # kept: same key
    assert cached_master(store, "bias", key="k2").data[0, 0] == 5.0
    assert master_reads(store, "bias") == 2


def test_a_master_of_another_key_is_refused(tmp_path):
    store = Store(tmp_path / "work.zarr")
    _write(store, 3.0, "k1")
    with pytest.raises(MissingCalibrationError, match="not the one this night built"):
        cached_master(store, "bias", key="other")


def test_cube_handles_are_kept_until_the_cube_grows(tmp_path, chunk_reads):
    store = Store(tmp_path / "work.zarr")
    store.ensure_cube("lights_V", stems=["a", "b"], shape=(4, 5), rows=4)
    first = cube_handles(store, "lights_V", shape=(4, 5), index=0)
    opened = chunk_reads["cubes/lights_V/image/zarr.json"]
    assert cube_handles(store, "lights_V", shape=(4, 5), index=1) is first
    assert chunk_reads["cubes/lights_V/image/zarr.json"] == opened  # nothing read again
    store.ensure_cube("lights_V", stems=["a", "b", "c"], shape=(4, 5), rows=4)
    grown = cube_handles(store, "lights_V", shape=(4, 5), index=2)
    assert grown is not first and grown["image"].shape == (3, 4, 5)
    grown["image"][2] = np.full((4, 5), 2.0, np.float32)
    np.testing.assert_array_equal(store.cube_arrays("lights_V")["image"][2], 2.0)
