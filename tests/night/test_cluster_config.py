"""The cluster section: TLS files, a cluster class with its arguments and size, gateway addresses;
every error names its key."""

from pathlib import Path

import pytest
import yaml

from ccdflow.errors import ConfigError
from ccdflow.night import load_config
from ccdflow.night.cluster_config import AdaptBounds, ClusterConfig, TlsFiles, check_scheduler
from ccdflow.night.config import NightConfig


def _pems(folder: Path, *names: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_text("-----BEGIN CERTIFICATE-----\n")


def test_tls_files_are_relative_to_the_config_and_build_an_encrypting_security(tmp_path):
    _pems(tmp_path / "certs", "ca.pem", "client.pem", "client.key")
    (tmp_path / "night.yaml").write_text(yaml.safe_dump({
        "input": {"filelist": "night.csv"},
        "cluster": {"scheduler": "tls://10.0.0.1:8786",
                    "security": {"tls_ca_file": "certs/ca.pem", "tls_client_cert": "certs/client.pem",
                                 "tls_client_key": "certs/client.key"}}}))
    config = load_config(tmp_path / "night.yaml").cluster
    assert config.security.tls_ca_file == tmp_path / "certs" / "ca.pem"
    security = config.security.to_security()
    assert security.require_encryption is True
    assert security.tls_client_key == str(tmp_path / "certs" / "client.key")
    assert security.tls_client_cert == str(tmp_path / "certs" / "client.pem")
    assert config.to_dict()["security"]["tls_ca_file"] == str(tmp_path / "certs" / "ca.pem")


@pytest.mark.parametrize(("present", "given", "key"), [
    (("ca.pem", "client.pem"), {"tls_client_key": "client.key"}, "cluster.security.tls_client_key"),
    (("client.pem",), {}, "cluster.security.tls_ca_file"),
])
def test_a_missing_tls_file_names_its_key(tmp_path, present, given, key):
    _pems(tmp_path, *present)
    data = {"tls_ca_file": "ca.pem", "tls_client_cert": "client.pem", **given}
    with pytest.raises(ConfigError, match=rf"^{key}: no such file: .*{data[key.rsplit('.', 1)[1]]}"):
        ClusterConfig.from_dict({"security": data}, base=tmp_path)


def test_the_ca_and_the_certificate_are_required(tmp_path):
    _pems(tmp_path, "ca.pem")
    with pytest.raises(ConfigError, match=r"^cluster.security.tls_client_cert: required"):
        TlsFiles.from_dict({"tls_ca_file": "ca.pem"}, base=tmp_path)
    with pytest.raises(ConfigError, match=r"^cluster.security.tls_ca_fil: unknown key"):
        TlsFiles.from_dict({"tls_ca_fil": "ca.pem"}, base=tmp_path)


@pytest.mark.parametrize("address", ["gateway://gw.example.org", "gateway+http://10.0.0.5:8000/dask",
                                     "gateway://", "tls://10.0.0.1:8786", "tcp://[::1]:8786"])
def test_scheduler_addresses_are_accepted(address):
    assert check_scheduler(address) == address
    assert ClusterConfig(scheduler=address).scheduler == address


@pytest.mark.parametrize("address", ["gateway:/gw.example.org", "https://gw.example.org", "slurm"])
def test_other_scheduler_strings_are_refused(address):
    with pytest.raises(ConfigError, match=r"^cluster.scheduler: expected .*gateway://host"):
        ClusterConfig.from_dict({"scheduler": address})


def test_a_cluster_class_with_kwargs_and_adapt_bounds_round_trips(tmp_path):
    data = {"input": {"filelist": "night.csv"},
            "cluster": {"class": "dask_jobqueue.SLURMCluster",
                        "kwargs": {"queue": "normal", "cores": 8, "memory": "32GB"},
                        "adapt": {"minimum": 1, "maximum": 20}}}
    config = NightConfig.from_dict(data, base=tmp_path)
    assert config.cluster.cluster_class == "dask_jobqueue.SLURMCluster"
    assert config.cluster.kwargs == {"queue": "normal", "cores": 8, "memory": "32GB"}
    assert config.cluster.adapt == AdaptBounds(minimum=1, maximum=20)
    plain = config.to_dict()
    assert plain["cluster"]["class"] == "dask_jobqueue.SLURMCluster"
    assert yaml.safe_load(yaml.safe_dump(plain)) == plain
    plain["input"] = {"filelist": plain["input"]["filelist"]}
    assert NightConfig.from_dict(plain, base=tmp_path) == config


@pytest.mark.parametrize(("section", "message"), [
    ({"class": "distributed.LocalCluster", "scheduler": "tcp://10.0.0.1:8786"},
     r"^cluster.class: give either cluster.scheduler or cluster.class"),
    ({"class": "SLURMCluster"}, r"^cluster.class: expected a dotted name"),
    ({"class": "dask_jobqueue.SLURMCluster", "adapt": {"maximum": 4}, "scale": 2},
     r"^cluster.adapt: give either cluster.adapt or cluster.scale"),
    ({"kwargs": {"queue": "normal"}}, r"^cluster.kwargs: only used with cluster.class"),
    ({"scale": 4}, r"^cluster.scale: only used with cluster.class"),
    ({"class": "a.B", "scale": 0}, r"^cluster.scale: "),
    ({"class": "a.B", "adapt": {"minimum": 5, "maximum": 2}}, r"^cluster.adapt.maximum: "),
    ({"class": "a.B", "adapt": {"minmum": 1}}, r"^cluster.adapt.minmum: unknown key"),
    ({"class": "a.B", "kwargs": [1, 2]}, r"^cluster.kwargs: expected a mapping"),
    ({"gateway_cluster": "abc"}, r"^cluster.gateway_cluster: .*gateway:// scheduler"),
    ({"klass": "a.B"}, r"^cluster.klass: unknown key; expected one of .*'class'"),
])
def test_cluster_errors_name_their_key(section, message):
    with pytest.raises(ConfigError, match=message):
        ClusterConfig.from_dict(section)


def test_a_gateway_takes_options_a_size_and_an_existing_cluster_name():
    config = ClusterConfig.from_dict({"scheduler": "gateway://gw.example.org", "kwargs": {"image": "x"},
                                      "scale": 3, "gateway_cluster": "prod.abc123"})
    assert (config.kwargs, config.scale, config.gateway_cluster) == ({"image": "x"}, 3, "prod.abc123")
