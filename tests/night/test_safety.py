"""Products never replace an input, never leave the output tree, follow the umask; a rerun deletes
only ccdflow's own temporaries; a full disk aborts the night with a report that says so."""

import os
import stat
from pathlib import Path

import numpy as np
import pytest
import yaml
from astropy.io import fits

from ccdflow import synthetic as syn
from ccdflow.calibrator import Calibrator
from ccdflow.errors import InputOverwriteError, NightAbortedError, OutputTreeError
from ccdflow.io.write import atomic_path
from ccdflow.night import load_config, reduce_night
from ccdflow.reduction import ImageReduction

CALIBRATION = {"overscans": "header", "overscan_method": "median", "image_area": "header"}


def _night(folder: Path, *, size=32, output="reduced", raw="raw", stack=False) -> tuple:
    night = syn.write_night(folder, instrument=syn.Instrument(ny=size, nx=size, n_overscan=4),
                            n_bias=3, n_dark=3, dark_exptimes=(30.0,), n_flat=3, n_light=2,
                            filters=("V",), seed=5)
    if raw != "raw":
        (folder / "raw").rename(folder / raw)
        night.filelist.write_text(night.filelist.read_text().replace("raw/", f"{raw}/"))
    data = {"input": {"filelist": night.filelist.name}, "output": output,
            "calibration": CALIBRATION, "stack_lights": stack}
    (folder / "night.yaml").write_text(yaml.safe_dump(data))
    return night, folder / "night.yaml"


def _run(config_path):
    return reduce_night(load_config(config_path), scheduler="synchronous", echo=lambda *_: None,
                        progress=False)


def _digest(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_a_night_whose_raw_lights_sit_in_its_lights_folder_is_refused_before_any_work(tmp_path):
    _, config_path = _night(tmp_path, output=".", raw="lights")
    before = _digest(tmp_path / "lights")
    with pytest.raises(InputOverwriteError, match=r"light_V_000\.fits.*it is the input .*light_V_000"):
        _run(config_path)
    assert _digest(tmp_path / "lights") == before
    assert not (tmp_path / "masters").exists() and not (tmp_path / "work.zarr").exists()
    assert not (tmp_path / "report.json").exists()


def test_a_raw_calibration_frame_named_like_a_master_is_refused(tmp_path):
    # raw biases in <output>/masters with a file called bias.fits: the master would replace it
    _, config_path = _night(tmp_path, output=".", raw="masters")
    (tmp_path / "masters" / "bias_000.fits").rename(tmp_path / "masters" / "bias.fits")
    csv = tmp_path / "night.csv"
    csv.write_text(csv.read_text().replace("bias_000.fits", "bias.fits"))
    with pytest.raises(InputOverwriteError, match=r"masters/bias\.fits"):
        _run(config_path)


@pytest.mark.parametrize("folder", ["lights", "masters", "stacks", "arcs"])
def test_a_planted_folder_link_cannot_send_products_outside_the_output(tmp_path, folder):
    _, config_path = _night(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "reduced").mkdir()
    (tmp_path / "reduced" / folder).symlink_to(elsewhere)
    with pytest.raises(OutputTreeError, match=rf"reduced/{folder}: it leads outside .*elsewhere"):
        _run(config_path)
    assert list(elsewhere.iterdir()) == []


def test_a_file_where_an_output_folder_is_expected_is_refused(tmp_path):
    _, config_path = _night(tmp_path)
    (tmp_path / "reduced").mkdir()
    (tmp_path / "reduced" / "lights").write_text("not a folder")
    with pytest.raises(OutputTreeError, match=r"reduced/lights: is not a folder"):
        _run(config_path)


@pytest.fixture(scope="module")
def calibrated_night(tmp_path_factory):
    folder = tmp_path_factory.mktemp("night")
    night, config_path = _night(folder)
    assert _run(config_path).ok
    return night, folder


def _spellings(raw: Path, tmp: Path) -> dict[str, Path]:
    link = tmp / "link.fits"
    link.symlink_to(raw)
    hard = tmp / "hard.fits"
    os.link(raw, hard)
    return {"same": raw, "dotdot": raw.parent / ".." / raw.parent.name / raw.name,
            "relative": Path(os.path.relpath(raw)), "symlink": link, "hardlink": hard}


@pytest.mark.parametrize("spelling", ["same", "dotdot", "relative", "symlink", "hardlink"])
def test_the_calibrator_never_writes_over_its_raw_frame(calibrated_night, tmp_path, spelling):
    night, _ = calibrated_night
    raw = tmp_path / "raw.fits"
    raw.write_bytes(night.files["light"][0].read_bytes())
    before = raw.read_bytes()
    target = _spellings(raw, tmp_path)[spelling]
    calibrate = Calibrator(overscans="[1:4,1:32]")
    with pytest.raises(InputOverwriteError, match=r"refusing to write .*: it is the input .*raw\.fits"):
        calibrate(raw=raw, calibrated=target)
    assert raw.read_bytes() == before


def test_the_calibrator_never_writes_over_a_master_in_use(calibrated_night, tmp_path):
    night, folder = calibrated_night
    master = tmp_path / "bias.fits"
    master.write_bytes((folder / "reduced/masters/bias.fits").read_bytes())
    before = master.read_bytes()
    calibrate = Calibrator(image_area="[5:36,1:32]", master_bias=master)
    with pytest.raises(InputOverwriteError, match=r"bias\.fits"):
        calibrate(raw=night.files["light"][0], calibrated=tmp_path / "sub" / ".." / "bias.fits")
    assert master.read_bytes() == before
    # any other name is written
    out = calibrate(raw=night.files["light"][0], calibrated=tmp_path / "calibrated.fits")
    assert fits.getdata(out).shape == (32, 32)


def test_image_reduction_never_saves_over_one_of_its_inputs(calibrated_night, tmp_path):
    night, folder = calibrated_night
    raw = night.files["flat"][0]
    before = raw.read_bytes()
    reduction = ImageReduction(folder / "night.csv", calibration=CALIBRATION,
                               work_dir=tmp_path / "work", scheduler="synchronous")
    with pytest.raises(InputOverwriteError, match=r"flat_V_000\.fits"):
        reduction.save_fits(Path(os.path.relpath(raw)))
    assert raw.read_bytes() == before
    assert reduction.image_hdu is None  # refused before reducing anything


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600)])
def test_products_follow_the_umask(tmp_path, umask, mode):
    _, config_path = _night(tmp_path)
    old = os.umask(umask)
    try:
        assert _run(config_path).ok
    finally:
        os.umask(old)
    products = [*(tmp_path / "reduced").glob("*/*.fits"), tmp_path / "reduced/report.json"]
    assert len(products) == 7  # 3 masters, the bad-pixel mask, 2 lights, the report
    assert {oct(stat.S_IMODE(p.stat().st_mode)) for p in products} == {oct(mode)}


def test_a_rerun_deletes_its_own_temporaries_and_nothing_else(tmp_path):
    _, config_path = _night(tmp_path)
    lights = tmp_path / "reduced" / "lights"
    lights.mkdir(parents=True)
    mine = [lights / ".notes.part", lights / ".light_V_000.fits.abc.part", lights / "x.part"]
    for path in mine:
        path.write_text("the user's own")
    stale = lights / ".ccdflow-light_V_000.fits-0a1b2c3d.part"
    stale.write_text("left by a killed run")
    assert _run(config_path).ok
    assert not stale.exists()
    assert [p.read_text() for p in mine] == ["the user's own"] * 3


def test_atomic_temporaries_are_named_for_ccdflow(tmp_path):
    with atomic_path(tmp_path / "a.fits") as tmp:
        assert tmp.name.startswith(".ccdflow-a.fits-") and tmp.name.endswith(".part")
        tmp.write_bytes(b"x")
    assert [p.name for p in tmp_path.iterdir()] == ["a.fits"]


@pytest.fixture
def tiny_disk(mount_tmpfs):
    return mount_tmpfs("192k")


def test_a_full_disk_aborts_the_night_and_the_report_says_so(tmp_path, tiny_disk):
    _, config_path = _night(tmp_path, size=64, output=str(tiny_disk / "reduced"))
    old = tiny_disk / "reduced" / "report.json"
    old.parent.mkdir()
    old.write_text('{"ok": true}')
    with pytest.raises(NightAbortedError, match=r"disk full.*\[Errno 28\] No space left") as caught:
        _run(config_path)
    assert isinstance(caught.value.__cause__, OSError)
    report = yaml.safe_load(old.read_text())
    assert report["ok"] is False and report["aborted"] == str(caught.value)
    assert not list((tiny_disk / "reduced").rglob(".ccdflow-*.part"))


def test_products_are_not_the_raw_frames(calibrated_night):
    # the calibrated lights differ from their raw frames (nothing was copied over anything)
    night, folder = calibrated_night
    for raw in night.files["light"]:
        product = fits.getdata(folder / "reduced/lights" / raw.name)
        assert not np.array_equal(product, fits.getdata(raw)[: product.shape[0], : product.shape[1]])
