"""Resume trusts nothing it cannot check: a damaged store or product is redone, never reused."""

from __future__ import annotations

import os

import numpy as np
import pytest
from astropy.io import fits
from badnight import Night, arrays, copy_night, truncate, write_clean_night

from ccdflow.errors import MissingCalibrationError
from ccdflow.night.store import Store

pytestmark = pytest.mark.slow  # one small night reduced per case, about 1.5 s each


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Night:
    night = write_clean_night(tmp_path_factory.mktemp("clean"))
    assert night.run().ok
    return night


@pytest.fixture
def done(clean, tmp_path) -> Night:
    night = copy_night(clean, tmp_path / "night")
    assert night.run().ok
    return night


def assert_same_products(night: Night, clean: Night) -> None:
    for folder in ("masters", "lights", "stacks"):
        names = sorted(p.name for p in (clean.output / folder).glob("*.fits"))
        assert names == sorted(p.name for p in (night.output / folder).glob("*.fits"))
        for name in names:
            for x, y in zip(arrays(night.output / folder / name), arrays(clean.output / folder / name),
                            strict=True):
                np.testing.assert_array_equal(x, y, err_msg=f"{folder}/{name}")


def statuses(report) -> dict[str, str]:
    out = {f"master {k}": v["status"] for k, v in report.masters.items()}
    out.update({os.path.basename(k): v["status"] for k, v in report.frames.items()})
    out.update({f"stack {k}": v["status"] for k, v in report.stacks.items()})
    return out


STORE = "reduced/work.zarr"
LIGHT = "light_V_001.fits"


@pytest.mark.parametrize("damage", ["truncate", "delete"])
def test_a_damaged_master_chunk_is_rebuilt_before_a_light_uses_it(damage, done, clean):
    chunk = done.root / STORE / "masters/bias/data/c/0/0"
    truncate(chunk) if damage == "truncate" else chunk.unlink()
    (done.output / "lights" / LIGHT).unlink()
    report = done.run()
    assert report.ok, report.failures
    got = statuses(report)
    assert got["master bias"] == "built" and got[LIGHT] == "done"
    assert_same_products(done, clean)


@pytest.mark.parametrize("entry", ["", "masters", "masters/bias", "masters/bias/data",
                                   "cubes/lights_V", "cubes/lights_V/image"])
def test_unreadable_store_metadata_is_removed_and_rebuilt(entry, done, clean):
    truncate(done.root / STORE / entry / "zarr.json")
    report = done.run()
    assert report.ok, report.failures
    if entry.count("/") >= 1:
        assert any("metadata cannot be read; removed" in w for w in report.warnings)
    if entry.startswith("masters/"):
        assert statuses(report)["master bias"] == "built"
    if entry.startswith("cubes"):
        assert statuses(report)[LIGHT] == "done"
    assert_same_products(done, clean)
    again = done.run()  # and the store is whole again: nothing left to redo
    assert set(statuses(again).values()) <= {"reused"}


def test_a_damaged_cube_slice_redoes_its_frame(done, clean):
    chunk = done.root / STORE / "cubes/lights_V/image/c/1/0/0"
    truncate(chunk)
    report = done.run()
    assert report.ok, report.failures
    got = statuses(report)
    assert got[LIGHT] == "done" and got["light_V_000.fits"] == "reused"
    assert any("cube lights_V" in w and "redone" in w for w in report.warnings)
    assert_same_products(done, clean)


@pytest.mark.parametrize("product, redone", [
    (f"lights/{LIGHT}", LIGHT), ("masters/flat_V.fits", "master flat_V"),
    ("stacks/V_SYNTH-FIELD.fits", "stack V_SYNTH-FIELD"),
])
def test_a_truncated_product_is_redone(product, redone, done, clean):
    path = done.output / product
    stat = path.stat()
    truncate(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    report = done.run()
    assert report.ok, report.failures
    assert statuses(report)[redone] in ("done", "built")
    assert_same_products(done, clean)


def _rewrite_pixels_keeping_size_and_time(path) -> None:
    stat = path.stat()
    with fits.open(path, mode="update", do_not_scale_image_data=True) as hdul:
        hdul[0].data[5, 5] += 1000
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size


@pytest.mark.parametrize("mode, expected", [("metadata", "reused"), ("content", "done")])
def test_resume_content_notices_rewritten_pixels_metadata_does_not(mode, expected, clean, tmp_path):
    night = copy_night(clean, tmp_path / "night")
    night.set_config(resume=mode)
    assert night.run().ok
    _rewrite_pixels_keeping_size_and_time(night.root / "raw" / LIGHT)
    report = night.run()
    assert statuses(report)[LIGHT] == expected
    assert statuses(report)["light_V_000.fits"] == "reused"


def test_reading_a_damaged_master_names_what_to_delete(done):
    chunk = done.root / STORE / "masters/dark/data/c/0/0"
    data = bytearray(chunk.read_bytes())
    data[-4:] = b"\x00\x01\x02\x03"
    chunk.write_bytes(bytes(data))
    with pytest.raises(MissingCalibrationError, match=r"master dark .* is damaged .*masters/dark"):
        Store(done.root / STORE).read_master("dark")
