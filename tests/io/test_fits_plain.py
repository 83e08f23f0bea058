"""The plain-file header reader: the same header, values and pixel layout as astropy's reading."""

from __future__ import annotations

import gzip
import random
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.io.fits.verify import VerifyError

from ccdflow.errors import FrameReadError
from ccdflow.io import fits as ccd_fits
from ccdflow.io.fits import open_frame, read_header_text, read_layout
from ccdflow.io.fits_plain import LAYOUT_KEYS, HeaderText, read_primary, simple_cards
from ccdflow.night.frames import PLAN_KEYS

DATA = Path(__file__).parents[1] / "data"
REAL = sorted(DATA.glob("*/*.fits.gz"))


def _plain_copy(gz: Path, folder: Path) -> Path:
    out = folder / gz.name.removesuffix(".gz")
    out.write_bytes(gzip.decompress(gz.read_bytes()))
    return out


def _astropy(path: Path, hdu: int = 0) -> fits.Header:
    with fits.open(path) as hdul:
        return hdul[hdu].header.copy()


@pytest.mark.parametrize("gz", REAL, ids=lambda p: p.name)
def test_real_frames_read_plainly_give_astropy_header_values_and_layout(gz, tmp_path):
    path = _plain_copy(gz, tmp_path)
    expected = _astropy(path)
    plain = read_primary(str(path))
    if expected.get("NAXIS") != 2:  # SAMI: an empty primary, one extension per amplifier
        assert plain is None
        return
    assert plain is not None
    assert list(plain.cards.header.items()) == list(expected.items())
    keys = PLAN_KEYS | LAYOUT_KEYS
    assert plain.cards.values(keys) == {k: expected[k] for k in keys if k in expected}
    with fits.open(path) as hdul:
        assert plain.offset == hdul[0].fileinfo()["datLoc"]
    # the whole reader: pixels through the plain layout are astropy's raw values, scaled once
    frame = open_frame(path)
    with fits.open(path, do_not_scale_image_data=True) as hdul:
        raw = hdul[0].data.astype(np.float64)
    scaled = raw * expected.get("BSCALE", 1.0) + expected.get("BZERO", 0.0)
    np.testing.assert_array_equal(frame.data.compute(), scaled.astype(np.float32))


def test_the_text_kept_is_the_files_own(tmp_path):
    header = fits.Header([("EXPTIME", 30.0, "s"), ("OBJECT", "M 67"), ("GAIN", 1.5)])
    header["HISTORY"] = "taken at night"
    path = tmp_path / "raw.fits"
    fits.writeto(path, np.zeros((5, 7), np.uint16), header)
    index, cards = read_header_text(path)
    raw = path.read_bytes()
    assert index == 0 and cards.simple
    assert raw.startswith(cards.text.encode())
    assert raw[len(cards.text):len(cards.text) + 80] == b"END" + b" " * 77


def test_not_the_plain_case_is_left_to_astropy(tmp_path):
    data = np.arange(12, dtype=np.int16).reshape(3, 4)
    cases = {}
    fits.writeto(cases.setdefault("cube", tmp_path / "cube.fits"), np.zeros((2, 3, 4), np.int16))
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(data)]).writeto(
        cases.setdefault("extension", tmp_path / "ext.fits"))
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(data)]).writeto(
        cases.setdefault("fpack", tmp_path / "fpack.fits"))
    fits.writeto(cases.setdefault("gzip", tmp_path / "raw.fits.gz"), data)
    whole = tmp_path / "whole.fits"
    fits.writeto(whole, data)
    cases["truncated"] = tmp_path / "short.fits"
    cases["truncated"].write_bytes(whole.read_bytes()[:2880 + 10])
    cases["no END"] = tmp_path / "noend.fits"
    cases["no END"].write_bytes(whole.read_bytes()[:2880].replace(b"END     ", b"XND     "))
    cases["not FITS"] = tmp_path / "text.fits"
    cases["not FITS"].write_text("SIMPLE but not really")
    cases["missing"] = tmp_path / "missing.fits"
    for name, path in cases.items():
        assert read_primary(str(path)) is None, name
    # astropy's reading still answers for each: the image, or its own error
    assert read_layout(cases["fpack"])[0] == 1
    assert read_layout(cases["gzip"])[2] is None
    for name in ("cube", "truncated", "not FITS", "missing"):
        with pytest.raises(FrameReadError):
            read_layout(cases[name])


def test_a_damaged_card_is_still_named(tmp_path):
    path = tmp_path / "raw.fits"
    fits.writeto(path, np.zeros((3, 4), np.uint16), fits.Header([("EXPTIME", 30.0)]))
    raw = path.read_bytes().replace(b"EXPTIME =                 30.0", b"EXPTIME =                12x.0")
    path.write_bytes(raw)
    with pytest.raises(FrameReadError, match="card EXPTIME has a value that cannot be parsed"):
        read_header_text(path)


def test_zero_bscale_is_refused_on_the_plain_path_too(tmp_path):
    path = tmp_path / "raw.fits"
    fits.writeto(path, np.zeros((3, 4), np.int16))
    raw = path.read_bytes()
    end = raw.index(b"END" + b" " * 77)
    path.write_bytes(raw[:end] + b"BSCALE  =                  0.0".ljust(80) + raw[end:-80])
    assert read_primary(str(path)) is not None
    with pytest.raises(FrameReadError, match="BSCALE"):
        read_header_text(path)


def test_the_plain_path_is_the_one_taken(tmp_path, monkeypatch):
    path = tmp_path / "raw.fits"
    fits.writeto(path, np.zeros((3, 4), np.uint16), fits.Header([("EXPTIME", 30.0)]))

    def no_open(*args, **kwargs):
        raise AssertionError("fits.open called for a plain file")

    monkeypatch.setattr(ccd_fits.fits, "open", no_open)
    index, header, layout = read_layout(path)
    assert (index, header["EXPTIME"], layout.offset, layout.shape) == (0, 30.0, 2880, (3, 4))


TRICKY = [
    "EXPTIME =                 30.0 / [s]",
    "EXPTIME =                   30",
    "EXPTIME =               -1.5E3",
    "EXPTIME =               3.0D-2",
    "EXPTIME =                  .5 / half",
    "EXPTIME =                   1.",
    "EXPTIME =                12x.0",
    "EXPTIME =                 1e5x",
    "EXPTIME =           (1.0, 2.0)",
    "EXPTIME =                    T",
    "EXPTIME =                    t",
    "EXPTIME = ",
    "EXPTIME =                      / no value",
    "OBJECT  = 'M 67    '",
    "OBJECT  = 'O''Brien'",
    "OBJECT  = 'unterminated",
    "OBJECT  = ''",
    "OBJECT  = 'a' b",
    "OBJECT  = 'long &'",
    "CONTINUE  'more'",
    "HIERARCH ESO DET CHIP = 'x'",
    "exptime =                 30.0",
    "EXPTIME  =                30.0",
    "EXPTIME=                  30.0",
    "COMMENT   anything at all: '''",
    "HISTORY   done",
    "        blank keyword",
    "DATE-OBS= '2018-08-10T21:00:00'",
    "GAIN    =                  1.5 / e-/ADU \x7f",
    "GAIN    =                  1.5 \x01",
]


@pytest.mark.parametrize("image", TRICKY)
def test_a_card_called_simple_is_parsed_by_astropy_without_complaint(image):
    _check_simple(image.ljust(80)[:80])


def _check_simple(image: str) -> None:
    if not simple_cards(image):
        return
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        card = fits.Card.fromstring(image)
        try:
            card.value  # noqa: B018 - parsing is the check
        except (VerifyError, Warning) as err:  # pragma: no cover - the failure this test is for
            pytest.fail(f"{image!r} called simple, but astropy says {err}")
        header = fits.Header.fromstring(image)
    if card.keyword not in ("COMMENT", "HISTORY", ""):
        assert HeaderText.of(image).values({card.keyword}) == {card.keyword: header[card.keyword]}


def _random_value(rng: random.Random) -> str:
    kind = rng.randrange(4)
    if kind == 0:  # number-like
        return "".join(rng.choice("0123456789.+-EeDd ") for _ in range(rng.randint(1, 12)))
    if kind == 1:  # string-like, quotes inside now and then
        return "'" + "".join(rng.choice("ab M'&/.-_\x01\x7f") for _ in range(rng.randint(0, 12))) + \
            rng.choice(["'", "", "' x", "'/c"])
    if kind == 2:
        return rng.choice(["T", "F", "t", "TF", "(1, 2)", "(1.0,", "", "1 2", "nan", "inf"])
    return "".join(rng.choice("0123456789.+-EeDdTF' /&()x,\x01\x7f") for _ in range(30))


def test_random_cards_called_simple_are_parsed_by_astropy():
    rng = random.Random(7)
    keywords = ["GAIN    = ", "OBJECT  = ", "EXPTIME = ", "COMMENT ", "HISTORY ", "        ",
                "HIERARCH", "CONTINUE", "gain    = ", "GAIN     = ", "GAIN   = "]
    simple = 0
    for _ in range(20000):
        text = (rng.choice(keywords) + " " * rng.randint(0, 12) + _random_value(rng)
                + rng.choice(["", " / a comment", "/x", " /\x01"]))
        image = text.ljust(80)[:80]
        simple += simple_cards(image)
        _check_simple(image)
    assert simple > 2000  # enough of them called simple for the check to mean something


@pytest.mark.parametrize("kind", ["uint16", "int16 blank", "int32 scaled", "float32", "float64"])
def test_pixels_read_plainly_equal_astropys_scaled_once(kind, tmp_path, monkeypatch):
    rng = np.random.default_rng(3)
    data = rng.integers(0, 60000, size=(9, 7)).astype(np.uint16)
    header = fits.Header()
    if kind == "int16 blank":
        data = rng.integers(-300, 300, size=(9, 7)).astype(np.int16)
        data[2, 3] = -32768
        header["BLANK"] = -32768
    elif kind == "int32 scaled":
        data = rng.integers(-10**6, 10**6, size=(9, 7)).astype(np.int32)
    elif kind.startswith("float"):
        data = rng.normal(100, 5, size=(9, 7)).astype(kind)
        data[0, 0] = np.nan
    hdu = fits.PrimaryHDU(data, header=header)
    if kind == "int32 scaled":
        hdu.header["BSCALE"], hdu.header["BZERO"] = 0.25, 1000.5
    path = tmp_path / "raw.fits"
    hdu.writeto(path)
    with fits.open(path, do_not_scale_image_data=True) as hdul:
        raw = hdul[0].data.astype(np.float64)
        scaled = raw * hdul[0].header.get("BSCALE", 1.0) + hdul[0].header.get("BZERO", 0.0)
    if kind == "int16 blank":
        scaled[2, 3] = np.nan
    expected = scaled.astype(np.float32)
    monkeypatch.setattr(ccd_fits.fits, "open", lambda *a, **k: pytest.fail("fits.open called"))
    np.testing.assert_array_equal(ccd_fits.read_rows(path, 0, slice(None)), expected)
    block = ccd_fits.read_rows(path, 0, slice(2, 6), slice(1, 5))
    np.testing.assert_array_equal(block, expected[2:6, 1:5])
    assert block.flags.c_contiguous and block.dtype == np.float32
