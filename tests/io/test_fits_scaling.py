"""BZERO/BSCALE scaling of integer FITS pixels: every read path against astropy and exact truth."""

import tracemalloc
from fractions import Fraction

import numpy as np
import pytest
from astropy.io import fits

from ccdflow.io.fits import open_frame, open_stack, read_band, read_layout, read_rows
from ccdflow.io.fits_scaling import scale_into

SHAPE = (6, 11)

_UINT32_EDGES = [0, 1, 2, 127, 128, 129, 255, 256, 257, 2**24 + 1,
                 2**31 - 129, 2**31 - 128, 2**31 - 1, 2**31, 2**31 + 1, 2**31 + 127, 2**31 + 129,
                 2**32 - 1, 2**32 - 2, 2**32 - 127, 2**32 - 128, 2**32 - 129, 2**32 - 200]


def _uint32_values(seed):
    """Values near 0, 2**31 and 2**32 - 1 (where float32 steps are 256 ADU), plus random ones."""
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 2**32, SHAPE[0] * SHAPE[1], dtype=np.uint64)
    values[:len(_UINT32_EDGES)] = _UINT32_EDGES
    return values.reshape(SHAPE)


def _write(path, stored, **cards):
    """Write ``stored`` verbatim with the given scaling cards, as a camera would."""
    hdu = fits.PrimaryHDU(stored)
    hdu.header["EXPTIME"] = 1.0
    for key, value in cards.items():
        hdu.header[key] = value
    hdu.writeto(path)
    return path


def _cases(seed):
    """(name, stored array, cards) of each kind of integer frame."""
    rng = np.random.default_rng(seed)
    uint32 = _uint32_values(seed)
    int64 = rng.integers(-2**63, 2**63 - 1, SHAPE, dtype=np.int64, endpoint=True)
    int64.flat[:4] = [-2**63, 2**63 - 1, 2**53 + 1, -(2**53) - 1]
    return [
        ("uint32", (uint32.astype(np.int64) - 2**31).astype(np.int32), dict(BZERO=2**31)),
        ("int32_bscale", rng.integers(-2**31, 2**31, SHAPE).astype(np.int32),
         dict(BSCALE=0.37, BZERO=12345.678)),
        ("int32", rng.integers(-2**31, 2**31, SHAPE).astype(np.int32), {}),
        ("int64", int64, {}),
        ("uint64", int64, dict(BZERO=2**63)),
        ("int16", rng.integers(-2**15, 2**15, SHAPE).astype(np.int16), {}),
        ("uint16", rng.integers(-2**15, 2**15, SHAPE).astype(np.int16), dict(BZERO=32768)),
    ]


CASES = [name for name, _, _ in _cases(0)]


def _astropy(path):
    """astropy's own scaled read (unsigned integers or float64), rounded to float32."""
    data = fits.getdata(path, do_not_scale_image_data=False)
    if data.dtype.kind == "u" and data.dtype.itemsize == 8:
        return data.astype(np.float32)  # float64 holds 53 bits only: its copy would round twice
    return data.astype(np.float64).astype(np.float32)


@pytest.fixture(scope="module", params=["fits", "fits.gz"])
def frames(request, tmp_path_factory):
    """Three files per case, with different pixels, plain or gzip-compressed."""
    folder = tmp_path_factory.mktemp(request.param.replace(".", "_"))
    written = {}
    for seed in range(3):
        for name, stored, cards in _cases(seed):
            path = _write(folder / f"{name}_{seed}.{request.param}", stored, **cards)
            written.setdefault(name, []).append(path)
    return request.param, written


@pytest.mark.parametrize("name", CASES)
def test_open_frame_equals_astropy_scaled_read(frames, name):
    kind, written = frames
    path = written[name][0]
    _, _, layout = read_layout(path)
    assert (layout is None) == (kind == "fits.gz")  # the pread path and the astropy path
    data = open_frame(path).data.compute()
    assert data.dtype == np.float32
    np.testing.assert_array_equal(data, _astropy(path))


def test_uint32_edges_are_exact_to_float32_rounding(frames):
    _, written = frames
    data = open_frame(written["uint32"][0]).data.compute()
    truth = _uint32_values(0).astype(np.float64).astype(np.float32)  # exact in float64
    np.testing.assert_array_equal(data, truth)
    flat = data.ravel()
    # values below 2**24 survive unchanged; float32 scaling lost up to 128 ADU near 2**31
    assert flat[:10].tolist() == [0, 1, 2, 127, 128, 129, 255, 256, 257, 2**24]
    assert flat[_UINT32_EDGES.index(2**31 - 1)] == 2**31
    assert flat[_UINT32_EDGES.index(2**31 + 127)] == 2**31
    assert flat[_UINT32_EDGES.index(2**31 + 129)] == 2**31 + 256


@pytest.mark.parametrize("rows", [1, 2, 4, 6])
@pytest.mark.parametrize("name", ["uint32", "int32_bscale", "uint64", "uint16"])
def test_open_stack_equals_astropy_at_every_chunking(frames, name, rows):
    _, written = frames
    stack = open_stack(written[name], rows_per_chunk=rows)
    assert stack.chunks[1][0] == rows
    expected = np.stack([_astropy(p) for p in written[name]])
    np.testing.assert_array_equal(stack.compute(), expected)


@pytest.mark.parametrize("name", CASES)
def test_read_rows_and_read_band_equal_astropy_on_any_block(frames, name):
    kind, written = frames
    path = written[name][1]
    expected = _astropy(path)
    for rows, cols in [(slice(None), slice(None)), (slice(1, 4), slice(2, 9)),
                       (slice(0, 6, 2), slice(None)), (slice(5, 6), slice(0, 1))]:
        np.testing.assert_array_equal(read_rows(str(path), 0, rows, cols), expected[rows, cols])
    _, _, layout = read_layout(path)
    if kind == "fits":
        band = np.empty((3, SHAPE[1]), np.float32)
        assert read_band(str(path), layout, slice(2, 5), band)
        np.testing.assert_array_equal(band, expected[2:5])


def _nearest_float32(value: Fraction) -> np.float32:
    """The float32 nearest an exact value (ties to even), found without float64 arithmetic."""
    guess = np.float32(float(value))
    candidates = [np.nextafter(guess, np.float32(-np.inf)), guess,
                  np.nextafter(guess, np.float32(np.inf))]
    return min(candidates, key=lambda c: (abs(Fraction(int(c)) - value),
                                          int(np.asarray(c).view(np.uint32)) & 1))


def test_64_bit_integers_round_once(tmp_path):
    # 2**63 + 2**39 + 1 lies just above a float32 midpoint; through float64 it lands on the
    # midpoint and rounds to even (2**63): two roundings, the wrong float32
    unsigned = [2**63 + 2**39 + 1, 2**64 - 1, 2**63 - 2**38 - 1, 2**40 + 2**15 + 1]
    stored = np.array([[u - 2**63 for u in unsigned]], np.int64)
    path = _write(tmp_path / "u64.fits", stored, BZERO=2**63)
    truth = np.array([[_nearest_float32(Fraction(u)) for u in unsigned]], np.float32)
    assert np.float32(np.float64(unsigned[0])) != truth[0, 0]  # the double rounding is real
    np.testing.assert_array_equal(open_frame(path).data.compute(), truth)
    np.testing.assert_array_equal(read_rows(str(path), 0, slice(None)), truth)


def test_16_bit_with_a_fractional_bscale_is_scaled_in_float64(tmp_path):
    stored = np.arange(-32768, 32768, 97, dtype=np.int16).reshape(-1, 1)
    path = _write(tmp_path / "i16.fits", stored, BSCALE=0.262855945833399, BZERO=8587.00572478534)
    truth = (stored * 0.262855945833399 + 8587.00572478534).astype(np.float32)
    np.testing.assert_array_equal(open_frame(path).data.compute(), truth)
    gz = _write(tmp_path / "i16.fits.gz", stored, BSCALE=0.262855945833399,
                BZERO=8587.00572478534)
    np.testing.assert_array_equal(read_rows(str(gz), 0, slice(None)), truth)


def test_uint32_tile_compressed(tmp_path):
    values = _uint32_values(5).astype(np.uint32)
    path = tmp_path / "u32.fits.fz"
    image = fits.CompImageHDU(values, compression_type="RICE_1")
    image.header["EXPTIME"] = 1.0
    fits.HDUList([fits.PrimaryHDU(), image]).writeto(path)
    expected = values.astype(np.float64).astype(np.float32)
    np.testing.assert_array_equal(open_frame(path).data.compute(), expected)
    np.testing.assert_array_equal(open_stack([path, path], rows_per_chunk=4).compute()[1], expected)


def test_blank_pixels_become_nan_after_float64_scaling(tmp_path):
    stored = np.array([[-2**31, 5, -7, 2**31 - 1]], np.int32)
    path = _write(tmp_path / "blank.fits", stored, BZERO=2**31, BLANK=-7)
    data = open_frame(path).data.compute()
    assert np.isnan(data[0, 2]) and np.isfinite(data).sum() == 3
    assert data[0, [0, 1, 3]].tolist() == [0.0, 2**31, 2**32]  # 2**31 + 5 rounds to 2**31


@pytest.mark.parametrize(("dtype", "bzero", "bytes_per_pixel"),
                         [(">i2", 32768, 2), (">i4", 2**31, 4)])
def test_scaling_allocates_no_full_frame_float64_copy(tmp_path, dtype, bzero, bytes_per_pixel):
    shape = (2048, 2048)
    stored = np.zeros(shape, dtype)
    path = _write(tmp_path / "big.fits", stored, BZERO=bzero)
    _, _, layout = read_layout(path)
    out = np.empty(shape, np.float32)
    tracemalloc.start()
    try:
        assert read_band(str(path), layout, slice(None), out)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    frame = shape[0] * shape[1]
    # the stored bytes themselves, plus at most a few MB of float64 steps (never 8 B per pixel)
    assert peak < bytes_per_pixel * frame + (6 << 20)
    assert peak < 8 * frame
    np.testing.assert_array_equal(out, np.full(shape, bzero, np.float32))


def test_scale_into_checks_its_output():
    with pytest.raises(ValueError, match="out must be float32"):
        scale_into(np.zeros((2, 2), np.int32), np.empty((2, 2), np.float64))
    with pytest.raises(ValueError, match="of shape"):
        scale_into(np.zeros((2, 2), np.int32), np.empty((2, 3), np.float32))
