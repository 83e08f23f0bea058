"""The single exception hierarchy of ccdflow: every error a user should catch derives from `CcdflowError`."""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "CcdflowError",
    "ConfigError",
    "FrameError",
    "FrameReadError",
    "IncompatibleFramesError",
    "MissingCalibrationError",
    "OutputExistsError",
    "InputOverwriteError",
    "OutputTreeError",
    "NightAbortedError",
    "WorkerMemoryError",
    "StorageError",
    "CcdflowWarning",
    "ExposureTimeWarning",
]


class CcdflowError(Exception):
    """Base class of every error raised by ccdflow.

    Examples
    --------
    >>> try:
    ...     raise ConfigError("gain", "must be positive")
    ... except CcdflowError as err:
    ...     print(err)
    gain: must be positive
    """


class ConfigError(CcdflowError, ValueError):
    """A configuration value is missing or invalid.

    Parameters
    ----------
    key : str
        The configuration key (dotted path) or parameter name at fault.
    message : str
        What is wrong with it.

    Examples
    --------
    >>> err = ConfigError("cluster.n_workers", "expected an integer >= 1, got -3")
    >>> err.key, isinstance(err, ValueError)
    ('cluster.n_workers', True)
    """

    def __init__(self, key: str, message: str):
        self.key = key
        self.reason = message
        super().__init__(f"{key}: {message}")

    def __reduce__(self):
        # rebuilt from its parts, so it crosses process boundaries (dask workers) intact
        return (type(self), (self.key, self.reason))


class FrameError(CcdflowError):
    """A problem with one frame; names the file and HDU.

    Parameters
    ----------
    path : str or Path
        The frame's file.
    message : str
        What is wrong with it.
    hdu : int or str, optional
        The HDU concerned.

    Examples
    --------
    >>> print(FrameError("raw/b1.fits", "EXPTIME = -1 is not an exposure time", hdu=0))
    raw/b1.fits[0]: EXPTIME = -1 is not an exposure time
    """

    def __init__(self, path: str | Path, message: str, *, hdu: int | str | None = None):
        self.path = str(path)
        self.hdu = hdu
        self.reason = message
        where = self.path if hdu is None else f"{self.path}[{hdu}]"
        super().__init__(f"{where}: {message}")

    def __reduce__(self):
        return (_rebuild_frame_error, (type(self), self.path, self.reason, self.hdu))


class FrameReadError(FrameError, OSError):
    """A frame could not be read (missing, truncated, not FITS, not an image HDU).

    Examples
    --------
    >>> from ccdflow import open_frame
    >>> try:
    ...     open_frame("no/such/file.fits")
    ... except FrameReadError as err:
    ...     print(err.path, isinstance(err, OSError))
    no/such/file.fits True
    """


class IncompatibleFramesError(FrameError, ValueError):
    """A frame's shape or layout does not agree with the others, a master or a region.

    Examples
    --------
    >>> err = IncompatibleFramesError("b3.fits", "shape (10, 12) differs from (10, 10)")
    >>> isinstance(err, ValueError), err.path
    (True, 'b3.fits')
    """


class MissingCalibrationError(CcdflowError, LookupError):
    """A calibration frame that a step needs is not available.

    Examples
    --------
    >>> isinstance(MissingCalibrationError("light_R_000.fits: no flat for FILTER='R'"), LookupError)
    True
    """


class OutputExistsError(CcdflowError, FileExistsError):
    """An output file exists and overwriting was not allowed.

    Examples
    --------
    >>> isinstance(OutputExistsError("calib1.fits exists"), FileExistsError)
    True
    """


class InputOverwriteError(CcdflowError, FileExistsError):
    """A product would be written onto an input of the run (a raw frame, a master in use, a list).

    Parameters
    ----------
    output : str or Path
        The product's path as asked.
    input : str or Path
        The input it is the same file as.

    Examples
    --------
    >>> err = InputOverwriteError("out/lights/a.fits", "lights/a.fits")
    >>> isinstance(err, FileExistsError), err.output
    (True, 'out/lights/a.fits')
    """

    def __init__(self, output: str | Path, input: str | Path):
        self.output, self.input = str(output), str(input)
        super().__init__(f"refusing to write {self.output}: it is the input {self.input}; "
                         "choose another output path")

    def __reduce__(self):
        return (type(self), (self.output, self.input))


class OutputTreeError(CcdflowError, NotADirectoryError):
    """An output sub-folder leads outside the output folder (a planted link) or is not a folder.

    Examples
    --------
    >>> print(OutputTreeError("reduced/lights", "/data/raw"))
    refusing to write into reduced/lights: it leads outside the output folder, to /data/raw
    """

    def __init__(self, folder: str | Path, target: str | Path, *,
                 why: str = "it leads outside the output folder, to"):
        self.folder, self.target, self.why = str(folder), str(target), why
        super().__init__(f"refusing to write into {self.folder}: {why} {self.target}")

    def __reduce__(self):
        return (_rebuild_tree_error, (self.folder, self.target, self.why))


class NightAbortedError(CcdflowError, RuntimeError):
    """The environment stopped a night (disk full, unwritable output, lost cluster); raised from the cause.

    The night's ``report.json`` says ``aborted`` with the same reason; a rerun resumes.

    Examples
    --------
    >>> print(NightAbortedError("disk full writing lights/a.fits: [Errno 28] No space left on device"))
    disk full writing lights/a.fits: [Errno 28] No space left on device
    """


class WorkerMemoryError(CcdflowError, MemoryError):
    """A task needs more memory than a worker of the cluster may use.

    Examples
    --------
    >>> isinstance(WorkerMemoryError("a.fits: needs 270 MiB, workers allow 120 MiB"), MemoryError)
    True
    """


class StorageError(CcdflowError, OSError):
    """A file or folder named by URL cannot be reached with the storage options given.

    Raised for what the filesystem library reports as anything but an ``OSError`` (missing
    credentials, an option it does not know, an endpoint that does not answer); an ``OSError``
    (a missing object, access denied) passes as it is.

    Parameters
    ----------
    url : str
        The file or folder.
    message : str
        What went wrong.

    Examples
    --------
    >>> err = StorageError("s3://bucket/night.csv", "NoCredentialsError: Unable to locate credentials")
    >>> print(err); isinstance(err, OSError), err.url
    s3://bucket/night.csv: NoCredentialsError: Unable to locate credentials
    (True, 's3://bucket/night.csv')
    """

    def __init__(self, url: str, message: str):
        self.url, self.reason = str(url), message
        super().__init__(f"{self.url}: {message}")

    def __str__(self) -> str:
        return f"{self.url}: {self.reason}"

    def __reduce__(self):
        return (type(self), (self.url, self.reason))


def _rebuild_tree_error(folder: str, target: str, why: str) -> OutputTreeError:
    return OutputTreeError(folder, target, why=why)


def _rebuild_frame_error(cls: type[FrameError], path: str, message: str, hdu) -> FrameError:
    return cls(path, message, hdu=hdu)


class CcdflowWarning(UserWarning):
    """Base class of the warnings ccdflow gives when it falls back to a documented default."""


class ExposureTimeWarning(CcdflowWarning):
    """An exposure time is missing and a documented default (1 s) was used."""
