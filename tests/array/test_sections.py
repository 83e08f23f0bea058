"""Regions: `Region`, `region_from_section`, `parse_region`."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ccdflow.array.sections import Region, parse_region, region_from_section
from ccdflow.errors import ConfigError


@pytest.fixture
def image():
    return np.arange(12 * 20).reshape(12, 20)  # (rows, columns)


# --- Region --------------------------------------------------------------------------------------


def test_region_geometry(image):
    region = Region(xmin=2, xmax=7, ymin=1, ymax=4)
    assert region.shape == (3, 5)
    assert region.slices == (slice(1, 4), slice(2, 7))
    assert region.bounds == (1, 4, 2, 7)
    np.testing.assert_array_equal(image[region.slices], image[1:4, 2:7])
    assert image[region.slices].shape == region.shape
    assert region.to_dict() == {"xmin": 2, "xmax": 7, "ymin": 1, "ymax": 4}


@pytest.mark.parametrize(
    ("bounds", "inside"),
    [
        ((0, 20, 0, 12), True),  # the whole image
        ((19, 20, 11, 12), True),  # the last pixel
        ((0, 21, 0, 12), False),  # one column too many
        ((0, 20, 0, 13), False),  # one row too many
        ((25, 30, 0, 2), False),  # wholly outside
    ],
)
def test_fits_in(bounds, inside):
    xmin, xmax, ymin, ymax = bounds
    region = Region(xmin=xmin, xmax=xmax, ymin=ymin, ymax=ymax)
    assert region.fits_in((12, 20)) is inside
    assert region.fits_in((3, 12, 20)) is inside  # a stack: the last two axes count


def test_region_accepts_numpy_integers():
    region = Region(xmin=np.int64(1), xmax=np.int32(5), ymin=np.uint16(0), ymax=np.int64(2))
    assert region.to_dict() == {"xmin": 1, "xmax": 5, "ymin": 0, "ymax": 2}
    assert all(type(v) is int for v in region.to_dict().values())
    assert region.to_section() == "[2:5,1:2]"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"xmin": -1, "xmax": 5, "ymin": 0, "ymax": 2}, r"^xmin: .*non-negative integers, got -1"),
        ({"xmin": 0, "xmax": 5.0, "ymin": 0, "ymax": 2}, r"^xmax: .*got 5\.0"),
        ({"xmin": 0, "xmax": 5, "ymin": True, "ymax": 2}, r"^ymin: .*got True"),
        ({"xmin": 0, "xmax": 5, "ymin": 0, "ymax": "2"}, r"^ymax: .*got '2'"),
        ({"xmin": 3, "xmax": 3, "ymin": 0, "ymax": 2}, r"^region: empty region"),
        ({"xmin": 0, "xmax": 5, "ymin": 4, "ymax": 2}, r"^region: empty region"),
    ],
)
def test_bad_regions(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        Region(**kwargs)


def test_region_is_keyword_only_and_frozen():
    with pytest.raises(TypeError, match="positional"):
        Region(0, 1, 0, 1)
    region = Region(xmin=0, xmax=1, ymin=0, ymax=1)
    with pytest.raises(AttributeError, match="xmin"):
        region.xmin = 3


# --- FITS section strings ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ("[1:2048,21:4116]", {"xmin": 0, "xmax": 2048, "ymin": 20, "ymax": 4116}),
        ("[1:1,1:1]", {"xmin": 0, "xmax": 1, "ymin": 0, "ymax": 1}),
        ("[2049:2080,1:4096]", {"xmin": 2048, "xmax": 2080, "ymin": 0, "ymax": 4096}),
        ("[ 3 : 7 , 2 : 4 ]", {"xmin": 2, "xmax": 7, "ymin": 1, "ymax": 4}),
        ("  [3:7,2:4]\n", {"xmin": 2, "xmax": 7, "ymin": 1, "ymax": 4}),
    ],
)
def test_region_from_section(section, expected):
    assert region_from_section(section).to_dict() == expected


def test_section_selects_the_same_pixels_as_fits_does(image):
    # [x1:x2,y1:y2] is 1-based inclusive, x (columns) first; numpy is (row, column), 0-based.
    region = region_from_section("[3:7,2:4]")
    block = image[region.slices]
    assert block[0, 0] == image[2 - 1, 3 - 1]
    assert block[-1, -1] == image[4 - 1, 7 - 1]
    assert block.shape == (4 - 2 + 1, 7 - 3 + 1)


@pytest.mark.parametrize("section", ["[1:2048,21:4116]", "[5:5,9:9]", "[10:20,1:3]"])
def test_section_round_trip(section):
    assert region_from_section(section).to_section() == section


def test_region_round_trip():
    region = Region(xmin=0, xmax=50, ymin=3, ymax=4)
    assert region.to_section() == "[1:50,4:4]"
    assert region_from_section(region.to_section()) == region


@given(
    xmin=st.integers(0, 5000), width=st.integers(1, 5000),
    ymin=st.integers(0, 5000), height=st.integers(1, 5000),
)
def test_round_trip_property(xmin, width, ymin, height):
    region = Region(xmin=xmin, xmax=xmin + width, ymin=ymin, ymax=ymin + height)
    assert region_from_section(region.to_section()) == region
    assert region.shape == (height, width)


@pytest.mark.parametrize(
    "section",
    ["1:10,1:10", "[1:10,1:10", "[1:10;1:10]", "[1-10,1-10]", "[1:10]", "[1:10,1:10,1:2]",
     "[a:10,1:10]", "[-1:10,1:10]", "[1.5:10,1:10]", "", "[*,1:10]", "[1:10:2,1:10]",
     "[\u0661:\u0665,1:2]"],  # Arabic-Indic digits are not FITS
)
def test_malformed_sections(section):
    with pytest.raises(ConfigError, match=r"^section: not a FITS section string"):
        region_from_section(section)


@pytest.mark.parametrize(
    "section", ["[10:1,1:10]", "[1:10,10:1]", "[0:10,1:10]", "[1:10,0:10]", "[0:0,0:0]"],
)
def test_reversed_or_zero_based_sections(section):
    with pytest.raises(ConfigError, match=r"^section: reversed or zero-based FITS section"):
        region_from_section(section)


# --- parse_region --------------------------------------------------------------------------------


def test_parse_region_forms_agree():
    region = Region(xmin=4, xmax=9, ymin=0, ymax=30)
    assert parse_region(region) is region
    assert parse_region({"xmin": 4, "xmax": 9, "ymin": 0, "ymax": 30}) == region
    assert parse_region({"ymax": 30, "ymin": 0, "xmax": 9, "xmin": 4}) == region  # any order
    assert parse_region("[5:9,1:30]") == region


def test_parse_region_missing_key_names_the_parameter():
    with pytest.raises(ConfigError, match=r"^overscan: .*missing \['ymax'\]") as err:
        parse_region({"xmin": 0, "xmax": 2, "ymin": 0}, key="overscan")
    assert err.value.key == "overscan"


def test_parse_region_unknown_key_names_the_parameter():
    value = {"xmin": 0, "xmax": 2, "ymin": 0, "ymax": 1, "x_min": 3}
    with pytest.raises(ConfigError, match=r"^trim: .*unknown \['x_min'\]"):
        parse_region(value, key="trim")


def test_parse_region_bad_bounds_name_the_parameter():
    with pytest.raises(ConfigError, match=r"^image_area: .*empty region"):
        parse_region({"xmin": 5, "xmax": 2, "ymin": 0, "ymax": 1}, key="image_area")
    with pytest.raises(ConfigError, match=r"^image_area: xmin: .*got -3"):
        parse_region({"xmin": -3, "xmax": 2, "ymin": 0, "ymax": 1}, key="image_area")


def test_parse_region_bad_string_names_the_parameter():
    with pytest.raises(ConfigError, match=r"^BIASSEC: .*not a FITS section string: '\[1:10\]'"):
        parse_region("[1:10]", key="BIASSEC")
    with pytest.raises(ConfigError, match=r"^BIASSEC: .*reversed or zero-based"):
        parse_region("[0:10,1:5]", key="BIASSEC")


@pytest.mark.parametrize("value", [None, 5, [0, 1, 0, 1], (0, 1, 0, 1)])
def test_parse_region_wrong_type(value):
    with pytest.raises(ConfigError, match=r"^region: expected a region dict or FITS section"):
        parse_region(value)
