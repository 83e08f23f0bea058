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
        super().__init__(f"{key}: {message}")


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
        where = self.path if hdu is None else f"{self.path}[{hdu}]"
        super().__init__(f"{where}: {message}")


class FrameReadError(FrameError, OSError):
    """A frame could not be read (missing, truncated, not FITS, not an image HDU)."""


class IncompatibleFramesError(FrameError, ValueError):
    """A frame's shape or layout does not agree with the others, a master or a region."""


class MissingCalibrationError(CcdflowError, LookupError):
    """A calibration frame that a step needs is not available."""


class OutputExistsError(CcdflowError, FileExistsError):
    """An output file exists and overwriting was not allowed."""
