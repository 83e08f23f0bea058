"""The night report: what was done, reused or failed, with timings; JSON and a terminal table."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from enum import StrEnum
from pathlib import Path
from typing import Any

from ccdflow.io.location import RemotePath, as_location
from ccdflow.io.write import atomic_path

__all__ = ["FrameStatus", "NightReport", "ProductStatus"]


class FrameStatus(StrEnum):
    """What happened to one light or arc."""

    done = "done"
    """Calibrated in this run."""
    reused = "reused"
    """Calibrated by an earlier run with the same inputs and parameters: its product is kept."""
    failed = "failed"
    """Not calibrated; the report says why."""


class ProductStatus(StrEnum):
    """What happened to one master or stack."""

    built = "built"
    """Computed in this run."""
    reused = "reused"
    """Unchanged inputs and parameters: the earlier product is kept."""
    failed = "failed"
    """Not built; the report says why."""


@dataclass
class NightReport:
    """Outcome of `reduce_night`; ``ok`` is false when any frame or master failed."""

    output: str
    config: dict[str, Any]
    started: str
    version: str
    seconds: dict[str, float] = field(default_factory=dict)
    masters: dict[str, dict] = field(default_factory=dict)
    frames: dict[str, dict] = field(default_factory=dict)
    stacks: dict[str, dict] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    aborted: str | None = None  # why the run stopped before its end; None once it has finished
    ignored: dict[str, str] = field(default_factory=dict)  # inputs not reduced, with the reason

    @property
    def failures(self) -> dict[str, str]:
        """Every failed frame, master or stack with its reason."""
        out = {path: f["error"] for path, f in self.frames.items() if f["status"] == FrameStatus.failed}
        out.update({f"master {name}": m["error"] for name, m in self.masters.items()
                    if m["status"] == ProductStatus.failed})
        out.update({f"stack {name}": s["error"] for name, s in self.stacks.items()
                    if s["status"] == ProductStatus.failed})
        for name, m in self.masters.items():
            out.update({path: f"left out of master {name}: {why}"
                        for path, why in (m.get("dropped") or {}).items()})
        return out

    @property
    def ok(self) -> bool:
        """True when the run finished and nothing failed."""
        return self.aborted is None and not self.failures

    def count(self, status: FrameStatus | str) -> int:
        """Frames with the given status (done, reused, failed)."""
        return sum(1 for f in self.frames.values() if f["status"] == status)

    def order_frames(self, paths: list[str]) -> None:
        """Put the frames in the order of ``paths`` (the file list's), not the order they finished.

        Examples
        --------
        >>> report = NightReport(output="out", config={}, started="", version="")
        >>> report.frames = {"b.fits": {}, "a.fits": {}, "c.fits": {}}
        >>> report.order_frames(["a.fits", "b.fits"])
        >>> list(report.frames)
        ['a.fits', 'b.fits', 'c.fits']
        """
        rank = {path: i for i, path in enumerate(paths)}
        self.frames = dict(sorted(self.frames.items(), key=lambda item: rank.get(item[0], len(rank))))

    def to_dict(self) -> dict[str, Any]:
        """Plain values (the content of ``report.json``)."""
        # plain containers already: no deep copy (a night of thousands of frames writes it often)
        return {**{f.name: getattr(self, f.name) for f in fields(self)}, "ok": self.ok,
                "failures": self.failures}

    def write(self, path: str | Path | RemotePath) -> Path | RemotePath:
        """Write ``report.json`` atomically."""
        with atomic_path(path) as tmp:
            tmp.write_text(_dumps(self.to_dict()))
        return as_location(path)

    def summary(self) -> str:
        """A short table for the terminal: masters, then frames in the order of `frames`.

        A night puts its frames in file-list order (`order_frames`); each status is one word
        (``done``, ``reused``, ``failed``; masters and stacks ``built``, ``reused``, ``failed``).
        """
        lines = [f"{'product':<34} {'status':<8} {'seconds':>8}  note"]
        for name, m in self.masters.items():
            note = m.get("error") or (f"rejected {m['rejected_fraction']:.3%}"
                                      if m.get("rejected_fraction") is not None else "")
            lines.append(f"{'master ' + name:<34} {m['status']:<8} {m['seconds']:>8.2f}  {note}")
        for path, f in self.frames.items():
            lines.append(f"{Path(path).name:<34} {f['status']:<8} {f['seconds']:>8.2f}  "
                         f"{f.get('error') or ''}")
        for name, s in self.stacks.items():
            lines.append(f"{'stack ' + name:<34} {s['status']:<8} {s['seconds']:>8.2f}")
        lines.extend(f"warning: {message}" for message in self.warnings)
        if self.aborted:
            lines.append(f"aborted: {self.aborted}")
        stages = ", ".join(f"{k} {v:.1f} s" for k, v in self.seconds.items())
        lines.append(f"frames: {self.count('done')} done, {self.count('reused')} reused, "
                     f"{self.count('failed')} failed; {stages}")
        return "\n".join(lines)


def _dumps(report: dict[str, Any]) -> str:
    """JSON with a line per top-level key, and per frame, master or stack.

    Each line is encoded by the json module's C encoder (an indented dump uses its pure-Python one,
    seconds for a night of thousands of frames, and the report is written after every stage).

    Examples
    --------
    >>> text = _dumps({"ok": True, "frames": {"a.fits": {"status": "done"}, "b.fits": {}}})
    >>> print(text, end="")
    {
    "ok": true,
    "frames": {
      "a.fits": {"status": "done"},
      "b.fits": {}
    }
    }
    >>> json.loads(text)["frames"]["a.fits"]
    {'status': 'done'}
    """
    encode = json.JSONEncoder(default=str).encode
    lines = []
    for key, value in report.items():
        if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
            entries = ",\n".join(f"  {encode(str(name))}: {encode(entry)}" for name, entry in value.items())
            lines.append(f"{encode(key)}: {{\n{entries}\n}}")
        else:
            lines.append(f"{encode(key)}: {encode(value)}")
    return "{\n" + ",\n".join(lines) + "\n}\n"
