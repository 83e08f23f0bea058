"""Paths and URLs: local paths stay `Path`s; remote files are read by byte ranges and written whole,
against a real S3-compatible server (moto's) on 127.0.0.1."""

import io
import os
import pickle
from pathlib import Path

import fsspec
import numpy as np
import pytest
from astropy.io import fits

from ccdflow.errors import ConfigError, FrameReadError, InputOverwriteError, StorageError
from ccdflow.io.fits import open_stack, read_header, read_rows
from ccdflow.io.location import (
    RemotePath,
    as_location,
    is_local,
    open_fits,
    remove_tree,
    stat,
    write_bytes_atomic,
)
from ccdflow.io.products import file_sha1, read_master, write_master
from ccdflow.io.write import atomic_path, guard_inputs, write_fits


def _fits_bytes(data, header=None) -> bytes:
    buffer = io.BytesIO()
    fits.PrimaryHDU(data, header=header).writeto(buffer)
    return buffer.getvalue()


def test_plain_paths_and_file_urls_stay_local(tmp_path):
    assert as_location("raw/a.fits") == Path("raw/a.fits")
    assert as_location(f"file://{tmp_path}/a.fits") == tmp_path / "a.fits"
    assert as_location("a.fits", base=tmp_path) == tmp_path / "a.fits"
    assert is_local(as_location(str(tmp_path))) and not is_local(as_location("s3://b/k"))


def test_remote_paths_join_like_pathlib_and_keep_their_options():
    raw = as_location("s3://bucket/night/raw", storage_options={"anon": True})
    assert isinstance(raw, RemotePath)
    up = raw / ".." / "calib" / "bias.fits"
    assert up.url == "s3://bucket/night/calib/bias.fits" and up.storage_options == {"anon": True}
    assert (up.name, up.stem, up.suffix, up.parent.url) == ("bias.fits", "bias", ".fits",
                                                            "s3://bucket/night/calib")
    assert as_location("../b.fits", base=raw).url == "s3://bucket/night/b.fits"
    assert up.relative_to(raw.parent) == Path("calib/bias.fits")
    assert sorted([raw / "b", raw / "a"])[0].name == "a"
    with pytest.raises(TypeError):  # never handed to open() by mistake
        os.fspath(up)


def test_an_unknown_protocol_is_a_config_error_naming_the_url():
    with pytest.raises(ConfigError, match="nosuch://bucket/raw: cannot reach nosuch://"):
        as_location("nosuch://bucket/raw")


def test_a_remote_path_pickles_with_its_options_and_reads_in_a_fresh_filesystem(s3_bucket):
    bucket, options = s3_bucket
    path = as_location(f"{bucket}/a.txt", storage_options=options)
    path.write_text("hello")
    again = pickle.loads(pickle.dumps(path))
    assert again == path and again.storage_options == options
    type(path.fs).clear_instance_cache()  # as in a new worker process
    assert again.read_text() == "hello"


def test_remote_files_read_write_stat_glob_and_remove(s3_bucket):
    bucket, options = s3_bucket
    root = as_location(f"{bucket}/out", storage_options=options)
    assert not root.exists()
    root.mkdir(parents=True, exist_ok=True)  # a prefix: nothing to make
    write_bytes_atomic(root / "lights" / "a.fits", b"a" * 2880)
    (root / "lights" / "b.fits").write_bytes(b"b" * 5760)
    assert root.is_dir() and (root / "lights" / "a.fits").is_file()
    assert [p.name for p in sorted(root.glob("lights/*.fits"))] == ["a.fits", "b.fits"]
    st = stat(root / "lights" / "b.fits")
    assert st.st_size == 5760 and st.st_mtime_ns > 0
    assert file_sha1(root / "lights" / "b.fits") == file_sha1_of(b"b" * 5760)
    remove_tree(root / "lights")
    remove_tree(root / "lights")  # already gone: no error
    assert not (root / "lights" / "a.fits").exists()
    with pytest.raises(FileNotFoundError):
        (root / "missing.fits").read_bytes()


def file_sha1_of(data: bytes) -> str:
    import hashlib

    return hashlib.sha1(data, usedforsecurity=False).hexdigest()


def test_remote_fits_headers_by_byte_ranges_and_rows_equal_the_local_file(tmp_path, s3_bucket):
    bucket, options = s3_bucket
    data = np.arange(40 * 8, dtype=np.int16).reshape(40, 8)
    header = fits.Header([("EXPTIME", 30.0), ("BZERO", 32768), ("BSCALE", 1)])
    local = tmp_path / "raw.fits"
    local.write_bytes(_fits_bytes(data, header))
    remote = as_location(f"{bucket}/raw.fits", storage_options=options)
    remote.write_bytes(local.read_bytes())
    index, head = read_header(remote)
    assert index == 0 and head["EXPTIME"] == 30.0
    np.testing.assert_array_equal(read_rows(remote, 0, slice(3, 9)), read_rows(str(local), 0, slice(3, 9)))
    stack = open_stack([remote, local], rows_per_chunk=16)
    values = stack.compute()
    np.testing.assert_array_equal(values[0], values[1])
    np.testing.assert_array_equal(values[0], data.astype(np.float32))
    with open_fits(remote) as hdul:
        assert hdul[0].header["EXPTIME"] == 30.0


def test_a_missing_remote_frame_is_a_frame_read_error_naming_the_url(s3_bucket):
    bucket, options = s3_bucket
    missing = as_location(f"{bucket}/raw/none.fits", storage_options=options)
    with pytest.raises(FrameReadError, match=f"{bucket}/raw/none.fits"):
        read_header(missing)


def test_an_option_the_filesystem_rejects_is_a_storage_error_naming_the_url(s3_bucket):
    bucket, options = s3_bucket
    path = as_location(f"{bucket}/a.fits", storage_options={**options, "no_such_option": 1})
    with pytest.raises(StorageError, match=f"{bucket}/a.fits: TypeError") as caught:
        path.exists()
    assert isinstance(caught.value, OSError)
    assert pickle.loads(pickle.dumps(caught.value)).url == f"{bucket}/a.fits"


def test_remote_products_are_written_whole_and_read_back(s3_bucket):
    bucket, options = s3_bucket
    fs = fsspec.filesystem("s3", skip_instance_cache=True, **options)
    master = as_location(f"{bucket}/masters/bias.fits", storage_options=options)
    data = np.full((4, 5), 300.0, np.float32)
    write_master(master, data=data, error=np.ones_like(data), count=np.full((4, 5), 3, np.uint16),
                 header=fits.Header([("EXPTIME", 1.0)]))
    read = read_master(master)
    np.testing.assert_array_equal(read.data, data)
    assert read.name == "bias.fits" and read.sha1 == file_sha1_of(fs.cat_file(master.path))
    # atomic_path: the product appears once its block succeeded, never on failure
    report = as_location(f"{bucket}/report.json", storage_options=options)
    with pytest.raises(RuntimeError, match="stop"), atomic_path(report) as tmp:
        tmp.write_text("{}")
        raise RuntimeError("stop")
    assert not report.exists()
    with atomic_path(report) as tmp:
        tmp.write_text('{"ok": true}')
    assert report.read_text() == '{"ok": true}'
    assert sorted(fs.ls(bucket, detail=False)) == [f"{bucket[5:]}/masters", f"{bucket[5:]}/report.json"]
    assert write_fits(master, fits.HDUList([fits.PrimaryHDU(data)])) == master


def test_guard_inputs_refuses_a_product_on_an_input_url(s3_bucket):
    bucket, options = s3_bucket
    raw = as_location(f"{bucket}/raw/a.fits", storage_options=options)
    spelled = as_location(f"{bucket}/out/../raw/a.fits", storage_options=options)
    with pytest.raises(InputOverwriteError, match="it is the input"):
        guard_inputs([spelled], inputs=[raw])
    guard_inputs([raw.parent / "b.fits"], inputs=[raw])


def test_a_folder_on_a_bucket_is_scanned_and_a_local_list_may_name_urls(tmp_path, s3_bucket):
    from ccdflow.io.filelist import read_filelist, scan_directory

    bucket, options = s3_bucket
    raw = as_location(f"{bucket}/raw", storage_options=options)
    (raw / "b1.fits").write_bytes(_fits_bytes(np.zeros((4, 4), np.int16),
                                              fits.Header([("IMAGETYP", "zero")])))
    (raw / "l1.fits").write_bytes(_fits_bytes(np.zeros((4, 4), np.int16),
                                              fits.Header([("IMAGETYP", "object")])))
    (raw / "notes.txt").write_bytes(b"not a frame")
    scanned = scan_directory(raw)
    assert [(f.type, f.path) for f in scanned] == [("bias", raw / "b1.fits"), ("light", raw / "l1.fits")]
    assert all(f.path.storage_options == options for f in scanned)
    listing = tmp_path / "night.csv"
    listing.write_text(f"bias, {bucket}/raw/b1.fits\nlight, l2.fits\n")
    listed = read_filelist(listing, storage_options=options)
    assert listed[0].path == raw / "b1.fits" and listed[1].path == tmp_path / "l2.fits"


def test_the_zarr_store_on_a_bucket_writes_reads_and_repairs(s3_bucket):
    from ccdflow.night.store import Store
    from ccdflow.night.verify import repair_store

    bucket, options = s3_bucket
    store = Store(as_location(f"{bucket}/out/work.zarr", storage_options=options))
    store.root()
    ones = np.ones((3, 4), np.float32)
    store.write_master("bias", data=ones, error=ones / 2, count=np.full((3, 4), 3, np.uint16),
                       attrs={"key": "k1"})
    assert store.master_is_current("bias", "k1") and not store.master_is_current("bias", "k2")
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(store)).read_master("bias").error, ones / 2)
    index = store.ensure_cube("lights_V", stems=["a", "b"], shape=(3, 4), rows=2)
    image = np.arange(12, dtype=np.float32).reshape(3, 4)
    mask = np.zeros((3, 4), np.uint8)
    mask[1, 2] = 2
    store.write_frame("lights_V", index["b"], image, image, mask)
    store.write_frame("lights_V", index["b"], image, image, mask)  # rewritten whole
    expected = image[1:3].copy()
    expected[0, 2] = np.nan
    np.testing.assert_array_equal(store.read_rows([("lights_V", [1])], (1, 3))[0], expected)
    fs = fsspec.filesystem("s3", skip_instance_cache=True, **options)
    fs.pipe_file(f"{bucket}/out/work.zarr/masters/bias/zarr.json", b'{"zarr_fo')
    assert repair_store(store.path) == [
        "work.zarr/masters/bias: metadata cannot be read; removed, to be rebuilt"]
    assert not fs.exists(f"{bucket}/out/work.zarr/masters/bias/data/zarr.json")
    assert not store.master_is_current("bias", "k1")


def _read_band_elsewhere(path: RemotePath) -> np.ndarray:
    return read_rows(path, 0, slice(1, 3))


def test_a_task_in_another_process_reads_a_remote_frame_with_the_options_it_carries(s3_bucket):
    # what a dask worker process does with a pickled task: no state of this process goes along
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    bucket, options = s3_bucket
    data = np.arange(20, dtype=np.int16).reshape(4, 5)
    path = as_location(f"{bucket}/raw/a.fits", storage_options=options)
    path.write_bytes(_fits_bytes(data))
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        band = pool.submit(_read_band_elsewhere, path).result(timeout=120)
    np.testing.assert_array_equal(band, data[1:3].astype(np.float32))


def test_an_object_rewritten_at_once_with_the_same_size_has_another_identity(s3_bucket):
    from ccdflow.night.frames import file_identity

    bucket, options = s3_bucket
    path = as_location(f"{bucket}/raw/a.fits", storage_options=options)
    path.write_bytes(b"a" * 2880)
    before = file_identity(path)
    path.write_bytes(b"b" * 2880)  # within the second: LastModified alone would not tell
    after = file_identity(path)
    assert before[:2] == after[:2] == (str(path), 2880)
    assert before != after
