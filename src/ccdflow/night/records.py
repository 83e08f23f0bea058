"""The table of finished frames: one document in the store, kept by the client as results arrive.

A frame's record (its resume key, its product's size and SHA-1, its cube slices' digests, its
statistics) comes back from its task with the result; the client collects the records and writes
the whole table atomically (temporary file, then rename) every few results or seconds and at the
end of each stage. A run killed between two writes loses only the records that arrived since the
last one: those frames are redone by the rerun, whose verification (`reuse_problem`) never trusts
a record without checking the product and the slices it describes.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from ccdflow.io.location import Location, as_location
from ccdflow.io.write import atomic_path

__all__ = ["RECORDS_NAME", "RecordTable"]

logger = logging.getLogger(__name__)

#: The table's file in the store: in the ``records`` folder, whose members nothing lists (a plain
#: file where zarr lists a group's members would be reported as not part of the hierarchy).
RECORDS_NAME = "records/table.json"


class RecordTable:
    """Every finished frame's record, by cube and frame stem, in ``<store>/records/table.json``.

    Parameters
    ----------
    store : str, path-like or RemotePath
        The store folder (``work.zarr``, local or a URL); the table is read from it at once.
    every : int
        Write the table after this many new records...
    seconds : float
        ...or when this long has passed since the last write, whichever comes first.

    Attributes
    ----------
    problem : str or None
        Why the table on disk could not be read (it then starts empty: every frame is redone).

    Notes
    -----
    Records of stores written before the table (one zarr group per frame, ``records/<cube>/<stem>``)
    are read once, when no table exists yet, so such a night resumes as before.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> store = pathlib.Path(tempfile.mkdtemp()) / "work.zarr"
    >>> table = RecordTable(store, every=2)
    >>> table.add("lights_V", "a", {"key": "k1"})
    >>> (store / RECORDS_NAME).exists()  # one record pending, not written yet
    False
    >>> table.add("lights_V", "b", {"key": "k2"})
    >>> RecordTable(store).get("lights_V", "b")
    {'key': 'k2'}
    >>> table.forget("lights_V", "b"); table.flush()
    >>> RecordTable(store).get("lights_V", "b") is None
    True
    """

    def __init__(self, store: str | Path, *, every: int = 64, seconds: float = 2.0):
        if every < 1 or seconds < 0:
            raise ValueError(f"every must be >= 1 and seconds >= 0, got {every}, {seconds}")
        self.path = as_location(store) / RECORDS_NAME
        self.every, self.seconds = every, seconds
        self.problem: str | None = None
        self._records = self._load()
        self._pending = 0
        self._written = time.monotonic()

    def get(self, cube: str, stem: str) -> dict[str, Any] | None:
        """The record of a finished frame, or None."""
        return self._records.get(cube, {}).get(stem)

    def add(self, cube: str, stem: str, record: dict[str, Any]) -> None:
        """Record a finished frame; the table is written when enough has arrived or time passed."""
        self._records.setdefault(cube, {})[stem] = record
        self._pending += 1
        if self._pending >= self.every or time.monotonic() - self._written >= self.seconds:
            self.flush()

    def forget(self, cube: str, stem: str) -> None:
        """Drop a frame's record (written with the next batch), so that it is redone."""
        if self._records.get(cube, {}).pop(stem, None) is not None:
            self._pending += 1

    def flush(self) -> None:
        """Write the table now if anything changed since the last write (atomically)."""
        if not self._pending and self.path.exists():
            return
        with atomic_path(self.path) as tmp:
            tmp.write_text(json.dumps(self._records, separators=(",", ":")))
        self._pending = 0
        self._written = time.monotonic()

    def _load(self) -> dict[str, dict[str, dict]]:
        try:
            table = json.loads(self.path.read_text())
        except FileNotFoundError:
            return _legacy_records(self.path.parent.parent)
        except (OSError, ValueError) as err:
            self.problem = f"{RECORDS_NAME} cannot be read ({type(err).__name__}: {err})"
            return {}
        if not (isinstance(table, dict) and all(isinstance(v, dict) for v in table.values())):
            self.problem = f"{RECORDS_NAME} is not a table of records"
            return {}
        return table


def _legacy_records(store: Location) -> dict[str, dict[str, dict]]:
    """Records of a store written with one zarr group per frame (read once, then in the table)."""
    table: dict[str, dict[str, dict]] = {}
    for meta in sorted(store.glob("records/*/*/zarr.json")):
        try:
            attrs = json.loads(meta.read_text()).get("attributes")
        except (OSError, ValueError, AttributeError):
            continue  # an unreadable record is no record: that frame is redone
        if isinstance(attrs, dict) and attrs:
            table.setdefault(meta.parent.parent.name, {})[meta.parent.name] = attrs
    return table
