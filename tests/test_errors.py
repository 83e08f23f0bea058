import pickle

import pytest

from ccdflow.errors import (
    CcdflowError,
    ConfigError,
    FrameReadError,
    IncompatibleFramesError,
    MissingCalibrationError,
)


@pytest.mark.parametrize("error", [
    FrameReadError("/data/raw1.fits", "truncated", hdu=1),
    IncompatibleFramesError("/data/raw2.fits", "shape (1, 2) differs"),
    ConfigError("calibration.gain", "must be > 0"),
    MissingCalibrationError("/data/raw3.fits: no flat for FILTER='R'"),
])
def test_errors_survive_pickling_to_and_from_workers(error):
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is type(error) and str(again) == str(error)
    assert isinstance(again, CcdflowError)


def test_frame_errors_name_file_and_hdu():
    error = FrameReadError("/data/raw1.fits", "truncated", hdu=2)
    assert error.path == "/data/raw1.fits" and error.hdu == 2
    with pytest.raises(OSError, match=r"raw1.fits\[2\]: truncated"):
        raise error


def test_config_errors_name_the_key():
    with pytest.raises(ValueError, match="^cluster.scheduler: bad$"):
        raise ConfigError("cluster.scheduler", "bad")
