"""The single-frame `Calibrator` reads its raw frame and masters from a bucket and writes there
(moto's S3 server on 127.0.0.1): the product equals the one calibrated on local disk."""

import io

import numpy as np
import pytest
from astropy.io import fits

from ccdflow import Calibrator
from ccdflow.errors import InputOverwriteError
from ccdflow.io.location import as_location


def _hdus(data: bytes) -> list[np.ndarray]:
    with fits.open(io.BytesIO(data)) as hdul:
        return [np.array(h.data) for h in hdul]


def test_a_frame_calibrated_from_and_to_a_bucket_equals_the_local_one(tmp_path, s3_bucket):
    bucket, options = s3_bucket
    rng = np.random.default_rng(5)
    raw = rng.normal(1200.0, 8.0, (24, 20)).astype(np.uint16)
    fits.writeto(tmp_path / "raw.fits", raw, fits.Header([("EXPTIME", 30.0), ("GAIN", 2.0)]))
    fits.writeto(tmp_path / "bias.fits", np.full((20, 20), 190.0, np.float32))
    remote = {name: as_location(f"{bucket}/{name}", storage_options=options)
              for name in ("raw.fits", "bias.fits", "calib.fits")}
    for name in ("raw.fits", "bias.fits"):
        remote[name].write_bytes((tmp_path / name).read_bytes())
    calibrate = Calibrator(overscans=[dict(xmin=0, xmax=20, ymin=0, ymax=4)],
                           image_area=dict(xmin=0, xmax=20, ymin=4, ymax=24))
    calibrate(raw=tmp_path / "raw.fits", calibrated=tmp_path / "calib.fits",
              master_bias=tmp_path / "bias.fits")
    calibrate(raw=remote["raw.fits"], calibrated=remote["calib.fits"],
              master_bias=remote["bias.fits"])
    local, there = _hdus((tmp_path / "calib.fits").read_bytes()), _hdus(remote["calib.fits"].read_bytes())
    assert len(local) == len(there) == 3  # image, ERROR, MASK
    for a, b in zip(local, there, strict=True):
        np.testing.assert_array_equal(a, b)
    with fits.open(io.BytesIO(remote["calib.fits"].read_bytes())) as hdul:
        assert hdul[0].header["MBIASFNM"] == "bias.fits"
    with pytest.raises(InputOverwriteError, match="raw.fits"):
        calibrate(raw=remote["raw.fits"], calibrated=remote["raw.fits"],
                  master_bias=remote["bias.fits"])
