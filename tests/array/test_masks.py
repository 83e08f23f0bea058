import doctest

import dask.array as da
import numpy as np
import pytest
from astropy.io import fits

import ccdflow.array.masks as masks_module
from ccdflow.array.masks import MASK_DTYPE, MaskBits, mask_header, merge_masks, read_mask_header
from ccdflow.kernels import calibrate as kernel


def test_low_planes_equal_the_calibration_kernel_flags():
    assert MaskBits.NONFINITE_INPUT == kernel.FLAG_BAD_INPUT == 1
    assert MaskBits.SATURATED == kernel.FLAG_SATURATED == 2
    assert MaskBits.FLAT_INVALID == kernel.FLAG_FLAT == 4
    assert MaskBits.NO_MASTER_DATA == kernel.FLAG_MASTER == 8


def test_planes_are_distinct_single_bits_that_fill_uint8():
    values = [bit.value for bit in MaskBits]
    assert values == [1 << i for i in range(8)]
    assert MASK_DTYPE == np.uint8 and sum(values) == np.iinfo(np.uint8).max


def test_header_round_trips_through_a_fits_file(tmp_path):
    hdu = fits.ImageHDU(np.array([[0, 64], [2, 34]], np.uint8), name="MASK")
    hdu.header.extend(mask_header())
    path = tmp_path / "m.fits"
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path)
    with fits.open(path) as hdus:
        header = hdus["MASK"].header
        assert header["MASKBIT6"] == "COSMIC_RAY" and "cosmic ray" in header.comments["MASKBIT6"]
        planes = read_mask_header(header)
    assert planes == {bit.name: bit.value for bit in MaskBits}


def test_reader_keeps_unknown_names_and_refuses_duplicates():
    assert read_mask_header({"MASKBIT9": "FUTURE"}) == {"FUTURE": 512}
    assert read_mask_header({}) == {}
    with pytest.raises(ValueError, match="documented twice"):
        read_mask_header({"MASKBIT0": "BAD", "MASKBIT3": "BAD"})


def test_header_refuses_a_dtype_too_narrow_or_signed():
    with pytest.raises(ValueError, match="cannot hold 8 bit planes"):
        mask_header(dtype=np.int8)
    with pytest.raises(ValueError, match="cannot hold"):
        mask_header(dtype=np.float32)
    assert len(mask_header(dtype=np.uint16)) == 9


def test_merge_sets_bad_where_the_user_mask_is_nonzero_or_nan():
    mask = np.array([[0, 2], [8, 0]], np.uint8)
    user = np.array([[0.0, 1.0], [np.nan, -3.0]])
    expected = np.array([[0, 2 | 16], [8 | 16, 16]], np.uint8)
    out = merge_masks(mask, user)
    assert out.dtype == np.uint8 and (out == expected).all()
    lazy = merge_masks(da.from_array(mask, chunks=1), da.from_array(user, chunks=1))
    assert isinstance(lazy, da.Array) and (lazy.compute() == expected).all()
    assert (merge_masks(mask, user, bit=MaskBits.BLEED) == np.array([[0, 34], [40, 32]])).all()
    with pytest.raises(ValueError, match="differs"):
        merge_masks(mask, np.zeros((3, 2)))


def test_examples_run():
    assert doctest.testmod(masks_module, extraglobs={"np": np}).failed == 0
