"""A small clean synthetic night, copied per case, and the tools to damage a copy and check a run.

Shared by the bad-input and damaged-store tests. The frames are edited with plain astropy and
byte surgery, never through ccdflow, so that a damage cannot be undone by the code under test.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from astropy.io import fits

from ccdflow import synthetic as syn
from ccdflow.night import load_config, reduce_night

SIZE = 32
CALIBRATION = {"overscans": "header", "overscan_method": "median", "image_area": "header",
               "gain": "header", "read_noise": "header"}


@dataclass
class Night:
    """A copy of the clean night: its folder, raw files by type, and the config path."""

    root: Path
    files: dict[str, list[Path]]
    config: Path = field(init=False)

    def __post_init__(self):
        self.config = self.root / "night.yaml"

    @property
    def output(self) -> Path:
        return self.root / "reduced"

    def set_config(self, **changes) -> None:
        data = yaml.safe_load(self.config.read_text())
        for key, value in changes.items():
            if key == "calibration":
                data["calibration"].update(value)
            else:
                data[key] = value
        self.config.write_text(yaml.safe_dump(data))

    def run(self):
        return reduce_night(load_config(self.config), scheduler="synchronous",
                            echo=lambda *_: None, progress=False)


def write_clean_night(folder: Path) -> Night:
    """3 biases, 3 darks (30 s), 3 V flats, 3 V lights of 32x32 pixels (+ 8 overscan columns)."""
    inst = syn.Instrument(ny=SIZE, nx=SIZE, n_overscan=8)
    night = syn.write_night(folder, instrument=inst, filters=("V",), n_bias=3, n_dark=3,
                            dark_exptimes=(30.0,), n_flat=3, n_light=3, seed=11)
    config = {"input": {"filelist": "night.csv"}, "output": "reduced",
              "calibration": dict(CALIBRATION), "stack_lights": True}
    (folder / "night.yaml").write_text(yaml.safe_dump(config))
    return Night(folder, {k: list(v) for k, v in night.files.items()})


def copy_night(clean: Night, folder: Path) -> Night:
    """A fresh copy of the clean night's inputs (no outputs)."""
    shutil.copytree(clean.root / "raw", folder / "raw")
    for name in ("night.csv", "night.yaml"):
        shutil.copy(clean.root / name, folder / name)
    files = {k: [folder / "raw" / p.name for p in v] for k, v in clean.files.items()}
    return Night(folder, files)


def tree_hashes(folder: Path, *, skip: Path | None = None) -> dict[str, str]:
    """SHA-1 of every file under ``folder`` (except under ``skip``)."""
    out = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not (skip and skip in path.parents):
            out[str(path.relative_to(folder))] = hashlib.sha1(path.read_bytes()).hexdigest()
    return out


def arrays(path: Path) -> list[np.ndarray]:
    with fits.open(path) as hdul:
        return [np.array(h.data) for h in hdul]


def report_json(night: Night) -> dict:
    return json.loads((night.output / "report.json").read_text())


# -- damaging frames --------------------------------------------------------------------------


def set_card_bytes(path: Path, key: str, value_text: str) -> None:
    """Rewrite one header card's bytes (value field as given, possibly unparsable)."""
    raw = bytearray(path.read_bytes())
    card = f"{key:<8}= {value_text}".ljust(80).encode("ascii")
    for start in range(0, 2880 * 4, 80):
        if raw[start:start + 8] == f"{key:<8}".encode():
            raw[start:start + 80] = card
            path.write_bytes(bytes(raw))
            return
    raise AssertionError(f"{key} not found in {path}")


def edit_header(path: Path, **cards) -> None:
    """Set (value) or delete (None) header cards, keeping the stored integers as they are."""
    with fits.open(path, do_not_scale_image_data=True) as hdul:
        header = hdul[0].header.copy()
        data = np.array(hdul[0].data)
    for key, value in cards.items():
        if value is None:
            header.remove(key, ignore_missing=True)
        else:
            header[key] = value
    fits.PrimaryHDU(data, header=header).writeto(path, overwrite=True, output_verify="silentfix")


def replace_data(path: Path, data: np.ndarray) -> None:
    """Same header (but data type cards), new pixel values."""
    header = fits.getheader(path)
    for key in ("BZERO", "BSCALE"):
        header.remove(key, ignore_missing=True)
    hdu = fits.PrimaryHDU(data, header=header)
    if data.dtype == np.uint16:
        hdu.scale("int16", bzero=32768)
    hdu.writeto(path, overwrite=True)


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])
