"""The night configuration: defaults, paths, and every bad key or value named in its error."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import yaml

from ccdflow.array.badpixels import BadPixelParams
from ccdflow.array.combination import CombineParams
from ccdflow.array.cosmics import CosmicRayParams
from ccdflow.array.frame_quality import QualityParams
from ccdflow.array.overscan import OverscanMethods, OverscanParams
from ccdflow.array.sections import Region
from ccdflow.errors import ConfigError
from ccdflow.night import NightConfig, load_config
from ccdflow.night.config import CalibrationConfig, ClusterConfig, CombineByKind, MinFrames

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
EXAMPLE = Path(__file__).resolve().parents[2] / "src" / "ccdflow" / "configs" / "example.yaml"
MINIMAL = {"input": {"filelist": "night.csv"}}


def _config(**sections) -> dict:
    return {**MINIMAL, **sections}


def _key(dotted: str) -> str:
    """A ``match=`` pattern: the dotted key at the start of the message, then the reason."""
    return "^" + re.escape(dotted) + ": "


# --- defaults and paths -----------------------------------------------------------------------


def test_defaults(tmp_path):
    config = NightConfig.from_dict(MINIMAL, base=tmp_path)
    assert config.filelist == (tmp_path / "night.csv").resolve()
    assert config.directory is None
    assert config.output == (tmp_path / "reduced").resolve()
    assert config.calibration == CalibrationConfig()
    cal = config.calibration
    assert cal.overscans is None and cal.image_area is None
    assert cal.overscan_method == OverscanMethods.median
    assert cal.overscan_params == OverscanParams()
    assert (cal.gain, cal.read_noise, cal.saturation) == ("header", "header", "header")
    assert cal.mask is True and cal.float_frames_are_processed is True
    assert dict(config.combine.items()) == {
        "bias": CombineParams(), "dark": CombineParams(method="mean"),
        "flat": CombineParams(scale="median"),
        "light": CombineParams()}
    assert dict(config.min_frames.items()) == {"bias": 3, "dark": 3, "flat": 3}
    assert config.stack_lights is False
    assert config.cluster == ClusterConfig()
    assert config.cluster.scheduler is None and config.cluster.n_workers is None
    assert config.source is None


def test_configs_are_immutable_all_the_way_down(tmp_path):
    one = NightConfig.from_dict(MINIMAL, base=tmp_path)
    with pytest.raises(TypeError, match="does not support item assignment"):
        one.combine["bias"] = CombineParams(method="mean")
    with pytest.raises(TypeError, match="does not support item assignment"):
        one.min_frames["bias"] = 10
    for value in (one, one.combine, one.min_frames, one.calibration, one.cluster):
        with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign"):
            value.stack_lights = True
    two = NightConfig.from_dict(MINIMAL, base=tmp_path)
    assert two.combine["bias"] == CombineParams() and two.min_frames["bias"] == 3


@pytest.mark.parametrize(("build", "key"), [
    (lambda: ClusterConfig(n_workers=-3), "cluster.n_workers"),
    (lambda: ClusterConfig(threads_per_worker=0), "cluster.threads_per_worker"),
    (lambda: ClusterConfig(memory_limit="lots"), "cluster.memory_limit"),
    (lambda: ClusterConfig(scheduler="http://x"), "cluster.scheduler"),
    (lambda: CalibrationConfig(gain=0.0), "calibration.gain"),
    (lambda: CalibrationConfig(read_noise=-1.0), "calibration.read_noise"),
    (lambda: CalibrationConfig(overscan_method="magic"), "calibration.overscan_method"),
    (lambda: CalibrationConfig(image_area=[0, 1]), "calibration.image_area"),
    (lambda: CalibrationConfig(mask="yes"), "calibration.mask"),
    (lambda: MinFrames(flat=-1), "min_frames.flat"),
    (lambda: CombineByKind(flat={"method": "mean"}), "combine.flat"),
    (lambda: NightConfig(output=Path("x")), "input"),
    (lambda: NightConfig(filelist=Path("a.csv"), stack_lights="no"), "stack_lights"),
])
def test_values_are_validated_at_construction(build, key):
    with pytest.raises(ConfigError, match="^" + re.escape(key) + ": "):
        build()


def test_combine_fields_merge_with_the_frame_type_defaults(tmp_path):
    config = NightConfig.from_dict(_config(combine={"flat": {"method": "mean"},
                                                    "bias": {"sigma_lower": 3}}), base=tmp_path)
    assert config.combine["flat"] == CombineParams(method="mean", scale="median")
    assert config.combine["bias"] == CombineParams(sigma_lower=3.0)
    assert config.combine["dark"] == CombineParams(method="mean")


def test_relative_paths_are_resolved_against_the_yaml_folder(tmp_path, monkeypatch):
    folder = tmp_path / "nights" / "n1"
    folder.mkdir(parents=True)
    path = folder / "night.yaml"
    path.write_text("input: {filelist: lists/night.csv}\noutput: ../out/\n")
    monkeypatch.chdir(tmp_path)  # the working folder does not matter
    config = load_config(Path("nights/n1/night.yaml"))
    assert config.filelist == folder / "lists" / "night.csv"
    assert config.output == tmp_path / "nights" / "out"
    assert config.source == path
    assert config.filelist.is_absolute()


def test_directory_input_and_absolute_paths(tmp_path):
    raw = tmp_path / "elsewhere" / "raw"
    config = NightConfig.from_dict({"input": {"directory": str(raw)}, "output": str(tmp_path / "o")},
                                   base=tmp_path / "base")
    assert config.directory == raw and config.filelist is None
    assert config.output == tmp_path / "o"


def test_explicit_values(tmp_path):
    config = NightConfig.from_dict(_config(
        calibration={"overscans": [{"xmin": 32, "xmax": 40, "ymin": 0, "ymax": 32}, "[1:32,33:36]"],
                     "overscan_method": "median_per_line", "image_area": "[1:32,1:32]",
                     "gain": 1.5, "read_noise": 4, "saturation": None, "mask": False,
                     "overscan_params": {"order": 2}},
        min_frames={"flat": 0}, stack_lights=True,
        cluster={"scheduler": "tcp://127.0.0.1:8786", "n_workers": 2, "memory_limit": "2GB"},
    ), base=tmp_path)
    cal = config.calibration
    assert cal.overscans == (Region(xmin=32, xmax=40, ymin=0, ymax=32),
                             Region(xmin=0, xmax=32, ymin=32, ymax=36))
    assert cal.image_area == Region(xmin=0, xmax=32, ymin=0, ymax=32)
    assert cal.overscan_method == OverscanMethods.median_per_line
    assert cal.overscan_params == OverscanParams(order=2)
    assert (cal.gain, cal.read_noise, cal.saturation, cal.mask) == (1.5, 4.0, None, False)
    assert config.min_frames == MinFrames(flat=0)
    assert config.stack_lights is True
    assert config.cluster == ClusterConfig(scheduler="tcp://127.0.0.1:8786", n_workers=2,
                                           memory_limit="2GB")


@pytest.mark.parametrize("name", ["overscans", "image_area", "gain", "read_noise", "saturation"])
def test_header_is_accepted(tmp_path, name):
    config = NightConfig.from_dict(_config(calibration={name: "header"}), base=tmp_path)
    assert getattr(config.calibration, name) == "header"


def test_to_dict_is_plain_and_reloads(tmp_path):
    config = NightConfig.from_dict(_config(calibration={"overscans": "[33:40,1:32]", "gain": 2.0},
                                           combine={"dark": {"method": "mean"}}), base=tmp_path)
    plain = config.to_dict()
    assert yaml.safe_load(yaml.safe_dump(plain)) == plain
    plain["input"] = {"filelist": plain["input"]["filelist"]}
    assert NightConfig.from_dict(plain, base=tmp_path) == config


# --- the shipped configs --------------------------------------------------------------------------


def test_example_yaml_equals_the_defaults():
    example = load_config(EXAMPLE)
    minimal = NightConfig.from_dict({"input": {"filelist": "night.csv"}, "output": "reduced/"},
                                    base=EXAMPLE.parent)
    assert example.source == EXAMPLE
    assert example.filelist == EXAMPLE.parent / "night.csv"
    assert example.output == EXAMPLE.parent / "reduced"
    assert dataclasses.replace(example, source=None) == minimal
    # and, paths aside, the defaults of a config given nothing but its input
    bare = NightConfig.from_dict(MINIMAL, base="/elsewhere")
    assert dataclasses.replace(example, filelist=Path("x"), output=Path(), source=None) == \
        dataclasses.replace(bare, filelist=Path("x"), output=Path())


def test_example_yaml_names_every_key():
    data = yaml.safe_load(EXAMPLE.read_text())
    fields = lambda cls: {f.name for f in dataclasses.fields(cls)}  # noqa: E731
    assert set(data) == {"input", "output", "calibration", "combine", "min_frames",
                         "stack_lights", "keep_cube", "quality", "resume", "cluster",
                         "storage_options"}
    own = {"bad_pixel_mask", "bad_pixel_params", "bad_pixels"}
    assert set(data["quality"]) == fields(QualityParams) | own
    assert set(data["quality"]["cosmic"]) == fields(CosmicRayParams)
    assert set(data["quality"]["bad_pixel_params"]) == fields(BadPixelParams)
    assert set(data["calibration"]) == fields(CalibrationConfig)
    assert set(data["calibration"]["overscan_params"]) == fields(OverscanParams)
    assert set(data["combine"]) == {"bias", "dark", "flat", "light"}
    for kind, params in data["combine"].items():
        assert set(params) == fields(CombineParams), kind
    assert set(data["min_frames"]) == {"bias", "dark", "flat"}
    assert set(data["cluster"]) == set(ClusterConfig().to_dict())  # YAML names: class, not cluster_class
    text = EXAMPLE.read_text()
    assert "dask_jobqueue.SLURMCluster" in text and "tls_ca_file:" in text  # recipes, commented out
    assert "directory:" in text  # the alternative input, commented out


def test_minimal_yaml_loads():
    config = load_config(CONFIGS / "minimal.yaml")
    assert config.filelist == CONFIGS / "night.csv"
    assert config.output == CONFIGS / "reduced"
    assert config.calibration.overscans == "header"
    assert config.calibration.image_area == "header"
    assert config.combine == NightConfig.from_dict(MINIMAL).combine


# --- unknown keys ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("data", "key"), [
    (_config(outptu="reduced"), "outptu"),
    ({"input": {"filelist": "a.csv", "recursive": True}}, "input.recursive"),
    (_config(calibration={"overscan": "header"}), "calibration.overscan"),
    (_config(calibration={"overscan_params": {"sigmaa": 3}}), "calibration.overscan_params.sigmaa"),
    (_config(combine={"biass": {}}), "combine.biass"),
    (_config(combine={"arc": {"method": "mean"}}), "combine.arc"),
    (_config(combine={"flat": {"metod": "mean"}}), "combine.flat.metod"),
    (_config(cluster={"workers": 4}), "cluster.workers"),
    (_config(min_frames={"light": 2}), "min_frames.light"),
])
def test_unknown_keys_are_named(tmp_path, data, key):
    with pytest.raises(ConfigError, match=_key(key) + "(unknown|expected)") as info:
        NightConfig.from_dict(data, base=tmp_path)
    assert info.value.key == key


def test_unknown_key_in_a_yaml_file(tmp_path):
    path = tmp_path / "night.yaml"
    path.write_text("input: {filelist: night.csv}\ncombine:\n  dark: {sigma: 3}\n")
    with pytest.raises(ConfigError, match=_key("combine.dark.sigma")):
        load_config(path)


# --- bad values -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("data", "key"), [
    (_config(calibration={"gain": 0}), "calibration.gain"),
    (_config(calibration={"gain": "abc"}), "calibration.gain"),
    (_config(calibration={"gain": True}), "calibration.gain"),
    (_config(calibration={"read_noise": -1}), "calibration.read_noise"),
    (_config(calibration={"saturation": "lots"}), "calibration.saturation"),
    (_config(calibration={"overscan_method": "foo"}), "calibration.overscan_method"),
    (_config(calibration={"overscan_params": {"sigma": 0}}), "calibration.overscan_params.sigma"),
    (_config(calibration={"overscan_params": {"order": -1}}), "calibration.overscan_params.order"),
    (_config(calibration={"overscans": 5}), "calibration.overscans"),
    (_config(calibration={"overscans": [{"xmin": 0, "xmax": 4}]}), "calibration.overscans[0]"),
    (_config(calibration={"overscans": ["[1:4,1:8]", "[0:4,1:8]"]}), "calibration.overscans[1]"),
    (_config(calibration={"image_area": "everything"}), "calibration.image_area"),
    (_config(calibration={"mask": "yes"}), "calibration.mask"),
    (_config(calibration={"float_frames_are_processed": 1}),
     "calibration.float_frames_are_processed"),
    (_config(cluster={"scheduler": "http://x"}), "cluster.scheduler"),
    (_config(cluster={"scheduler": 123}), "cluster.scheduler"),
    (_config(cluster={"scheduler": "thread"}), "cluster.scheduler"),
    (_config(cluster={"n_workers": 0}), "cluster.n_workers"),
    (_config(cluster={"n_workers": 2.5}), "cluster.n_workers"),
    (_config(cluster={"threads_per_worker": 0}), "cluster.threads_per_worker"),
    (_config(cluster={"memory_limit": [4]}), "cluster.memory_limit"),
    (_config(combine={"bias": {"method": "max"}}), "combine.bias.method"),
    (_config(combine={"flat": {"scale": "mode"}}), "combine.flat.scale"),
    (_config(combine={"dark": {"sigma_upper": -1}}), "combine.dark.sigma_upper"),
    (_config(combine={"light": {"maxiters": 0}}), "combine.light.maxiters"),
    (_config(combine={"bias": "median"}), "combine.bias"),
    (_config(min_frames={"bias": -1}), "min_frames.bias"),
    (_config(min_frames={"dark": "three"}), "min_frames.dark"),
    (_config(stack_lights="yes"), "stack_lights"),
    ({"input": {"filelist": "a.csv", "directory": "raw"}}, "input"),
    ({"input": {}}, "input"),
    ({"output": "reduced"}, "input"),
    ({"input": "night.csv"}, "input"),
    ({"input": {"filelist": None}}, "input.filelist"),
    ({"input": {"directory": 3}}, "input.directory"),
    (_config(output=None), "output"),
    # a section that is not a mapping
    (_config(calibration="header"), "calibration"),
    (_config(calibration={"overscan_params": [3]}), "calibration.overscan_params"),
    (_config(combine=["bias"]), "combine"),
    (_config(min_frames=3), "min_frames"),
    (_config(cluster="threads"), "cluster"),
])
def test_bad_values_are_named(tmp_path, data, key):
    with pytest.raises(ConfigError, match=_key(key)) as info:
        NightConfig.from_dict(data, base=tmp_path)
    assert info.value.key == key


def test_both_or_neither_input_says_what_to_give(tmp_path):
    with pytest.raises(ConfigError, match="input: give exactly one of 'filelist' and 'directory'"):
        NightConfig.from_dict({"input": {"filelist": "a.csv", "directory": "raw"}}, base=tmp_path)
    with pytest.raises(ConfigError, match="input: give exactly one of 'filelist' and 'directory'"):
        NightConfig.from_dict({}, base=tmp_path)


def test_the_top_must_be_a_mapping(tmp_path):
    path = tmp_path / "night.yaml"
    path.write_text("- input\n- output\n")
    with pytest.raises(ConfigError, match="expected a mapping at the top, got list"):
        load_config(path)


@pytest.mark.parametrize("scheduler", ["threads", "synchronous", "processes", "tcp://10.0.0.1:8786",
                                       "tls://scheduler.example.org:8786"])
def test_valid_schedulers(tmp_path, scheduler):
    config = NightConfig.from_dict(_config(cluster={"scheduler": scheduler}), base=tmp_path)
    assert config.cluster.scheduler == scheduler


# --- files ----------------------------------------------------------------------------------------


def test_missing_file_is_named(tmp_path):
    path = tmp_path / "nothere.yaml"
    with pytest.raises(ConfigError, match=re.escape(str(path)) + ": cannot read the config"):
        load_config(path)


def test_invalid_yaml_is_named(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("input: {filelist: night.csv\noutput: [\n")
    with pytest.raises(ConfigError, match=re.escape(str(path)) + ": not valid YAML"):
        load_config(path)


def test_binary_file_is_named(tmp_path):
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"\xff\xfe\x00\x81 not text")
    with pytest.raises(ConfigError, match=re.escape(str(path))):
        load_config(path)


def test_empty_file_asks_for_an_input(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing yet\n")
    with pytest.raises(ConfigError, match=_key("input")):
        load_config(path)
