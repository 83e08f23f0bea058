"""Every Python example of the README runs as written, in a folder holding the files it names."""

import re
import socket
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from distributed import LocalCluster

from ccdflow.synthetic import Instrument, write_night

README = Path(__file__).parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def _seed_files(folder: Path) -> None:
    """The files of the Calibrator example: 4096 x 4116 raw frames, image-area masters."""
    rng = np.random.default_rng(0)
    (folder / "masters").mkdir()
    (folder / "reduced" / "masters").mkdir(parents=True)
    for name in ("raw1.fits", "raw2.fits"):
        raw = rng.normal(1000.0, 5.0, (4116, 4096)).astype(np.uint16)
        fits.writeto(folder / name, raw, fits.Header([("EXPTIME", 30.0)]))
    fits.writeto(folder / "masters/master_bias1.fits", np.zeros((4096, 4096), np.float32))
    fits.writeto(folder / "masters/master_dark3.fits", np.full((4096, 4096), 0.1, np.float32),
                 fits.Header([("EXPTIME", 1.0)]))
    fits.writeto(folder / "reduced/masters/bias.fits", np.full((4116, 4096), 990.0, np.float32))
    # a frame shaped as Kast's blue arm: two amplifiers side by side, their overscans after them
    kast = rng.normal(943.0, 3.0, (350, 2112))
    kast[:, 1024:2048] += 22.0
    kast[:, 2080:2111] += 22.0
    fits.writeto(folder / "kast_raw.fits", kast.astype(np.uint16), fits.Header([("EXPTIME", 30.0)]))


def _free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def test_the_readme_has_the_examples_this_test_runs():
    assert len(BLOCKS) == 6


def test_every_python_example_runs_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _seed_files(tmp_path)
    night = write_night(tmp_path, instrument=Instrument(ny=48, nx=48, n_overscan=8),
                        filters=("V",), n_bias=3, n_dark=3, dark_exptimes=(30.0,), n_flat=3,
                        n_light=2)
    assert night.filelist == tmp_path / "night.csv"
    (tmp_path / "night.yaml").write_text(
        "input: {filelist: night.csv}\noutput: reduced\n"
        "calibration: {overscans: header, image_area: header}\n")
    if not _free(8786):
        pytest.skip("port 8786, which the README's cluster example names, is in use")
    with LocalCluster(scheduler_port=8786, n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address=None):
        namespace: dict = {}
        for block in BLOCKS:
            exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102
    assert fits.getheader("calib2.fits")["GAIN"] == 8.0
    assert namespace["ccd"].unit == "adu" and namespace["count"].ndim == 2
    assert Path("reduced.fits").exists() and Path("reduced.html").exists()
    assert namespace["report"].ok
    kast = fits.getdata("kast_calibrated.fits")
    assert kast.shape == (350, 2048) and fits.getheader("kast_calibrated.fits")["BUNIT"] == "electron"
    assert abs(kast[:, :1024].mean() - kast[:, 1024:].mean()) < 0.5  # the 22 ADU step is gone
