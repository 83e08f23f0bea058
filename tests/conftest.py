"""Shared fixtures: paths to the real test frames and a scheduler that forbids computing."""

from __future__ import annotations

import contextlib
from pathlib import Path

import dask
import pytest

DATA = Path(__file__).parent / "data"


@pytest.fixture
def sprat() -> Path:
    """Folder of the real SPRAT frames (see tests/data/sprat/LICENSE-ASPIRED-BSD3)."""
    return DATA / "sprat"


class _CountingScheduler:
    """A dask scheduler that counts computes and refuses to run any beyond ``max_computes``."""

    def __init__(self, max_computes: int = 0):
        self.total_computes = 0
        self.max_computes = max_computes

    def __call__(self, dsk, keys, **kwargs):
        self.total_computes += 1
        if self.total_computes > self.max_computes:
            raise RuntimeError(f"too many dask computations: {self.total_computes}")
        return dask.get(dsk, keys, **kwargs)


@contextlib.contextmanager
def raise_if_dask_computes(max_computes: int = 0):
    """Fail if the block triggers more than ``max_computes`` dask computations."""
    scheduler = _CountingScheduler(max_computes)
    with dask.config.set(scheduler=scheduler):
        yield scheduler
