"""Where a night computes: a LocalCluster, a dask cluster by address or object, or a local scheduler."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import struct
from collections.abc import Iterator
from urllib.parse import urlsplit

import dask
from distributed import Client
from distributed.deploy import Cluster, LocalCluster

from ccdflow.errors import ConfigError
from ccdflow.night.config import ClusterConfig

__all__ = ["open_cluster", "probe_scheduler"]

logger = logging.getLogger(__name__)

# a dask handshake is a few hundred bytes; anything far larger is another protocol's text
_MAX_HANDSHAKE = 1 << 20


def _default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
               else (os.cpu_count() or 1))


def probe_scheduler(address: str, *, timeout: float) -> None:
    """Check that ``tcp://host:port`` is a dask scheduler before a `Client` is pointed at it.

    A dask server speaks first: it sends a length-prefixed handshake as soon as a connection is
    accepted. A port that accepts and stays silent, or a service of another protocol (HTTP sends
    nothing until asked, or text whose first bytes read as an absurd length), is refused here
    within ``timeout``, instead of leaving the client waiting or allocating that length.

    Parameters
    ----------
    address : str
        ``tcp://host:port``; other protocols are not probed.
    timeout : float
        Seconds for connecting and for the first bytes.

    Raises
    ------
    ConfigError
        For ``cluster.scheduler``, saying what was found at the address.

    Examples
    --------
    >>> try:
    ...     probe_scheduler("tcp://127.0.0.1:1", timeout=1.0)
    ... except ConfigError as err:
    ...     print(err.key)
    cluster.scheduler
    """
    parts = urlsplit(address)
    if parts.scheme not in ("tcp", "") or parts.port is None:
        return
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
            head = b""
            while len(head) < 8:
                chunk = sock.recv(8 - len(head))
                if not chunk:
                    raise ConfigError("cluster.scheduler",
                                      f"{address} closed the connection: not a dask scheduler")
                head += chunk
    except TimeoutError as err:
        raise ConfigError("cluster.scheduler", f"{address} did not answer as a dask scheduler "
                          f"within {timeout:g} s (cluster.connect_timeout)") from err
    except OSError as err:
        raise ConfigError("cluster.scheduler", f"cannot reach {address}: {err}") from err
    (length,) = struct.unpack("<Q", head)
    if not 0 < length <= _MAX_HANDSHAKE:
        raise ConfigError("cluster.scheduler", f"{address} is not a dask scheduler (it answered "
                          f"{head!r})")


def _connect(address: str, timeout: float) -> Client:
    probe_scheduler(address, timeout=timeout)
    try:
        return Client(address, timeout=f"{timeout}s")
    except (OSError, TimeoutError) as err:
        raise ConfigError("cluster.scheduler", f"cannot reach {address}: {err}") from err


@contextlib.contextmanager
def open_cluster(config: ClusterConfig, *, scheduler: str | Client | Cluster | None = None,
                 n_workers: int | None = None, echo=print) -> Iterator[Client | None]:
    """Open the night's compute backend for the duration of the block.

    Parameters
    ----------
    config : ClusterConfig
        The ``cluster`` section.
    scheduler : str, distributed.Client or Cluster, optional
        Overrides ``config.scheduler``: ``tcp://host:port`` for an existing cluster, ``threads``,
        ``synchronous`` or ``processes`` for a local dask scheduler, or a client or cluster
        object, used as is and never closed here.
    n_workers : int, optional
        Overrides ``config.n_workers`` (LocalCluster size).
    echo : callable
        Where the dashboard link is printed.

    Yields
    ------
    distributed.Client or None
        A client (LocalCluster or remote), or None for a local scheduler.

    Raises
    ------
    ConfigError
        If a scheduler address cannot be reached or is not a dask scheduler, within
        ``config.connect_timeout``.

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
    if scheduler in ("threads", "synchronous", "processes"):
        with dask.config.set(scheduler=scheduler):
            yield None
        return
    if scheduler is not None:
        with _connect(scheduler, config.connect_timeout) as client:
            echo(f"dask cluster: {scheduler}  dashboard: {client.dashboard_link}")
            yield client
        return
    workers = n_workers or config.n_workers or _default_workers()
    with LocalCluster(n_workers=workers, threads_per_worker=config.threads_per_worker,
                      processes=True, dashboard_address=config.dashboard_address,
                      memory_limit=config.memory_limit or "auto") as cluster, Client(cluster) as client:
        echo(f"dask LocalCluster: {workers} workers  dashboard: {client.dashboard_link}")
        yield client
