"""Where a night computes: a LocalCluster, a cluster by address, object, class or gateway, or dask locally."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import ssl
import struct
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import dask
from distributed import Client, performance_report
from distributed.deploy import Cluster, LocalCluster
from distributed.security import Security

from ccdflow.errors import ConfigError
from ccdflow.io.write import atomic_path
from ccdflow.night.cluster_config import LOCAL_SCHEDULERS, ClusterConfig, is_gateway
from ccdflow.night.deploy import class_cluster, gateway_cluster

__all__ = ["open_cluster", "probe_scheduler", "recording_performance"]

logger = logging.getLogger(__name__)

# a dask handshake is a few hundred bytes; anything far larger is another protocol's text
_MAX_HANDSHAKE = 1 << 20


def _default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
               else (os.cpu_count() or 1))


def probe_scheduler(address: str, *, timeout: float, security: Security | None = None) -> None:
    """Check that ``tcp://`` or ``tls://host:port`` is a dask scheduler before a `Client` is pointed at it.

    A dask server speaks first: it sends a length-prefixed handshake as soon as a connection is
    accepted (over TLS, once the TLS handshake is done). A port that accepts and stays silent, or a
    service of another protocol (HTTP sends nothing until asked, or text whose first bytes read as
    an absurd length), is refused here within ``timeout``, instead of leaving the client waiting or
    allocating that length.

    Parameters
    ----------
    address : str
        ``tcp://host:port`` or ``tls://host:port``; other protocols are not probed.
    timeout : float
        Seconds for connecting and for the first bytes.
    security : Security, optional
        The client's TLS credentials; required for ``tls://``.

    Raises
    ------
    ConfigError
        For ``cluster.scheduler``, saying what was found at the address; for ``cluster.security``
        if a ``tls://`` address comes without credentials.

    Examples
    --------
    >>> try:
    ...     probe_scheduler("tcp://127.0.0.1:1", timeout=1.0)
    ... except ConfigError as err:
    ...     print(err.key)
    cluster.scheduler
    """
    parts = urlsplit(address)
    if parts.scheme not in ("tcp", "tls", "") or parts.port is None:
        return
    context = _tls_context(address, security) if parts.scheme == "tls" else None
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as raw:
            sock = context.wrap_socket(raw, server_hostname=parts.hostname) if context else raw
            with sock:
                head = _first_bytes(sock, address)
    except ssl.SSLError as err:
        raise ConfigError("cluster.scheduler", f"TLS handshake with {address} failed ({err.reason or err}): "
                          "is it a tls:// scheduler, and do the cluster.security certificates "
                          "match its certificate authority?") from err
    except TimeoutError as err:
        raise ConfigError("cluster.scheduler", f"{address} did not answer as a dask scheduler "
                          f"within {timeout:g} s (cluster.connect_timeout)") from err
    except OSError as err:
        raise ConfigError("cluster.scheduler", f"cannot reach {address}: {err}") from err
    (length,) = struct.unpack("<Q", head)
    if not 0 < length <= _MAX_HANDSHAKE:
        raise ConfigError("cluster.scheduler", f"{address} is not a dask scheduler (it answered "
                          f"{head!r})")


def _first_bytes(sock: socket.socket, address: str) -> bytes:
    head = b""
    while len(head) < 8:
        chunk = sock.recv(8 - len(head))
        if not chunk:
            raise ConfigError("cluster.scheduler",
                              f"{address} closed the connection: not a dask scheduler")
        head += chunk
    return head


def _tls_context(address: str, security: Security | None) -> ssl.SSLContext:
    context = security.get_connection_args("client")["ssl_context"] if security else None
    if context is None:
        raise ConfigError("cluster.security", f"{address} is a TLS address: give cluster.security "
                          "(tls_ca_file, tls_client_cert, tls_client_key) or a Security object")
    return context


def _connect(address: str, timeout: float, security: Security | None) -> Client:
    if security is not None and security.require_encryption and not address.startswith("tls://"):
        raise ConfigError("cluster.security", f"TLS credentials are given, so every connection "
                          f"is encrypted: use a tls:// address, not {address}")
    probe_scheduler(address, timeout=timeout, security=security)
    try:
        return Client(address, timeout=f"{timeout}s", security=security)
    except (OSError, TimeoutError) as err:
        raise ConfigError("cluster.scheduler", f"cannot reach {address}: {err}") from err


def _security(config: ClusterConfig, security: Security | bool | None,
              scheduler: str | None) -> Security | None:
    """The night's TLS credentials: the argument, else the config's files, else none."""
    if security is None or security is False:
        return config.security.to_security() if config.security else None
    if security is True:
        if scheduler is not None:
            # credentials made up here are trusted only by a scheduler started with them
            raise ConfigError("cluster.security", "temporary credentials (security=True) secure only "
                              f"a cluster ccdflow starts, not {scheduler}; give its certificates")
        try:
            return Security.temporary()
        except ImportError as err:
            raise ConfigError("cluster.security", "temporary TLS credentials need the cryptography "
                              "package: pip install cryptography") from err
    if not isinstance(security, Security):
        raise ConfigError("cluster.security", "expected a distributed.security.Security or True, "
                          f"got {security!r}")
    return security


@contextlib.contextmanager
def open_cluster(config: ClusterConfig, *, scheduler: str | Client | Cluster | None = None,
                 n_workers: int | None = None, security: Security | bool | None = None,
                 echo=print) -> Iterator[Client | None]:
    """Open the night's compute backend for the duration of the block.

    Parameters
    ----------
    config : ClusterConfig
        The ``cluster`` section.
    scheduler : str, distributed.Client or Cluster, optional
        Overrides ``config.scheduler`` (and ``config.cluster_class``): ``tcp://`` or
        ``tls://host:port`` for an existing cluster, ``gateway://host`` for a dask-gateway server,
        ``threads``, ``synchronous`` or ``processes`` for a local dask scheduler, or a client or
        cluster object, used as is and never closed here.
    n_workers : int, optional
        Overrides ``config.n_workers`` (LocalCluster size).
    security : Security or True, optional
        Overrides ``config.security``: TLS credentials for a ``tls://`` address, the LocalCluster
        or the cluster class; True makes temporary self-signed ones for a cluster started here.
        Unused by local schedulers and by client or cluster objects, which carry their own.
    echo : callable
        Where the dashboard link is printed.

    Yields
    ------
    distributed.Client or None
        A client (LocalCluster, started or remote cluster), or None for a local scheduler.

    Raises
    ------
    ConfigError
        If a scheduler address cannot be reached or is not a dask scheduler, within
        ``config.connect_timeout``; if the TLS credentials do not fit; if a cluster class or
        dask-gateway cannot be loaded or started.

    Examples
    --------
    >>> with open_cluster(ClusterConfig(scheduler="synchronous")) as client:
    ...     print(client)
    None
    """
    scheduler = scheduler or config.scheduler
    if isinstance(scheduler, Client):
        yield scheduler
        return
    if isinstance(scheduler, Cluster):
        with Client(scheduler) as client:  # closing it leaves the cluster running
            yield client
        return
    if scheduler in LOCAL_SCHEDULERS:
        with dask.config.set(scheduler=scheduler):
            yield None
        return
    if is_gateway(scheduler):
        if security is not None:
            raise ConfigError("cluster.security", "a dask-gateway cluster brings its own credentials")
        with gateway_cluster(scheduler, config) as client:
            echo(f"dask-gateway cluster: {scheduler}  dashboard: {client.dashboard_link}")
            yield client
        return
    with _started(config, scheduler, n_workers, _security(config, security, scheduler), echo) as client:
        yield client


@contextlib.contextmanager
def _started(config: ClusterConfig, scheduler: str | None, n_workers: int | None,
             security: Security | None, echo) -> Iterator[Client]:
    """A client of a remote scheduler, of the config's cluster class, or of a new LocalCluster."""
    if scheduler is not None:
        with _connect(scheduler, config.connect_timeout, security) as client:
            echo(f"dask cluster: {scheduler}  dashboard: {client.dashboard_link}")
            yield client
        return
    if config.cluster_class is not None:
        with class_cluster(config, security=security) as client:
            echo(f"dask {config.cluster_class}: {client.scheduler.address}  "
                 f"dashboard: {client.dashboard_link}")
            yield client
        return
    workers = n_workers or config.n_workers or _default_workers()
    with LocalCluster(n_workers=workers, threads_per_worker=config.threads_per_worker,
                      processes=True, dashboard_address=config.dashboard_address,
                      memory_limit=config.memory_limit or "auto",
                      security=security) as cluster, Client(cluster) as client:
        echo(f"dask LocalCluster: {workers} workers  dashboard: {client.dashboard_link}")
        yield client


@contextlib.contextmanager
def recording_performance(client: Client | None, path: str | Path | None) -> Iterator[None]:
    """Write dask's performance report of the block to ``path`` (HTML), if a path is given.

    The report is written when the block ends without error, atomically.

    Parameters
    ----------
    client : distributed.Client or None
        The night's client; None (a local dask scheduler) cannot record a report.
    path : str or Path, optional
        Where the report goes; None records nothing.

    Raises
    ------
    ConfigError
        For ``performance_report``, if a path is given without a distributed client.

    Examples
    --------
    >>> try:
    ...     with recording_performance(None, "night-report.html"):
    ...         pass
    ... except ConfigError as err:
    ...     print(err.key)
    performance_report
    """
    if path is None:
        yield
        return
    if client is None:
        raise ConfigError("performance_report", "dask writes a performance report only on a "
                          "distributed cluster, not with the local 'threads', 'synchronous' or "
                          "'processes' scheduler: no report would be written")
    with atomic_path(path) as tmp, client.as_current(), performance_report(filename=str(tmp)):
        yield
