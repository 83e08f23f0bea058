"""A whole synthetic night on disk: raw frames of every type and the ``night.csv`` file list."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from ccdflow.synthetic.frames import FRAME_KINDS, Instrument, Truth, make_frame, make_truth

__all__ = ["SyntheticNight", "write_night"]


@dataclass(frozen=True)
class SyntheticNight:
    """A synthetic night written to disk by `write_night`.

    Attributes
    ----------
    directory : pathlib.Path
        Root folder; raw frames are under ``directory / "raw"``.
    instrument, truth : Instrument, Truth
        The detector and its signatures.
    files : dict of str to list of pathlib.Path
        Paths per frame type (``"bias"``, ``"dark"``, ``"flat"``, ``"light"``).
    filelist : pathlib.Path
        The ``night.csv`` file list (``type, path`` lines, paths relative to its folder).

    Examples
    --------
    >>> import tempfile
    >>> night = write_night(tempfile.mkdtemp(), instrument=Instrument(ny=8, nx=8, n_overscan=2),
    ...                     n_bias=1, n_dark=0, n_flat=0, n_light=0)
    >>> night.filelist.read_text().splitlines()[1]
    'bias, raw/bias_000.fits'
    """

    directory: Path
    instrument: Instrument
    truth: Truth
    files: dict[str, list[Path]]
    filelist: Path


def write_night(directory: str | Path, *, instrument: Instrument = Instrument(),
                filters: Sequence[str] = ("V", "R"), n_bias: int = 5, n_dark: int = 5,
                dark_exptimes: Sequence[float] = (60.0, 120.0), n_flat: int = 5,
                flat_exptime: float = 5.0, n_light: int = 3, light_exptime: float = 120.0,
                seed: int = 0) -> SyntheticNight:
    """Write a night of raw frames and its ``night.csv`` file list.

    Parameters
    ----------
    directory : str or pathlib.Path
        Output folder, created if needed; existing files of the same names are overwritten.
    instrument : Instrument
        The detector.
    filters : sequence of str
        Filters of the flats and lights.
    n_bias, n_dark, n_flat, n_light : int
        Number of biases, of darks per exposure time, of flats and of lights per filter. Flat levels
        vary within 16000-24000 ADU like twilight flats; all lights show the same star field.
    dark_exptimes : sequence of float
        Dark exposure times in seconds.
    flat_exptime, light_exptime : float
        Flat and light exposure times in seconds.
    seed : int
        Master seed; the truth uses it and every frame gets its own seed derived from it.

    Returns
    -------
    SyntheticNight
        Paths, instrument and truth of the night.

    Examples
    --------
    >>> import tempfile
    >>> night = write_night(tempfile.mkdtemp(), instrument=Instrument(ny=16, nx=16, n_overscan=4),
    ...                     n_bias=1, n_dark=1, dark_exptimes=(30.0,), n_flat=1, n_light=1)
    >>> [p.name for p in night.files["dark"]]
    ['dark_030s_000.fits']
    """
    root = Path(directory)
    (root / "raw").mkdir(parents=True, exist_ok=True)
    truth = make_truth(instrument, filters=filters, seed=seed)
    plan = night_plan(filters=filters, n_bias=n_bias, n_dark=n_dark, dark_exptimes=dark_exptimes,
                      n_flat=n_flat, flat_exptime=flat_exptime, n_light=n_light,
                      light_exptime=light_exptime, seed=seed)
    files: dict[str, list[Path]] = {kind: [] for kind in FRAME_KINDS}
    for entry in plan:
        frame = make_frame(truth, imagetyp=entry.kind, seed=entry.seed, date_obs=entry.date_obs,
                           **entry.kwargs)
        path = root / "raw" / f"{entry.stem}.fits"
        frame.hdu.writeto(path, overwrite=True)
        files[entry.kind].append(path)
    return SyntheticNight(directory=root, instrument=instrument, truth=truth, files=files,
                          filelist=write_filelist(root, files))


@dataclass(frozen=True)
class PlannedFrame:
    """One frame of a synthetic night: its type, file stem, seed, date and `make_frame` keywords."""

    kind: str
    stem: str
    seed: int
    date_obs: str
    kwargs: dict[str, Any]


def night_plan(*, filters: Sequence[str], n_bias: int, n_dark: int,
               dark_exptimes: Sequence[float], n_flat: int, flat_exptime: float, n_light: int,
               light_exptime: float, seed: int) -> list[PlannedFrame]:
    """The frames of a synthetic night in observing order, each with its own seed and date.

    Flats get a ``flat_level`` of 16000-24000 (like twilight flats); every frame's seed derives
    from `seed` and its place in the night, and the clock advances by each exposure plus 20 s.
    Every synthetic night (single- or multi-amplifier) is planned here, so they list alike.

    Examples
    --------
    >>> plan = night_plan(filters=("V",), n_bias=1, n_dark=1, dark_exptimes=(30.0,), n_flat=1,
    ...                   flat_exptime=5.0, n_light=1, light_exptime=60.0, seed=0)
    >>> [(p.kind, p.stem) for p in plan]
    [('bias', 'bias_000'), ('dark', 'dark_030s_000'), ('flat', 'flat_V_000'), ('light', 'light_V_000')]
    """
    rng = np.random.default_rng([seed, 1])
    items: list[tuple[str, str, dict[str, Any]]] = []
    items += [("bias", f"bias_{i:03d}", {}) for i in range(n_bias)]
    for t in dark_exptimes:
        items += [("dark", f"dark_{_tag(t)}_{i:03d}", dict(exptime=t)) for i in range(n_dark)]
    for f in filters:
        items += [("flat", f"flat_{_safe(f)}_{i:03d}",
                   dict(exptime=flat_exptime, filter=f, flat_level=20000 * rng.uniform(0.8, 1.2)))
                  for i in range(n_flat)]
    for f in filters:
        items += [("light", f"light_{_safe(f)}_{i:03d}", dict(exptime=light_exptime, filter=f))
                  for i in range(n_light)]
    clock = datetime(2024, 1, 1, 16) + timedelta(days=int(seed) % 365)
    plan = []
    for index, (kind, stem, kwargs) in enumerate(items):
        child = int(np.random.SeedSequence([seed, index]).generate_state(1)[0])
        plan.append(PlannedFrame(kind, stem, child, clock.isoformat(timespec="milliseconds"),
                                 kwargs))
        clock += timedelta(seconds=float(kwargs.get("exptime", 0.0)) + 20.0)
    return plan


def write_filelist(root: Path, files: dict[str, list[Path]]) -> Path:
    """Write ``root / "night.csv"`` listing `files` by type, paths relative to `root`."""
    filelist = root / "night.csv"
    lines = ["# ccdflow synthetic night"]
    lines += [f"{kind}, {p.relative_to(root).as_posix()}" for kind in FRAME_KINDS for p in files[kind]]
    filelist.write_text("\n".join(lines) + "\n")
    return filelist


def _tag(seconds: float) -> str:
    value = float(seconds)
    return f"{int(value):03d}s" if value.is_integer() else f"{value:g}s".replace(".", "p")


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in str(name))
