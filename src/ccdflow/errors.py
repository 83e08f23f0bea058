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
    "CcdflowWarning",
    "ExposureTimeWarning",
]


class CcdflowError(Exception):
    """Base class of every error raised by ccdflow."""


class ConfigError(CcdflowError, ValueError):
    """A configuration value is missing or invalid.

    Parameters
    ----------
    key : str
        The configuration key (dotted path) or parameter name at fault.
    message : str
        What is wrong with it.
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
    """A frame could not be read (missing, truncated, not FITS, not an image HDU)."""


class IncompatibleFramesError(FrameError, ValueError):
    """A frame's shape or layout does not agree with the others, a master or a region."""


class MissingCalibrationError(CcdflowError, LookupError):
    """A calibration frame that a step needs is not available."""


class OutputExistsError(CcdflowError, FileExistsError):
    """An output file exists and overwriting was not allowed."""


def _rebuild_frame_error(cls: type[FrameError], path: str, message: str, hdu) -> FrameError:
    return cls(path, message, hdu=hdu)


class CcdflowWarning(UserWarning):
    """Base class of the warnings ccdflow gives when it falls back to a documented default."""


class ExposureTimeWarning(CcdflowWarning):
    """An exposure time is missing and a documented default (1 s) was used."""
