"""The ``ccdflow`` command: version, synth, validate, run (and resume), demo as a real process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from distributed import LocalCluster

from ccdflow import synthetic
from ccdflow._version import __version__
from ccdflow.cli import main
from ccdflow.night import load_config


def _invoke(*args: str):
    # exceptions propagate: a traceback is a bug, not an exit code
    return CliRunner(catch_exceptions=False).invoke(main, [str(a) for a in args])


def _synth(folder: Path, *, lights: int = 2) -> Path:
    result = _invoke("synth", folder, "--size", "32", "--lights", str(lights))
    assert result.exit_code == 0, result.output
    return folder / "night.yaml"


@pytest.fixture
def night_yaml(tmp_path) -> Path:
    return _synth(tmp_path / "night")


def test_version():
    result = _invoke("--version")
    assert result.exit_code == 0
    assert result.stdout == f"ccdflow, version {__version__}\n"


def test_help_lists_the_commands():
    result = _invoke("--help")
    assert result.exit_code == 0
    for command in ("run", "validate", "synth", "demo"):
        assert command in result.stdout


def test_synth_writes_a_night(tmp_path):
    folder = tmp_path / "night"
    result = _invoke("synth", folder, "--size", "32", "--lights", "2")
    assert result.exit_code == 0
    assert f"ccdflow run {folder / 'night.yaml'}" in result.stdout
    raw = sorted(p.name for p in (folder / "raw").iterdir())
    assert [n for n in raw if n.startswith("light")] == [
        "light_R_000.fits", "light_R_001.fits", "light_V_000.fits", "light_V_001.fits"]
    assert any(n.startswith("bias") for n in raw) and any(n.startswith("flat_V") for n in raw)
    assert (folder / "night.csv").read_text().startswith("#")
    data = yaml.safe_load((folder / "night.yaml").read_text())
    assert data["input"] == {"filelist": "night.csv"}
    config = load_config(folder / "night.yaml")
    assert config.filelist == (folder / "night.csv").resolve()
    assert config.calibration.overscans == "header"


def test_validate_a_good_night(night_yaml):
    result = _invoke("validate", night_yaml)
    assert result.exit_code == 0, result.output
    assert "masters: bias (5), dark (10), flat_V (5), flat_R (5)" in result.stdout
    assert "frames to calibrate: 4" in result.stdout
    assert result.stdout.rstrip().endswith("config is valid")
    assert not (night_yaml.parent / "reduced").exists()  # nothing computed or written


def test_validate_names_an_unknown_key(night_yaml):
    data = yaml.safe_load(night_yaml.read_text())
    data["calibration"]["overscan"] = "header"
    night_yaml.write_text(yaml.safe_dump(data))
    result = _invoke("validate", night_yaml)
    assert result.exit_code == 2
    assert "error: calibration.overscan: unknown key" in result.stderr


def test_validate_a_missing_config(tmp_path):
    result = _invoke("validate", tmp_path / "nothere.yaml")
    assert result.exit_code == 2
    assert f"error: {tmp_path / 'nothere.yaml'}: cannot read the config" in result.stderr


def test_validate_names_a_truncated_light(night_yaml):
    light = night_yaml.parent / "raw" / "light_R_001.fits"
    light.write_bytes(light.read_bytes()[:3000])
    result = _invoke("validate", night_yaml)
    assert result.exit_code == 1
    assert f"invalid: {light.resolve()}: FrameReadError" in result.stderr
    assert "frames to calibrate: 3" in result.stdout
    assert "config is valid" not in result.output


def test_run_and_resume(night_yaml):
    result = _invoke("run", night_yaml, "--scheduler", "synchronous")
    assert result.exit_code == 0, result.output
    out = night_yaml.parent / "reduced"
    for name in ("bias", "dark", "flat_V", "flat_R"):
        assert (out / "masters" / f"{name}.fits").is_file()
    assert sorted(p.name for p in (out / "lights").glob("*.fits")) == [
        "light_R_000.fits", "light_R_001.fits", "light_V_000.fits", "light_V_001.fits"]
    assert len(list((out / "stacks").glob("*.fits"))) == 2  # synth asks for stacks, one per filter
    assert (out / "work.zarr").is_dir()
    report = json.loads((out / "report.json").read_text())
    assert report["ok"] is True and report["failures"] == {}
    assert {f["status"] for f in report["frames"].values()} == {"done"}
    assert "frames: 4 done, 0 reused, 0 failed" in result.stdout

    again = _invoke("run", night_yaml, "--scheduler", "synchronous")
    assert again.exit_code == 0, again.output
    assert "frames: 0 done, 4 reused, 0 failed" in again.stdout
    report = json.loads((out / "report.json").read_text())
    assert len(report["frames"]) == 4
    assert {f["status"] for f in report["frames"].values()} == {"reused"}
    assert {m["status"] for m in report["masters"].values()} == {"reused"}


def test_run_reports_a_bad_light_and_finishes_the_rest(night_yaml):
    light = night_yaml.parent / "raw" / "light_V_000.fits"
    light.write_bytes(b"not a FITS file" * 300)
    result = _invoke("run", night_yaml, "--scheduler", "synchronous")
    assert result.exit_code == 1
    assert "1 failure(s):" in result.stderr and str(light.resolve()) in result.stderr
    out = night_yaml.parent / "reduced"
    assert len(list((out / "lights").glob("*.fits"))) == 3
    report = json.loads((out / "report.json").read_text())
    assert report["ok"] is False and list(report["failures"]) == [str(light.resolve())]


def test_run_rejects_a_bad_scheduler(night_yaml):
    result = _invoke("run", night_yaml, "--scheduler", "thread")
    assert result.exit_code == 2
    assert "error: --scheduler: expected null, 'threads'" in result.stderr
    assert not (night_yaml.parent / "reduced").exists()


def test_run_writes_a_performance_report_on_a_cluster(tmp_path):
    synthetic.write_night(tmp_path, instrument=synthetic.Instrument(ny=16, nx=16, n_overscan=4),
                          n_bias=3, n_dark=0, n_flat=0, n_light=1, filters=("V",))
    night_yaml = tmp_path / "night.yaml"
    night_yaml.write_text(yaml.safe_dump({"input": {"filelist": "night.csv"}, "output": "reduced",
                                          "calibration": {"overscans": "header",
                                                          "image_area": "header"}}))
    page = tmp_path / "perf" / "night.html"
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tcp://",
                      dashboard_address=":0") as cluster:
        result = _invoke("run", night_yaml, "--scheduler", cluster.scheduler_address,
                         "--performance-report", page)
    assert result.exit_code == 0, result.output
    assert f"dask performance report: {page}" in result.stdout
    text = page.read_text()
    assert "<title>Dask Performance Report</title>" in text and "Task Stream" in text


def test_run_refuses_a_performance_report_without_a_cluster(night_yaml, tmp_path):
    result = _invoke("run", night_yaml, "--scheduler", "threads", "--performance-report",
                     tmp_path / "perf.html")
    assert result.exit_code == 2
    assert "error: performance_report: dask writes a performance report only on a " in result.stderr
    assert not (tmp_path / "perf.html").exists() and not (night_yaml.parent / "reduced").exists()


def test_run_a_missing_config(tmp_path):
    result = _invoke("run", tmp_path / "nothere.yaml", "--scheduler", "synchronous")
    assert result.exit_code == 2
    assert "cannot read the config" in result.stderr


def test_demo_as_a_real_process(tmp_path):
    folder = tmp_path / "demo"
    done = subprocess.run(
        [sys.executable, "-m", "ccdflow.cli", "demo", "--directory", str(folder), "--size", "32",
         "--scheduler", "synchronous"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert f"synthetic night in {folder}" in done.stdout
    report = json.loads((folder / "reduced" / "report.json").read_text())
    assert report["ok"] is True
    assert len(report["frames"]) == 8  # 4 lights in each of V and R
    assert (folder / "reduced" / "masters" / "flat_R.fits").is_file()
