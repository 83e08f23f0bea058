"""The cluster: a silent port or an HTTP service is refused within the timeout before anything is
written; the LocalCluster dashboard stays on 127.0.0.1; client and cluster objects are used as is."""

import socket
import threading
import time
from pathlib import Path

import pytest
import yaml
from distributed import Client, LocalCluster
from distributed.security import Security

from ccdflow import synthetic as syn
from ccdflow.errors import ConfigError
from ccdflow.night import load_config, reduce_night
from ccdflow.night.cluster import open_cluster, probe_scheduler
from ccdflow.night.config import ClusterConfig


class _Server:
    """A TCP server on 127.0.0.1 that accepts and then stays silent, or answers like HTTP."""

    def __init__(self, reply: bytes | None):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.reply = reply
        self.conns = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            if self.reply is not None:
                try:
                    if conn.recv(65536):  # HTTP answers only once asked
                        conn.sendall(self.reply)
                except OSError:
                    pass  # the client gave up first

    def close(self):
        for conn in self.conns:
            conn.close()
        self.sock.close()


def _night(folder: Path, *, timeout: float) -> Path:
    night = syn.write_night(folder, instrument=syn.Instrument(ny=16, nx=16, n_overscan=4), n_bias=3,
                            n_dark=0, n_flat=0, n_light=1, filters=("V",))
    (folder / "night.yaml").write_text(yaml.safe_dump({
        "input": {"filelist": night.filelist.name}, "output": "reduced",
        "calibration": {"overscans": "header", "image_area": "header"},
        "cluster": {"connect_timeout": timeout}}))
    return folder / "night.yaml"


@pytest.mark.parametrize(("reply", "message"), [
    (None, r"did not answer as a dask scheduler within 1 s"),
    (b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n", r"did not answer|not a dask scheduler"),
])
def test_a_port_that_is_not_a_scheduler_fails_within_the_timeout(tmp_path, reply, message):
    server = _Server(reply)
    config = load_config(_night(tmp_path, timeout=1.0))
    start = time.monotonic()
    try:
        with pytest.raises(ConfigError, match=rf"cluster.scheduler: .*127.0.0.1:{server.port}.*({message})"):
            reduce_night(config, scheduler=f"tcp://127.0.0.1:{server.port}", echo=lambda *_: None)
    finally:
        server.close()
    assert time.monotonic() - start < 10
    assert not (tmp_path / "reduced").exists()


def test_a_server_that_speaks_first_in_another_protocol_is_named(tmp_path):
    banner = socket.create_server(("127.0.0.1", 0))
    port = banner.getsockname()[1]

    def greet():
        conn, _ = banner.accept()
        conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")
        time.sleep(2)
        conn.close()

    threading.Thread(target=greet, daemon=True).start()
    try:
        with pytest.raises(ConfigError, match=r"is not a dask scheduler \(it answered b'SSH-2.0-"):
            with open_cluster(ClusterConfig(connect_timeout=1.0), scheduler=f"tcp://127.0.0.1:{port}"):
                pass
    finally:
        banner.close()


def test_the_local_dashboard_listens_on_localhost_only():
    config = ClusterConfig(n_workers=1, memory_limit="1GB")
    with open_cluster(config, echo=lambda *_: None) as client:
        assert "127.0.0.1" in client.dashboard_link
        servers = client.cluster.scheduler.http_server._sockets.values()
        assert {sock.getsockname()[0] for sock in servers} == {"127.0.0.1"}


def test_the_dashboard_address_is_configurable():
    with pytest.raises(ConfigError, match="cluster.dashboard_address"):
        ClusterConfig(dashboard_address="")
    with pytest.raises(ConfigError, match="cluster.connect_timeout"):
        ClusterConfig.from_dict({"connect_timeout": 0})
    assert ClusterConfig.from_dict({"dashboard_address": ":8790"}).dashboard_address == ":8790"


def test_a_client_or_a_cluster_object_is_used_and_left_open(tmp_path):
    config = load_config(_night(tmp_path, timeout=5.0))
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address=":0") as cluster:
        with Client(cluster) as client:
            report = reduce_night(config, scheduler=client, echo=lambda *_: None, progress=False)
            assert report.ok and report.count("done") == 1
            assert client.status == "running"
            assert client.submit(sum, [1, 2]).result() == 3
        report = reduce_night(config, scheduler=cluster, echo=lambda *_: None, progress=False)
        assert report.ok and report.count("reused") == 1
        assert cluster.status.name == "running"


# --- TLS ------------------------------------------------------------------------------------------


def _write_credentials(folder: Path, security) -> dict[str, str]:
    """The in-memory PEMs of a temporary Security as files, named as in the config."""
    folder.mkdir()
    files = {"tls_ca_file": security.tls_ca_file, "tls_client_cert": security.tls_client_cert,
             "tls_client_key": security.tls_client_key}
    for name, text in files.items():
        (folder / f"{name}.pem").write_text(text)
    return {name: f"{folder.name}/{name}.pem" for name in files}


def test_a_night_on_a_tls_scheduler_with_the_configs_certificates(tmp_path):
    security = Security.temporary()
    path = _night(tmp_path, timeout=5.0)
    data = yaml.safe_load(path.read_text())
    data["cluster"]["security"] = _write_credentials(tmp_path / "certs", security)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0",
                      security=security) as cluster:
        assert cluster.scheduler_address.startswith("tls://")
        data["cluster"]["scheduler"] = cluster.scheduler_address
        path.write_text(yaml.safe_dump(data))
        lines = []
        report = reduce_night(load_config(path), echo=lines.append, progress=False)
        assert report.ok and report.count("done") == 1
        assert any(line.startswith(f"dask cluster: {cluster.scheduler_address}") for line in lines)
        # the same scheduler without credentials, or with another authority's, is refused
        config = load_config(_night(tmp_path / "other", timeout=2.0))
        with pytest.raises(ConfigError, match=r"^cluster.security: tls://.* is a TLS address: give"):
            reduce_night(config, scheduler=cluster.scheduler_address, echo=lambda *_: None)
        with pytest.raises(ConfigError, match=r"^cluster.scheduler: TLS handshake with tls://.* failed"):
            reduce_night(config, scheduler=cluster.scheduler_address, security=Security.temporary(),
                         echo=lambda *_: None)
        with pytest.raises(ConfigError, match=r"^cluster.security: .*use a tls:// address, not tcp://"):
            reduce_night(config, scheduler=cluster.scheduler_address.replace("tls", "tcp"),
                         security=security, echo=lambda *_: None)
        assert not (tmp_path / "other" / "reduced").exists()


def test_an_unreachable_tls_address_is_a_config_error():
    closed = socket.create_server(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    with pytest.raises(ConfigError, match=rf"^cluster.scheduler: cannot reach tls://127.0.0.1:{port}"):
        probe_scheduler(f"tls://127.0.0.1:{port}", timeout=1.0, security=Security.temporary())


def test_temporary_credentials_secure_a_cluster_started_here_only():
    config = ClusterConfig(n_workers=1, memory_limit="1GB")
    with open_cluster(config, security=True, echo=lambda *_: None) as client:
        assert client.scheduler.address.startswith("tls://")
        assert client.submit(sum, [1, 2]).result() == 3
    with pytest.raises(ConfigError, match=r"^cluster.security: temporary credentials .* not tcp://"):
        with open_cluster(config, scheduler="tcp://127.0.0.1:8786", security=True):
            pass
    with pytest.raises(ConfigError, match=r"^cluster.security: expected a distributed.security.Security"):
        with open_cluster(config, scheduler="tcp://127.0.0.1:8786", security="certs/"):
            pass


# --- performance report ---------------------------------------------------------------------------


def test_the_performance_report_of_a_night_on_a_cluster(tmp_path):
    config = load_config(_night(tmp_path, timeout=5.0))
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address=":0") as cluster:
        report = reduce_night(config, scheduler=cluster, performance_report=tmp_path / "perf.html",
                              echo=lambda *_: None, progress=False)
    assert report.ok
    page = (tmp_path / "perf.html").read_text()
    assert page.lstrip().lower().startswith("<!doctype html>")
    assert "Dask Performance Report" in page and "Task Stream" in page
    assert sorted(p.name for p in tmp_path.glob("*.part")) == []


def test_a_performance_report_with_a_local_scheduler_is_refused_before_any_work(tmp_path):
    config = load_config(_night(tmp_path, timeout=5.0))
    with pytest.raises(ConfigError, match=r"^performance_report: .*only on a distributed cluster"):
        reduce_night(config, scheduler="threads", performance_report=tmp_path / "perf.html",
                     echo=lambda *_: None)
    assert not (tmp_path / "perf.html").exists() and not (tmp_path / "reduced").exists()
