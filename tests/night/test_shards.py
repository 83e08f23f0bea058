"""The cube's shards read by hand equal zarr's own reads bit for bit, and anything else is zarr's."""

import concurrent.futures
from pathlib import Path

import google_crc32c
import numpy as np
import pytest
import zarr
from zarr.codecs import BytesCodec, ZstdCodec

from ccdflow.night import shards
from ccdflow.night.shards import ShardLayout, read_band
from ccdflow.night.store import Store

SHAPE = (10, 12)  # inner chunks of 3 rows: the last one runs past the image


def _cube(tmp_path: Path, n: int = 6) -> tuple[Store, np.ndarray, np.ndarray]:
    """A cube of n slots, slot 4 never written; what was written, NaN/0 where nothing was."""
    store = Store(tmp_path / "work.zarr")
    store.ensure_cube("lights_V", stems=[f"f{i}" for i in range(n)], shape=SHAPE, rows=3)
    rng = np.random.default_rng(3)
    images = rng.normal(10.0, 4.0, (n, *SHAPE)).astype(np.float32)
    images[1, 2, 5] = np.nan
    images[2, 3:6] = np.nan  # a whole inner chunk of NaN: zarr does not store it
    masks = (rng.random((n, *SHAPE)) < 0.2).astype(np.uint8) * 4
    masks[3] = 0  # a frame with nothing flagged: none of its mask chunks is stored
    images[4], masks[4] = np.nan, 0
    for i in range(n):
        if i != 4:
            store.write_frame("lights_V", i, images[i], np.ones(SHAPE, np.float32), masks[i])
    return store, images, masks


@pytest.mark.parametrize("rows", [(0, 10), (0, 3), (3, 6), (2, 8), (4, 5), (9, 10), (6, 10)])
@pytest.mark.parametrize("label", ["image", "mask"])
def test_a_band_equals_zarrs_read_and_what_was_written(tmp_path, rows, label):
    store, images, masks = _cube(tmp_path)
    array = store.cube_arrays("lights_V")[label]
    frames = [5, 0, 2, 4, 3, 1]  # out of order, one never written
    assert ShardLayout.of(array) is not None
    out = np.full((len(frames), rows[1] - rows[0], SHAPE[1]), 7, array.dtype)
    read_band(array, frames, rows, out=out)
    zarrs = np.stack([array[f, rows[0]:rows[1], :] for f in frames])
    assert out.tobytes() == zarrs.tobytes()  # bit for bit, NaN payloads included
    written = (images if label == "image" else masks)[frames, rows[0]:rows[1]]
    np.testing.assert_array_equal(out, written)


def test_the_layout_is_read_from_the_array(tmp_path):
    store, _, _ = _cube(tmp_path)
    arrays = store.cube_arrays("lights_V")
    image, mask = ShardLayout.of(arrays["image"]), ShardLayout.of(arrays["mask"])
    assert (image.rows, image.chunks, image.width) == (3, 4, 12)
    assert np.isnan(image.fill) and image.dtype == np.float32
    assert mask.fill == 0 and mask.dtype == np.uint8
    assert Path(image.shard(2)) == store.path / "cubes/lights_V/image/c/2/0/0"
    assert Path(image.shard(2)).is_file()


def _other(tmp_path: Path, **kwargs) -> zarr.Array:
    array = zarr.create_array(str(tmp_path / "other.zarr"), shape=(3, *SHAPE), dtype="float32",
                              fill_value=np.nan, **kwargs)
    array[...] = np.arange(3 * SHAPE[0] * SHAPE[1], dtype=np.float32).reshape(3, *SHAPE)
    return array


@pytest.mark.parametrize("kwargs", [
    {"chunks": (1, 3, 12)},  # no shards: the cubes written before them
    {"chunks": (1, 3, 12), "shards": (1, 12, 12), "compressors": [ZstdCodec()]},
    {"chunks": (1, 3, 6), "shards": (1, 12, 12)},  # inner chunks not full width
    {"chunks": (1, 3, 12), "shards": (3, 12, 12)},  # several frames a shard
    {"chunks": (1, 3, 12), "shards": (1, 12, 12), "serializer": BytesCodec(endian="big")},
])
def test_another_layout_is_left_to_zarr(tmp_path, kwargs):
    array = _other(tmp_path, **kwargs)
    assert ShardLayout.of(array) is None
    out = np.empty((2, 5, SHAPE[1]), np.float32)
    read_band(array, [2, 0], (4, 9), out=out)
    np.testing.assert_array_equal(out, array[...][[2, 0], 4:9])


def test_an_array_in_memory_is_left_to_zarr():
    array = zarr.create_array(zarr.storage.MemoryStore(), shape=(2, *SHAPE), dtype="float32",
                              chunks=(1, 3, 12), shards=(1, 12, 12))
    array[1] = 5.0
    assert ShardLayout.of(array) is None
    out = np.empty((1, 10, 12), np.float32)
    read_band(array, [1], (0, 10), out=out)
    assert (out == 5.0).all()


def test_a_damaged_shard_index_fails_as_zarr_does(tmp_path):
    store, _, _ = _cube(tmp_path)
    shard = store.path / "cubes/lights_V/image/c/1/0/0"
    raw = bytearray(shard.read_bytes())
    raw[-10] ^= 0xFF  # inside the index: its checksum no longer matches
    shard.write_bytes(bytes(raw))
    image = store.cube_arrays("lights_V")["image"]
    with pytest.raises(ValueError, match="checksum do not match") as zarrs:
        image[1, 0:4, :]
    with pytest.raises(ValueError, match="checksum do not match") as ours:
        read_band(image, [0, 1], (0, 4), out=np.empty((2, 4, 12), np.float32))
    assert str(ours.value) == str(zarrs.value)


def test_a_truncated_chunk_is_left_to_zarr(tmp_path):
    store, images, _ = _cube(tmp_path)
    image = store.cube_arrays("lights_V")["image"]
    layout = ShardLayout.of(image)
    shard = Path(layout.shard(0))
    raw = shard.read_bytes()
    index = np.frombuffer(raw[-(16 * layout.chunks + 4):-4], "<u8").reshape(-1, 2)
    offset, length = (int(v) for v in index[1])
    # the chunk's bytes cut short, moved to the end and the index kept valid: its Blosc header
    # now claims more bytes than there are, which the hand reader must not trust
    body = raw[:offset] + raw[offset + length:-(16 * layout.chunks + 4)]
    moved = raw[offset:offset + length - 5]
    new = index.copy()
    new[new[:, 0] > offset, 0] -= length
    new[1] = (len(body), len(moved))
    table = new.astype("<u8").tobytes()
    shard.write_bytes(body + moved + table + google_crc32c.value(table).to_bytes(4, "little"))
    buffer = np.empty((layout.rows, layout.width), layout.dtype)
    assert shards._decompress(raw[offset:offset + length], buffer)  # the intact chunk reads
    assert not shards._decompress(moved, buffer)  # the short one is refused, left to zarr
    out = np.empty((1, 3, 12), np.float32)
    # zarr trusts the Blosc header, so its values for that chunk are whatever Blosc makes of the
    # short bytes (not the same twice: not compared); the band is still read, without an error
    read_band(image, [0], (3, 6), out=out)
    read_band(image, [0], (0, 3), out=out)  # the chunks around it still read
    np.testing.assert_array_equal(out[0], images[0, 0:3])


def test_bands_read_from_many_threads_at_once_are_each_right(tmp_path):
    store, images, _ = _cube(tmp_path)
    image = store.cube_arrays("lights_V")["image"]
    bands = [(r0, min(10, r0 + width)) for width in (1, 2, 4, 7) for r0 in range(0, 10, width)]

    def read(rows):
        out = np.empty((5, rows[1] - rows[0], 12), np.float32)
        read_band(image, [0, 1, 2, 3, 5], rows, out=out)
        return out

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        for rows, out in zip(bands * 3, pool.map(read, bands * 3), strict=True):
            np.testing.assert_array_equal(out, images[[0, 1, 2, 3, 5], rows[0]:rows[1]])
