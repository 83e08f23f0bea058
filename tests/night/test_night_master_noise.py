"""A night's masters carry the frames' CCD noise model and record what ran."""

from pathlib import Path

import pytest
import yaml
from astropy.io import fits

from ccdflow import synthetic as syn
from ccdflow.io.products import read_master
from ccdflow.night import load_config, reduce_night
from ccdflow.night.store import Store

CALIBRATION = {"overscans": "header", "overscan_method": "median_per_line",
               "image_area": "header", "gain": "header", "read_noise": "header"}


def _reduce(folder: Path, **config) -> tuple[syn.Instrument, Path]:
    inst = syn.Instrument(ny=40, nx=40, n_overscan=8)
    syn.write_night(folder, instrument=inst, filters=("V",), n_bias=5, n_dark=3,
                    dark_exptimes=(60.0,), n_flat=3, n_light=1, seed=4)
    data = {"input": {"filelist": "night.csv"}, "output": "reduced",
            "calibration": CALIBRATION, "cluster": {"scheduler": "synchronous"}, **config}
    (folder / "night.yaml").write_text(yaml.safe_dump(data))
    report = reduce_night(load_config(folder / "night.yaml"), echo=lambda *_: None,
                          progress=False)
    assert report.ok, report.failures
    return inst, folder / "reduced"


def test_masters_use_the_frames_noise_model(tmp_path):
    inst, out = _reduce(tmp_path)
    bias = fits.getheader(out / "masters/bias.fits")
    dark = fits.getheader(out / "masters/dark.fits")
    flat = fits.getheader(out / "masters/flat_V.fits")
    assert (bias["CCLIP"], bias["CCLIPRUN"], bias["CERRRUN"]) == ("auto", "ccdclip", "model")
    assert bias["CGAIN"] == pytest.approx(inst.gain)
    assert bias["CRDNOISE"] == pytest.approx(inst.read_noise)
    assert (bias["CNKEEP"], bias["CSENSNS"]) == (1, 0.0)
    # rates: a 60 s dark has gain * 60 electrons per ADU/s
    assert dark["CCLIPRUN"] == "ccdclip" and dark["CGAIN"] == pytest.approx(inst.gain * 60.0)
    assert dark["CRDNOISE"] == pytest.approx(inst.read_noise)
    assert dark["DKINVEXP"] == pytest.approx(1 / 60.0)
    # flats are scaled per frame: the pooled model, no CCD model
    assert (flat["CCLIPRUN"], flat["CGAIN"], flat["CERRRUN"]) == ("pooled", "none", "model")
    assert read_master(out / "masters/dark.fits").inv_exptime == pytest.approx(1 / 60.0)
    stored = Store(out / "work.zarr")
    assert stored.read_master("dark").inv_exptime == pytest.approx(1 / 60.0)
    assert read_master(out / "masters/bias.fits").inv_exptime is None


def test_the_configs_clip_wins(tmp_path):
    _, out = _reduce(tmp_path, combine={"bias": {"clip": "sigma", "stdfunc": "std"}})
    bias = fits.getheader(out / "masters/bias.fits")
    assert (bias["CCLIPRUN"], bias["CGAIN"], bias["CERRRUN"]) == ("sigma", "none", "empirical")
    assert fits.getheader(out / "masters/dark.fits")["CCLIPRUN"] == "ccdclip"
