"""The plan's header reading: parallel, in order, parsed once, cached for reruns of the same files."""

from __future__ import annotations

import gc
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from ccdflow.io.filelist import ListedFrame
from ccdflow.night import run as night_run
from ccdflow.night.config import NightConfig
from ccdflow.night.frames import describe_frames
from ccdflow.night.header_cache import CACHE_NAME
from ccdflow.night.run import plan_night


def _write(path: Path, *, exptime: float, obj: str) -> None:
    header = fits.Header([("IMAGETYP", "light"), ("EXPTIME", exptime), ("OBJECT", obj)])
    fits.PrimaryHDU(np.zeros((8, 6), dtype=np.uint16), header=header).writeto(path, overwrite=True)


def _night(tmp_path: Path, n: int = 4) -> NightConfig:
    raw = tmp_path / "raw"
    raw.mkdir()
    for i in range(n):
        _write(raw / f"l{i}.fits", exptime=10.0 + i, obj=f"field{i}")
    (raw / "broken.fits").write_bytes(b"SIMPLE  = not a FITS file")
    lines = [f"light, raw/l{i}.fits" for i in range(n)] + ["light, raw/broken.fits"]
    (tmp_path / "night.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "out").mkdir()
    return NightConfig(filelist=tmp_path / "night.csv", output=tmp_path / "out")


def _exptimes(config: NightConfig) -> dict[str, float]:
    return {fp.frame.path.name: fp.frame.exptime for fp in plan_night(config).frames}


def test_rerun_uses_cache_for_unchanged_files_and_rereads_changed_ones(tmp_path):
    config = _night(tmp_path)
    assert _exptimes(config)["l1.fits"] == 11.0
    assert (config.output / CACHE_NAME).exists()
    path = tmp_path / "raw" / "l1.fits"
    st = os.stat(path)
    _write(path, exptime=99.0, obj="field1")  # same size: only a card's value differs
    assert os.stat(path).st_size == st.st_size
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert _exptimes(config)["l1.fits"] == 11.0  # the cached header, not the file's
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert _exptimes(config)["l1.fits"] == 99.0


def test_an_unchanged_night_leaves_the_cache_unwritten_and_a_new_frame_rewrites_it(tmp_path):
    config = _night(tmp_path)
    plan_night(config)
    cache = config.output / CACHE_NAME
    inode, mtime = cache.stat().st_ino, cache.stat().st_mtime_ns
    plan_night(config)
    assert (cache.stat().st_ino, cache.stat().st_mtime_ns) == (inode, mtime)  # not rewritten
    _write(tmp_path / "raw" / "l9.fits", exptime=5.0, obj="new")
    with open(config.filelist, "a") as f:
        f.write("light, raw/l9.fits\n")
    assert _exptimes(config)["l9.fits"] == 5.0
    assert cache.stat().st_ino != inode  # rewritten (atomically) with the new frame
    assert _exptimes(config)["l9.fits"] == 5.0


def test_damaged_cache_is_ignored_and_rewritten(tmp_path):
    config = _night(tmp_path)
    expected = _exptimes(config)
    cache = config.output / CACHE_NAME
    for damage in ('{"format": 1, "frames": [{"key": 3}]', "[1, 2]", '{"frames": "x"}'):
        cache.write_text(damage)
        assert _exptimes(config) == expected
        assert cache.read_text() != damage
        assert str(tmp_path / "raw" / "l3.fits") in cache.read_text()


def test_no_cache_without_an_output_folder(tmp_path):
    config = _night(tmp_path)
    config.output.rmdir()
    assert _exptimes(config)["l0.fits"] == 10.0
    assert not config.output.exists()


def test_parallel_read_equals_serial_read_in_order(tmp_path):
    config = _night(tmp_path, n=12)
    listed = [ListedFrame(type="light", path=tmp_path / "raw" / f"l{i}.fits") for i in range(12)]
    listed.insert(5, ListedFrame(type="light", path=tmp_path / "raw" / "broken.fits"))
    assert config.output.is_dir()
    serial = describe_frames(listed, threads=1)
    parallel = describe_frames(listed, threads=8)
    assert parallel == serial
    assert [f.path for f in parallel] == [e.path for e in listed]
    assert [f.exptime for f in parallel if f.error is None] == [10.0 + i for i in range(12)]


def test_unreadable_files_are_failures_with_reasons(tmp_path):
    config = _night(tmp_path)
    (tmp_path / "raw" / "l2.fits").unlink()
    plan = plan_night(config)
    assert set(plan.failures) == {str(tmp_path / "raw" / n) for n in ("broken.fits", "l2.fits")}
    assert all(reason.startswith("FrameReadError") for reason in plan.failures.values())
    plan_night(config)  # failures are not cached: still failures, still read
    assert set(plan_night(config).failures) == set(plan.failures)


def test_header_parsed_once_and_frames_pickle_without_it(tmp_path):
    _night(tmp_path, n=1)
    [frame] = describe_frames([ListedFrame(type="light", path=tmp_path / "raw" / "l0.fits")])
    assert frame.fits_header() is frame.fits_header()
    assert frame.fits_header()["OBJECT"] == "field0"
    shipped = pickle.loads(pickle.dumps(frame))
    assert shipped == frame and "_parsed_header" not in shipped.__dict__
    assert shipped.fits_header()["EXPTIME"] == 10.0


def test_a_rerun_parses_no_header_and_plans_the_same(tmp_path, monkeypatch):
    config = _night(tmp_path, n=6)
    first = plan_night(config)

    def no_parsing(*args, **kwargs):
        raise AssertionError("a header parsed in the plan of an unchanged night")

    with monkeypatch.context() as patch:
        patch.setattr(fits.Header, "fromstring", no_parsing)
        patch.setattr(fits.Card, "fromstring", no_parsing)
        again = plan_night(config)
    assert [fp.frame for fp in again.frames] == [fp.frame for fp in first.frames]
    assert [fp.params for fp in again.frames] == [fp.params for fp in first.frames]
    assert [fp.key for fp in again.frames] == [fp.key for fp in first.frames]
    assert again.failures == first.failures and again.warnings == first.warnings


def test_planning_reads_only_the_values_kept_for_it(tmp_path):
    _night(tmp_path, n=1)
    [frame] = describe_frames([ListedFrame(type="light", path=tmp_path / "raw" / "l0.fits")])
    values = frame.plan_header()
    assert values["EXPTIME"] == 10.0 and values.get("GAIN") is None
    assert "OBJECT" in values and "IMAGETYP" not in dict(values)
    with pytest.raises(RuntimeError, match="IMAGETYP is not among the header keys kept"):
        values.get("IMAGETYP")
    assert frame.fits_header()["IMAGETYP"] == "light"  # the whole header is still shipped


def test_the_collector_is_paused_only_while_planning(tmp_path, monkeypatch):
    config = _night(tmp_path, n=2)
    seen = []
    real = night_run.make_plan
    monkeypatch.setattr(night_run, "make_plan", lambda *a, **k: seen.append(gc.isenabled()) or real(*a, **k))
    assert gc.isenabled()
    plan_night(config)
    assert seen == [False] and gc.isenabled()
    gc.disable()
    try:
        plan_night(config)
        assert not gc.isenabled()  # left as the caller had it
    finally:
        gc.enable()
