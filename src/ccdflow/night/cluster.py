"""Where a night computes: a LocalCluster, a dask cluster by address, or a local scheduler."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

import dask
from distributed import Client, LocalCluster

from ccdflow.errors import ConfigError
from ccdflow.night.config import ClusterConfig

__all__ = ["open_cluster"]

logger = logging.getLogger(__name__)


def _default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
               else (os.cpu_count() or 1))


@contextlib.contextmanager
def open_cluster(config: ClusterConfig, *, scheduler: str | None = None,
                 n_workers: int | None = None, echo=print) -> Iterator[Client | None]:
    """Open the night's compute backend for the duration of the block.

    Parameters
    ----------
    config : ClusterConfig
        The ``cluster`` section.
    scheduler : str, optional
        Overrides ``config.scheduler``: ``tcp://host:port`` for an existing cluster, ``threads``,
        ``synchronous`` or ``processes`` for a local dask scheduler.
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
        If a scheduler address cannot be reached.
    """
    scheduler = scheduler or config.scheduler
    if scheduler in ("threads", "synchronous", "processes"):
        with dask.config.set(scheduler=scheduler):
            yield None
        return
    if scheduler is not None:
        try:
            client = Client(scheduler, timeout="20s")
        except (OSError, TimeoutError) as err:
            raise ConfigError("cluster.scheduler", f"cannot reach {scheduler}: {err}") from err
        with client:
            echo(f"dask cluster: {scheduler}  dashboard: {client.dashboard_link}")
            yield client
        return
    workers = n_workers or config.n_workers or _default_workers()
    with LocalCluster(n_workers=workers, threads_per_worker=config.threads_per_worker,
                      processes=True, dashboard_address=":0", memory_limit=config.memory_limit
                      or "auto") as cluster, Client(cluster) as client:
        echo(f"dask LocalCluster: {workers} workers  dashboard: {client.dashboard_link}")
        yield client
