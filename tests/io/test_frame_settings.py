"""One resolution of a frame's parameters: the Calibrator and the night planner agree on every key."""

import itertools
import re

import numpy as np
import pytest
from astropy.io import fits

from ccdflow import Calibrator, open_frame
from ccdflow.array.sections import Region
from ccdflow.errors import ConfigError, FrameError, IncompatibleFramesError
from ccdflow.io.filelist import ListedFrame
from ccdflow.io.frame_settings import FrameSettings, resolve_params
from ccdflow.io.headers import EXPTIME_KEYS, GAIN_KEYS, READ_NOISE_KEYS, SATURATION_KEYS
from ccdflow.night.config import CalibrationConfig, NightConfig
from ccdflow.night.frames import describe_frames
from ccdflow.night.plan import frame_params

VALUES = {"gain": 2.5, "read_noise": 7.0, "saturation": 61000.0, "exptime": 42.0}
CASES = list(itertools.product(GAIN_KEYS, READ_NOISE_KEYS, SATURATION_KEYS, EXPTIME_KEYS))


def _raw(path, cards):
    header = fits.Header(cards)
    header["BIASSEC"] = "[41:48,1:30]"
    header["TRIMSEC"] = "[1:40,1:30]"
    fits.writeto(path, np.full((30, 48), 1000, np.uint16), header)
    return path


def _both_ways(path):
    """The parameters of one raw frame as the Calibrator and as the night planner resolve them."""
    calibrator = Calibrator(overscans="[41:48,1:30]", image_area="[1:40,1:30]")
    from_calibrator = calibrator.calibrate(open_frame(path)).params
    config = NightConfig(filelist=path.with_suffix(".csv"), output=path.parent / "out",
                         calibration=CalibrationConfig(overscans="header", image_area="header"))
    (frame,) = describe_frames([ListedFrame(type="light", path=path, hdu=0)])
    return from_calibrator, frame_params(frame, config)


@pytest.mark.parametrize(("gain", "noise", "saturation", "exptime"), CASES,
                         ids=["-".join(case) for case in CASES])
def test_every_alternative_key_gives_the_same_parameters_both_ways(tmp_path, gain, noise,
                                                                   saturation, exptime):
    path = _raw(tmp_path / "raw.fits", [(gain, VALUES["gain"]), (noise, VALUES["read_noise"]),
                                        (saturation, VALUES["saturation"]),
                                        (exptime, VALUES["exptime"])])
    calibrator, planner = _both_ways(path)
    assert calibrator == planner
    assert (planner.gain, planner.read_noise, planner.saturation, planner.exptime) == \
        (VALUES["gain"], VALUES["read_noise"], VALUES["saturation"], VALUES["exptime"])
    assert planner.image_area == Region(xmin=0, xmax=40, ymin=0, ymax=30)
    assert planner.overscans == (Region(xmin=40, xmax=48, ymin=0, ymax=30),)


def test_missing_and_unparsable_cards_take_the_same_defaults_both_ways(tmp_path):
    path = _raw(tmp_path / "raw.fits", [("GAIN", "unavail"), ("EXPTIME", 10.0)])
    calibrator, planner = _both_ways(path)
    assert calibrator == planner
    assert (planner.gain, planner.read_noise, planner.saturation) == (1.0, 0.0, None)


def test_the_first_card_in_the_list_wins_and_fallbacks_are_named():
    header = fits.Header([("GAIN", "unavail"), ("EGAIN", 1.8), ("RDNOISE", 4.0), ("READNOIS", 9.0)])
    resolved = resolve_params(header, (10, 10), FrameSettings(), path="f.fits")
    assert (resolved.params.gain, resolved.params.read_noise) == (1.8, 4.0)
    sources = dict(resolved.sources)
    assert sources["gain"] == "header EGAIN" and sources["read_noise"] == "header RDNOISE"
    assert sources["exptime"] == "default" and sources["saturation"] == "default"
    assert "f.fits: GAIN = 'unavail' is not a number" in resolved.notes
    assert any(re.match(r"f\.fits: no exposure time card .*1 s assumed", n) for n in resolved.notes)


def test_settings_override_the_header_and_off_disables_saturation():
    header = fits.Header([("GAIN", 3.0), ("SATURATE", 50000.0), ("EXPTIME", 5.0)])
    settings = FrameSettings(gain=1.5, saturation="off", exptime=7.0)
    params = resolve_params(header, (10, 10), settings).params
    assert (params.gain, params.saturation, params.exptime) == (1.5, None, 7.0)


def test_strict_refuses_a_frame_without_exposure_time():
    with pytest.raises(FrameError, match=r"f\.fits\[0\]: no exposure time card"):
        resolve_params(fits.Header(), (10, 10), FrameSettings(strict=True), path="f.fits")


@pytest.mark.parametrize(("settings", "error", "match"), [
    (FrameSettings(overscans="header"), ConfigError, r"^overscans: 'header' asked for, but f\.fits "
                                                     "has no BIASSEC card"),
    (FrameSettings(image_area="header", prefix="calibration."), ConfigError,
     r"^calibration\.image_area: 'header' asked for, but f\.fits has no TRIMSEC or DATASEC"),
    (FrameSettings(image_area=Region(xmin=0, xmax=20, ymin=0, ymax=5)), IncompatibleFramesError,
     r"^f\.fits\[0\]: image_area .* lies outside the 10x10 frame"),
])
def test_bad_sections_name_the_frame_and_the_setting(settings, error, match):
    with pytest.raises(error, match=match):
        resolve_params(fits.Header(), (10, 10), settings, path="f.fits")


@pytest.mark.parametrize(("kwargs", "key"), [({"gain": 0.0}, "gain"), ({"read_noise": -1}, "read_noise"),
                                             ({"exptime": -2.0}, "exptime"),
                                             ({"image_area": (0, 1)}, "image_area")])
def test_settings_are_validated_at_construction(kwargs, key):
    with pytest.raises(ConfigError, match=f"^{key}: "):
        FrameSettings(**kwargs)
