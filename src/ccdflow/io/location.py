"""Paths and URLs: a plain path stays a `pathlib.Path`; ``s3://``, ``gs://``, ... become `RemotePath`.

Every place that touches a file asks this module, so local files keep their fast paths (``os.pread``,
temporary file + ``os.replace``) and files on an object store are read by byte ranges and written as
one whole-object PUT, which the store makes atomic.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
import os
import posixpath
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from ccdflow.errors import CcdflowError, ConfigError, StorageError

__all__ = ["PATH_TYPES", "FileStat", "Location", "RemotePath", "as_location", "exists", "glob", "is_local",
           "is_url", "join", "open_binary", "open_fits", "read_bytes", "remove_tree",
           "resolve_cached", "stat",
           "write_bytes_atomic", "zarr_target"]


def is_url(value: Any) -> bool:
    """Whether ``value`` is a string spelled ``scheme://...`` (a one-letter scheme is a drive).

    Examples
    --------
    >>> is_url("s3://bucket/raw"), is_url("raw/a.fits"), is_url("C://x")
    (True, False, False)
    """
    if isinstance(value, RemotePath):
        return True
    return isinstance(value, str) and "://" in value and len(value.split("://", 1)[0]) > 1


#: Read-ahead of a remote file object (`open_binary`): headers in one or two requests.
READ_BLOCK = 2**16

#: Protocols whose folders are only key prefixes (nothing to make before writing an object).
OBJECT_STORES = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "oss", "r2"})


class FileStat(NamedTuple):
    """Size and modification time of a remote object, named like `os.stat_result`'s fields."""

    st_size: int
    st_mtime_ns: int
    etag: str = ""

    @property
    def st_mtime(self) -> float:
        """Modification time in seconds."""
        return self.st_mtime_ns / 1e9


@contextlib.contextmanager
def reaching(url: str) -> Iterator[None]:
    """Turn what a filesystem library raises, other than an ``OSError``, into `StorageError`.

    Missing credentials, an unknown option or an endpoint that does not answer then name the URL
    and stay catchable as ``OSError``, like any other file that cannot be read.
    """
    try:
        yield
    except CcdflowError:
        raise
    except OSError as err:
        if err.filename:
            raise
        raise _naming(err, url) from err
    except Exception as err:  # the library's own kinds (botocore's, aiohttp's, TypeError for options)
        raise StorageError(url, f"{type(err).__name__}: {err}") from err


def _naming(err: OSError, url: str) -> OSError:
    """The same kind of error, naming the URL (fsspec's carry only the store's message)."""
    try:
        if err.errno:
            return type(err)(err.errno, err.strerror or str(err), url)
        return type(err)(f"{url}: {err}")
    except TypeError:  # a library's OSError subclass with a constructor of its own
        return StorageError(url, f"{type(err).__name__}: {err}")


def _reached(method):
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with reaching(self.url):
            return method(self, *args, **kwargs)
    return wrapper


@dataclass(frozen=True, order=True)
class RemotePath:
    """A file or folder on a filesystem fsspec reaches (``s3://bucket/key``), with its options.

    It reads like a `pathlib.Path` (``/``, ``name``, ``stem``, ``parent``, ``exists()``,
    ``read_text()``, ``glob()``) and pickles as its URL and options, so a task on a worker opens the
    file itself. It has no ``__fspath__``: code that would hand it to ``open`` fails loudly.

    Parameters
    ----------
    url : str
        ``protocol://path``.
    options : str
        The ``storage_options`` as JSON text (hashable); see `as_location`.

    Examples
    --------
    >>> raw = as_location("s3://bucket/night/raw", storage_options={"anon": True})
    >>> light = raw / "a.fits"
    >>> str(light), light.name, light.stem, str(light.parent.parent)
    ('s3://bucket/night/raw/a.fits', 'a.fits', 'a', 's3://bucket/night')
    >>> light.storage_options
    {'anon': True}
    """

    url: str
    options: str = field(default="{}", repr=False)

    def __str__(self) -> str:
        return self.url

    @property
    def protocol(self) -> str:
        """``s3``, ``gs``, ..."""
        return self.url.split("://", 1)[0]

    @property
    def storage_options(self) -> dict[str, Any]:
        """The options the filesystem is opened with."""
        return json.loads(self.options)

    @property
    def fs(self):
        """The fsspec filesystem (fsspec keeps one instance per protocol and options)."""
        import fsspec

        # listings are not cached: zarr writes through its own instance, which ours would not see
        options = {"use_listings_cache": False, **self.storage_options}
        return fsspec.filesystem(self.protocol, **options)

    @property
    def path(self) -> str:
        """The path without the protocol, as fsspec's methods take it."""
        return self.url.split("://", 1)[1]

    # -- pathlib's names ----------------------------------------------------------------------------

    def __truediv__(self, other: str | os.PathLike) -> RemotePath:
        joined = posixpath.normpath(f"{self.path.rstrip('/')}/{os.fspath(other).lstrip('/')}")
        return RemotePath(f"{self.protocol}://{joined}", self.options)

    def joinpath(self, *parts: str) -> RemotePath:
        """``self / part / ...``."""
        out = self
        for part in parts:
            out = out / part
        return out

    @property
    def name(self) -> str:
        """The last component."""
        return posixpath.basename(self.path.rstrip("/"))

    @property
    def stem(self) -> str:
        """The name without its last suffix."""
        return Path(self.name).stem

    @property
    def suffix(self) -> str:
        """The last suffix of the name."""
        return Path(self.name).suffix

    @property
    def parts(self) -> tuple[str, ...]:
        """The protocol and the path's components."""
        return (f"{self.protocol}://", *self.path.strip("/").split("/"))

    @property
    def parent(self) -> RemotePath:
        """The folder holding this one (a bucket is its own parent)."""
        head = posixpath.dirname(self.path.rstrip("/"))
        return RemotePath(f"{self.protocol}://{head or self.path}", self.options)

    def resolve(self) -> RemotePath:
        """Itself: a URL is already absolute."""
        return self

    expanduser = resolve

    def is_absolute(self) -> bool:
        """Always: a URL is absolute."""
        return True

    @_reached
    def exists(self) -> bool:
        """Whether an object or a folder (a prefix of objects) is there."""
        return self.fs.exists(self.path)

    @_reached
    def is_file(self) -> bool:
        """Whether an object is there."""
        return self.fs.isfile(self.path)

    @_reached
    def is_dir(self) -> bool:
        """Whether objects are under this prefix (or a folder exists)."""
        return self.fs.isdir(self.path)

    @_reached
    def mkdir(self, *, parents: bool = False, exist_ok: bool = False) -> None:
        """Make the folder, except on an object store (its folders are only key prefixes).

        Making one there could create a bucket, from a typing error in a URL.
        """
        if self.protocol not in OBJECT_STORES:
            self.fs.makedirs(self.path, exist_ok=True)

    @_reached
    def stat(self) -> FileStat:
        """Size and modification time (and the object's ETag, where the store gives one)."""
        info = self.fs.info(self.path)
        when = next((info[k] for k in ("LastModified", "mtime", "updated", "created", "last_modified")
                     if info.get(k) is not None), 0)
        if isinstance(when, str):
            when = dt.datetime.fromisoformat(when.replace("Z", "+00:00"))
        ns = int(when.timestamp() * 1e9) if isinstance(when, dt.datetime) else int(float(when) * 1e9)
        return FileStat(int(info.get("size") or 0), ns, str(info.get("ETag", "")).strip('"'))

    @_reached
    def read_bytes(self) -> bytes:
        """The whole object, in one GET."""
        return self.fs.cat_file(self.path)

    def read_text(self, encoding: str = "utf-8") -> str:
        """The whole object as text."""
        return self.read_bytes().decode(encoding)

    @_reached
    def write_bytes(self, data: bytes) -> int:
        """One whole-object PUT: readers see the old object or the new one, never a part."""
        if self.protocol not in OBJECT_STORES:  # a filesystem with real folders needs its folder
            self.fs.makedirs(self.parent.path, exist_ok=True)
        self.fs.pipe_file(self.path, bytes(data))
        return len(data)

    def write_text(self, text: str, encoding: str = "utf-8") -> int:
        """`write_bytes` of the encoded text."""
        return self.write_bytes(text.encode(encoding))

    @_reached
    def unlink(self, *, missing_ok: bool = False) -> None:
        """Delete the object."""
        try:
            self.fs.rm_file(self.path)
        except FileNotFoundError:
            if not missing_ok:
                raise

    @_reached
    def iterdir(self) -> Iterator[RemotePath]:
        """The objects and folders directly under this one."""
        for entry in self.fs.ls(self.path, detail=False):
            yield RemotePath(f"{self.protocol}://{entry}", self.options)

    @_reached
    def glob(self, pattern: str) -> Iterator[RemotePath]:
        """Objects under this folder matching ``pattern`` (fsspec's glob rules)."""
        for entry in self.fs.glob(f"{self.path.rstrip('/')}/{pattern}"):
            yield RemotePath(f"{self.protocol}://{entry}", self.options)

    def rglob(self, pattern: str) -> Iterator[RemotePath]:
        """`glob` at any depth."""
        return self.glob(f"**/{pattern}")

    def relative_to(self, other: RemotePath) -> Path:
        """The part after ``other``, as a relative `Path`."""
        if self.url.rstrip("/") == other.url.rstrip("/"):
            return Path()
        head = other.url.rstrip("/") + "/"
        if not self.url.startswith(head):
            raise ValueError(f"{self} is not under {other}")
        return Path(self.url[len(head):])


#: What names a file: a local `Path` or a `RemotePath`.
Location = Path | RemotePath
#: What an argument naming a file may be (``isinstance`` checks): a string, a path, a `RemotePath`.
PATH_TYPES = (str, os.PathLike, RemotePath)


def as_location(value: str | os.PathLike | RemotePath, *,
                storage_options: Mapping[str, Any] | None = None,
                base: Location | None = None) -> Location:
    """A path or URL as a `Path` (local, ``file://`` included) or a `RemotePath`.

    Parameters
    ----------
    value : str, path-like or RemotePath
        ``raw/a.fits``, ``/data/raw``, ``file:///data/raw``, ``s3://bucket/raw``, ...
    storage_options : mapping, optional
        Passed to the fsspec filesystem of a URL (``key``, ``secret``, ``client_kwargs``, ...).
    base : Path or RemotePath, optional
        What a relative path is relative to (then resolved).

    Returns
    -------
    Path or RemotePath

    Raises
    ------
    ConfigError
        If the URL's protocol has no fsspec implementation installed (named).

    Examples
    --------
    >>> as_location("file:///data/raw/a.fits")
    PosixPath('/data/raw/a.fits')
    >>> as_location("b.fits", base=as_location("s3://bucket/raw"))
    RemotePath(url='s3://bucket/raw/b.fits')
    """
    if isinstance(value, RemotePath):
        return value
    text = os.fspath(value)
    if is_url(text):
        if text.startswith("file://"):
            return Path(urlsplit(text).path)
        protocol, rest = text.split("://", 1)
        _check_protocol(protocol, text)
        # one spelling per object: "out/../raw/a.fits" is "raw/a.fits" (no links to follow)
        return RemotePath(f"{protocol}://{posixpath.normpath(rest)}",
                          json.dumps(dict(storage_options or {}), sort_keys=True))
    path = Path(text).expanduser()
    if base is not None and not path.is_absolute():
        return (base / text).resolve() if isinstance(base, RemotePath) else (base / path).resolve()
    return path


def resolve_cached(path: Location, folders: dict[Path, Path]) -> Location:
    """``path.resolve()``, each folder resolved once and kept in ``folders``.

    A night names thousands of files in a few folders; resolving each path whole would follow
    every folder of it again.

    Examples
    --------
    >>> folders = {}
    >>> resolve_cached(Path("/data/raw/../raw/a.fits"), folders), len(folders)
    (PosixPath('/data/raw/a.fits'), 1)
    """
    if isinstance(path, RemotePath) or path.name in ("", ".", "..") or path.is_symlink():
        return path.resolve()
    if path.parent not in folders:
        folders[path.parent] = path.parent.resolve()
    return folders[path.parent] / path.name


def _check_protocol(protocol: str, url: str) -> None:
    from fsspec.registry import get_filesystem_class

    try:
        get_filesystem_class(protocol)
    except (ImportError, ValueError) as err:
        raise ConfigError(url, f"cannot reach {protocol}:// ({err})") from None


def is_local(path: Any) -> bool:
    """Whether ``path`` is on this machine's filesystem (not a `RemotePath`).

    Examples
    --------
    >>> is_local("raw/a.fits"), is_local(as_location("s3://b/a.fits"))
    (True, False)
    """
    return not isinstance(path, RemotePath)


def join(base: Location, *parts: str) -> Location:
    """``base / part / ...`` for either kind.

    Examples
    --------
    >>> str(join(as_location("memory://bucket/out"), "lights", "a.fits"))
    'memory://bucket/out/lights/a.fits'
    """
    return base.joinpath(*parts)


def exists(path: Location) -> bool:
    """Whether the file or folder is there."""
    return path.exists()


def stat(path: str | os.PathLike | RemotePath) -> os.stat_result | FileStat:
    """``os.stat`` locally; size and modification time of a remote object (`FileStat`)."""
    return path.stat() if isinstance(path, RemotePath) else os.stat(path)


def read_bytes(path: str | os.PathLike | RemotePath) -> bytes:
    """A whole file's bytes."""
    return path.read_bytes() if isinstance(path, RemotePath) else Path(path).read_bytes()


def open_binary(path: str | os.PathLike | RemotePath):
    """A binary file object for reading; a remote one fetches byte ranges as they are read.

    Remote reads ahead in blocks of `READ_BLOCK` bytes, not the filesystem's default (5 MiB on
    S3): a header is a few 2880-byte blocks, and the pixels are fetched by range elsewhere.
    """
    if isinstance(path, RemotePath):
        with reaching(path.url):
            return path.fs.open(path.path, "rb", block_size=READ_BLOCK)
    return open(path, "rb")  # noqa: SIM115


def open_fits(path: str | os.PathLike | RemotePath, **kwargs):
    """`astropy.io.fits.open` of a local file, or of a remote one by byte ranges through fsspec."""
    from astropy.io import fits

    if isinstance(path, RemotePath):
        with reaching(path.url):
            return fits.open(path.url, use_fsspec=True, fsspec_kwargs=path.storage_options, **kwargs)
    return fits.open(path, **kwargs)


def write_bytes_atomic(path: Location, data: bytes) -> Location:
    """Write a whole file so that no reader ever sees part of it.

    Locally a temporary file beside it, then ``os.replace``; remotely one whole-object PUT.
    """
    if isinstance(path, RemotePath):
        path.write_bytes(data)
        return path
    from ccdflow.io.write import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def remove_tree(path: Location) -> None:
    """Delete a folder and everything in it; a missing one is no error."""
    if isinstance(path, RemotePath):
        with contextlib.suppress(FileNotFoundError), reaching(path.url):
            path.fs.rm(path.path, recursive=True)
        return
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def glob(folder: Location, pattern: str) -> list[Location]:
    """The files under ``folder`` matching ``pattern``, sorted."""
    return sorted(folder.glob(pattern), key=str)


def zarr_target(path: Location) -> dict[str, Any]:
    """The ``store`` (and ``storage_options``) arguments `zarr.open_group` takes for ``path``.

    Examples
    --------
    >>> zarr_target(Path("out/work.zarr"))
    {'store': 'out/work.zarr'}
    """
    if isinstance(path, RemotePath):
        # zarr's own filesystem instance must not keep listings that our deletions outdate
        return {"store": path.url,
                "storage_options": {"use_listings_cache": False, **path.storage_options}}
    return {"store": str(path)}
