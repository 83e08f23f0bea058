"""A night read from and written to an S3 bucket (moto's server on 127.0.0.1) equals the same night
on local disk; a rerun on the bucket reuses everything; missing inputs and bad options are named."""

import json
import re
from pathlib import Path

import fsspec
import numpy as np
import pytest
import yaml
from astropy.io import fits
from click.testing import CliRunner

from ccdflow import synthetic as syn
from ccdflow.cli import main
from ccdflow.errors import ConfigError, NightAbortedError
from ccdflow.night import load_config, reduce_night

CALIBRATION = {"overscans": "header", "overscan_method": "median_per_line",
               "image_area": "header", "gain": "header", "read_noise": "header"}
# cards that name where a file was or when it was made (and checksums of files holding such cards):
# the only ones allowed to differ
PLACE_AND_TIME = re.compile(r"(DATE|INPUT\d*|.*FNM|M.*SHA|HISTORY|COMMENT|CHECKSUM|DATASUM)$")


def _raw_night(folder: Path) -> Path:
    syn.write_night(folder, instrument=syn.Instrument(ny=32, nx=32, n_overscan=4), filters=("V",),
                    n_bias=3, n_dark=3, dark_exptimes=(60.0,), n_flat=3, n_light=2, seed=11)
    return folder


def _upload(fs, folder: Path, url: str) -> None:
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            fs.put_file(str(path), f"{url}/{path.relative_to(folder).as_posix()}")


def _config(folder: Path, *, filelist: str, output: str, options=None,
            cluster=(("scheduler", "threads"),)) -> Path:
    data = {"input": {"filelist": filelist}, "output": output, "calibration": CALIBRATION,
            "stack_lights": True, "cluster": dict(cluster)}
    if options is not None:
        data["storage_options"] = options
    path = folder / f"night-{len(list(folder.glob('night-*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _hdus(data: bytes) -> list[tuple[fits.Header, np.ndarray]]:
    import io

    with fits.open(io.BytesIO(data)) as hdul:
        return [(h.header.copy(), None if h.data is None else np.array(h.data)) for h in hdul]


def _products(read, names: list[str]) -> dict[str, list]:
    return {name: _hdus(read(name)) for name in names}


def _assert_same(local: dict, remote: dict) -> None:
    assert sorted(local) == sorted(remote)
    for name in local:
        assert len(local[name]) == len(remote[name]), name
        for (h1, d1), (h2, d2) in zip(local[name], remote[name], strict=True):
            np.testing.assert_array_equal(d1, d2, err_msg=name)  # bit for bit, NaN included
            cards1 = {k: v for k, v in h1.items() if not PLACE_AND_TIME.match(k)}
            cards2 = {k: v for k, v in h2.items() if not PLACE_AND_TIME.match(k)}
            assert cards1 == cards2, name
            # the place cards differ only by where the files were
            names = [k for k in h1 if re.fullmatch(r".*FNM|INPUT\d+", k)]
            assert [Path(str(h1[k])).name for k in names] == [Path(str(h2[k])).name for k in names]


PRODUCTS = ["masters/bias.fits", "masters/dark.fits", "masters/flat_V.fits", "masters/bpm_V.fits",
            "lights/light_V_000.fits", "lights/light_V_001.fits", "stacks/V_SYNTH-FIELD.fits"]


def test_night_from_and_to_a_bucket_equals_the_night_on_disk(tmp_path, s3_bucket):
    bucket, options = s3_bucket
    fs = fsspec.filesystem("s3", skip_instance_cache=True, **options)
    raw = _raw_night(tmp_path / "night")
    local = reduce_night(load_config(_config(tmp_path, filelist=str(raw / "night.csv"),
                                             output=str(tmp_path / "reduced"))),
                         echo=lambda *_: None, progress=False)
    assert local.ok, local.failures
    _upload(fs, raw, f"{bucket}/night")

    config = load_config(_config(tmp_path, filelist=f"{bucket}/night/night.csv",
                                 output=f"{bucket}/reduced", options=options))
    remote = reduce_night(config, echo=lambda *_: None, progress=False)
    assert remote.ok, remote.failures
    assert remote.count("done") == 2 and sorted(remote.masters) == sorted(local.masters)
    assert all(path.startswith(f"{bucket}/night/raw/") for path in remote.frames)

    _assert_same(_products(lambda n: (tmp_path / "reduced" / n).read_bytes(), PRODUCTS),
                 _products(lambda n: fs.cat_file(f"{bucket}/reduced/{n}"), PRODUCTS))
    listed = set(fs.find(f"{bucket}/reduced"))
    for name in ("report.json", "report.html", ".ccdflow-headers.json",
                 "work.zarr/records/table.json", "work.zarr/zarr.json"):
        assert f"{bucket}/reduced/{name}"[5:] in listed, name
    assert not any(".part" in key for key in listed)  # whole-object PUTs: no temporaries
    report = json.loads(fs.cat_file(f"{bucket}/reduced/report.json"))
    assert report["ok"] and report["output"] == f"{bucket}/reduced"
    assert "testing" not in json.dumps(report)  # credentials stay out of the report

    # a rerun on the bucket reuses every light and master, and finds the products as recorded
    again = reduce_night(config, echo=lambda *_: None, progress=False)
    assert again.ok and again.count("reused") == 2 and again.count("done") == 0
    assert {m["status"] for m in again.masters.values()} == {"reused"}

    # a product changed on the bucket is noticed by its checksum and redone
    fs.pipe_file(f"{bucket}/reduced/lights/light_V_001.fits", b"x" * 2880)
    repaired = reduce_night(config, echo=lambda *_: None, progress=False)
    assert repaired.count("reused") == 1 and repaired.count("done") == 1
    assert any("light_V_001" in w and "size" in w for w in repaired.warnings)
    _assert_same(_products(lambda n: (tmp_path / "reduced" / n).read_bytes(), PRODUCTS[4:6]),
                 _products(lambda n: fs.cat_file(f"{bucket}/reduced/{n}"), PRODUCTS[4:6]))


def test_a_missing_input_url_is_named(tmp_path, s3_bucket):
    bucket, options = s3_bucket
    config = load_config(_config(tmp_path, filelist=f"{bucket}/nowhere/night.csv",
                                 output=f"{bucket}/reduced", options=options))
    with pytest.raises(ConfigError, match=f"{bucket}/nowhere/night.csv: cannot read the file list"):
        reduce_night(config, echo=lambda *_: None, progress=False)


def test_an_output_bucket_that_does_not_exist_stops_the_night_naming_the_url(tmp_path, s3_bucket):
    bucket, options = s3_bucket
    raw = _raw_night(tmp_path / "night")
    config = load_config(_config(tmp_path, filelist=str(raw / "night.csv"),
                                 output="s3://ccdflow-no-such-bucket/out", options=options))
    with pytest.raises(NightAbortedError, match="s3://ccdflow-no-such-bucket/out/.*does not exist"):
        reduce_night(config, echo=lambda *_: None, progress=False)
    assert not fsspec.filesystem("s3", skip_instance_cache=True, **options).exists(
        "ccdflow-no-such-bucket")  # never created by the run


@pytest.mark.parametrize(("options", "message"), [
    ("key=testing", "storage_options: expected a mapping"),
    ({1: "x"}, "storage_options: keys must be option names"),
])
def test_storage_options_are_validated(tmp_path, options, message):
    path = _config(tmp_path, filelist="night.csv", output="reduced", options=options)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_storage_options_the_filesystem_rejects_name_the_url(tmp_path, s3_bucket):
    bucket, options = s3_bucket
    config = load_config(_config(tmp_path, filelist=f"{bucket}/night/night.csv",
                                 output=f"{bucket}/reduced", options={**options, "no_such_option": 1}))
    with pytest.raises(ConfigError, match=f"{bucket}/night/night.csv: cannot read the file list: "
                                          f"{bucket}/night/night.csv: [A-Za-z]+Error"):
        reduce_night(config, echo=lambda *_: None, progress=False)


def test_cli_run_reads_and_writes_a_bucket(tmp_path, s3_bucket):
    bucket, options = s3_bucket
    fs = fsspec.filesystem("s3", skip_instance_cache=True, **options)
    _upload(fs, _raw_night(tmp_path / "night"), f"{bucket}/night")
    config = _config(tmp_path, filelist=f"{bucket}/night/night.csv", output=f"{bucket}/out",
                     options=options)
    result = CliRunner().invoke(main, ["run", str(config), "--scheduler", "threads"])
    assert result.exit_code == 0, result.output
    assert f"{bucket}/out" in result.output
    report = json.loads(fs.cat_file(f"{bucket}/out/report.json"))
    assert report["ok"] and len(report["frames"]) == 2
    with fits.open(fs.open(f"{bucket}/out/lights/light_V_000.fits", "rb")) as hdul:
        assert [h.name for h in hdul] == ["PRIMARY", "ERROR", "MASK"]
