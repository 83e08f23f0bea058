"""Clusters a night starts itself: a class named in the config (a real LocalCluster here, sized by
adapt), and dask-gateway (not installed: the message; a stand-in module: the calls made)."""

import sys
import types
from pathlib import Path

import numpy as np
import pytest
import yaml
from astropy.io import fits
from distributed import Client, LocalCluster

from ccdflow import synthetic as syn
from ccdflow.errors import ConfigError
from ccdflow.night import load_config, reduce_night
from ccdflow.night.cluster_config import ClusterConfig
from ccdflow.night.deploy import load_cluster_class

QUIET = {"echo": lambda *_: None, "progress": False}


def _night(folder: Path, cluster: dict) -> Path:
    syn.write_night(folder, instrument=syn.Instrument(ny=16, nx=16, n_overscan=4), n_bias=3,
                    n_dark=0, n_flat=0, n_light=2, filters=("V",))
    (folder / "night.yaml").write_text(yaml.safe_dump({
        "input": {"filelist": "night.csv"}, "output": "reduced",
        "calibration": {"overscans": "header", "image_area": "header"}, "cluster": cluster}))
    return folder / "night.yaml"


def _lights(output: Path) -> dict[str, np.ndarray]:
    out = {}
    for path in sorted((output / "lights").glob("*.fits")):
        with fits.open(path) as hdul:
            out[path.name] = np.array(hdul[0].data)
    return out


@pytest.mark.parametrize(("name", "message"), [
    ("no_such_package.SLURMCluster", r"cannot import no_such_package .*pip install"),
    ("distributed.NoSuchCluster", r"distributed has no 'NoSuchCluster'"),
    ("distributed.Client", r"distributed.Client is not a distributed.deploy.Cluster subclass"),
])
def test_a_bad_cluster_class_names_the_key(tmp_path, name, message):
    config = load_config(_night(tmp_path, {"class": name}))
    with pytest.raises(ConfigError, match=rf"^cluster.class: {message}"):
        reduce_night(config, **QUIET)
    assert not (tmp_path / "reduced").exists()
    assert load_cluster_class("distributed.LocalCluster") is LocalCluster


_RECORDER = '''
from distributed import LocalCluster

calls = []


class RecordingCluster(LocalCluster):
    """A LocalCluster that notes how it was sized."""

    def adapt(self, **kwargs):
        calls.append(("adapt", kwargs))
        return super().adapt(**kwargs)
'''


def test_a_night_on_a_cluster_class_sized_by_adapt(tmp_path, monkeypatch):
    # a subclass in its own importable module, so that `cluster.class` can name it
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "recording_cluster.py").write_text(_RECORDER)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    # no workers until adapt asks for them: the night can only finish if adapt was applied
    config = load_config(_night(tmp_path / "a", {
        "class": "recording_cluster.RecordingCluster",
        "kwargs": {"n_workers": 0, "processes": False, "threads_per_worker": 1,
                   "dashboard_address": ":0"},
        "adapt": {"minimum": 1, "maximum": 1}}))
    lines = []
    report = reduce_night(config, echo=lines.append, progress=False)
    assert report.ok and report.count("done") == 2
    assert sys.modules["recording_cluster"].calls == [("adapt", {"minimum": 1, "maximum": 1})]
    assert any(line.startswith("dask recording_cluster.RecordingCluster: inproc://") for line in lines)
    # the same products as the same night computed in this process
    local = load_config(_night(tmp_path / "b", {"scheduler": "synchronous"}))
    assert reduce_night(local, **QUIET).ok
    first, second = _lights(tmp_path / "a" / "reduced"), _lights(tmp_path / "b" / "reduced")
    assert sorted(first) == sorted(second) and len(first) == 2
    for name in first:
        np.testing.assert_array_equal(first[name], second[name], err_msg=name)


def test_without_dask_gateway_the_message_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "dask_gateway", None)  # an import of it now fails
    config = load_config(_night(tmp_path, {"scheduler": "gateway://gw.example.org"}))
    with pytest.raises(ConfigError, match=r"^cluster.scheduler: gateway://gw.example.org needs the "
                                          r"dask-gateway client: pip install dask-gateway"):
        reduce_night(config, **QUIET)
    assert not (tmp_path / "reduced").exists()


class _GatewayCluster:
    """dask-gateway's cluster, standing in with a real in-process LocalCluster."""

    def __init__(self, log: list):
        self.log = log
        self.local = LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=":0")

    def adapt(self, **kwargs):
        self.log.append(("adapt", kwargs))

    def scale(self, n):
        self.log.append(("scale", n))

    def get_client(self):
        return Client(self.local)

    def close(self):
        self.log.append(("close",))
        self.local.close()


def _fake_gateway(log: list) -> types.ModuleType:
    module = types.ModuleType("dask_gateway")

    class Gateway:
        def __init__(self, address=None):
            log.append(("Gateway", address))

        def new_cluster(self, **options):
            log.append(("new_cluster", options))
            return _GatewayCluster(log)

        def connect(self, name):
            log.append(("connect", name))
            return _GatewayCluster(log)

        def close(self):
            log.append(("gateway closed",))

    module.Gateway = Gateway
    return module


@pytest.mark.parametrize(("cluster", "expected"), [
    ({"scheduler": "gateway://gw.example.org:8443/hub", "kwargs": {"worker_cores": 2}, "scale": 3},
     [("Gateway", "https://gw.example.org:8443/hub"), ("new_cluster", {"worker_cores": 2}),
      ("scale", 3), ("close",), ("gateway closed",)]),
    ({"scheduler": "gateway+http://10.0.0.5:8000", "gateway_cluster": "prod.abc",
      "adapt": {"minimum": 1, "maximum": 8}},
     [("Gateway", "http://10.0.0.5:8000"), ("connect", "prod.abc"),
      ("adapt", {"minimum": 1, "maximum": 8}), ("close",), ("gateway closed",)]),
])
def test_a_gateway_cluster_is_started_or_joined_sized_and_closed(tmp_path, monkeypatch, cluster,
                                                                 expected):
    log = []
    monkeypatch.setitem(sys.modules, "dask_gateway", _fake_gateway(log))
    config = load_config(_night(tmp_path, cluster))
    report = reduce_night(config, **QUIET)
    assert report.ok and report.count("done") == 2
    assert log == expected


def test_security_is_refused_with_a_gateway(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).write_text("PEM")
    with pytest.raises(ConfigError, match=r"^cluster.security: a dask-gateway cluster brings its own"):
        ClusterConfig.from_dict({"scheduler": "gateway://gw.example.org",
                                 "security": {"tls_ca_file": "a", "tls_client_cert": "b"}},
                                base=tmp_path)
