"""The ``cluster`` section of a night's config: where the work runs, validated up front."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from dask.utils import parse_bytes
from distributed.security import Security

from ccdflow.array.params import parse_int, parse_number
from ccdflow.errors import ConfigError

__all__ = ["AdaptBounds", "ClusterConfig", "TlsFiles", "check_scheduler", "is_gateway"]

LOCAL_SCHEDULERS = ("threads", "synchronous", "processes")
_ADDRESS = re.compile(r"^(tcp|tls|ucx|ws|wss|inproc)://\S+$")
# the host may be empty: dask-gateway then takes its address from dask's config (gateway.address)
_GATEWAY = re.compile(r"^gateway(\+http)?://\S*$")
_DOTTED = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$")


def is_gateway(scheduler: Any) -> bool:
    """Whether a scheduler setting names a dask-gateway server (``gateway://host:port``).

    Examples
    --------
    >>> is_gateway("gateway://gateway.example.org"), is_gateway("tcp://10.0.0.1:8786")
    (True, False)
    """
    return isinstance(scheduler, str) and bool(_GATEWAY.match(scheduler))


def check_scheduler(value: Any, *, key: str = "cluster.scheduler") -> str | None:
    """Return a valid scheduler setting: ``None``, a local scheduler name or an address.

    Examples
    --------
    >>> check_scheduler("tls://10.0.0.1:8786"), check_scheduler("gateway://gw.example.org")
    ('tls://10.0.0.1:8786', 'gateway://gw.example.org')
    """
    if value is None or (isinstance(value, str) and (value in LOCAL_SCHEDULERS or _ADDRESS.match(value)
                                                     or is_gateway(value))):
        return value
    raise ConfigError(key, "expected null, 'threads', 'synchronous', 'processes', an address like "
                      f"tcp://host:port or tls://host:port, or gateway://host, got {value!r}")


def _check_memory(memory: Any, *, key: str) -> None:
    """A worker memory limit: null, ``"auto"``, a size dask understands (``"4GB"``) or bytes > 0."""
    if memory is None or memory == "auto":
        return
    try:
        size = parse_bytes(memory) if isinstance(memory, str) else memory
    except ValueError:
        size = None
    if isinstance(size, bool) or not isinstance(size, int | float) or not size > 0:
        raise ConfigError(key, "expected null, a size such as '4GB' or 'auto', or a number of bytes, "
                          f"got {memory!r}")


def _section(value: Any, key: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(key, f"expected a mapping, got {type(value).__name__} {value!r}")
    return dict(value)


def _unknown(data: Mapping[str, Any], known: set[str], key: str) -> None:
    for name in data:
        if name not in known:
            raise ConfigError(f"{key}.{name}", f"unknown key; expected one of {sorted(known)}")


@dataclass(frozen=True, kw_only=True)
class TlsFiles:
    """The ``cluster.security`` section: the client's TLS credentials, as PEM files.

    Parameters
    ----------
    tls_ca_file : Path
        The certificate authority that signed the scheduler's certificate.
    tls_client_cert : Path
        This client's certificate (may also hold its key).
    tls_client_key : Path, optional
        This client's private key, if not in ``tls_client_cert``.

    Raises
    ------
    ConfigError
        Naming the key of a file that does not exist.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> for name in ("ca.pem", "client.pem"):
    ...     _ = (folder / name).write_text("PEM")
    >>> files = TlsFiles(tls_ca_file=folder / "ca.pem", tls_client_cert=folder / "client.pem")
    >>> files.to_security().require_encryption
    True
    """

    tls_ca_file: Path
    tls_client_cert: Path
    tls_client_key: Path | None = None

    def __post_init__(self):
        for item in fields(self):
            value = getattr(self, item.name)
            if value is None and item.name == "tls_client_key":
                continue
            name = f"cluster.security.{item.name}"
            if isinstance(value, bool) or not isinstance(value, str | Path) or not str(value).strip():
                raise ConfigError(name, f"expected the path of a PEM file, got {value!r}")
            path = Path(value).expanduser()
            if not path.is_file():
                raise ConfigError(name, f"no such file: {path}")
            object.__setattr__(self, item.name, path)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, base: str | Path = ".") -> TlsFiles:
        """Validate the section; relative paths are taken relative to ``base``."""
        data = _section(data, "cluster.security")
        _unknown(data, {item.name for item in fields(cls)}, "cluster.security")
        for name in ("tls_ca_file", "tls_client_cert"):
            if data.get(name) is None:
                raise ConfigError(f"cluster.security.{name}", "required for a TLS connection")
        paths = {name: Path(base) / Path(value).expanduser() if isinstance(value, str | Path) else value
                 for name, value in data.items()}
        return cls(**paths)

    def to_security(self) -> Security:
        """The `distributed.security.Security` of a client that must encrypt every connection."""
        return Security(require_encryption=True, tls_ca_file=str(self.tls_ca_file),
                        tls_client_cert=str(self.tls_client_cert),
                        tls_client_key=str(self.tls_client_key) if self.tls_client_key else None)

    def to_dict(self) -> dict[str, str | None]:
        """Plain values, in the config's own layout."""
        return {item.name: str(getattr(self, item.name)) if getattr(self, item.name) else None
                for item in fields(self)}


@dataclass(frozen=True, kw_only=True)
class AdaptBounds:
    """The ``cluster.adapt`` section: ``cluster.adapt(minimum=..., maximum=...)``.

    Examples
    --------
    >>> AdaptBounds(minimum=1, maximum=20)
    AdaptBounds(minimum=1, maximum=20)
    """

    minimum: int = 0
    maximum: int | None = None

    def __post_init__(self):
        parse_int(self.minimum, key="cluster.adapt.minimum", minimum=0)
        parse_int(self.maximum, key="cluster.adapt.maximum", minimum=max(1, self.minimum),
                  allow_none=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AdaptBounds:
        """Validate the section."""
        data = _section(data, "cluster.adapt")
        _unknown(data, {"minimum", "maximum"}, "cluster.adapt")
        return cls(**data)

    def to_dict(self) -> dict[str, int | None]:
        """Plain values (the keyword arguments of ``adapt``)."""
        return {"minimum": self.minimum, "maximum": self.maximum}


# the YAML key ``class`` is a Python keyword: the field has a longer name
_YAML_NAMES = {"cluster_class": "class"}


@dataclass(frozen=True, kw_only=True)
class ClusterConfig:
    """The ``cluster`` section: where the work runs.

    Attributes
    ----------
    scheduler : str, optional
        None (a LocalCluster), ``threads``/``synchronous``/``processes``, a scheduler address
        (``tcp://``, ``tls://``, ...) or a dask-gateway server (``gateway://host[:port][/path]``,
        HTTPS; ``gateway+http://`` without TLS; ``gateway://`` alone: dask's ``gateway.address``).
    n_workers, threads_per_worker, memory_limit, dashboard_address
        The LocalCluster's size and dashboard.
    connect_timeout : float
        Seconds to reach a scheduler address.
    security : TlsFiles, optional
        TLS credentials for a ``tls://`` scheduler (also given to the LocalCluster or the class).
    cluster_class : str, optional
        YAML ``class``: dotted name of a `distributed.deploy.Cluster` subclass to start
        (``dask_jobqueue.SLURMCluster``); exclusive with ``scheduler``.
    kwargs : dict
        Keyword arguments of ``cluster_class``, or a new gateway cluster's options.
    adapt : AdaptBounds, optional
        Adaptive scaling of the started cluster; exclusive with ``scale``.
    scale : int, optional
        Number of workers the started cluster is scaled to.
    gateway_cluster : str, optional
        Name of a running dask-gateway cluster to use (left running); else a new one is started
        and shut down at the end.

    Examples
    --------
    >>> config = ClusterConfig.from_dict({"class": "distributed.LocalCluster",
    ...                                   "kwargs": {"processes": False}, "scale": 2})
    >>> config.cluster_class, config.kwargs, config.scale
    ('distributed.LocalCluster', {'processes': False}, 2)
    """

    scheduler: str | None = None
    n_workers: int | None = None
    threads_per_worker: int = 1
    memory_limit: str | int | None = None
    dashboard_address: str = "127.0.0.1:0"
    connect_timeout: float = 20.0
    security: TlsFiles | None = None
    cluster_class: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict, hash=False)
    adapt: AdaptBounds | None = None
    scale: int | None = None
    gateway_cluster: str | None = None

    def __post_init__(self):
        check_scheduler(self.scheduler, key="cluster.scheduler")
        if not isinstance(self.dashboard_address, str) or not self.dashboard_address.strip():
            raise ConfigError("cluster.dashboard_address",
                              f"expected host:port such as '127.0.0.1:8787', got {self.dashboard_address!r}")
        object.__setattr__(self, "connect_timeout", parse_number(
            self.connect_timeout, key="cluster.connect_timeout", strict=True))
        parse_int(self.n_workers, key="cluster.n_workers", minimum=1, allow_none=True)
        parse_int(self.threads_per_worker, key="cluster.threads_per_worker", minimum=1)
        _check_memory(self.memory_limit, key="cluster.memory_limit")
        for name, kind in (("security", TlsFiles), ("adapt", AdaptBounds)):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), kind):
                raise ConfigError(f"cluster.{name}", f"expected {kind.__name__}, got {getattr(self, name)!r}")
        self._check_deployment()

    def _check_deployment(self) -> None:
        """The keys that start a cluster: a class or a gateway, its arguments and its size."""
        if self.cluster_class is not None:
            if not isinstance(self.cluster_class, str) or not _DOTTED.match(self.cluster_class):
                raise ConfigError("cluster.class", "expected a dotted name such as "
                                  f"dask_jobqueue.SLURMCluster, got {self.cluster_class!r}")
            if self.scheduler is not None:
                raise ConfigError("cluster.class", "give either cluster.scheduler or cluster.class, "
                                  f"not both (scheduler is {self.scheduler!r})")
        if not isinstance(self.kwargs, Mapping) or not all(isinstance(k, str) for k in self.kwargs):
            raise ConfigError("cluster.kwargs", f"expected a mapping of names to values, got {self.kwargs!r}")
        object.__setattr__(self, "kwargs", dict(self.kwargs))
        parse_int(self.scale, key="cluster.scale", minimum=1, allow_none=True)
        if self.adapt is not None and self.scale is not None:
            raise ConfigError("cluster.adapt", "give either cluster.adapt or cluster.scale, not both")
        if self.gateway_cluster is not None and (not isinstance(self.gateway_cluster, str)
                                                 or not is_gateway(self.scheduler)):
            raise ConfigError("cluster.gateway_cluster", "expected the name of a dask-gateway "
                              "cluster, with a gateway:// scheduler")
        if self.security is not None and is_gateway(self.scheduler):
            raise ConfigError("cluster.security", "a dask-gateway cluster brings its own TLS "
                              "credentials; remove cluster.security")
        starts = self.cluster_class is not None or is_gateway(self.scheduler)
        for name in ("kwargs", "adapt", "scale"):
            if getattr(self, name) and not starts:
                raise ConfigError(f"cluster.{name}", "only used with cluster.class or a gateway:// "
                                  "scheduler")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, key: str = "cluster",
                  base: str | Path = ".") -> ClusterConfig:
        """Validate the section; relative paths (TLS files) are taken relative to ``base``."""
        data = _section(data, key)
        _unknown(data, {_YAML_NAMES.get(item.name, item.name) for item in fields(cls)}, key)
        return cls(
            scheduler=check_scheduler(data.get("scheduler"), key=f"{key}.scheduler"),
            n_workers=parse_int(data.get("n_workers"), key=f"{key}.n_workers", minimum=1,
                                allow_none=True),
            threads_per_worker=parse_int(data.get("threads_per_worker", 1),
                                         key=f"{key}.threads_per_worker", minimum=1),
            memory_limit=data.get("memory_limit"),
            dashboard_address=data.get("dashboard_address", "127.0.0.1:0"),
            connect_timeout=data.get("connect_timeout", 20.0),
            security=None if data.get("security") is None
            else TlsFiles.from_dict(data["security"], base=base),
            cluster_class=data.get("class"),
            kwargs=_section(data.get("kwargs"), f"{key}.kwargs"),
            adapt=None if data.get("adapt") is None else AdaptBounds.from_dict(data["adapt"]),
            scale=data.get("scale"),
            gateway_cluster=data.get("gateway_cluster"),
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain values, in the config's own layout."""
        out = {_YAML_NAMES.get(item.name, item.name): getattr(self, item.name) for item in fields(self)}
        out["security"] = self.security.to_dict() if self.security else None
        out["adapt"] = self.adapt.to_dict() if self.adapt else None
        out["kwargs"] = dict(self.kwargs)
        return out
