"""ccdflow: calibrate whole nights of CCD frames in parallel on Dask."""

from ccdflow._version import __version__
from ccdflow.errors import (
    CcdflowError,
    ConfigError,
    FrameError,
    FrameReadError,
    IncompatibleFramesError,
    MissingCalibrationError,
    OutputExistsError,
)

__all__ = [
    "CcdflowError",
    "ConfigError",
    "FrameError",
    "FrameReadError",
    "IncompatibleFramesError",
    "MissingCalibrationError",
    "OutputExistsError",
    "__version__",
]
