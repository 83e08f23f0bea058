"""``ccdflow run`` exit statuses, each through a real process: 0, 1, 2, 3 and 130 on Ctrl-C."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from ccdflow import synthetic as syn
from ccdflow.cli import ExitStatus


def _night(folder: Path, *, size=32, output="reduced", raw="raw", scheduler="synchronous",
           n_light=2) -> Path:
    night = syn.write_night(folder, instrument=syn.Instrument(ny=size, nx=size, n_overscan=4),
                            n_bias=3, n_dark=3, dark_exptimes=(30.0,), n_flat=3, n_light=n_light,
                            filters=("V",), seed=2)
    if raw != "raw":
        (folder / "raw").rename(folder / raw)
        night.filelist.write_text(night.filelist.read_text().replace("raw/", f"{raw}/"))
    (folder / "night.yaml").write_text(yaml.safe_dump({
        "input": {"filelist": night.filelist.name}, "output": output,
        "calibration": {"overscans": "header", "image_area": "header"},
        "cluster": {"scheduler": scheduler}}))
    return folder / "night.yaml"


def _ccdflow(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "ccdflow", "run", *map(str, args)],
                          capture_output=True, text=True, timeout=300, **kwargs)


def test_all_done_is_0_and_a_failed_light_is_1(tmp_path):
    config = _night(tmp_path)
    assert _ccdflow(config).returncode == ExitStatus.ok == 0
    light = tmp_path / "raw" / "light_V_001.fits"
    light.write_bytes(light.read_bytes()[:3000])  # truncated
    run = _ccdflow(config)
    assert run.returncode == ExitStatus.frames_failed == 1
    assert "light_V_001.fits" in run.stderr
    report = json.loads((tmp_path / "reduced/report.json").read_text())
    assert report["ok"] is False and report["aborted"] is None
    assert report["frames"][str(tmp_path / "raw/light_V_000.fits")]["status"] != "failed"


def test_an_input_overwrite_is_2_before_any_work(tmp_path):
    config = _night(tmp_path, output=".", raw="lights")
    run = _ccdflow(config)
    assert run.returncode == ExitStatus.config_error == 2
    assert run.stderr.startswith("error: refusing to write ") and "it is the input" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "masters").exists() and not (tmp_path / "report.json").exists()


def test_a_full_disk_is_3_with_one_line(tmp_path, mount_tmpfs):
    disk = mount_tmpfs("160k")
    run = _ccdflow(_night(tmp_path, size=64, output=str(disk / "reduced")))
    assert run.returncode == ExitStatus.aborted == 3
    lines = run.stderr.strip().splitlines()
    assert lines[-1].startswith("aborted: disk full") and "[Errno 28]" in lines[-1]
    report = json.loads((disk / "reduced/report.json").read_text())
    assert report["ok"] is False and report["aborted"].startswith("disk full")


def test_ctrl_c_is_130_and_says_a_rerun_resumes(tmp_path):
    config = _night(tmp_path, size=256, n_light=6, scheduler="threads")
    proc = subprocess.Popen([sys.executable, "-m", "ccdflow", "run", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = tmp_path / "reduced/masters/bias.fits"
    deadline = time.monotonic() + 120
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == ExitStatus.interrupted == 130, err
    assert err.strip().splitlines()[-1].startswith("interrupted:") and "resume" in err
    report = json.loads((tmp_path / "reduced/report.json").read_text())
    assert report["ok"] is False and report["aborted"].startswith("interrupted")
    assert _ccdflow(config).returncode == 0  # the rerun finishes the night
