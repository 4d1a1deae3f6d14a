"""Chunk readers: the direct reader returns exactly what zarr-python does, and fails as clearly."""

import numpy as np
import pytest

import bigvolume
from bigvolume import CorruptChunkError
from bigvolume.streaming.cache import ChunkCache
from bigvolume.streaming.chunk_io import DirectChunkReader, TensorstoreReader, ZarrChunkReader, chunk_grid_shape, default_reader
from bigvolume.streaming.engine import VISIBLE, FetchEngine


def _all_chunks(level):
    g = chunk_grid_shape(level)
    return [(z, y, x) for z in range(g[0]) for y in range(g[1]) for x in range(g[2])]


@pytest.mark.parametrize("options", [
    {"ngff_version": "0.5"},
    {"ngff_version": "0.5", "shard_chunks": None},
    {"ngff_version": "0.4"},
], ids=["v3-sharded", "v3-unsharded", "v2"])
def test_direct_reader_matches_zarr_python(tmp_path, options):
    volume = np.random.default_rng(3).integers(0, 60000, (45, 70, 90), dtype=np.uint16)
    volume[:16, :16, :16] = 0  # an all-fill chunk: not stored at all
    path = tmp_path / "s.ome.zarr"
    bigvolume.write_pyramid(volume, path, chunks=(16, 16, 16), coarsest=16, **options)
    image = bigvolume.open_image(path)
    assert DirectChunkReader.supports(image) and isinstance(default_reader(image), TensorstoreReader)
    reference = ZarrChunkReader(image)
    for reader in (DirectChunkReader(image), TensorstoreReader(image)):
        for level in image.levels:
            indices = _all_chunks(level)
            theirs = reference.read_chunks(level.index, indices)
            for batch in (indices, indices[::3], indices[-1:]):  # a whole box, scattered chunks, one chunk
                ours = reader.read_chunks(level.index, batch)
                assert set(ours) == set(batch)
                for index in batch:
                    np.testing.assert_array_equal(ours[index], theirs[index])
        np.testing.assert_array_equal(reader.read_chunks(0, [(0, 0, 0)])[(0, 0, 0)], 0)


def test_reader_choice_follows_the_store(tmp_path):
    import zarr
    from zarr.storage import LocalStore, WrapperStore

    path = tmp_path / "zstd.ome.zarr"
    bigvolume.write_pyramid(np.ones((8, 8, 8), np.uint8), path, compressor=zarr.codecs.ZstdCodec())
    image = bigvolume.open_image(path)
    assert not DirectChunkReader.supports(image)  # not a layout it decodes ...
    assert isinstance(default_reader(image), TensorstoreReader)  # ... tensorstore does
    wrapped = bigvolume.open_image(WrapperStore(LocalStore(str(path), read_only=True)))
    assert isinstance(default_reader(wrapped), ZarrChunkReader)  # any other store: zarr-python
    np.testing.assert_array_equal(default_reader(wrapped).read_chunks(0, [(0, 0, 0)])[(0, 0, 0)], 1)


def _corrupt_one_chunk(tmp_path, shard_chunks):
    volume = np.arange(32 * 32 * 32, dtype=np.uint16).reshape(32, 32, 32)
    path = tmp_path / "c.ome.zarr"
    bigvolume.write_pyramid(volume, path, chunks=(16, 16, 16), shard_chunks=shard_chunks, coarsest=64)
    return path, volume


@pytest.mark.parametrize("reader_class", [DirectChunkReader, TensorstoreReader])
def test_corrupt_unsharded_chunk_is_named(tmp_path, reader_class):
    path, _ = _corrupt_one_chunk(tmp_path, None)
    (path / "0" / "c" / "1" / "0" / "1").write_bytes(b"not blosc at all")
    reader = reader_class(bigvolume.open_image(path))
    with pytest.raises(CorruptChunkError, match=r"0/c/1/0/1"):
        reader.read_chunks(0, [(1, 0, 1)])
    assert reader.read_chunks(0, [(0, 0, 0)])[(0, 0, 0)].shape == (16, 16, 16)


def test_truncated_shard_is_reported(tmp_path):
    path, _ = _corrupt_one_chunk(tmp_path, (1, 2, 2))
    shard = path / "0" / "c" / "1" / "0" / "0"
    shard.write_bytes(shard.read_bytes()[:10])
    reader = DirectChunkReader(bigvolume.open_image(path))
    with pytest.raises(CorruptChunkError, match=r"shorter than its .*-byte index"):
        reader.read_chunks(0, [(1, 0, 0)])


def test_fetch_engine_survives_a_corrupt_chunk(tmp_path):
    path, volume = _corrupt_one_chunk(tmp_path, None)
    (path / "0" / "c" / "1" / "1" / "1").write_bytes(b"garbage")
    image = bigvolume.open_image(path)
    engine = FetchEngine(image, cache=ChunkCache(1 << 24), batch=1)
    keys = [(0, (1, 1, 1)), (0, (0, 0, 0)), (0, (1, 0, 0))]
    engine.submit("view", [((VISIBLE, 0, float(i)), key) for i, key in enumerate(keys)])
    assert engine.wait_idle(10)
    assert [key for key, _ in engine.errors] == [(0, (1, 1, 1))]
    assert isinstance(engine.errors[0][1], CorruptChunkError)
    np.testing.assert_array_equal(engine.cache.peek((0, (0, 0, 0))), volume[:16, :16, :16])
    np.testing.assert_array_equal(engine.cache.peek((0, (1, 0, 0))), volume[16:, :16, :16])
    engine.close()


def test_engine_serves_best_priority_first_and_replaces_stale_submissions(tmp_path):
    path, _ = _corrupt_one_chunk(tmp_path, None)
    image = bigvolume.open_image(path)
    order = []

    class Recording(ZarrChunkReader):
        def read_chunks(self, level_index, indices):
            order.extend((level_index, i) for i in indices)
            return super().read_chunks(level_index, indices)

    engine = FetchEngine(image, cache=ChunkCache(1 << 24), reader=Recording(image), workers=0, batch=1)
    engine.submit("a", [((VISIBLE, 0, 5.0), (0, (0, 0, 1))), ((VISIBLE, 0, 1.0), (0, (0, 0, 0)))])
    engine.submit("b", [((VISIBLE, 0, 9.0), (0, (1, 1, 1)))])
    engine.submit("b", [((VISIBLE, 0, 0.5), (0, (1, 0, 0)))])  # b moved: (1, 1, 1) is no longer wanted
    engine.serve_until_idle()
    assert order == [(0, (1, 0, 0)), (0, (0, 0, 0)), (0, (0, 0, 1))]
    assert engine.wait_idle(1)
