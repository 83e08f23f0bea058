"""A stack's band read from the cubes (`Store.read_rows`) equals numpy on what was written."""

import numpy as np
import pytest
import zarr

from ccdflow.night.store import CODEC, Store

SHAPE = (11, 8)  # inner chunks of 4 rows: the last one runs past the image


def _written(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.normal(0.0, 1.0, (n, *SHAPE)).astype(np.float32)
    masks = (rng.random((n, *SHAPE)) < 0.1).astype(np.uint8)
    masks[7] = 0
    masks[18, 10] = 2  # flagged in the last row, in a frame past the first few read together
    return images, masks


def _sharded(store: Store, name: str, images: np.ndarray, masks: np.ndarray) -> None:
    store.ensure_cube(name, stems=[str(i) for i in range(len(images))], shape=SHAPE, rows=4)
    for i in range(len(images)):
        store.write_frame(name, i, images[i], np.ones(SHAPE, np.float32), masks[i])


def _unsharded(store: Store, name: str, images: np.ndarray, masks: np.ndarray) -> None:
    """A cube as written before shards: one chunk of rows per frame and band, no shard."""
    group = store.root().require_group(f"cubes/{name}")
    for label, values in (("image", images), ("error", images), ("mask", masks)):
        array = group.create_array(label, shape=values.shape, dtype=values.dtype,
                                   chunks=(1, 4, SHAPE[1]), compressors=[CODEC])
        array[...] = values


@pytest.mark.parametrize("rows", [(0, 11), (1, 10), (4, 8), (9, 11), (3, 4)])
def test_rows_of_frames_out_of_order_in_two_cubes_equal_numpy(tmp_path, rows):
    store = Store(tmp_path / "work.zarr")
    images, masks = _written(40, seed=2)
    _sharded(store, "lights_V", images[:20], masks[:20])
    _sharded(store, "lights_R", images[20:], masks[20:])
    picked = [19, 3, 4, 5, 0, 18, 7, 11, 12, 13, 14, 15, 16, 17, 1, 2, 6, 8, 9]  # 19 frames
    sources = [("lights_V", picked), ("lights_R", [5, 2, 3])]
    band = store.read_rows(sources, rows)
    order = picked + [20 + i for i in (5, 2, 3)]
    expected = np.where(masks[order] != 0, np.nan, images[order])[:, rows[0]:rows[1]]
    assert band.dtype == np.float32 and band.shape == expected.shape
    np.testing.assert_array_equal(band, expected)
    if rows[1] == 11:
        assert np.isnan(band[order.index(18), 10 - rows[0]]).any()


def test_a_cube_written_before_shards_reads_the_same(tmp_path):
    store = Store(tmp_path / "work.zarr")
    images, masks = _written(20, seed=4)
    _sharded(store, "lights_V", images, masks)
    _unsharded(store, "lights_B", images, masks)
    assert zarr.open_array(str(store.path / "cubes/lights_B/image"), mode="r").shards is None
    frames = [2, 3, 4, 0, 19, 18, 10]
    for rows in ((0, 11), (2, 9)):
        sharded = store.read_rows([("lights_V", frames)], rows)
        unsharded = store.read_rows([("lights_B", frames)], rows)
        assert sharded.tobytes() == unsharded.tobytes()
        np.testing.assert_array_equal(
            sharded, np.where(masks[frames] != 0, np.nan, images[frames])[:, rows[0]:rows[1]])
