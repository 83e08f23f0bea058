"""Safe writes: products never land on an input, and appear atomically.

Locally a temporary file beside the product, then `os.replace`; on an object store one whole-object
PUT (see `ccdflow.io.location`), which the store makes atomic.
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from astropy.io import fits

from ccdflow.errors import CcdflowError, InputOverwriteError, OutputExistsError, OutputTreeError
from ccdflow.io.location import Location, RemotePath, as_location, resolve_cached

__all__ = ["atomic_path", "check_output_tree", "guard_inputs", "remove_stale_temporaries",
           "write_fits", "write_stream"]

#: Temporary files are ``.ccdflow-<name>-<random>.part``: a rerun deletes these and nothing else.
TEMP_PREFIX = ".ccdflow-"
TEMP_SUFFIX = ".part"


def _identities(path: Location, folders: dict[Path, Path]) -> list[tuple]:
    """What makes two spellings the same file: device and inode where it exists, and the real path.

    An object has one spelling (its URL, with ``..`` already folded): an object store has no links.
    """
    if isinstance(path, RemotePath):
        return [("url", path.url)]
    keys: list[tuple] = [("path", str(resolve_cached(Path(path), folders)))]
    with contextlib.suppress(OSError):
        st = path.stat()
        keys.append(("inode", st.st_dev, st.st_ino))
    return keys


def guard_inputs(outputs: Iterable[str | os.PathLike], *,
                 inputs: Iterable[str | os.PathLike]) -> None:
    """Refuse any output that is one of the inputs, however either path is spelled.

    Two paths are the same file when they share ``st_dev`` and ``st_ino`` (hard links, symbolic
    links, ``..`` and relative spellings all agree); a path that does not exist yet is compared by
    its resolved form.

    Parameters
    ----------
    outputs : iterable of path-like
        Every product a call or a night will write.
    inputs : iterable of path-like
        Every file it reads (raw frames, masters in use, file lists).

    Raises
    ------
    InputOverwriteError
        Naming the output and the input it would replace.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "raw.fits").write_bytes(b"")
    >>> guard_inputs([folder / "calibrated.fits"], inputs=[folder / "raw.fits"])
    >>> try:
    ...     guard_inputs([folder / "sub" / ".." / "raw.fits"], inputs=[folder / "raw.fits"])
    ... except InputOverwriteError as err:
    ...     print(isinstance(err, FileExistsError))
    True
    """
    known: dict[tuple, Location] = {}
    folders: dict[Path, Path] = {}
    for path in inputs:
        for key in _identities(as_location(path), folders):
            known.setdefault(key, as_location(path))
    for path in outputs:
        for key in _identities(as_location(path), folders):
            if key in known:
                raise InputOverwriteError(path, known[key])


def check_output_tree(output: str | os.PathLike, folders: Iterable[str]) -> None:
    """Refuse output sub-folders that are links leading out of the output folder.

    A symbolic link planted as ``<output>/lights`` would otherwise send products elsewhere, over
    files that nothing here created.

    Parameters
    ----------
    output : path-like
        The output folder.
    folders : iterable of str
        Its sub-folders that receive products (``masters``, ``lights``, ...).

    Raises
    ------
    OutputTreeError
        Naming the folder and where it leads.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> output = pathlib.Path(tempfile.mkdtemp())
    >>> (output / "lights").symlink_to(tempfile.mkdtemp())
    >>> try:
    ...     check_output_tree(output, ["masters", "lights"])
    ... except OutputTreeError as err:
    ...     print("lights" in str(err))
    True
    """
    if isinstance(output, RemotePath):
        return  # an object store has no links to follow
    root = Path(os.path.realpath(output))
    for name in folders:
        folder = Path(output) / name
        if not folder.is_symlink() and not folder.exists():
            continue
        real = Path(os.path.realpath(folder))
        if real != root / name and root not in real.parents:
            raise OutputTreeError(folder, real)
        if real.exists() and not real.is_dir():
            raise OutputTreeError(folder, real, why="is not a folder")


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files a killed run left in ``folder``; return them.

    Only names ccdflow gives its own temporaries (``.ccdflow-*.part``) are touched.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> for name in (".ccdflow-a.fits-1f2e.part", ".mine.part"):
    ...     _ = (folder / name).write_bytes(b"")
    >>> [p.name for p in remove_stale_temporaries(folder)], sorted(p.name for p in folder.iterdir())
    (['.ccdflow-a.fits-1f2e.part'], ['.mine.part'])
    """
    if isinstance(folder, RemotePath):
        return []  # remote products are whole-object PUTs: nothing temporary is ever left there
    removed = []
    for path in Path(folder).glob(f"{TEMP_PREFIX}*{TEMP_SUFFIX}"):
        if path.is_file() and not path.is_symlink():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _new_temporary(path: Path) -> Path:
    """Create an empty temporary beside ``path`` with the mode the user's umask gives."""
    while True:
        tmp = path.parent / f"{TEMP_PREFIX}{path.name}-{secrets.token_hex(4)}{TEMP_SUFFIX}"
        try:
            # 0o666 filtered by the umask, like any file the user writes (mkstemp forces 0600)
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return tmp


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike | RemotePath, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on error it is removed.

    The temporary is named ``.ccdflow-<name>-<random>.part`` and created with the permissions the
    user's umask gives, which the product keeps. For a `RemotePath` the temporary is a local file,
    sent on success as one whole-object PUT.

    Parameters
    ----------
    path : str, path-like or RemotePath
        The final file. Its folder is created if needed.
    overwrite : bool
        Whether an existing file may be replaced.

    Raises
    ------
    OutputExistsError
        If ``path`` exists and ``overwrite`` is false.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "note.txt"
    >>> with atomic_path(path) as tmp:
    ...     _ = tmp.write_text("done")
    >>> path.read_text(), sorted(p.name for p in path.parent.iterdir())
    ('done', ['note.txt'])
    """
    path = as_location(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path}: exists and overwrite is off")
    if isinstance(path, RemotePath):
        with _remote_temporary(path) as tmp:
            yield tmp
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_temporary(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as err:
        if err.errno is None or isinstance(err, CcdflowError):
            raise
        # name the product, not its temporary: "No space left on device: 'lights/a.fits'"
        raise OSError(err.errno, err.strerror, str(path)) from err
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def _remote_temporary(path: RemotePath) -> Iterator[Path]:
    """A local temporary whose bytes become ``path`` in one PUT when the block succeeds."""
    with tempfile.TemporaryDirectory(prefix=TEMP_PREFIX) as folder:
        tmp = Path(folder) / path.name
        yield tmp
        path.write_bytes(tmp.read_bytes())


def write_fits(path: str | os.PathLike | RemotePath, hdul: fits.HDUList, *, overwrite: bool = True,
               checksum: bool = False, sha1: Any = None,
               output_verify: str = "exception") -> Location:
    """Write an HDU list atomically, never leaving a partial file at ``path``.

    ``checksum`` adds FITS ``CHECKSUM``/``DATASUM`` cards; it costs about as much as the write
    itself, so it is used for masters (written once, read by every light) and not per light.
    ``sha1``, a `hashlib` object, is fed the bytes as they are written: the file's digest without
    reading it back. ``output_verify`` is astropy's (``exception``, ``fix``, ``ignore``...).

    Examples
    --------
    >>> import hashlib, tempfile, pathlib, numpy as np
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "zeros.fits"
    >>> digest = hashlib.sha1()
    >>> write_fits(path, fits.HDUList([fits.PrimaryHDU(np.zeros((2, 2)))]), sha1=digest).name
    'zeros.fits'
    >>> digest.hexdigest() == hashlib.sha1(path.read_bytes()).hexdigest()
    True
    """
    path = as_location(path)
    if isinstance(path, RemotePath):  # serialized in memory, sent as one PUT
        if not overwrite and path.exists():
            raise OutputExistsError(f"{path}: exists and overwrite is off")
        buffer = io.BytesIO()
        hdul.writeto(buffer, checksum=checksum, output_verify=output_verify)
        if sha1 is not None:
            sha1.update(buffer.getbuffer())
        path.write_bytes(buffer.getvalue())
        return path
    if sha1 is None:
        with atomic_path(path, overwrite=overwrite) as tmp:
            hdul.writeto(tmp, overwrite=True, checksum=checksum, output_verify=output_verify)
        return path
    return write_stream(path, lambda out: hdul.writeto(out, checksum=checksum,
                                                       output_verify=output_verify),
                        overwrite=overwrite, sha1=sha1)


def write_stream(path: str | os.PathLike, write: Callable[[Any], None], *, overwrite: bool = True,
                 sha1: Any = None) -> Path:
    """Write a local file atomically through ``write(stream)``; ``sha1`` is fed every byte.

    The stream given to ``write`` is not seekable (so astropy hands it each array's own buffer)
    and tells its position.

    Examples
    --------
    >>> import hashlib, tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "note.txt"
    >>> digest = hashlib.sha1()
    >>> write_stream(path, lambda out: out.write(b"done"), sha1=digest).read_text()
    'done'
    >>> digest.hexdigest() == hashlib.sha1(b"done").hexdigest()
    True
    """
    path = Path(path)
    with atomic_path(path, overwrite=overwrite) as tmp, open(tmp, "wb") as out:
        write(_Hashing(out, sha1 if sha1 is not None else _NoDigest()))
    return path


class _NoDigest:
    def update(self, data) -> None:
        pass


class _Hashing:
    """A write-only stream that hashes what passes through it to a file.

    It is not seekable, so astropy hands it each array's own buffer (no copy) instead of
    ``ndarray.tofile``; ``tell`` is the file's, for the header offsets astropy keeps.
    """

    def __init__(self, out: io.BufferedWriter, sha1: Any) -> None:
        self._out, self._sha1 = out, sha1

    def write(self, data) -> int:
        self._sha1.update(data)
        return self._out.write(data)

    def tell(self) -> int:
        return self._out.tell()

    def flush(self) -> None:
        self._out.flush()

    def seekable(self) -> bool:
        return False
