"""One progress display for every stage: a bar on a terminal, one line per stage elsewhere."""

import io
import re

import yaml

from ccdflow import synthetic as syn
from ccdflow.night import load_config, reduce_night
from ccdflow.night.progress import stage_progress


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_terminal_gets_a_bar_and_a_log_gets_one_line():
    tty, log = _Terminal(), io.StringIO()
    for stream in (tty, log):
        with stage_progress("lights", 4, stream=stream) as advance:
            for _ in range(4):
                advance(1)
    assert "lights" in tty.getvalue() and "4/4" in tty.getvalue() and "done in" not in tty.getvalue()
    assert re.fullmatch(r"lights: 4/4 done in \d+\.\d s\n", log.getvalue())


def test_quiet_shows_nothing():
    out = io.StringIO()
    with stage_progress("masters", 3, show=False, stream=out) as advance:
        advance(3)
    assert out.getvalue() == ""


def test_every_stage_of_a_night_reports_through_it(tmp_path, capsys):
    inst = syn.Instrument(ny=32, nx=32, n_overscan=4)
    night = syn.write_night(tmp_path, instrument=inst, filters=("V",), n_bias=3, n_dark=3,
                            dark_exptimes=(30.0,), n_flat=3, n_light=2)
    (tmp_path / "night.yaml").write_text(yaml.safe_dump({
        "input": {"filelist": night.filelist.name}, "output": "out", "stack_lights": True,
        "calibration": {"overscans": "header", "image_area": "header"}}))
    report = reduce_night(load_config(tmp_path / "night.yaml"), scheduler="synchronous",
                          echo=lambda *_: None, progress=True)
    assert report.ok
    lines = capsys.readouterr().err.splitlines()
    stages = [line.split(":")[0] for line in lines if re.match(r"^\w+: \d+/\d+ done in", line)]
    assert stages == ["masters", "lights", "stacks"]
    assert "masters: 3/3 done" in "\n".join(lines) and "lights: 2/2 done" in "\n".join(lines)
