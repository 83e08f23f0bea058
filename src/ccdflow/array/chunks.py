"""Chunk sizing: how many full-width rows of a stack fit a memory budget."""

from __future__ import annotations

__all__ = ["CHUNK_BUDGET", "rows_for_budget"]

#: Default memory for one stack chunk (N frames x rows x width, float32), bytes.
CHUNK_BUDGET = 32 * 2**20


def rows_for_budget(n_frames: int, width: int, height: int, *, budget: int = CHUNK_BUDGET) -> int:
    """Rows per chunk so that ``n_frames x rows x width`` float32 fits in ``budget`` bytes (>= 1)."""
    return int(max(1, min(height, budget // max(1, n_frames * width * 4))))
