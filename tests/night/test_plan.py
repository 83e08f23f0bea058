"""Planning a synthetic night: masters, what each light needs, resume keys, and every failure named."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from ccdflow import synthetic
from ccdflow.array.sections import Region
from ccdflow.errors import ConfigError
from ccdflow.io.filelist import read_filelist
from ccdflow.night import NightConfig
from ccdflow.night.frames import describe_frames
from ccdflow.night.plan import Plan, frame_params, master_combine
from ccdflow.night.run import plan_night

INSTRUMENT = synthetic.Instrument(ny=32, nx=32, n_overscan=8)
OVERSCAN = Region(xmin=32, xmax=40, ymin=0, ymax=32)  # BIASSEC [33:40,1:32]
IMAGE = Region(xmin=0, xmax=32, ymin=0, ymax=32)  # DATASEC/TRIMSEC [1:32,1:32]


def _night(folder: Path, **kwargs) -> synthetic.SyntheticNight:
    options = dict(instrument=INSTRUMENT, n_bias=3, n_dark=3, dark_exptimes=(60.0,), n_flat=3,
                   n_light=2)
    return synthetic.write_night(folder, **{**options, **kwargs})


@pytest.fixture
def night(tmp_path) -> synthetic.SyntheticNight:
    return _night(tmp_path)


def _config(folder: Path, *, calibration: dict | None = None, **sections) -> NightConfig:
    data = {"input": {"filelist": "night.csv"}, "output": "reduced",
            "calibration": {"overscans": "header", "image_area": "header",
                            **(calibration or {})}, **sections}
    return NightConfig.from_dict(data, base=folder)


def _plan(folder: Path, **kwargs) -> Plan:
    return plan_night(_config(folder, **kwargs))


def _keys(plan: Plan) -> dict[str, str]:
    keys = {m.name: m.key for m in plan.masters}
    keys.update({f.frame.stem: f.key for f in plan.frames})
    return keys


def _changed(before: dict[str, str], after: dict[str, str]) -> set[str]:
    assert before.keys() == after.keys()
    return {name for name in before if before[name] != after[name]}


def _drop_lines(filelist: Path, pattern: str) -> None:
    lines = filelist.read_text().splitlines()
    filelist.write_text("\n".join(line for line in lines if pattern not in line) + "\n")


def _touch(path: Path) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))


def _resolved(paths) -> list[Path]:
    return [Path(p).resolve() for p in paths]


def _float_frame(path: Path, *, trim: bool) -> None:
    """Rewrite a raw frame as floating point (BITPIX -32): trimmed and normalised, or just cast."""
    with fits.open(path) as hdul:
        data, header = hdul[0].data.astype(np.float32), hdul[0].header.copy()
    if trim:
        data = data[IMAGE.slices]
        data = data / data.mean()
    for card in ("BZERO", "BSCALE"):
        header.remove(card, ignore_missing=True)
    fits.PrimaryHDU(data, header=header).writeto(path, overwrite=True)


LIGHT_STEMS = {"light_V_000", "light_V_001", "light_R_000", "light_R_001"}
ALL_NAMES = {"bias", "dark", "flat_V", "flat_R"} | LIGHT_STEMS


# --- the plan of a complete night -----------------------------------------------------------------


def test_masters_in_dependency_order(night):
    config = _config(night.directory)
    plan = plan_night(config)
    assert plan.failures == {} and plan.warnings == []
    assert [m.name for m in plan.masters] == ["bias", "dark", "flat_V", "flat_R"]
    by_name = {m.name: m for m in plan.masters}
    assert [m.needs for m in plan.masters] == [(), ("bias",), ("bias", "dark"), ("bias", "dark")]
    assert [m.kind for m in plan.masters] == ["bias", "dark", "flat", "flat"]
    assert [m.filter for m in plan.masters] == ["", "", "V", "R"]
    frames = lambda name: [f.path for f in by_name[name].frames]  # noqa: E731
    assert frames("bias") == _resolved(night.files["bias"])
    assert frames("dark") == _resolved(night.files["dark"])
    assert frames("flat_V") == _resolved(p for p in night.files["flat"] if "flat_V" in p.name)
    assert frames("flat_R") == _resolved(p for p in night.files["flat"] if "flat_R" in p.name)
    assert by_name["dark"].exptimes == (60.0, 60.0, 60.0)
    for master in plan.masters:
        assert master.params.overscans == (OVERSCAN,)
        assert master.params.image_area == IMAGE
        assert master.combine == master_combine(master.kind, list(master.frames), config)
        assert re.fullmatch("[0-9a-f]{40}", master.key)
    assert by_name["flat_V"].combine.scale == "median"
    assert by_name["bias"].combine.scale is None


def test_each_light_gets_its_filters_flat(night):
    config = _config(night.directory)
    plan = plan_night(config)
    assert [f.frame.stem for f in plan.frames] == ["light_V_000", "light_V_001", "light_R_000",
                                                   "light_R_001"]
    for fp in plan.frames:
        filt = fp.frame.filter
        assert fp.frame.stem.startswith(f"light_{filt}_")
        assert (fp.bias, fp.dark, fp.flat) == ("bias", "dark", f"flat_{filt}")
        assert fp.output == config.output / "lights" / f"{fp.frame.stem}.fits"
        assert fp.output == (night.directory / "reduced" / "lights" / f"{fp.frame.stem}.fits")
        assert fp.cube == f"lights_{filt}"
        assert fp.params.overscans == (OVERSCAN,) and fp.params.image_area == IMAGE
        assert fp.params.exptime == 120.0
        assert (fp.params.gain, fp.params.read_noise) == (INSTRUMENT.gain, INSTRUMENT.read_noise)
    assert {c: [f.index for f in fs] for c, fs in plan.cubes().items()} == {
        "lights_V": [0, 1], "lights_R": [0, 1]}


def test_explicit_regions_plan_like_the_header(night):
    by_header = _plan(night.directory)
    explicit = _plan(night.directory, calibration={
        "overscans": [OVERSCAN.to_dict()], "image_area": IMAGE.to_section()})
    assert [m.params for m in explicit.masters] == [m.params for m in by_header.masters]
    assert [f.params for f in explicit.frames] == [f.params for f in by_header.frames]


def test_arcs_are_calibrated_without_a_flat(night):
    arc_path = night.directory / "raw" / "arc_000.fits"
    arc_path.write_bytes(night.files["light"][0].read_bytes())
    with night.filelist.open("a") as fh:
        fh.write("comp, raw/arc_000.fits\n")
    plan = _plan(night.directory)
    arcs = [f for f in plan.frames if f.frame.type == "arc"]
    assert len(arcs) == 1 and len(plan.frames) == 5
    arc = arcs[0]
    assert (arc.bias, arc.dark, arc.flat) == ("bias", "dark", None)
    assert arc.output == night.directory / "reduced" / "arcs" / "arc_000.fits"
    assert arc.cube == "arcs_V"


def test_same_file_names_in_two_folders_get_distinct_outputs(night):
    other = night.directory / "other"
    other.mkdir()
    (other / "light_V_000.fits").write_bytes(night.files["light"][0].read_bytes())
    with night.filelist.open("a") as fh:
        fh.write("light, other/light_V_000.fits\n")
    plan = _plan(night.directory)
    outputs = [f.output for f in plan.frames if f.frame.stem == "light_V_000"]
    assert len(outputs) == 2 and len(set(outputs)) == 2
    assert all(re.fullmatch(r"light_V_000_[0-9a-f]{6}", o.stem) for o in outputs)


# --- resume keys ----------------------------------------------------------------------------------


def test_keys_are_stable(night):
    first, second = _keys(_plan(night.directory)), _keys(_plan(night.directory))
    assert first.keys() == ALL_NAMES
    assert first == second
    assert len(set(first.values())) == len(first)


@pytest.mark.parametrize(("change", "changed"), [
    ({"combine": {"bias": {"sigma_lower": 3.0}}}, ALL_NAMES),
    ({"combine": {"dark": {"method": "median"}}}, ALL_NAMES - {"bias"}),
    ({"combine": {"flat": {"scale": "mean"}}}, {"flat_V", "flat_R"} | LIGHT_STEMS),
    ({"calibration": {"overscan_method": "mean"}}, ALL_NAMES),
    ({"calibration": {"overscan_params": {"sigma": 2.5}}}, ALL_NAMES),
    # gain and read noise are the bias and dark masters' noise model (flats keep the pooled one)
    ({"calibration": {"gain": 2.0}}, ALL_NAMES),
    ({"calibration": {"read_noise": 3.0}}, ALL_NAMES),
    ({"calibration": {"mask": False}}, LIGHT_STEMS),
    ({"combine": {"light": {"method": "mean"}}}, set()),  # stacking only
    ({"stack_lights": True}, set()),
    ({"cluster": {"scheduler": "threads"}}, set()),
])
def test_keys_follow_the_parameters(night, change, changed):
    before = _keys(_plan(night.directory))
    change = dict(change)  # the parameter itself stays untouched
    calibration = change.pop("calibration", None)
    after = _keys(_plan(night.directory, calibration=calibration, **change))
    assert _changed(before, after) == changed


def test_touching_a_bias_changes_everything_downstream(night):
    before = _keys(_plan(night.directory))
    _touch(night.files["bias"][1])
    assert _changed(before, _keys(_plan(night.directory))) == ALL_NAMES


def test_touching_a_flat_changes_its_filter_only(night):
    before = _keys(_plan(night.directory))
    _touch(next(p for p in night.files["flat"] if p.name.startswith("flat_R")))
    assert _changed(before, _keys(_plan(night.directory))) == {
        "flat_R", "light_R_000", "light_R_001"}


def test_touching_one_light_changes_only_its_key(night):
    before = _keys(_plan(night.directory))
    _touch(night.files["light"][2])
    assert _changed(before, _keys(_plan(night.directory))) == {night.files["light"][2].stem}


# --- missing and short calibrations ---------------------------------------------------------------


def test_a_light_without_a_flat_for_its_filter_fails(night):
    _drop_lines(night.filelist, "flat_R")
    plan = _plan(night.directory)
    assert [m.name for m in plan.masters] == ["bias", "dark", "flat_V"]
    assert [f.frame.stem for f in plan.frames] == ["light_V_000", "light_V_001"]
    failed = {Path(p).name: reason for p, reason in plan.failures.items()}
    assert failed.keys() == {"light_R_000.fits", "light_R_001.fits"}
    for name, reason in failed.items():
        assert re.fullmatch(
            rf"MissingCalibrationError: \S+/{name}: no flat master for FILTER='R' "
            r"\(looked for flat_R; available: flat_V\)", reason), reason


def test_a_night_without_darks(night):
    _drop_lines(night.filelist, "dark,")
    plan = _plan(night.directory)
    assert plan.failures == {}
    assert plan.warnings == ["no dark frames: the dark step is skipped"]
    assert [(m.name, m.needs) for m in plan.masters] == [
        ("bias", ()), ("flat_V", ("bias",)), ("flat_R", ("bias",))]
    assert len(plan.frames) == 4
    assert all(f.dark is None and f.bias == "bias" for f in plan.frames)


def test_a_night_without_any_calibration(night):
    _drop_lines(night.filelist, "bias,")
    _drop_lines(night.filelist, "dark,")
    _drop_lines(night.filelist, "flat,")
    plan = _plan(night.directory)
    assert plan.masters == [] and plan.failures == {}
    assert plan.warnings == [f"no {kind} frames: the {kind} step is skipped"
                             for kind in ("bias", "dark", "flat")]
    assert all((f.bias, f.dark, f.flat) == (None, None, None) for f in plan.frames)


def test_fewer_frames_than_min_frames_warns(tmp_path):
    night = _night(tmp_path, n_bias=2, n_flat=1)
    plan = _plan(night.directory)
    assert plan.failures == {}
    assert plan.warnings == [
        "bias: only 2 frame(s), fewer than the 3 asked for (min_frames.bias)",
        "flat_V: only 1 frame(s), fewer than the 3 asked for (min_frames.flat)",
        "flat_R: only 1 frame(s), fewer than the 3 asked for (min_frames.flat)",
    ]
    assert [m.name for m in plan.masters] == ["bias", "dark", "flat_V", "flat_R"]  # still built
    assert _plan(night.directory, min_frames={"bias": 2, "flat": 1}).warnings == []


# --- bad frames -----------------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "missing"])
def test_an_unreadable_light_fails_alone(night, damage):
    light = night.files["light"][1]
    if damage == "truncated":
        light.write_bytes(light.read_bytes()[:4000])
    elif damage == "garbage":
        light.write_bytes(bytes(range(256)) * 40)
    elif damage == "empty":
        light.write_bytes(b"")
    else:
        light.unlink()
    plan = _plan(night.directory)
    assert list(plan.failures) == [str(light.resolve())]
    assert re.match(rf"FrameReadError: {re.escape(str(light.resolve()))}\[0\]: ",
                    plan.failures[str(light.resolve())])
    assert len(plan.masters) == 4
    assert {f.frame.stem for f in plan.frames} == LIGHT_STEMS - {light.stem}


def test_an_unreadable_bias_is_left_out_of_its_master(night):
    bias = night.files["bias"][0]
    bias.write_bytes(bias.read_bytes()[:3000])
    plan = _plan(night.directory)
    assert list(plan.failures) == [str(bias.resolve())]
    assert [f.path.name for f in plan.masters[0].frames] == ["bias_001.fits", "bias_002.fits"]
    assert "bias: only 2 frame(s)" in plan.warnings[0]
    assert len(plan.frames) == 4


def test_a_light_of_another_shape_fails(night):
    small = synthetic.make_truth(synthetic.Instrument(ny=16, nx=16, n_overscan=8))
    light = night.files["light"][3]
    synthetic.make_frame(small, imagetyp="light", exptime=120.0, filter="V", seed=1).hdu.writeto(
        light, overwrite=True)
    plan = _plan(night.directory)
    assert list(plan.failures) == [str(light.resolve())]
    assert re.match(rf"IncompatibleFramesError: {re.escape(str(light.resolve()))}: image area "
                    r"\(16, 16\) differs from master bias's \(32, 32\)",
                    plan.failures[str(light.resolve())])
    assert len(plan.frames) == 3


def test_a_bias_of_another_shape_is_left_out_of_its_master(night):
    small = synthetic.make_truth(synthetic.Instrument(ny=16, nx=16, n_overscan=8))
    bias = night.files["bias"][2]
    synthetic.make_frame(small, imagetyp="bias", seed=1).hdu.writeto(bias, overwrite=True)
    plan = _plan(night.directory)
    master = {m.name: m for m in plan.masters}["bias"]
    assert bias.resolve() not in [f.path for f in master.frames]
    assert len(master.frames) == len(night.files["bias"]) - 1
    assert list(plan.failures) == [str(bias.resolve())]
    assert re.search(rf"{re.escape(str(bias.resolve()))}: shape or layout differs .*left out",
                     plan.failures[str(bias.resolve())])


# --- processed (floating-point) calibration frames ------------------------------------------------


def test_a_float_flat_is_used_as_is(night):
    flats_v = [p for p in night.files["flat"] if p.name.startswith("flat_V")]
    for path in flats_v:
        _float_frame(path, trim=True)
    plan = _plan(night.directory)
    assert plan.failures == {}
    flat = {m.name: m for m in plan.masters}["flat_V"]
    assert flat.needs == ()
    assert flat.params.overscans == ()
    assert flat.params.image_area == IMAGE  # the whole (trimmed) frame
    assert {m.name: m for m in plan.masters}["flat_R"].needs == ("bias", "dark")
    assert {f.flat for f in plan.frames if f.frame.filter == "V"} == {"flat_V"}


def test_a_float_dark_is_used_as_is(night):
    for path in night.files["dark"]:
        _float_frame(path, trim=True)
    plan = _plan(night.directory)
    assert plan.failures == {}
    masters = {m.name: m for m in plan.masters}
    assert masters["dark"].needs == ()
    assert masters["dark"].params.overscans == ()
    assert masters["flat_V"].needs == ("bias", "dark")
    assert all(f.dark == "dark" for f in plan.frames)


def test_float_frames_as_raw_when_asked(night):
    flats_v = [p for p in night.files["flat"] if p.name.startswith("flat_V")]
    for path in flats_v:
        _float_frame(path, trim=False)
    flat = {m.name: m for m in _plan(night.directory).masters}["flat_V"]
    assert flat.needs == () and flat.params.overscans == ()  # processed by default
    plan = _plan(night.directory, calibration={"float_frames_are_processed": False})
    assert plan.failures == {}
    flat = {m.name: m for m in plan.masters}["flat_V"]
    assert flat.needs == ("bias", "dark") and flat.params.overscans == (OVERSCAN,)


def test_a_float_frame_among_raw_flats_is_left_out(night):
    flats_v = [p for p in night.files["flat"] if p.name.startswith("flat_V")]
    _float_frame(flats_v[1], trim=True)
    plan = _plan(night.directory)
    master = {m.name: m for m in plan.masters}["flat_V"]
    assert flats_v[1].resolve() not in [f.path for f in master.frames]
    culprit = re.escape(str(flats_v[1].resolve()))
    assert list(plan.failures) == [str(flats_v[1].resolve())]
    assert re.fullmatch(rf"IncompatibleFramesError: {culprit}: mixes raw \(integer\) and "
                        r"processed \(floating-point\) frames from .* in the flat_V group; left out",
                        plan.failures[str(flats_v[1].resolve())])


# --- "header" geometry ----------------------------------------------------------------------------


def test_header_regions_are_converted_to_0_based_half_open(tmp_path):
    night = _night(tmp_path, instrument=synthetic.Instrument(ny=32, nx=24, n_overscan=6,
                                                             overscan="rows"))
    with fits.open(night.files["bias"][0]) as hdul:
        assert hdul[0].header["BIASSEC"] == "[1:24,1:6]"
        assert hdul[0].header["TRIMSEC"] == "[1:24,7:38]"
    plan = _plan(night.directory)
    assert plan.failures == {}
    for params in [m.params for m in plan.masters] + [f.params for f in plan.frames]:
        assert params.overscans == (Region(xmin=0, xmax=24, ymin=0, ymax=6),)
        assert params.image_area == Region(xmin=0, xmax=24, ymin=6, ymax=38)


def _remove_card(path: Path, card: str) -> None:
    with fits.open(path) as hdul:
        data, header = hdul[0].data, hdul[0].header.copy()
    del header[card]
    fits.PrimaryHDU(data, header=header).writeto(path, overwrite=True)


def test_a_frame_without_biassec_is_a_config_error_naming_it(night):
    light = night.files["light"][0]
    _remove_card(light, "BIASSEC")
    config = _config(night.directory)
    frame = next(f for f in describe_frames(read_filelist(config.filelist)) if f.path.name
                 == light.name)
    with pytest.raises(ConfigError, match=r"^calibration\.overscans: 'header' asked for, but "
                       + re.escape(str(light.resolve())) + " has no BIASSEC card"):
        frame_params(frame, config)
    plan = plan_night(config)
    assert list(plan.failures) == [str(light.resolve())]
    assert plan.failures[str(light.resolve())].startswith("ConfigError: calibration.overscans: ")
    assert len(plan.frames) == 3
    # explicit regions need no card
    explicit = _plan(night.directory, calibration={"overscans": [OVERSCAN.to_dict()]})
    assert explicit.failures == {} and len(explicit.frames) == 4


def test_a_bias_without_biassec_is_left_out_of_its_master(night):
    bias = night.files["bias"][1]
    _remove_card(bias, "BIASSEC")
    plan = _plan(night.directory)
    master = {m.name: m for m in plan.masters}["bias"]
    assert bias.resolve() not in [f.path for f in master.frames]
    named = re.escape(str(bias.resolve()))
    assert list(plan.failures) == [str(bias.resolve())]
    assert re.search(rf"^ConfigError: .*{named} has no BIASSEC", plan.failures[str(bias.resolve())])


def test_image_area_falls_back_to_datasec(night):
    light = night.files["light"][0]
    _remove_card(light, "TRIMSEC")
    plan = _plan(night.directory)
    assert plan.failures == {}
    _remove_card(light, "DATASEC")
    plan = _plan(night.directory)
    assert "no TRIMSEC or DATASEC card" in plan.failures[str(light.resolve())]


# --- directory input ------------------------------------------------------------------------------


def test_directory_input_classifies_by_imagetyp(night):
    night.filelist.unlink()
    (night.directory / "raw" / "notes.txt").write_text("seeing 1.2 arcsec")
    config = NightConfig.from_dict({"input": {"directory": "raw"}, "output": "reduced",
                                    "calibration": {"overscans": "header",
                                                    "image_area": "header"}},
                                   base=night.directory)
    plan = plan_night(config)
    assert plan.failures == {} and plan.warnings == []
    masters = {m.name: m for m in plan.masters}
    assert [m.name for m in plan.masters] == ["bias", "dark", "flat_R", "flat_V"]  # file order
    assert sorted(f.path for f in masters["bias"].frames) == sorted(
        _resolved(night.files["bias"]))
    assert {f.frame.stem for f in plan.frames} == LIGHT_STEMS
    assert all(f.flat == f"flat_{f.frame.filter}" for f in plan.frames)


def test_directory_and_filelist_plan_the_same_keys(night):
    listed = _keys(_plan(night.directory))
    config = NightConfig.from_dict({"input": {"directory": "raw"}, "output": "reduced",
                                    "calibration": {"overscans": "header",
                                                    "image_area": "header"}},
                                   base=night.directory)
    assert _keys(plan_night(config)) == listed
