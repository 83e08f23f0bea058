"""ccdflow: calibrate whole nights of CCD frames in parallel on Dask."""

from importlib import import_module

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

# Public names and the modules that define them, imported on first use so that
# `import ccdflow` stays light (the night layer pulls in distributed).
_LAZY = {
    "Calibrator": "ccdflow.calibrator",
    "OverscanMethods": "ccdflow.array.overscan",
    "OverscanParams": "ccdflow.array.overscan",
    "CombineParams": "ccdflow.array.combination",
    "Combined": "ccdflow.array.combination",
    "combine": "ccdflow.array.combination",
    "Frame": "ccdflow.io.fits",
    "open_frame": "ccdflow.io.fits",
    "open_stack": "ccdflow.io.fits",
    "Master": "ccdflow.array.calibration",
    "Region": "ccdflow.array.sections",
    "Detector": "ccdflow.array.detector",
    "ImageReduction": "ccdflow.reduction",
    "NightConfig": "ccdflow.night.config",
    "load_config": "ccdflow.night.config",
    "reduce_night": "ccdflow.night.run",
    "read_product": "ccdflow.io.nddata",
}

__all__ = [
    "CcdflowError",
    "ConfigError",
    "FrameError",
    "FrameReadError",
    "IncompatibleFramesError",
    "MissingCalibrationError",
    "OutputExistsError",
    "__version__",
    *_LAZY,
]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ccdflow' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
