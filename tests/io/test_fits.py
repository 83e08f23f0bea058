"""Lazy FITS input: `open_frame`, `open_stack`, `read_header`, `read_rows`."""

from __future__ import annotations

import os
import re
import shutil
import warnings
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
from astropy.io import fits
from astropy.utils.exceptions import AstropyUserWarning

import ccdflow.io.fits as ccdfits
from ccdflow.errors import (
    ConfigError,
    FrameError,
    FrameReadError,
    IncompatibleFramesError,
)
from ccdflow.io.fits import Frame, open_frame, open_stack, read_header, read_rows
from ccdflow.io.headers import ExposureTimeWarning
from conftest import raise_if_dask_computes

BLOCK = 2880  # the FITS record size


@pytest.fixture
def rng():
    return np.random.default_rng(20240917)


def _header(exptime=1.0, **cards) -> fits.Header:
    header = fits.Header()
    if exptime is not None:
        header["EXPTIME"] = exptime
    for key, value in cards.items():
        header[key] = value
    return header


def _write(path: Path, data: np.ndarray, exptime=1.0, **cards) -> Path:
    """Write ``data`` as the stored pixels; ``cards`` are set after construction, kept as given."""
    hdu = fits.PrimaryHDU(data, header=_header(exptime))
    for key, value in cards.items():
        hdu.header[key] = value
    hdu.writeto(path)
    return path


def _fpack(path: Path, data: np.ndarray, **cards) -> Path:
    """An fpack-style file: empty primary, RICE_1 tile-compressed image in HDU 1."""
    comp = fits.CompImageHDU(data, header=_header(**cards), compression_type="RICE_1")
    fits.HDUList([fits.PrimaryHDU(), comp]).writeto(path)
    return path


def _raw_on_disk(path: Path, hdu: int = 0) -> np.ndarray:
    """The stored (unscaled) pixels, as astropy reads them without BZERO/BSCALE."""
    with fits.open(path, do_not_scale_image_data=True) as hdul:
        return np.array(hdul[hdu].data)


def _assert_float32_equal(actual: np.ndarray, expected: np.ndarray) -> None:
    assert actual.dtype == np.float32
    assert actual.dtype.isnative
    np.testing.assert_array_equal(actual, np.asarray(expected, dtype=np.float32))


@pytest.fixture
def read_spy(monkeypatch):
    """Record every pixel read of frame/stack tasks, by either path (the real functions run).

    Uncompressed files are read with `read_band` (one pread of full rows), others with
    `read_rows` (astropy); both are recorded as (file, hdu, rows, columns read).
    """
    calls = []
    real_rows, real_band = ccdfits.read_rows, ccdfits.read_band
    inside_rows = []  # read_rows reads a plain file with read_band itself: one read, not two

    def rows_spy(path, hdu, rows, cols=slice(None)):
        calls.append((Path(path).name, hdu, rows, cols))
        inside_rows.append(True)
        try:
            return real_rows(path, hdu, rows, cols)
        finally:
            inside_rows.pop()

    def band_spy(path, layout, rows, out):
        done = real_band(path, layout, rows, out)
        if done and not inside_rows:
            calls.append((Path(path).name, 0, rows, slice(0, layout.shape[1])))
        return done

    monkeypatch.setattr(ccdfits, "read_rows", rows_spy)
    monkeypatch.setattr(ccdfits, "read_band", band_spy)
    return calls


@pytest.fixture
def open_spy(monkeypatch):
    """Count the files opened for pixels: `astropy.io.fits.open` or the pread path's `os.open`."""
    calls = []
    real_fits, real_os = fits.open, ccdfits.os.open

    def fits_spy(name, *args, **kwargs):
        calls.append(Path(getattr(name, "name", name)).name)
        return real_fits(name, *args, **kwargs)

    class _Os:
        def __getattr__(self, attr):
            return getattr(os, attr)

        @staticmethod
        def open(path, *args, **kwargs):
            calls.append(Path(path).name)
            return real_os(path, *args, **kwargs)

    monkeypatch.setattr(fits, "open", fits_spy)
    monkeypatch.setattr(ccdfits, "os", _Os())
    return calls


# --- pixel formats -------------------------------------------------------------------------------


def test_uint16_stored_as_int16_with_bzero(tmp_path, rng):
    data = rng.integers(0, 65536, size=(37, 53), dtype=np.uint16)
    data[0, :4] = [0, 1, 32767, 65535]  # both ends of the range and the BZERO boundary
    path = _write(tmp_path / "raw.fits", data)
    header = fits.getheader(path)
    assert (header["BITPIX"], header["BZERO"]) == (16, 32768)
    assert _raw_on_disk(path).dtype == np.dtype(">i2")

    frame = open_frame(path)
    assert isinstance(frame, Frame)
    assert frame.data.dtype == np.float32
    assert frame.shape == (37, 53)
    _assert_float32_equal(frame.data.compute(), data)


@pytest.mark.parametrize("dtype", [np.int16, np.int32, np.float32, np.float64])
def test_plain_big_endian_types(tmp_path, rng, dtype):
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        data = rng.integers(max(info.min, -(2**23)), min(info.max, 2**23), size=(24, 31))
        data = data.astype(dtype)
    else:
        data = rng.normal(100.0, 30.0, size=(24, 31)).astype(dtype)
    path = _write(tmp_path / "frame.fits", data)
    stored = _raw_on_disk(path)
    assert stored.dtype == np.dtype(dtype).newbyteorder(">")
    assert "BZERO" not in fits.getheader(path)

    result = open_frame(path).data.compute()
    _assert_float32_equal(result, data)


def test_bscale_and_bzero_applied(tmp_path, rng):
    raw = rng.integers(-3000, 3000, size=(20, 16)).astype(np.int16)
    path = _write(tmp_path / "scaled.fits", raw, BSCALE=2, BZERO=10)
    header = fits.getheader(path)
    assert (header["BITPIX"], header["BSCALE"], header["BZERO"]) == (16, 2, 10)
    np.testing.assert_array_equal(_raw_on_disk(path), raw)  # stored as given, scaled on read
    expected = raw.astype(np.float32) * 2 + 10
    np.testing.assert_array_equal(fits.getdata(path), expected)  # astropy agrees

    _assert_float32_equal(open_frame(path).data.compute(), expected)
    _assert_float32_equal(read_rows(str(path), 0, slice(3, 9), slice(2, 7)), expected[3:9, 2:7])


def test_blank_integer_pixels_are_nan(tmp_path, rng):
    raw = rng.integers(-1000, 1000, size=(8, 9)).astype(np.int16)
    raw[2, 3] = raw[7, 0] = -32768
    path = _write(tmp_path / "blank.fits", raw, BLANK=-32768, BZERO=100)
    assert fits.getheader(path)["BZERO"] == 100
    expected = fits.getdata(path)  # astropy: BLANK pixels are NaN
    np.testing.assert_array_equal(expected[0], raw[0] + 100.0)
    assert np.isnan(expected).sum() == 2

    result = open_frame(path).data.compute()
    assert result.dtype == np.float32
    np.testing.assert_array_equal(result, expected.astype(np.float32))  # NaNs at the same places


def test_chosen_extension(tmp_path, rng):
    data = rng.integers(0, 65536, size=(12, 18), dtype=np.uint16)
    decoy = np.full((12, 18), 7.0, np.float32)
    hdul = fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(decoy, header=_header()),
                         fits.ImageHDU(data, header=_header(exptime=42.0), name="SCI")])
    path = tmp_path / "mef.fits"
    hdul.writeto(path)

    frame = open_frame(path, hdu=2)
    assert frame.hdu == 2
    assert frame.exptime == 42.0
    _assert_float32_equal(frame.data.compute(), data)
    assert read_header(path, hdu=2)[1]["EXTNAME"] == "SCI"


def test_gzip_compressed(tmp_path, rng):
    data = rng.integers(0, 65536, size=(33, 40), dtype=np.uint16)
    path = _write(tmp_path / "raw.fits.gz", data)
    with path.open("rb") as fh:
        assert fh.read(2) == b"\x1f\x8b"  # really gzip

    frame = open_frame(path)
    _assert_float32_equal(frame.data.compute(), data)
    _assert_float32_equal(read_rows(str(path), 0, slice(10, 20)), data[10:20])


@pytest.mark.parametrize("dtype", [np.uint16, np.int16, np.int32])
def test_tile_compressed_picks_hdu_1(tmp_path, rng, dtype):
    info = np.iinfo(dtype)
    data = rng.integers(max(info.min, -50000), min(info.max, 50000), size=(45, 38)).astype(dtype)
    path = _fpack(tmp_path / "raw.fits.fz", data, exptime=30.0)

    frame = open_frame(path)  # hdu=0 on an empty primary means the compressed image
    assert frame.hdu == 1
    assert frame.exptime == 30.0
    assert frame.shape == (45, 38)
    _assert_float32_equal(frame.data.compute(), data)  # RICE_1 on integers is lossless
    _assert_float32_equal(read_rows(str(path), 1, slice(5, 9)), data[5:9])


def test_tile_compressed_cube_is_rejected(tmp_path):
    path = tmp_path / "cube.fits.fz"
    cube = fits.CompImageHDU(np.zeros((2, 3, 4), np.int16), header=_header())
    fits.HDUList([fits.PrimaryHDU(), cube]).writeto(path)
    with pytest.raises(FrameReadError, match=r"cube\.fits\.fz\[1\]: image has NAXIS = 3"):
        open_frame(path)


def test_read_rows_block_is_native_float32(tmp_path, rng):
    data = rng.normal(0, 1, size=(30, 20)).astype(np.float64)
    path = _write(tmp_path / "f64.fits", data)
    block = read_rows(str(path), 0, slice(4, 11), slice(3, 17))
    assert block.shape == (7, 14)
    _assert_float32_equal(block, data[4:11, 3:17])
    assert block.flags.writeable and block.flags.owndata  # detached from the (closed) file


def test_read_header_returns_index_and_header(tmp_path, rng):
    path = _fpack(tmp_path / "raw.fz", rng.integers(0, 100, (6, 5)).astype(np.int16), OBJECT="M57")
    index, header = read_header(path)
    assert index == 1
    assert (header["NAXIS1"], header["NAXIS2"], header["OBJECT"]) == (5, 6, "M57")


# --- laziness ------------------------------------------------------------------------------------


def test_open_frame_reads_only_the_header(tmp_path, rng, read_spy):
    first = rng.integers(0, 1000, size=(16, 12)).astype(np.int16)
    second = first + 7
    path = _write(tmp_path / "frame.fits", first)
    with raise_if_dask_computes():
        frame = open_frame(path)
        _ = (frame.data[2:5] * 2).sum()  # building more graph computes nothing either
    assert read_spy == []

    # Pixels are read at compute time: rewriting the file now changes what comes out.
    path.unlink()
    _write(path, second)
    _assert_float32_equal(frame.data.compute(), second)
    assert read_spy == [("frame.fits", 0, slice(0, 16), slice(0, 12))]


def test_open_stack_is_lazy(tmp_path, rng, read_spy):
    paths = [_write(tmp_path / f"f{i}.fits", rng.integers(0, 100, (20, 10)).astype(np.int16))
             for i in range(3)]
    with raise_if_dask_computes():
        stack = open_stack(paths, rows_per_chunk=4)
        _ = stack[:, 3:7, 2:5].mean(axis=0)
    assert read_spy == []


# --- stacks --------------------------------------------------------------------------------------


@pytest.fixture
def five_frames(tmp_path, rng):
    data = rng.integers(0, 65536, size=(5, 23, 17), dtype=np.uint16)
    paths = [_write(tmp_path / f"bias_{i}.fits", frame) for i, frame in enumerate(data)]
    return paths, data


def test_stack_values_and_chunks(five_frames):
    paths, data = five_frames
    stack = open_stack(paths, rows_per_chunk=6)
    assert isinstance(stack, da.Array)
    assert stack.shape == (5, 23, 17)
    assert stack.dtype == np.float32
    assert stack.chunks == ((5,), (6, 6, 6, 5), (17,))
    _assert_float32_equal(stack.compute(), np.stack(data))


def test_stack_slicing(five_frames):
    paths, data = five_frames
    stack = open_stack(paths, rows_per_chunk=5)
    expected = data.astype(np.float32)
    _assert_float32_equal(stack[1].compute(), expected[1])
    _assert_float32_equal(stack[:, 3:7, 2:5].compute(), expected[:, 3:7, 2:5])
    _assert_float32_equal(stack[[0, 3], 9:21:4, ::-3].compute(), expected[[0, 3], 9:21:4, ::-3])
    _assert_float32_equal(stack[-1, -2, 4:].compute(), expected[-1, -2, 4:])


def test_stack_chunk_opens_each_file_once_for_its_band(five_frames, read_spy, open_spy):
    paths, data = five_frames
    stack = open_stack(paths, rows_per_chunk=6)
    read_spy.clear()
    open_spy.clear()

    block = stack.blocks[0, 2, 0].compute(scheduler="sync")  # rows 12:18
    _assert_float32_equal(block, data[:, 12:18])
    assert read_spy == [(p.name, 0, slice(12, 18), slice(0, 17)) for p in paths]
    assert sorted(open_spy) == sorted(p.name for p in paths)


def test_stack_whole_compute_opens_each_file_once_per_chunk(five_frames, open_spy):
    paths, _ = five_frames
    stack = open_stack(paths, rows_per_chunk=10)  # 3 chunks
    open_spy.clear()
    stack.compute(scheduler="sync")
    assert sorted(open_spy) == sorted(p.name for p in paths for _ in range(3))


def test_stack_rows_from_budget(five_frames):
    paths, _ = five_frames
    n, ny, nx = 5, 23, 17
    budget = n * nx * 4 * 7 + 3  # room for 7 rows, not 8
    stack = open_stack(paths, budget=budget)
    rows = stack.chunks[1][0]
    assert rows == 7
    assert n * rows * nx * 4 <= budget
    assert stack.chunks[0] == (n,) and stack.chunks[2] == (nx,)
    assert sum(stack.chunks[1]) == ny


def test_stack_budget_smaller_than_a_row_still_gives_one_row(five_frames):
    paths, _ = five_frames
    assert open_stack(paths, budget=10).chunks[1] == (1,) * 23


def test_stack_default_budget_keeps_small_frames_whole(five_frames):
    paths, _ = five_frames
    assert open_stack(paths).chunks == ((5,), (23,), (17,))


def test_stack_per_file_hdu_and_fpack(tmp_path, rng):
    data = rng.integers(0, 65536, size=(3, 9, 11), dtype=np.uint16)
    plain = _write(tmp_path / "a.fits", data[0])
    packed = _fpack(tmp_path / "b.fits.fz", data[1])
    mef = tmp_path / "c.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(data[2], header=_header())]).writeto(mef)

    stack = open_stack([plain, packed, mef], hdu=[0, 0, 1], rows_per_chunk=4)
    _assert_float32_equal(stack.compute(), data)


def test_stack_of_gzip_files(tmp_path, rng):
    data = rng.integers(0, 65536, size=(3, 14, 9), dtype=np.uint16)
    paths = [_write(tmp_path / f"f{i}.fits.gz", d) for i, d in enumerate(data)]
    _assert_float32_equal(open_stack(paths, rows_per_chunk=5).compute(), data)


def test_stack_shape_mismatch_names_the_odd_file(tmp_path, rng):
    good = [_write(tmp_path / f"ok{i}.fits", np.zeros((10, 8), np.int16)) for i in range(2)]
    odd = _write(tmp_path / "odd_one.fits", np.zeros((10, 9), np.int16))
    with pytest.raises(IncompatibleFramesError, match=r"odd_one\.fits.*\(10, 9\)") as err:
        open_stack([good[0], odd, good[1]])
    assert err.value.path == str(odd)
    assert isinstance(err.value, ValueError)


def test_stack_of_nothing_raises():
    with pytest.raises(IncompatibleFramesError, match="no frames"):
        open_stack([])


def test_stack_with_a_missing_file_names_it(tmp_path):
    ok = _write(tmp_path / "ok.fits", np.zeros((4, 4), np.int16))
    with pytest.raises(FrameReadError, match=r"not_there\.fits"):
        open_stack([ok, tmp_path / "not_there.fits"])


# --- exposure time through open_frame ------------------------------------------------------------


def test_exptime_from_header(tmp_path):
    path = _write(tmp_path / "f.fits", np.zeros((3, 3), np.int16), exptime=None, EXPOSURE=12.5,
                  ITIME=99.0)
    assert open_frame(path).exptime == 12.5


def test_missing_exptime_warns_naming_the_file(tmp_path):
    path = _write(tmp_path / "no_time.fits", np.zeros((3, 3), np.int16), exptime=None)
    with pytest.warns(ExposureTimeWarning, match=re.escape(str(path))):
        frame = open_frame(path)
    assert frame.exptime == 1.0


def test_missing_exptime_strict_raises(tmp_path):
    path = _write(tmp_path / "no_time.fits", np.zeros((3, 3), np.int16), exptime=None)
    with pytest.raises(FrameError, match=r"no_time\.fits.*no exposure time"):
        open_frame(path, strict=True)


def test_bad_exptime_in_header_raises(tmp_path):
    path = _write(tmp_path / "bad.fits", np.zeros((3, 3), np.int16), exptime="long")
    with pytest.raises(FrameError, match=r"bad\.fits.*EXPTIME = 'long'"):
        open_frame(path)


def test_exptime_override_wins(tmp_path):
    timed = _write(tmp_path / "timed.fits", np.zeros((3, 3), np.int16), exptime=5.0)
    untimed = _write(tmp_path / "untimed.fits", np.zeros((3, 3), np.int16), exptime=None)
    bad = _write(tmp_path / "bad.fits", np.zeros((3, 3), np.int16), exptime=-1.0)
    assert open_frame(timed, exptime=30).exptime == 30.0
    assert open_frame(untimed, exptime=2.5, strict=True).exptime == 2.5  # no warning, no error
    assert open_frame(bad, exptime=0).exptime == 0.0


@pytest.mark.parametrize("value", [-1.0, float("nan"), float("inf"), "soon"])
def test_bad_exptime_override_raises(tmp_path, value):
    path = _write(tmp_path / "f.fits", np.zeros((3, 3), np.int16))
    with pytest.raises(ConfigError, match=r"^exptime: .*not a non-negative exposure time"):
        open_frame(path, exptime=value)


# --- bad inputs ----------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    path = tmp_path / "absent.fits"
    with pytest.raises(FrameReadError, match=re.escape(str(path))) as err:
        open_frame(path)
    assert isinstance(err.value, OSError)
    assert isinstance(err.value.__cause__, FileNotFoundError)
    assert err.value.path == str(path)


def test_file_vanishing_before_compute(tmp_path):
    path = _write(tmp_path / "gone.fits", np.zeros((4, 5), np.int16))
    frame = open_frame(path)
    path.unlink()
    with pytest.raises(FrameReadError, match=r"gone\.fits.*cannot read pixels"):
        frame.data.compute()


@pytest.fixture
def big_fits(tmp_path, rng):
    data = rng.integers(0, 65536, size=(100, 100), dtype=np.uint16)  # 20000 bytes of pixels
    path = _write(tmp_path / "full.fits", data)
    assert path.stat().st_size == 8 * BLOCK
    return path


def _truncate(path: Path, size: int) -> None:
    with path.open("r+b") as fh:
        fh.truncate(size)


def test_truncated_file_fails_at_open(tmp_path, big_fits):
    # Under the test config astropy's "File may have been truncated" warning is an error.
    path = tmp_path / "short.fits"
    shutil.copy(big_fits, path)
    _truncate(path, 2 * BLOCK)
    with pytest.raises(FrameReadError, match=r"short\.fits.*truncated"):
        open_frame(path)
    with pytest.raises(FrameReadError, match=r"short\.fits.*truncated"):
        open_stack([big_fits, path])


@pytest.mark.filterwarnings("ignore:File may have been truncated")
def test_truncated_file_fails_at_open_with_warnings_ignored(tmp_path, big_fits):
    # With astropy only warning, our own check must catch it before any pixels are wanted.
    path = tmp_path / "short.fits"
    shutil.copy(big_fits, path)
    _truncate(path, 2 * BLOCK + 100)
    with pytest.raises(FrameReadError, match=r"short\.fits\[0\]: truncated: 5860 bytes"):
        open_frame(path)


@pytest.mark.parametrize("astropy_warning", ["error", "ignore"])
def test_file_truncated_after_open_fails_at_compute(tmp_path, big_fits, astropy_warning):
    path = tmp_path / "later.fits"
    shutil.copy(big_fits, path)
    frame = open_frame(path)
    stack = open_stack([big_fits, path], rows_per_chunk=10)
    _truncate(path, 2 * BLOCK)
    with warnings.catch_warnings():
        warnings.simplefilter(astropy_warning, AstropyUserWarning)
        with pytest.raises(FrameReadError, match=r"later\.fits.*cannot read pixels"):
            frame.data.compute(scheduler="sync")
        with pytest.raises(FrameReadError, match=r"later\.fits.*cannot read pixels"):
            stack[:, 90:].compute(scheduler="sync")


def test_truncated_gzip(tmp_path, big_fits):
    path = tmp_path / "short.fits.gz"
    with fits.open(big_fits) as hdul:
        hdul.writeto(path)
    _truncate(path, path.stat().st_size // 2)
    with pytest.raises(FrameReadError, match=r"short\.fits\.gz"):
        open_frame(path).data.compute()


def test_truncated_tile_compressed(tmp_path, rng):
    path = _fpack(tmp_path / "short.fz", rng.integers(0, 65536, (100, 100)).astype(np.int32))
    _truncate(path, path.stat().st_size - BLOCK)
    with pytest.raises(FrameReadError, match=r"short\.fz.*truncated"):
        open_frame(path)


def test_not_fits(tmp_path):
    path = tmp_path / "notes.fits"
    path.write_text("This is not a FITS file.\n" * 200)
    with pytest.raises(FrameReadError, match=r"notes\.fits.*cannot read FITS"):
        open_frame(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.fits"
    path.write_bytes(b"")
    with pytest.raises(FrameReadError, match=r"empty\.fits.*cannot read FITS"):
        open_frame(path)


def test_table_hdu_is_not_an_image(tmp_path):
    path = tmp_path / "table.fits"
    table = fits.BinTableHDU.from_columns([fits.Column(name="flux", format="E",
                                                       array=np.arange(4.0))])
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(path)
    with pytest.raises(FrameReadError, match=r"table\.fits\[1\]: is a BinTableHDU, not an image"):
        open_frame(path, hdu=1)
    with pytest.raises(FrameReadError, match=r"table\.fits\[0\]: image has NAXIS = 0"):
        open_frame(path)  # an empty primary before a table is not an fpack file


def test_cube_is_not_a_frame(tmp_path):
    path = _write(tmp_path / "cube.fits", np.zeros((2, 3, 4), np.float32))
    with pytest.raises(FrameReadError, match=r"cube\.fits\[0\]: image has NAXIS = 3, expected 2"):
        open_frame(path)


def test_hdu_out_of_range(tmp_path):
    path = _write(tmp_path / "one.fits", np.zeros((3, 3), np.int16))
    with pytest.raises(FrameReadError, match=r"one\.fits\[5\]: has no HDU 5 \(1 HDUs\)"):
        open_frame(path, hdu=5)
    with pytest.raises(FrameReadError, match=r"one\.fits\[3\]: has no HDU 3"):
        open_stack([path], hdu=3)


# --- real data -----------------------------------------------------------------------------------


def test_sprat_raw_frame(sprat):
    path = sprat / "v_e_20180810_12_1_0_0.fits.gz"
    frame = open_frame(path)
    assert frame.shape == (254, 1024)
    assert frame.data.dtype == np.float32
    assert frame.exptime == 120.0
    assert frame.header["BZERO"] == 32768
    expected = fits.getdata(path)  # astropy's own uint16 scaling
    assert expected.dtype == np.uint16
    _assert_float32_equal(frame.data.compute(), expected)


def test_sprat_float32_master_dark(sprat):
    path = sprat / "v_dark_1.fits.gz"
    expected = fits.getdata(path)
    assert expected.dtype == np.dtype(">f4")
    frame = open_frame(path)
    assert frame.exptime == 600.0
    _assert_float32_equal(frame.data.compute(), expected)


def test_sprat_scaled_arc(sprat):
    path = sprat / "v_a_20180810_13_1_0_1.fits.gz"
    header = fits.getheader(path)
    assert header["BSCALE"] != 1 and header["BZERO"] != 0  # a non-trivial BSCALE in the wild
    stored = fits.getdata(path, do_not_scale_image_data=True).astype(np.float64)
    truth = (stored * header["BSCALE"] + header["BZERO"]).astype(np.float32)
    data = open_frame(path).data.compute()
    np.testing.assert_array_equal(data, truth)
    # astropy scales 16-bit data in float32: BZERO = 8587 cancels most of the product, leaving
    # errors up to ~2e-3 ADU that the float64 scaling does not have
    assert 1e-4 < np.abs(fits.getdata(path) - truth).max() < 4e-3


def test_sprat_stack(sprat):
    paths = sorted(sprat.glob("v_e_*.fits.gz"))
    assert len(paths) == 2
    stack = open_stack(paths, rows_per_chunk=100)
    assert stack.chunks == ((2,), (100, 100, 54), (1024,))
    _assert_float32_equal(stack.compute(), np.stack([fits.getdata(p) for p in paths]))
