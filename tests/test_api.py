"""The public names of DESIGN.md are importable from the package."""

import subprocess
import sys

import pytest

import ccdflow

PUBLIC = ["Calibrator", "OverscanMethods", "ImageReduction", "CombineParams", "combine",
          "open_frame", "open_stack", "reduce_night", "load_config", "CcdflowError",
          "ConfigError", "FrameError", "FrameReadError", "IncompatibleFramesError",
          "MissingCalibrationError", "OutputExistsError"]


@pytest.mark.parametrize("name", PUBLIC)
def test_public_name_is_exported(name):
    assert name in ccdflow.__all__
    assert getattr(ccdflow, name) is not None


def test_unknown_attribute_raises():
    with pytest.raises(AttributeError, match="no attribute 'Calibratr'"):
        ccdflow.Calibratr  # noqa: B018


def test_importing_the_package_does_not_start_distributed():
    code = "import ccdflow, sys; print('distributed' in sys.modules, 'matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_errors_mix_in_the_builtins_users_catch():
    assert issubclass(ccdflow.ConfigError, ValueError)
    assert issubclass(ccdflow.FrameReadError, OSError)
    assert issubclass(ccdflow.IncompatibleFramesError, ValueError)
    assert issubclass(ccdflow.MissingCalibrationError, LookupError)
    assert issubclass(ccdflow.OutputExistsError, FileExistsError)
