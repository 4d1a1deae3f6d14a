"""Chunk readers: the direct reader returns exactly what zarr-python does, and fails as clearly."""

import numpy as np
import pytest

import bigvolume
from bigvolume import CorruptChunkError
from bigvolume.streaming.cache import ChunkCache
from bigvolume.streaming.engine import FetchEngine
from bigvolume.streaming.ordering import VISIBLE
from bigvolume.streaming.readers import DirectChunkReader, TensorstoreReader, ZarrChunkReader, default_reader
from bigvolume.streaming.sources import ChunkSource


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
            indices = level.all_chunks()
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


def test_a_corrupt_chunk_inside_a_box_read_fails_alone(tmp_path):
    path, volume = _corrupt_one_chunk(tmp_path, None)
    (path / "0" / "c" / "1" / "1" / "1").write_bytes(b"garbage")
    image = bigvolume.open_image(path)
    reader = TensorstoreReader(image)
    reads = reader.start(0, image.levels[0].all_chunks())
    assert len(reads) == 1, "the level's eight chunks are one read"
    results = reads[0].results()
    assert isinstance(results[(1, 1, 1)], CorruptChunkError) and "0/c/1/1/1" in str(results[(1, 1, 1)])
    for coords in image.levels[0].all_chunks():
        if coords != (1, 1, 1):
            (z0, z1), (y0, y1), (x0, x1) = image.levels[0].chunk_box(coords)
            np.testing.assert_array_equal(results[coords], volume[z0:z1, y0:y1, x0:x1])
            assert results[coords].base is None or results[coords].base.size == results[coords].size


def test_truncated_shard_is_reported(tmp_path):
    path, _ = _corrupt_one_chunk(tmp_path, (1, 2, 2))
    shard = path / "0" / "c" / "1" / "0" / "0"
    shard.write_bytes(shard.read_bytes()[:10])
    reader = DirectChunkReader(bigvolume.open_image(path))
    with pytest.raises(CorruptChunkError, match=r"shorter than its .*-byte index"):
        reader.read_chunks(0, [(1, 0, 0)])


@pytest.mark.parametrize("reader_class", [TensorstoreReader, DirectChunkReader, ZarrChunkReader])
def test_fetch_engine_survives_a_corrupt_chunk(tmp_path, reader_class):
    path, volume = _corrupt_one_chunk(tmp_path, None)
    (path / "0" / "c" / "1" / "1" / "1").write_bytes(b"garbage")
    image = bigvolume.open_image(path)
    engine = FetchEngine(ChunkCache(1 << 24))
    source = engine.add_source(ChunkSource(image, reader=reader_class(image)))
    coords = [(1, 1, 1), (0, 0, 0), (1, 0, 0)]
    engine.submit("view", [(VISIBLE, 0, float(i), source.key(0, c)) for i, c in enumerate(coords)])
    assert engine.wait_idle(10)
    assert [key for key, _ in engine.errors] == [source.key(0, (1, 1, 1))] and engine.error_count == 1
    assert isinstance(engine.errors[0][1], CorruptChunkError)
    np.testing.assert_array_equal(engine.cache.peek(source.key(0, (0, 0, 0))), volume[:16, :16, :16])
    np.testing.assert_array_equal(engine.cache.peek(source.key(0, (1, 0, 0))), volume[16:, :16, :16])
    engine.submit("view", [(VISIBLE, 0, 0.0, source.key(0, (1, 1, 1)))])  # a failed chunk is not read again
    assert engine.wait_idle(10) and engine.error_count == 1
    engine.close()


def test_engine_keeps_a_bounded_error_list(tmp_path):
    path, _ = _corrupt_one_chunk(tmp_path, None)
    for chunk in (path / "0" / "c").rglob("*"):
        if chunk.is_file():
            chunk.write_bytes(b"garbage")
    image = bigvolume.open_image(path)
    engine = FetchEngine(ChunkCache(1 << 24))
    source = engine.add_source(ChunkSource(image))
    for round in range(40):  # many views asking for the same broken chunks: each is reported once
        engine.submit(f"view{round}", [(VISIBLE, 0, 0.0, source.key(0, c)) for c in image.levels[0].all_chunks()])
        engine.wait_idle(10)
    assert engine.error_count == 8 and len(engine.errors) == 8
    from bigvolume.streaming import engine as engine_module

    engine._fail(("x", 0, (9, 9, 9)), ValueError("one more"))
    for i in range(engine_module._ERRORS_KEPT + 10):
        engine._fail(("x", 0, (i, 0, 0)), ValueError("broken"))
    assert len(engine.errors) == engine_module._ERRORS_KEPT and engine.error_count == 8 + engine_module._ERRORS_KEPT + 11
    engine.close()
