"""Header conventions: `exposure_time` and `frame_type`."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from ccdflow.errors import ConfigError, FrameError
from ccdflow.io.fits import read_header
from ccdflow.io.headers import EXPTIME_KEYS, ExposureTimeWarning, exposure_time, frame_type

# Written out here on purpose: the order is the specification, not whatever the module says.
ORDER = ("EXPTIME", "EXPOSURE", "XPOSURE", "EXP_TIME", "EXPOSED", "ITIME", "TELAPSED", "ELAPSED")


def _header(**cards) -> fits.Header:
    header = fits.Header()
    for key, value in cards.items():
        header[key] = value
    return header


# --- exposure_time -------------------------------------------------------------------------------


def test_keyword_order_is_the_documented_one():
    assert EXPTIME_KEYS == ORDER


@pytest.mark.parametrize("key", ORDER)
def test_each_keyword_alone(key):
    assert exposure_time(_header(**{key: 37.5})) == 37.5


@pytest.mark.parametrize("first", range(len(ORDER)))
def test_first_present_keyword_wins(first):
    # Every later keyword present with a different value (added in reverse, so card order differs
    # from priority order): the earliest in ORDER still wins.
    header = fits.Header()
    for i in reversed(range(first, len(ORDER))):
        header[ORDER[i]] = float(10 * (i + 1))
    assert exposure_time(header) == float(10 * (first + 1))


def test_exposure_beats_itime():
    assert exposure_time(_header(ITIME=99.0, EXPOSURE=3.0)) == 3.0


@pytest.mark.parametrize("value", [np.float32(2.5), np.float64(2.5), np.int16(2)])
def test_numpy_scalars_set_in_memory(value):
    header = _header(EXPTIME=value)
    assert type(header["EXPTIME"]) is type(value)  # astropy keeps the numpy type until written
    result = exposure_time(header)
    assert result == float(value) and type(result) is float


def test_integer_and_zero_values():
    value = exposure_time(_header(EXPTIME=300))
    assert value == 300.0 and isinstance(value, float)
    assert exposure_time(_header(EXPTIME=0)) == 0.0  # a bias


def test_missing_warns_naming_the_file():
    with pytest.warns(ExposureTimeWarning, match=r"night1/raw_017\.fits: no exposure time .*1 s"):
        assert exposure_time(_header(OBJECT="M31"), path="night1/raw_017.fits") == 1.0


def test_missing_strict_raises():
    with pytest.raises(FrameError, match=r"^raw_017\.fits: no exposure time keyword") as err:
        exposure_time(_header(), path="raw_017.fits", strict=True)
    assert err.value.path == "raw_017.fits"


@pytest.mark.parametrize(
    ("value", "shown"),
    [("120", "'120'"), ("long", "'long'"), (-1.0, "-1.0"), (-5, "-5"), (True, "True"),
     (np.float32(-2.0), r"np\.float32\(-2\.0\)")],
)
def test_bad_values_raise(value, shown):
    with pytest.raises(FrameError, match=rf"^bad\.fits: EXPTIME = {shown} is not a non-negative"):
        exposure_time(_header(EXPTIME=value, EXPOSURE=10.0), path="bad.fits")


def test_bad_value_is_not_skipped_for_a_later_keyword():
    with pytest.raises(FrameError, match=r"EXPOSURE = 'n/a'"):
        exposure_time(_header(EXPOSURE="n/a", ITIME=10.0))


def test_undefined_value_raises():
    header = fits.Header([fits.Card.fromstring("EXPTIME =".ljust(80))])
    with pytest.raises(FrameError, match=r"EXPTIME = None"):
        exposure_time(header)


def test_infinite_value_read_from_a_card_raises():
    header = fits.Header([fits.Card.fromstring("EXPTIME =                1E999".ljust(80))])
    with pytest.raises(FrameError, match=r"EXPTIME = inf"):
        exposure_time(header, strict=True)


# --- frame_type ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spelling", "canonical"),
    [
        ("bias", "bias"), ("BIAS", "bias"), ("zero", "bias"), ("Zero", "bias"),
        ("dark", "dark"), ("DARK", "dark"),
        ("flat", "flat"), ("Dome", "flat"), ("dome flat", "flat"), ("DOMEFLAT", "flat"),
        ("sky", "flat"), ("Sky Flat", "flat"), ("SKY_FLAT", "flat"), ("skyflat", "flat"),
        ("twilight", "flat"), ("Twilight Flat", "flat"), ("TWILIGHTFLAT", "flat"),
        ("sky-flat", "flat"), ("flat field", "flat"),
        ("light", "light"), ("LIGHT", "light"), ("object", "light"), ("OBJECT", "light"),
        ("science", "light"), ("Science", "light"),
        ("arc", "arc"), ("ARC", "arc"), ("comp", "arc"), ("COMP", "arc"), ("lamp", "arc"),
        ("Lamp", "arc"),
        ("  bias  ", "bias"), ("sky   flat", "flat"),
        # MaxIm DL, ACP and friends write IMAGETYP = 'Light Frame', 'Bias Frame', ...
        ("Light Frame", "light"), ("Bias Frame", "bias"), ("Dark Frame", "dark"),
        ("Flat Frame", "flat"), ("Flat Field", "flat"),
    ],
)
def test_frame_type_spellings(spelling, canonical):
    assert frame_type(spelling) == canonical


@pytest.mark.parametrize("spelling", ["sciencee", "frame", "", "flatdark", "biased"])
def test_unknown_frame_type_names_the_value(spelling):
    with pytest.raises(ConfigError, match=rf"^IMAGETYP: unknown frame type '{spelling}'") as err:
        frame_type(spelling, key="IMAGETYP")
    assert err.value.key == "IMAGETYP"


def test_unknown_frame_type_default_key():
    with pytest.raises(ConfigError, match=r"^type: unknown frame type 'focus'.*'bias'"):
        frame_type("focus")


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        ("v_e_20180810_12_1_0_0.fits.gz", "light"),  # OBSTYPE = 'EXPOSE'
        ("v_s_20180810_27_1_0_0.fits.gz", "light"),  # OBSTYPE = 'STANDARD'
        ("v_a_20180810_13_1_0_1.fits.gz", "arc"),
        ("v_dark_1.fits.gz", "dark"),
    ],
)
def test_sprat_obstype(sprat, name, canonical):
    _, header = read_header(sprat / name)
    assert frame_type(header["OBSTYPE"], key="OBSTYPE") == canonical
    assert exposure_time(header, path=name, strict=True) > 0
