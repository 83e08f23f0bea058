"""The record table: written by the client in batches, it survives reruns, and a batch lost to a
killed run only redoes its frames."""

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml
from astropy.io import fits

from ccdflow import synthetic as syn
from ccdflow.night import load_config, reduce_night
from ccdflow.night.records import RECORDS_NAME, RecordTable

CALIBRATION = {"overscans": "header", "image_area": "header", "gain": "header",
               "read_noise": "header"}


def test_records_are_written_in_batches_and_a_lost_batch_is_no_record(tmp_path):
    table = RecordTable(tmp_path, every=3, seconds=3600)
    table.add("lights_V", "a", {"key": "1"})
    table.add("lights_V", "b", {"key": "2"})
    # "killed" here: the two pending records were never written
    assert RecordTable(tmp_path).get("lights_V", "a") is None
    table.add("lights_R", "c", {"key": "3"})
    again = RecordTable(tmp_path)
    assert [again.get(*k) for k in (("lights_V", "a"), ("lights_V", "b"), ("lights_R", "c"))] == [
        {"key": "1"}, {"key": "2"}, {"key": "3"}]
    assert not list((tmp_path / "records").glob(".ccdflow-*"))  # the temporary is gone


def test_records_are_written_when_time_has_passed(tmp_path):
    table = RecordTable(tmp_path, every=1000, seconds=0.0)
    table.add("lights_V", "a", {"key": "1"})
    assert RecordTable(tmp_path).get("lights_V", "a") == {"key": "1"}


@pytest.mark.parametrize("content", ['{"lights_V": {"a"', '["not", "a", "table"]'])
def test_an_unreadable_table_is_empty_and_says_why(tmp_path, content):
    (tmp_path / "records").mkdir()
    (tmp_path / RECORDS_NAME).write_text(content)
    table = RecordTable(tmp_path)
    assert table.get("lights_V", "a") is None
    assert "records/table.json" in table.problem


def test_records_of_a_store_with_one_group_per_frame_are_read(tmp_path):
    folder = tmp_path / "records/lights_V/a"
    folder.mkdir(parents=True)
    (folder / "zarr.json").write_text(json.dumps(
        {"zarr_format": 3, "node_type": "group", "attributes": {"key": "k"}}))
    assert RecordTable(tmp_path).get("lights_V", "a") == {"key": "k"}


def test_bad_batch_settings_are_refused(tmp_path):
    with pytest.raises(ValueError, match="every must be >= 1"):
        RecordTable(tmp_path, every=0)


# -- a whole night ----------------------------------------------------------------------------------

def _night(folder: Path, n_light: int = 4) -> Path:
    syn.write_night(folder, instrument=syn.Instrument(ny=32, nx=32, n_overscan=4), filters=("V",),
                    n_bias=3, n_dark=3, dark_exptimes=(60.0,), n_flat=3, n_light=n_light, seed=5)
    path = folder / "night.yaml"
    path.write_text(yaml.safe_dump({"input": {"filelist": "night.csv"}, "output": "reduced",
                                    "calibration": CALIBRATION}))
    return path


def _run(config: Path):
    report = reduce_night(load_config(config), scheduler="synchronous", echo=lambda *_: None,
                          progress=False)
    assert report.ok, report.failures
    return report


def _statuses(report) -> dict[str, str]:
    return {Path(p).stem: f["status"] for p, f in report.frames.items()}


def _pixels(folder: Path) -> dict[str, list[np.ndarray]]:
    out = {}
    for path in sorted(folder.glob("*.fits")):
        with fits.open(path) as hdul:
            out[path.name] = [np.array(h.data) for h in hdul]
    return out


def test_records_survive_a_rerun_in_one_table(tmp_path):
    config = _night(tmp_path)
    first = _run(config)
    stems = sorted(_statuses(first))
    table = json.loads((tmp_path / "reduced/work.zarr" / RECORDS_NAME).read_text())
    assert sorted(table["lights_V"]) == stems
    assert all(r["output_stamp"]["size"] > 0 and len(r["output_stamp"]["sha1"]) == 40
               for r in table["lights_V"].values())
    # the digest taken while writing is the product's own
    for record in table["lights_V"].values():
        product = Path(record["output"])
        assert record["output_stamp"]["sha1"] == hashlib.sha1(product.read_bytes()).hexdigest()
        assert record["output_stamp"]["size"] == product.stat().st_size
    # a night that does not stack writes only the FITS products: no cube, no slice digests
    assert not any("digests" in r for r in table["lights_V"].values())
    assert not (tmp_path / "reduced/work.zarr/cubes").exists()
    # workers write no record: no group per frame in the store
    assert not list((tmp_path / "reduced/work.zarr").glob("records/*/*/zarr.json"))
    # the record is the store's, not the report's
    assert all("record" not in f and "digests" not in f for f in first.frames.values())
    second = _run(config)
    assert _statuses(second) == dict.fromkeys(stems, "reused")


def test_a_lost_batch_only_redoes_its_frames(tmp_path):
    config = _night(tmp_path)
    _run(config)
    lights = tmp_path / "reduced/lights"
    before = _pixels(lights)
    path = tmp_path / "reduced/work.zarr" / RECORDS_NAME
    table = json.loads(path.read_text())
    # a run killed after two frames were written but before their batch of records was
    lost = sorted(table["lights_V"])[1:3]
    for stem in lost:
        del table["lights_V"][stem]
    path.write_text(json.dumps(table))
    report = _run(config)
    assert _statuses(report) == {stem: "done" if stem in lost else "reused"
                                 for stem in _statuses(report)}
    after = _pixels(lights)
    assert sorted(after) == sorted(before)
    for name in before:
        for x, y in zip(before[name], after[name], strict=True):
            np.testing.assert_array_equal(x, y, err_msg=name)
    # and their records are back
    assert sorted(json.loads(path.read_text())["lights_V"]) == sorted([*table["lights_V"], *lost])


def test_a_damaged_table_redoes_the_lights_and_says_so(tmp_path):
    config = _night(tmp_path, n_light=2)
    _run(config)
    (tmp_path / "reduced/work.zarr" / RECORDS_NAME).write_text('{"lights_V": {')
    report = _run(config)
    assert set(_statuses(report).values()) == {"done"}
    assert any("records/table.json cannot be read" in w and "redone" in w for w in report.warnings)
    assert set(_statuses(_run(config)).values()) == {"reused"}


def _set(config: Path, **keys) -> None:
    data = yaml.safe_load(config.read_text())
    config.write_text(yaml.safe_dump({**data, **keys}))


def test_stacking_later_redoes_the_lights_into_the_cube_once(tmp_path):
    config = _night(tmp_path, n_light=3)
    _run(config)
    _set(config, stack_lights=True)
    report = _run(config)
    assert set(_statuses(report).values()) == {"done"}
    assert sum("calibrated when the night did not stack" in w for w in report.warnings) == 3
    assert [s["status"] for s in report.stacks.values()] == ["built"]
    table = json.loads((tmp_path / "reduced/work.zarr" / RECORDS_NAME).read_text())
    assert all(len(r["digests"]) == 3 and len(r["slice_stamps"]) == 3
               for r in table["lights_V"].values())
    assert set(_statuses(_run(config)).values()) == {"reused"}


def _edit_in_place(path: Path) -> None:
    """Change one data byte of a product, keeping its size and restoring its modification time."""
    status = path.stat()
    with open(path, "r+b") as f:
        f.seek(status.st_size - 10)
        byte = f.read(1)
        f.seek(status.st_size - 10)
        f.write(bytes([byte[0] ^ 0xFF]))
    os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns))


@pytest.mark.parametrize(("resume", "restore_time", "redone"), [
    ("metadata", False, True),  # same size, new time: read again, the SHA-1 differs
    ("metadata", True, False),  # same size and time: trusted unread (what `content` is for)
    ("content", True, True)])
def test_a_product_edited_in_place_is_found_by_what_the_resume_mode_compares(
        tmp_path, resume, restore_time, redone):
    config = _night(tmp_path, n_light=2)
    _set(config, resume=resume)
    _run(config)
    product = sorted((tmp_path / "reduced/lights").glob("*.fits"))[0]
    if restore_time:
        _edit_in_place(product)
    else:
        product.write_bytes(bytearray(product.read_bytes())[:-1] + b"x")
    report = _run(config)
    assert _statuses(report) == {p.stem: "done" if p == product and redone else "reused"
                                 for p in (tmp_path / "reduced/lights").glob("*.fits")}
    assert any("SHA-1 differs" in w for w in report.warnings) == redone


def test_metadata_resume_checks_a_cube_slice_by_its_files_and_its_digest(tmp_path):
    config = _night(tmp_path, n_light=2)
    _set(config, stack_lights=True)
    _run(config)
    store = tmp_path / "reduced/work.zarr"
    table = json.loads((store / RECORDS_NAME).read_text())
    stem, record = sorted(table["lights_V"].items())[0]
    index = json.loads((store / "cubes/lights_V/zarr.json").read_text())["attributes"]["index"][stem]
    shard = store / "cubes/lights_V/image/c" / str(index) / "0" / "0"
    assert [shard.stat().st_size, shard.stat().st_mtime_ns, ""] == record["slice_stamps"]["image"]
    shard.write_bytes(shard.read_bytes()[:-8] + bytes(8))  # a damaged shard index, same size
    report = _run(config)
    assert _statuses(report)[stem] == "done"
    assert any("its slice of cube lights_V" in w and "damaged" in w for w in report.warnings)
