"""Clusters a night starts for itself: a cluster class named in the config, or a dask-gateway cluster.

The deployment packages (dask-jobqueue, dask-kubernetes, dask-gateway) are optional: each is
imported only when the config names it.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
from collections.abc import Iterator
from typing import Any

from distributed import Client
from distributed.deploy import Cluster
from distributed.security import Security

from ccdflow.errors import ConfigError
from ccdflow.night.cluster_config import ClusterConfig

__all__ = ["class_cluster", "gateway_cluster", "gateway_url", "load_cluster_class"]

logger = logging.getLogger(__name__)


def load_cluster_class(name: str) -> type[Cluster]:
    """Import the cluster class ``package.module.Class`` named by ``cluster.class``.

    Raises
    ------
    ConfigError
        For ``cluster.class``, if the module cannot be imported, has no such name, or the name is
        not a `distributed.deploy.Cluster` subclass.

    Examples
    --------
    >>> load_cluster_class("distributed.LocalCluster").__name__
    'LocalCluster'
    >>> try:
    ...     load_cluster_class("distributed.Client")
    ... except ConfigError as err:
    ...     print(err)
    cluster.class: distributed.Client is not a distributed.deploy.Cluster subclass
    """
    module_name, _, attribute = name.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError("cluster.class", f"cannot import {module_name} for {name} ({err}); install "
                          "the package that provides it (e.g. pip install dask-jobqueue)") from err
    cls = getattr(module, attribute, None)
    if cls is None:
        raise ConfigError("cluster.class", f"{module_name} has no {attribute!r}")
    if not (isinstance(cls, type) and issubclass(cls, Cluster)):
        raise ConfigError("cluster.class", f"{name} is not a distributed.deploy.Cluster subclass")
    return cls


def _size(cluster: Any, config: ClusterConfig) -> None:
    """Scale or adapt a cluster ccdflow started; with neither, the cluster's own size stands."""
    if config.adapt is not None:
        bounds = {k: v for k, v in config.adapt.to_dict().items() if v is not None}
        cluster.adapt(**bounds)
    elif config.scale is not None:
        cluster.scale(config.scale)


@contextlib.contextmanager
def class_cluster(config: ClusterConfig, *, security: Security | None = None) -> Iterator[Client]:
    """Start ``config.cluster_class(**config.kwargs)``, size it, and yield a client of it.

    The cluster is closed at the end (a batch system's worker jobs are cancelled with it).

    Parameters
    ----------
    config : ClusterConfig
        With ``cluster_class`` set; ``adapt`` or ``scale`` size it.
    security : Security, optional
        Given to the class as ``security=`` (LocalCluster and dask-jobqueue accept it).

    Raises
    ------
    ConfigError
        Naming ``cluster.class`` or ``cluster.kwargs`` if the class cannot be loaded or started.

    Examples
    --------
    >>> config = ClusterConfig(cluster_class="distributed.LocalCluster", scale=1,
    ...                        kwargs={"n_workers": 0, "processes": False, "dashboard_address": ":0"})
    >>> with class_cluster(config) as client:
    ...     print(client.submit(sum, [1, 2]).result())
    3
    """
    cls = load_cluster_class(config.cluster_class)
    kwargs = dict(config.kwargs)
    if security is not None:
        kwargs["security"] = security
    try:
        cluster = cls(**kwargs)
    except TypeError as err:
        raise ConfigError("cluster.kwargs", f"{config.cluster_class} does not take these "
                          f"arguments: {err}") from err
    except (OSError, RuntimeError, ValueError) as err:  # e.g. no sbatch on this machine
        raise ConfigError("cluster.class", f"{config.cluster_class} could not start: {err}") from err
    with cluster:
        _size(cluster, config)
        with Client(cluster) as client:
            yield client


def gateway_url(address: str) -> str | None:
    """The dask-gateway server's URL for ``gateway://host[:port][/path]``.

    ``gateway://`` speaks HTTPS and ``gateway+http://`` plain HTTP; ``gateway://`` alone means the
    server in dask's configuration (``gateway.address``), returned as None.

    Examples
    --------
    >>> gateway_url("gateway://gw.example.org/services/dask-gateway")
    'https://gw.example.org/services/dask-gateway'
    >>> gateway_url("gateway+http://10.0.0.5:8000"), gateway_url("gateway://")
    ('http://10.0.0.5:8000', None)
    """
    scheme, _, rest = address.partition("://")
    if not rest:
        return None
    return ("http://" if scheme == "gateway+http" else "https://") + rest


@contextlib.contextmanager
def gateway_cluster(address: str, config: ClusterConfig) -> Iterator[Client]:
    """A dask-gateway cluster: ``config.gateway_cluster`` if named (left running), else a new one.

    A new cluster gets ``config.kwargs`` as its cluster options and is shut down at the end.

    Raises
    ------
    ConfigError
        If dask-gateway is not installed, or the gateway or the cluster cannot be reached.

    Examples
    --------
    >>> import sys
    >>> sys.modules["dask_gateway"] = None  # as if not installed
    >>> try:
    ...     with gateway_cluster("gateway://gw.example.org", ClusterConfig()):
    ...         pass
    ... except ConfigError as err:
    ...     print(err)
    cluster.scheduler: gateway://gw.example.org needs the dask-gateway client: pip install dask-gateway
    >>> del sys.modules["dask_gateway"]
    """
    try:
        import dask_gateway
    except ImportError as err:
        raise ConfigError("cluster.scheduler", f"{address} needs the dask-gateway client: "
                          "pip install dask-gateway") from err
    gateway = dask_gateway.Gateway(gateway_url(address))
    try:
        try:
            cluster = (gateway.connect(config.gateway_cluster) if config.gateway_cluster
                       else gateway.new_cluster(**config.kwargs))
        except (OSError, TimeoutError, ValueError) as err:
            raise ConfigError("cluster.scheduler", f"dask-gateway at {address}: {err}") from err
        try:
            _size(cluster, config)
            with cluster.get_client() as client:
                yield client
        finally:
            cluster.close()  # shuts down a cluster started here; a named one keeps running
    finally:
        gateway.close()
