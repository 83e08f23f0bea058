"""A light whose raw header has a card astropy reads but would not write as it is."""

from __future__ import annotations

from pathlib import Path

import yaml
from astropy.io import fits

from ccdflow import synthetic as syn
from ccdflow.night import load_config, reduce_night

CALIBRATION = {"overscans": "header", "image_area": "header", "gain": "header",
               "read_noise": "header"}


def test_a_lowercase_keyword_in_a_raw_light_is_fixed_in_its_product(tmp_path):
    night = syn.write_night(tmp_path, instrument=syn.Instrument(ny=32, nx=40, n_overscan=4),
                            filters=("V",), n_bias=3, n_dark=3, dark_exptimes=(60.0,), n_flat=3,
                            n_light=2, seed=3)
    light = next(Path(p) for p in night.files["light"])
    raw = bytearray(light.read_bytes())
    end = raw.index(b"END" + b" " * 77)
    # one more card where END was, END after it (the header block has room for both)
    raw[end:end + 160] = b"observer= 'someone'".ljust(80) + b"END".ljust(80)
    light.write_bytes(bytes(raw))
    assert fits.getheader(light)["OBSERVER"] == "someone"
    config = tmp_path / "night.yaml"
    config.write_text(yaml.safe_dump({"input": {"filelist": "night.csv"}, "output": "reduced",
                                      "calibration": CALIBRATION}))
    report = reduce_night(load_config(config), scheduler="synchronous", echo=lambda *_: None,
                          progress=False)
    assert report.ok, report.failures
    product = tmp_path / "reduced" / "lights" / light.name
    header = fits.getheader(product)
    assert header["OBSERVER"] == "someone"
    text = product.read_bytes()[:2880 * 4]
    assert b"OBSERVER= 'someone '" in text and b"observer" not in text  # written in upper case
