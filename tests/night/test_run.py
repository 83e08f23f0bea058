"""A whole night end to end: outputs equal the per-frame Calibrator, on a LocalCluster and on a
dask scheduler started by hand; resume, bad input, a killed worker and a killed run."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml
from astropy.io import fits
from astropy.stats import sigma_clip
from astropy.utils.exceptions import AstropyUserWarning
from distributed import Client, LocalCluster

from ccdflow import synthetic as syn
from ccdflow.array.frame_quality import QualityParams
from ccdflow.calibrator import Calibrator
from ccdflow.night import load_config, reduce_night
from conftest import grouped_median

BIN = Path(sys.executable).parent
CALIBRATION = {"overscans": "header", "overscan_method": "median_per_line",
               "image_area": "header", "gain": "header", "read_noise": "header"}


def _night(folder: Path, *, size=48, n_light=2, filters=("V", "R"), seed=3, **config):
    inst = syn.Instrument(ny=size, nx=size, n_overscan=8)
    night = syn.write_night(folder, instrument=inst, filters=filters, n_bias=5, n_dark=3,
                            dark_exptimes=(60.0, 120.0), n_flat=3, n_light=n_light, seed=seed)
    data = {"input": {"filelist": "night.csv"}, "output": "reduced",
            "calibration": CALIBRATION, "stack_lights": True, **config}
    (folder / "night.yaml").write_text(yaml.safe_dump(data))
    return night, folder / "night.yaml"


def _arrays(path):
    with fits.open(path) as hdul:
        return [np.array(h.data) for h in hdul]


def _outputs(output: Path) -> dict[str, list[np.ndarray]]:
    return {str(p.relative_to(output)): _arrays(p)
            for folder in ("masters", "lights", "stacks") for p in sorted((output / folder).glob("*.fits"))}


def _assert_same_outputs(a: Path, b: Path):
    first, second = _outputs(a), _outputs(b)
    assert sorted(first) == sorted(second)
    for name in first:
        for x, y in zip(first[name], second[name], strict=True):
            np.testing.assert_array_equal(x, y, err_msg=name)


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster:
        yield cluster


def test_night_on_a_local_cluster_equals_the_calibrator_frame_by_frame(tmp_path, cluster):
    night, config_path = _night(tmp_path)
    report = reduce_night(load_config(config_path), scheduler=cluster.scheduler_address,
                          echo=lambda *_: None)
    assert report.ok, report.failures
    out = tmp_path / "reduced"
    for name in ("bias", "dark", "flat_V", "flat_R"):
        assert (out / "masters" / f"{name}.fits").exists()
    assert (out / "report.json").exists() and (out / "work.zarr").is_dir()
    assert sorted(p.name for p in (out / "stacks").glob("*.fits")) == [
        "R_SYNTH-FIELD.fits", "V_SYNTH-FIELD.fits"]
    inst = night.instrument
    calibrate = Calibrator(overscans=[inst.overscan_region], overscan_method="median_per_line",
                           image_area=inst.image_region, master_bias=out / "masters/bias.fits",
                           master_dark=out / "masters/dark.fits", mask=True,
                           quality=QualityParams(cosmic_rays="flag"))
    lights = night.files["light"]
    assert len(lights) == 4
    for raw in lights:
        band = fits.getheader(raw)["FILTER"]
        flat = out / "masters" / f"flat_{band}.fits"
        reference = calibrate(raw=raw, calibrated=tmp_path / "ref.fits", master_flat=flat,
                              bad_pixels=out / "masters" / f"bpm_{band}.fits")
        got = _arrays(out / "lights" / raw.name)
        for x, y in zip(got, _arrays(reference), strict=True):
            np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-6)
        assert fits.getheader(out / "lights" / raw.name)["MFLATFNM"] == flat.name



def test_master_bias_and_dark_against_numpy(tmp_path):
    # astropy's rejection, asked for explicitly, so that the whole chain is held against astropy
    astropy_clip = {"method": "median", "clip": "sigma", "stdfunc": "mad_std"}
    night, config_path = _night(tmp_path, filters=("V",), n_light=1,
                                combine={"bias": astropy_clip, "dark": astropy_clip})
    report = reduce_night(load_config(config_path), scheduler="synchronous", echo=lambda *_: None)
    assert report.ok
    inst = night.instrument
    ov, area = inst.overscan_region, inst.image_region

    def corrected(path):
        raw = fits.getdata(path).astype(np.float64)
        level = np.array([[grouped_median(row)] for row in raw[:, ov["xmin"]:ov["xmax"]]])
        return (raw - level)[area["ymin"]:area["ymax"], area["xmin"]:area["xmax"]]

    def clipped_median(stack):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AstropyUserWarning)
            masked = sigma_clip(stack, axis=0, sigma=5, maxiters=5, cenfunc="median",
                                stdfunc="mad_std")
        return np.ma.median(masked, axis=0).filled(np.nan)

    bias = clipped_median(np.stack([corrected(p) for p in night.files["bias"]]))
    np.testing.assert_allclose(fits.getdata(tmp_path / "reduced/masters/bias.fits"), bias,
                               rtol=1e-5, atol=1e-3)
    darks = [(corrected(p) - bias) / fits.getheader(p)["EXPTIME"] for p in night.files["dark"]]
    np.testing.assert_allclose(fits.getdata(tmp_path / "reduced/masters/dark.fits"),
                               clipped_median(np.stack(darks)), rtol=1e-4, atol=1e-4)
    with fits.open(tmp_path / "reduced/masters/flat_V.fits") as flat:
        assert abs(np.nanmean(flat[0].data) - 1) < 0.01
        assert [h.name for h in flat] == ["PRIMARY", "ERROR", "NCOMBINE"]
        assert flat[0].header["NCOMBINE"] == 3 and 0 <= flat[0].header["REJFRAC"] < 0.2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cli_run_on_a_dask_scheduler_started_by_hand(tmp_path):
    _, config_path = _night(tmp_path, n_light=1)
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    scheduler = subprocess.Popen([BIN / "dask", "scheduler", "--host", "127.0.0.1", "--port",
                                  str(port), "--no-dashboard"], stderr=subprocess.DEVNULL)
    worker = subprocess.Popen([BIN / "dask", "worker", address, "--nworkers", "2", "--nthreads",
                               "1", "--no-dashboard"], stderr=subprocess.DEVNULL)
    try:
        with Client(address, timeout="60s") as client:
            client.wait_for_workers(2, timeout=60)
        run = subprocess.run([BIN / "ccdflow", "run", config_path, "--scheduler", address],
                             capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr
        assert address in run.stdout
        assert len(list((tmp_path / "reduced/lights").glob("*.fits"))) == 2
    finally:
        for proc in (worker, scheduler):
            proc.terminate()
            proc.wait(timeout=30)


def test_rerun_resumes_exactly_what_changed(tmp_path):
    night, config_path = _night(tmp_path)
    run = lambda: reduce_night(load_config(config_path), scheduler="synchronous",  # noqa: E731
                               echo=lambda *_: None)
    first = run()
    assert first.count("done") == 4
    out = tmp_path / "reduced"
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*/*.fits")}
    again = run()
    assert again.count("reused") == 4 and again.count("done") == 0
    assert {m["status"] for m in again.masters.values()} == {"reused"}
    assert stamps == {p: p.stat().st_mtime_ns for p in out.glob("*/*.fits")}

    (out / "lights/light_V_001.fits").unlink()
    third = run()
    assert [Path(p).name for p, f in third.frames.items() if f["status"] == "done"] == [
        "light_V_001.fits"]

    config = yaml.safe_load(config_path.read_text())
    config["calibration"]["read_noise"] = 7.0
    config_path.write_text(yaml.safe_dump(config))
    fourth = run()
    assert fourth.count("done") == 4  # every light depends on the read noise ...
    # ... and so do the bias and dark masters (their noise model), hence the flats made with them
    assert {m["status"] for m in fourth.masters.values()} == {"built"}
    assert fits.getheader(out / "lights/light_R_000.fits")["RDNOISE"] == 7.0

    flat = next(p for p in night.files["flat"] if "_V_" in p.name)
    os.utime(flat, ns=(time.time_ns(), time.time_ns()))
    fifth = run()
    assert fifth.masters["flat_V"]["status"] == "built"
    assert fifth.masters["bias"]["status"] == "reused"
    redone = sorted(Path(p).name for p, f in fifth.frames.items() if f["status"] == "done")
    assert redone == ["light_V_000.fits", "light_V_001.fits"]


def test_bad_frames_are_reported_and_the_rest_completes(tmp_path):
    night, config_path = _night(tmp_path, filters=("V",), n_light=3)
    lights = night.files["light"]
    lights[0].write_bytes(lights[0].read_bytes()[:-2880])  # truncated
    small = syn.make_frame(syn.make_truth(syn.Instrument(ny=20, nx=20, n_overscan=8)),
                           imagetyp="light", exptime=10.0, seed=1)
    small.hdu.writeto(lights[1], overwrite=True)  # wrong shape
    bias = night.files["bias"][2]
    bias.write_bytes(bias.read_bytes()[:-2880])  # a corrupt calibration frame
    run = subprocess.run([BIN / "ccdflow", "run", config_path, "--scheduler", "threads"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 1
    assert lights[0].name in run.stderr and "truncated" in run.stderr
    assert lights[1].name in run.stderr and "differs from master" in run.stderr
    assert bias.name in run.stderr
    out = tmp_path / "reduced"
    assert (out / "lights" / lights[2].name).exists()
    assert not (out / "lights" / lights[0].name).exists()
    report = yaml.safe_load((out / "report.json").read_text())
    assert report["ok"] is False and str(lights[0]) in report["failures"]
    assert fits.getheader(out / "masters/bias.fits")["NCOMBINE"] == 4  # the bad bias left out
    assert not list(out.glob("*/.*.part"))


def test_a_missing_flat_fails_only_the_lights_that_need_it(tmp_path):
    night, config_path = _night(tmp_path, n_light=1)
    csv = tmp_path / "night.csv"
    csv.write_text("\n".join(line for line in csv.read_text().splitlines()
                             if "flat_R" not in line))
    report = reduce_night(load_config(config_path), scheduler="synchronous", echo=lambda *_: None)
    failed = {Path(p).name: r for p, r in report.failures.items()}
    assert list(failed) == ["light_R_000.fits"]
    assert "flat" in failed["light_R_000.fits"] and "FILTER='R'" in failed["light_R_000.fits"]
    assert (tmp_path / "reduced/lights/light_V_000.fits").exists()


def test_a_killed_worker_does_not_change_the_night(tmp_path):
    reference_dir, killed_dir = tmp_path / "reference", tmp_path / "killed"
    _, reference_cfg = _night(reference_dir, size=128, n_light=6, filters=("V",))
    reduce_night(load_config(reference_cfg), scheduler="synchronous", echo=lambda *_: None)
    _, config_path = _night(killed_dir, size=128, n_light=6, filters=("V",))
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        result = {}
        thread = threading.Thread(target=lambda: result.update(report=reduce_night(
            load_config(config_path), scheduler=cluster.scheduler_address, echo=lambda *_: None)))
        thread.start()
        deadline = time.time() + 60
        while not (killed_dir / "reduced/work.zarr").exists() and time.time() < deadline:
            time.sleep(0.02)
        victim = next(iter(client.run(os.getpid).values()))
        os.kill(victim, signal.SIGKILL)
        thread.join(timeout=240)
    assert result["report"].ok, result["report"].failures
    _assert_same_outputs(reference_dir / "reduced", killed_dir / "reduced")


def test_a_killed_run_resumes_without_redoing_finished_frames(tmp_path):
    _, config_path = _night(tmp_path, size=96, n_light=10, filters=("V",))
    proc = subprocess.Popen([BIN / "ccdflow", "run", config_path, "--scheduler", "synchronous"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    lights = tmp_path / "reduced/lights"
    deadline = time.time() + 240
    while len(list(lights.glob("light_*.fits"))) < 3 and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    finished = {p.name for p in lights.glob("light_*.fits")}
    assert 3 <= len(finished) < 10, "the run was not interrupted in the lights stage"
    table = tmp_path / "reduced/work.zarr/records/table.json"
    recorded = ({f"{stem}.fits" for stem in json.loads(table.read_text()).get("lights_V", {})}
                if table.exists() else set())
    report = reduce_night(load_config(config_path), scheduler="synchronous", echo=lambda *_: None)
    assert report.ok
    reused = {Path(p).name for p, f in report.frames.items() if f["status"] == "reused"}
    # records are written in batches: a frame whose FITS was written but whose batch of records
    # was not is redone; exactly the recorded frames are reused and none is lost
    assert reused == recorded and reused <= finished
    assert len(list(lights.glob("light_*.fits"))) == 10
    assert not list(lights.glob(".*.part"))
    reference = tmp_path / "reference"
    shutil.copytree(tmp_path / "raw", reference / "raw")
    shutil.copy(tmp_path / "night.csv", reference / "night.csv")
    shutil.copy(config_path, reference / "night.yaml")
    reduce_night(load_config(reference / "night.yaml"), scheduler="synchronous",
                 echo=lambda *_: None)
    for name in finished:
        for x, y in zip(_arrays(lights / name), _arrays(reference / "reduced/lights" / name),
                        strict=True):
            np.testing.assert_array_equal(x, y)
