"""The calibrated light's writer: byte for byte what astropy's writeto makes of the same HDUs."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from ccdflow.array.masks import MASK_DTYPE, mask_header
from ccdflow.io.fits_write import plain_header, write_image_hdus
from ccdflow.io.products import write_calibrated

DATA = Path(__file__).parents[1] / "data"
STRIPPED = ("SIMPLE", "XTENSION", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "EXTEND", "BZERO",
            "BSCALE", "BLANK", "PCOUNT", "GCOUNT", "EXTNAME", "CHECKSUM", "DATASUM")


def _real_headers() -> list[fits.Header]:
    headers = []
    for path in sorted(DATA.glob("*/*.fits.gz")):
        with fits.open(path) as hdul:
            for hdu in hdul[:2]:
                header = hdu.header.copy()
                for key in STRIPPED:
                    header.remove(key, ignore_missing=True, remove_all=True)
                headers.append(header)
    return headers


def _astropy_bytes(header, image, error, mask) -> bytes:
    hdus = [fits.PrimaryHDU(image, header=header), fits.ImageHDU(error, name="ERROR")]
    hdus[1].header["BUNIT"] = (header.get("BUNIT", "adu"), "1-sigma error of the primary image")
    if mask is not None:
        hdus.append(fits.ImageHDU(mask, name="MASK"))
        for key, value, comment in mask_header(dtype=MASK_DTYPE):
            hdus[2].header[key] = (value, comment)
    buffer = io.BytesIO()
    fits.HDUList(hdus).writeto(buffer, output_verify="ignore")
    return buffer.getvalue()


@pytest.mark.parametrize("shape", [(37, 53), (1, 1), (512, 512), (90, 64)])
def test_real_headers_and_odd_shapes_give_astropys_bytes(shape, tmp_path):
    rng = np.random.default_rng(sum(shape))
    image = rng.normal(100, 5, shape).astype(np.float32)
    error = rng.uniform(1, 2, shape).astype(np.float32)
    mask = (rng.random(shape) < 0.1).astype(np.uint8)
    image[0, 0] = np.nan
    headers = _real_headers()
    assert len(headers) >= 10
    for number, header in enumerate(headers):
        header["HISTORY"] = "calibrated"
        assert plain_header(header)
        for masked in (mask, None):
            expected = _astropy_bytes(header, image, error, masked)
            path = tmp_path / f"{number}.fits"
            write_calibrated(path, image=image, error=error, header=header, mask=masked,
                             raw_cards_checked=True)
            assert path.read_bytes() == expected, (number, masked is None)


def test_arrays_of_any_layout_are_written_and_left_as_they_were():
    image = np.arange(24, dtype=np.float32).reshape(4, 6)
    readonly = image.copy()
    readonly.flags.writeable = False
    strided = np.arange(48, dtype=np.float32).reshape(4, 12)[:, ::2]
    big = image.astype(">f4")
    for array in (image, readonly, strided, big):
        before = array.copy()
        out = io.BytesIO()
        write_image_hdus(out, fits.Header([("EXPTIME", 1.0)]), array, [])
        np.testing.assert_array_equal(array, before)
        with fits.open(io.BytesIO(out.getvalue())) as hdul:
            np.testing.assert_array_equal(hdul[0].data, before)


def test_a_header_with_cards_astropy_places_is_refused():
    with pytest.raises(ValueError, match="astropy places itself"):
        write_image_hdus(io.BytesIO(), fits.Header([("BITPIX", 16)]), np.zeros((2, 2), np.float32),
                         [])
