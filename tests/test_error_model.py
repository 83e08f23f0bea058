"""Calibrated errors against truth: pulls in every noise regime, on frames made here.

The generator below is plain numpy and shares nothing with `ccdflow.synthetic`: bias pedestal
and structure, dark current per pixel, flat, sky, Poisson in electrons, read noise, rounding to
integers, an overscan strip. Masters come from 5 frames each through the array-layer builders
(with the CCD noise model a night passes them); lights are calibrated by the `Calibrator`.
"""

from __future__ import annotations

from dataclasses import dataclass

import dask
import dask.array as da
import numpy as np
import pytest
from astropy.io import fits
from astropy.stats import sigma_clipped_stats

from ccdflow import Calibrator, CombineParams, open_frame
from ccdflow.array.calibration import CalibrationParams, Master, flat_norm
from ccdflow.array.masters import StackGeometry, master_bias, master_dark, master_flat, normalise_flat
from ccdflow.array.sections import Region
from ccdflow.kernels.overscan import overscan_level

GAIN, READ_NOISE = 1.5, 5.0  # e-/ADU, e-
NY, NX, NOS = 256, 512, 32
T_DARK, T_FLAT, N_MASTER = 60.0, 10.0, 5
AREA = dict(xmin=0, xmax=NX, ymin=0, ymax=NY)
OVERSCAN = dict(xmin=NX, xmax=NX + NOS, ymin=0, ymax=NY)
# light exposure (s) and sky (e-/s) of each regime; dark current is 2 e-/s on average
REGIMES = {
    "read-noise": (0.1, 0.0),
    "poisson": (100.0, 50.0),
    "dark 0.1x": (0.1 * T_DARK, 0.0),
    "dark 10x": (10 * T_DARK, 0.0),
}


@dataclass
class Truth:
    pedestal: np.ndarray  # (NY, 1) ADU, smooth along rows
    bias: np.ndarray  # (NY, NX) ADU structure on top of the pedestal
    dark: np.ndarray  # e-/s
    flat: np.ndarray  # mean 1


def make_truth(seed: int = 11) -> Truth:
    rng = np.random.default_rng(seed)
    y = np.arange(NY)[:, None] / NY
    x = np.arange(NX)[None, :] / NX
    pedestal = 1000.3 + 2.0 * y - 1.5 * y**2
    bias = 3.0 * np.sin(2 * np.pi * x) + rng.normal(0.0, 2.0, (NY, NX))
    dark = rng.gamma(4.0, 0.5, (NY, NX))
    flat = (1.0 + 0.06 * (x - 0.5) - 0.04 * (y - 0.5)) * rng.normal(1.0, 0.01, (NY, NX))
    return Truth(pedestal, bias, dark, flat / flat.mean())


def make_raw(truth: Truth, rng: np.random.Generator, *, exptime: float, sky: float) -> np.ndarray:
    """One raw frame: integer ADU, image area then the overscan strip on the right."""
    electrons = rng.poisson(exptime * (truth.dark + truth.flat * sky))
    frame = np.empty((NY, NX + NOS))
    frame[:, :NX] = electrons / GAIN + truth.bias
    frame[:, NX:] = 0.0
    frame += truth.pedestal + rng.normal(0.0, READ_NOISE / GAIN, frame.shape)
    return np.round(frame)


def _stack(truth, rng, n, *, exptime, sky):
    frames = np.stack([make_raw(truth, rng, exptime=exptime, sky=sky) for _ in range(n)])
    return da.from_array(frames.astype(np.float32), chunks=(n, 64, NX + NOS))


def _geometry(method: str, exptime: float) -> StackGeometry:
    params = CalibrationParams(image_area=Region(**AREA), overscans=(Region(**OVERSCAN),),
                               overscan_method=method, gain=GAIN, read_noise=READ_NOISE)
    return StackGeometry(params=params, exptimes=(exptime,) * N_MASTER)


def build_masters(truth: Truth, method: str, seed: int) -> dict[str, Master]:
    """Master bias, dark rate and flat from 5 frames each, with the night's noise models."""
    rng = np.random.default_rng(seed)
    model = CombineParams(gain=GAIN, read_noise=READ_NOISE)
    bias = master_bias(_stack(truth, rng, N_MASTER, exptime=0.0, sky=0.0),
                       _geometry(method, 0.0), params=model)
    b, b_err = dask.compute(bias.data, bias.error)
    # rates: a dark of t seconds has gain*t electrons per ADU/s. The mean of the survivors: the
    # median of few Poisson values sits below their mean (+0.026 sigma on a light 10x as long)
    dark = master_dark(_stack(truth, rng, N_MASTER, exptime=T_DARK, sky=0.0),
                       _geometry(method, T_DARK), bias=b, bias_error=b_err,
                       params=model.replace(gain=GAIN * T_DARK, method="mean"))
    d, d_err = dask.compute(dark.data, dark.error)
    flat = master_flat(_stack(truth, rng, N_MASTER, exptime=T_FLAT, sky=3000.0),
                       _geometry(method, T_FLAT), bias=b, dark_rate=d)
    f, f_err = dask.compute(flat.data, flat.error)
    f, f_err = normalise_flat(f, f_err, flat_norm(f))
    return {"bias": Master(b, b_err, exptime=0.0),
            "dark": Master(d, d_err, exptime=1.0, inv_exptime=1.0 / T_DARK),
            "flat": Master(f, f_err)}


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    truth = make_truth()
    folder = tmp_path_factory.mktemp("error_model")
    rng = np.random.default_rng(99)
    lights = {}
    for name, (exptime, sky) in REGIMES.items():
        path = folder / f"{name.replace(' ', '_')}.fits"
        header = fits.Header([("EXPTIME", exptime), ("GAIN", GAIN), ("RDNOISE", READ_NOISE)])
        fits.PrimaryHDU(make_raw(truth, rng, exptime=exptime, sky=sky).astype(np.uint16),
                        header=header).writeto(path)
        lights[name] = path
    masters = {m: build_masters(truth, m, seed=5) for m in ("median_per_line", "polynomial")}
    return truth, lights, masters


def _truth_image(truth: Truth, regime: str, flat: bool) -> np.ndarray:
    exptime, sky = REGIMES[regime]
    if flat:  # the flat is applied divided by its clipped mean, as astropy computes it
        level = sigma_clipped_stats(truth.flat, sigma=3.0, maxiters=5)[0]
        return np.full((NY, NX), exptime * sky * level / GAIN)
    return exptime * sky * truth.flat / GAIN


def pulls(night, regime: str, method: str, flat: bool) -> np.ndarray:
    truth, lights, masters = night
    m = masters[method]
    calibrate = Calibrator(overscans=[OVERSCAN], overscan_method=method, image_area=AREA,
                           master_bias=m["bias"], master_dark=m["dark"],
                           master_flat=m["flat"] if flat else None)
    result = calibrate.calibrate(open_frame(lights[regime]))
    image, error = dask.compute(result.image, result.error)
    pull = (image - _truth_image(truth, regime, flat)) / error
    return pull[np.isfinite(pull)]


@pytest.mark.parametrize("flat", [False, True], ids=["no-flat", "flat"])
@pytest.mark.parametrize("method", ["median_per_line", "polynomial"])
@pytest.mark.parametrize("regime", list(REGIMES))
def test_pulls_are_unit_normal_in_every_regime(night, regime, method, flat):
    pull = pulls(night, regime, method, flat)
    assert pull.size >= 100_000
    assert abs(pull.std() - 1.0) <= 0.03, (pull.std(), pull.mean())
    assert abs(pull.mean()) <= 0.02, (pull.std(), pull.mean())


def test_integer_overscan_level_is_unbiased():
    rng = np.random.default_rng(3)
    strip = np.round(rng.normal(1000.3, READ_NOISE / GAIN, (400, 50)))
    for method in ("median", "median_per_line"):
        level, variance = overscan_level(strip, [(0, 400, 0, 50)], method=method)
        # the scalar level within 3 stated errors; per line, their mean within 3 errors of it
        error = np.sqrt(variance.mean() / level.size)
        assert abs(level.mean() - 1000.3) < 3.0 * error, (method, level.mean(), error)
        assert abs(level.mean() - 1000.3) < 0.1  # not stuck on the whole ADU


def test_master_dark_error_includes_the_bias_term():
    """Over many independent nights, the rate's scatter about the truth equals its error."""
    truth = make_truth()
    rng = np.random.default_rng(21)
    model = CombineParams(gain=GAIN, read_noise=READ_NOISE)
    deviations, errors = [], []
    for _ in range(3):
        bias = master_bias(_stack(truth, rng, N_MASTER, exptime=0.0, sky=0.0),
                           _geometry("median_per_line", 0.0), params=model)
        b, b_err = dask.compute(bias.data, bias.error)
        dark = master_dark(_stack(truth, rng, N_MASTER, exptime=T_DARK, sky=0.0),
                           _geometry("median_per_line", T_DARK), bias=b, bias_error=b_err,
                           params=model.replace(gain=GAIN * T_DARK, method="mean"))
        d, d_err = dask.compute(dark.data, dark.error)
        deviations.append(d - truth.dark / GAIN)
        errors.append(d_err)
        without = np.sqrt(d_err**2 - (b_err / T_DARK) ** 2)
    pull = np.concatenate(deviations).ravel() / np.concatenate(errors).ravel()
    assert abs(pull.std() - 1.0) < 0.02 and abs(pull.mean()) < 0.02
    # the bias share is a visible part of the variance of 60 s darks
    share = 1 - (without / errors[-1]) ** 2
    assert 0.1 < np.median(share) < 0.25
