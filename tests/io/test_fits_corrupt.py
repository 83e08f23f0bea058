"""Damaged files: unparsable header cards and corrupt compressed pixels raise a named FrameReadError."""

import numpy as np
import pytest
from astropy.io import fits

from ccdflow.errors import FrameReadError
from ccdflow.io.fits import open_frame, open_stack, read_header, read_rows

SHAPE = (64, 48)
# Under pytest's "error" filter astropy's and numpy's warnings arrive as exceptions; a user's
# session ignores or prints them, and the file must be refused there too.
WARNING_MODES = [
    pytest.param("error", id="warnings-error"),
    pytest.param("ignore", id="warnings-ignored", marks=pytest.mark.filterwarnings("ignore")),
]


def _pixels():
    return np.random.default_rng(3).normal(1000, 30, SHAPE).astype(np.int16)


def _replace(path, old: bytes, new: bytes):
    """Overwrite bytes in place, keeping the file's length (a card stays 80 characters)."""
    assert len(old) == len(new)
    data = path.read_bytes()
    assert data.count(old) == 1, old
    path.write_bytes(data.replace(old, new))
    return path


def _plain(path, **cards):
    hdu = fits.PrimaryHDU(_pixels())
    hdu.header["EXPTIME"] = 12.0
    hdu.header["OBJECT"] = "M31"
    for key, value in cards.items():
        hdu.header[key] = value
    hdu.writeto(path)
    return path


def _compressed(path, compression="RICE_1"):
    image = fits.CompImageHDU(_pixels(), compression_type=compression, tile_shape=(16, SHAPE[1]))
    image.header["EXPTIME"] = 12.0
    image.header["OBJECT"] = "M31"
    fits.HDUList([fits.PrimaryHDU(), image]).writeto(path)
    return path


def _readers(path, hdu):
    """Each public way of reading the pixels, run to completion."""
    return {
        "open_frame": lambda: open_frame(path, hdu=hdu).data.compute(),
        "open_stack": lambda: open_stack([path, path], hdu=hdu, rows_per_chunk=16).compute(),
        "read_rows": lambda: read_rows(str(path), hdu, slice(0, 32)),
    }


def _assert_refused(path, hdu, match):
    for name, read in _readers(path, hdu).items():
        with pytest.raises(FrameReadError, match=match) as caught:
            read()
        assert caught.value.path == str(path), name
        assert caught.value.hdu == hdu, name
        assert f"{path}[{hdu}]" in str(caught.value), name


BAD_CARDS = {
    "bad-float": (b"EXPTIME =                 12.0", b"EXPTIME =                12x.0"),
    "unterminated-string": (b"OBJECT  = 'M31     '", b"OBJECT  = 'M31      "),
    "bad-bzero": (b"BZERO   =                   10", b"BZERO   =                  1O0"),
}


@pytest.mark.parametrize("warnings_mode", WARNING_MODES)
@pytest.mark.parametrize("card", sorted(BAD_CARDS))
def test_unparsable_header_card_is_refused_by_every_reader(tmp_path, card, warnings_mode):
    path = _replace(_plain(tmp_path / "raw.fits", BZERO=10), *BAD_CARDS[card])
    keyword = BAD_CARDS[card][0].split(b"=")[0].strip().decode()
    # astropy needs BZERO to build the HDU, so it fails inside fits.open with its own message
    match = (r"raw.fits\[0\]: cannot read" if keyword == "BZERO"
             else f"raw.fits\\[0\\]: .*({keyword}|Verification)")
    _assert_refused(path, 0, match)
    with pytest.raises(FrameReadError, match=match):
        read_header(path)


@pytest.mark.filterwarnings("ignore")
def test_the_message_names_the_card_when_warnings_are_not_errors(tmp_path):
    path = _replace(_plain(tmp_path / "raw.fits"), *BAD_CARDS["bad-float"])
    with pytest.raises(FrameReadError, match="header card EXPTIME has a value that cannot be parsed"):
        open_frame(path)
    with pytest.raises(FrameReadError, match="header card EXPTIME"):
        read_rows(str(path), 0, slice(None))


@pytest.mark.parametrize("warnings_mode", WARNING_MODES)
def test_unparsable_card_of_a_compressed_image_names_its_hdu(tmp_path, warnings_mode):
    path = _replace(_compressed(tmp_path / "raw.fits.fz"), *BAD_CARDS["bad-float"])
    _assert_refused(path, 1, r"raw.fits.fz\[1\]: .*(EXPTIME|Verification)")


def _heap_span(path):
    """Where the compressed tiles of HDU 1 are in the file: (table start, heap start, heap size)."""
    with fits.open(path, disable_image_compression=True) as hdul:
        table = hdul.fileinfo(1)["datLoc"]
        header = hdul[1].header
        heap = table + header.get("THEAP", header["NAXIS1"] * header["NAXIS2"])
        return table, heap, header["PCOUNT"]


@pytest.mark.parametrize("warnings_mode", WARNING_MODES)
@pytest.mark.parametrize("compression", ["RICE_1", "GZIP_1", "HCOMPRESS_1"])
def test_corrupt_compressed_tile_is_refused(tmp_path, compression, warnings_mode):
    path = _compressed(tmp_path / "raw.fits.fz", compression)
    _, heap, size = _heap_span(path)
    data = bytearray(path.read_bytes())
    for k in range(heap + size // 3, heap + size // 3 + 40):  # inside the second tile
        data[k] ^= 0x5A
    path.write_bytes(bytes(data))
    assert read_header(path)[0] == 1  # the header is intact: only the pixels fail
    _assert_refused(path, 1, r"raw.fits.fz\[1\]: cannot read pixels")


@pytest.mark.parametrize("warnings_mode", WARNING_MODES)
def test_corrupt_tile_descriptors_are_refused(tmp_path, warnings_mode):
    path = _compressed(tmp_path / "raw.fits.fz")
    table, _, _ = _heap_span(path)
    data = bytearray(path.read_bytes())
    data[table:table + 16] = b"\x7f" * 16  # first tile: absurd length and offset
    path.write_bytes(bytes(data))
    _assert_refused(path, 1, r"raw.fits.fz\[1\]: cannot read pixels")


def test_intact_compressed_file_reads_back(tmp_path):
    # the corruption tests above start from files that read correctly
    path = _compressed(tmp_path / "raw.fits.fz", "HCOMPRESS_1")
    np.testing.assert_array_equal(open_frame(path).data.compute(), _pixels().astype(np.float32))
