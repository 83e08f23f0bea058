"""The ``ccdflow`` commands init, plan (run --dry-run), report, -v/-q after the subcommand, ``-m``."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from ccdflow.cli import main
from ccdflow.night import load_config


def _invoke(*args):
    return CliRunner(catch_exceptions=False).invoke(main, [str(a) for a in args])


@pytest.fixture
def night_yaml(tmp_path) -> Path:
    result = _invoke("synth", tmp_path / "night", "--size", "32", "--lights", "2")
    assert result.exit_code == 0, result.output
    return tmp_path / "night" / "night.yaml"


def test_init_writes_the_commented_template(tmp_path):
    result = _invoke("init", tmp_path / "new")
    assert result.exit_code == 0, result.output
    path = tmp_path / "new" / "night.yaml"
    assert f"ccdflow validate {path}" in result.stdout
    text = path.read_text()
    assert text.startswith("# ccdflow night configuration") and "# directory: raw/" in text
    config = load_config(path)  # valid as written, every key at its default
    assert config.filelist == (tmp_path / "new" / "night.csv").resolve()
    assert set(yaml.safe_load(text)) == {"input", "output", "calibration", "combine", "min_frames",
                                         "stack_lights", "keep_cube", "quality", "resume", "cluster",
                                         "storage_options"}


def test_init_keeps_an_existing_config_unless_forced(tmp_path):
    path = tmp_path / "night.yaml"
    path.write_text("mine\n")
    result = _invoke("init", tmp_path)
    assert result.exit_code == 2
    assert "exists" in result.stderr and "--force" in result.stderr
    assert path.read_text() == "mine\n"
    assert _invoke("init", tmp_path, "--force").exit_code == 0
    assert path.read_text().startswith("# ccdflow night configuration")


@pytest.mark.parametrize("command", [("plan",), ("run", "--dry-run")])
def test_plan_lists_the_masters_of_each_light_without_computing(night_yaml, command):
    result = _invoke(*command, night_yaml)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == ("masters to build: bias (5 frames), dark (10 frames), flat_V (5 frames), "
                        "flat_R (5 frames)")
    assert lines[1] == "frames to calibrate: 4"
    rows = {line.split()[0]: line.split() for line in lines[3:]}
    # synthetic lights expose 120 s; the master dark is a rate (1 s): scale 120
    assert rows["light_V_000.fits"] == ["light_V_000.fits", "V", "120", "bias", "dark", "x", "120",
                                        "flat_V", "lights/light_V_000.fits"]
    assert rows["light_R_001.fits"][-2:] == ["flat_R", "lights/light_R_001.fits"]
    assert not (night_yaml.parent / "reduced").exists()


def test_plan_without_darks_and_with_a_bad_frame(night_yaml):
    csv = night_yaml.parent / "night.csv"
    csv.write_text("\n".join(line for line in csv.read_text().splitlines() if "dark" not in line)
                   + "\nlight, raw/missing.fits\n")
    result = _invoke("plan", night_yaml)
    assert result.exit_code == 1
    row = next(line for line in result.stdout.splitlines() if line.startswith("light_V_001.fits"))
    assert row.split()[3:6] == ["bias", "-", "flat_V"]
    assert "warning: no dark frames: the dark step is skipped" in result.stdout
    assert "invalid:" in result.stderr and "missing.fits" in result.stderr


def test_plan_names_the_yaml_file_and_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("input:\n  filelist: night.csv\noutput: [reduced\n")
    result = _invoke("plan", path)
    assert result.exit_code == 2
    assert f"error: {path}: not valid YAML at line 4" in result.stderr
    assert "<unicode string>" not in result.stderr


def test_run_then_report_rebuilds_the_page(night_yaml):
    result = _invoke("run", "-q", night_yaml, "--scheduler", "synchronous")
    assert result.exit_code == 0, result.output
    assert result.stdout == ""  # quiet: errors only
    output = night_yaml.parent / "reduced"
    page = output / "report.html"
    first = page.read_text()
    page.unlink()
    result = _invoke("report", output)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"wrote {page}\n"
    assert page.read_text().count("<img") == first.count("<img") > 0


def test_report_of_a_folder_without_a_report(tmp_path):
    result = _invoke("report", tmp_path)
    assert result.exit_code == 2
    assert "no readable report.json" in result.stderr


@pytest.mark.parametrize(("flag", "level"), [("-v", logging.INFO), ("--verbose", logging.INFO),
                                              ("-q", logging.ERROR), ("--quiet", logging.ERROR)])
def test_verbosity_after_the_subcommand(night_yaml, flag, level):
    root = logging.getLogger()
    before = root.level
    try:
        result = _invoke("validate", flag, night_yaml)
        assert result.exit_code == 0, result.output
        assert root.level == level
    finally:
        root.setLevel(before)


def test_python_dash_m_is_the_command():
    result = subprocess.run([sys.executable, "-m", "ccdflow", "--help"], capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: ccdflow [OPTIONS] COMMAND")
    for command in ("init", "plan", "report", "run", "validate", "synth", "demo"):
        assert f"  {command} " in result.stdout
