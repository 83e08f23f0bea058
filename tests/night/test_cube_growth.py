"""A night that grows: each light keeps its slice of the calibrated cube across runs, so adding,
removing or reordering lights in the file list redoes only the lights that are new."""

from pathlib import Path

import numpy as np
import yaml
import zarr
from astropy.io import fits

from ccdflow import synthetic as syn
from ccdflow.night import load_config, reduce_night
from ccdflow.night.store import Store

CALIBRATION = {"overscans": "header", "image_area": "header", "gain": "header",
               "read_noise": "header"}


def _write_list(folder: Path, lines: list[str], lights: list[str]) -> None:
    calibrations = [line for line in lines if not line.startswith(("#", "light"))]
    (folder / "night.csv").write_text("\n".join([*calibrations, *(f"light, raw/{s}.fits"
                                                                   for s in lights)]) + "\n")


def _config(folder: Path, output: str) -> Path:
    path = folder / f"{output}.yaml"
    path.write_text(yaml.safe_dump({"input": {"filelist": "night.csv"}, "output": output,
                                    "calibration": CALIBRATION, "stack_lights": True}))
    return path


def _run(config: Path):
    report = reduce_night(load_config(config), scheduler="synchronous", echo=lambda *_: None,
                          progress=False)
    assert report.ok
    return report


def _statuses(report) -> dict[str, str]:
    return {Path(p).stem: f["status"] for p, f in report.frames.items()}


def _cube_index(output: Path) -> dict[str, int]:
    group = zarr.open_group(str(output / "work.zarr"), path="cubes/lights_V", mode="r")
    return dict(group.attrs["index"])


def _stack(output: Path) -> list[np.ndarray]:
    (path,) = sorted((output / "stacks").glob("*.fits"))
    with fits.open(path) as hdul:
        return [np.array(h.data) for h in hdul]


def _assert_same_stack(a: Path, b: Path) -> None:
    for x, y in zip(_stack(a), _stack(b), strict=True):
        np.testing.assert_array_equal(x, y)


def test_adding_removing_and_reordering_lights_redo_only_new_ones(tmp_path):
    night = syn.write_night(tmp_path, instrument=syn.Instrument(ny=32, nx=32, n_overscan=4),
                            filters=("V",), n_bias=3, n_dark=3, dark_exptimes=(60.0,), n_flat=3,
                            n_light=4, seed=11)
    lines = night.filelist.read_text().splitlines()
    stems = [p.stem for p in night.files["light"]]
    grown = _config(tmp_path, "grown")

    _write_list(tmp_path, lines, stems[:3])
    first = _run(grown)
    assert sorted(_statuses(first).values()) == ["done"] * 3
    assert _cube_index(tmp_path / "grown") == {s: i for i, s in enumerate(stems[:3])}

    _write_list(tmp_path, lines, stems)  # one light appended
    second = _run(grown)
    assert _statuses(second) == {**dict.fromkeys(stems[:3], "reused"), stems[3]: "done"}
    assert {m["status"] for m in second.masters.values()} == {"reused"}
    (stack,) = second.stacks.values()
    assert stack["status"] == "built" and len(stack["inputs"]) == 4
    assert _cube_index(tmp_path / "grown") == {s: i for i, s in enumerate(stems)}
    fresh = _run(_config(tmp_path, "fresh"))
    assert sorted(_statuses(fresh).values()) == ["done"] * 4
    _assert_same_stack(tmp_path / "grown", tmp_path / "fresh")

    kept = [stems[0], stems[2], stems[3]]
    _write_list(tmp_path, lines, kept)  # one light removed
    third = _run(grown)
    assert _statuses(third) == dict.fromkeys(kept, "reused")
    (stack,) = third.stacks.values()
    assert stack["status"] == "built"
    assert [Path(p).stem for p in stack["inputs"]] == kept
    # its slice stays in the cube, unused, and no frame moves
    assert _cube_index(tmp_path / "grown") == {s: i for i, s in enumerate(stems)}
    _assert_same_stack(tmp_path / "grown", _fresh_copy(tmp_path, "fresh_kept"))

    _write_list(tmp_path, lines, kept[::-1])  # reordered
    fourth = _run(grown)
    assert _statuses(fourth) == dict.fromkeys(kept, "reused")
    assert _cube_index(tmp_path / "grown") == {s: i for i, s in enumerate(stems)}

    _write_list(tmp_path, lines, stems)  # the removed light comes back to its own slice
    fifth = _run(grown)
    assert _statuses(fifth) == dict.fromkeys(stems, "reused")
    assert _cube_index(tmp_path / "grown") == {s: i for i, s in enumerate(stems)}
    _assert_same_stack(tmp_path / "grown", tmp_path / "fresh")

    # a damaged slice of the appended light is found and exactly that light redone
    chunks = list((tmp_path / "grown/work.zarr/cubes/lights_V/image/c/3").rglob("*"))
    assert any(chunk.is_file() for chunk in chunks)
    for chunk in (c for c in chunks if c.is_file()):
        chunk.unlink()
    sixth = _run(grown)
    assert _statuses(sixth) == {**dict.fromkeys(stems[:3], "reused"), stems[3]: "done"}
    assert _cube_index(tmp_path / "grown") == {s: i for i, s in enumerate(stems)}
    _assert_same_stack(tmp_path / "grown", tmp_path / "fresh")


def _fresh_copy(folder: Path, output: str) -> Path:
    _run(_config(folder, output))
    return folder / output


def test_a_cube_written_before_the_map_keeps_its_frames_in_place(tmp_path):
    root = zarr.open_group(str(tmp_path / "work.zarr"), mode="a")
    group = root.require_group("cubes/lights_V")
    for label, dtype in (("image", "float32"), ("error", "float32"), ("mask", "uint8")):
        group.create_array(label, shape=(2, 4, 5), dtype=dtype, chunks=(1, 4, 5))
    group["image"][1] = 7.0
    group.attrs.update({"frames": ["a", "b"], "shape": [4, 5]})
    root.require_group("records/lights_V/b").attrs["key"] = "k"

    store = Store(tmp_path / "work.zarr")
    assert store.ensure_cube("lights_V", stems=["c", "b"], shape=(4, 5), rows=4) == {
        "a": 0, "b": 1, "c": 2}
    assert store.record("lights_V", "b") == {"key": "k"}
    image = store.cube_arrays("lights_V")["image"]
    assert image.shape == (3, 4, 5)
    np.testing.assert_array_equal(image[1], np.full((4, 5), 7.0, np.float32))
    # another image shape cannot reuse the cube: made afresh, its records dropped
    assert store.ensure_cube("lights_V", stems=["b"], shape=(4, 4), rows=4) == {"b": 0}
    assert store.record("lights_V", "b") is None
