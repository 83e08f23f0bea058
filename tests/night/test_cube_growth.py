"""A night that grows: each light keeps its slice of the calibrated cube across runs, so adding,
removing or reordering lights in the file list redoes only the lights that are new."""

from pathlib import Path

import numpy as np
import yaml
import zarr
from astropy.io import fits

from ccdflow import synthetic as syn
from ccdflow.night import load_config, reduce_night

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


def _fresh_copy(folder: Path, output: str) -> Path:
    _run(_config(folder, output))
    return folder / output
