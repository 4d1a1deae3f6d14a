"""The ordering policy and the engine: one queue for every view and source, cheap at tens of thousands of chunks."""

import threading

import numpy as np
import pytest

import bigvolume
from bigvolume.streaming.cache import ChunkCache
from bigvolume.streaming.engine import FetchEngine
from bigvolume.streaming.ordering import BACKGROUND, NOW, PREFETCH, VISIBLE, RequestQueue, priorities
from bigvolume.streaming.readers import DirectChunkReader, ZarrChunkReader
from bigvolume.streaming.sources import ChunkSource


def _drain(queue):
    out = []
    while (key := queue.pop()) is not None:
        out.append(key)
    return out


def test_tiers_then_coarse_before_fine_then_nearest_first():
    queue = RequestQueue()
    queue.replace("view", priorities([
        (VISIBLE, 0, 1.0, "fine near"), (VISIBLE, 0, 9.0, "fine far"), (VISIBLE, 2, 5.0, "coarse"),
        (PREFETCH, 3, 0.0, "prefetch"), (BACKGROUND, 4, 0.0, "background"), (NOW, 4, 3.0, "first frame")]))
    assert _drain(queue) == ["first frame", "coarse", "fine near", "fine far", "prefetch", "background"]


def test_requesters_take_turns_whatever_their_distances():
    queue = RequestQueue()
    # A big view measures distance in many voxels, a small one in few: ranks, not distances, decide.
    queue.replace("big", priorities([(VISIBLE, 0, 100.0 * i, f"big{i}") for i in range(4)]))
    queue.replace("small", priorities([(VISIBLE, 0, 1.0 * i, f"small{i}") for i in range(4)]))
    order = _drain(queue)
    assert [key[:-1] for key in order] == ["big", "small"] * 4 or [key[:-1] for key in order] == ["small", "big"] * 4
    assert all(order.index(f"big{i}") < order.index(f"big{i + 1}") for i in range(3))


def test_a_chunk_wanted_by_two_requesters_is_met_first_at_the_better_priority():
    queue = RequestQueue()
    queue.replace("a", priorities([(PREFETCH, 0, 0.0, "shared"), (VISIBLE, 0, 0.0, "a only"),
                                   (BACKGROUND, 0, 0.0, "a only")]))  # a key's best need counts, once
    queue.replace("b", priorities([(VISIBLE, 1, 0.0, "shared")]))
    assert _drain(queue) == ["shared", "a only", "shared"]  # the engine skips the second meeting (in flight)
    assert queue.wants("a") == {} and queue.wants("b") == {} and len(queue) == 0
    queue.replace("a", priorities([(VISIBLE, 0, 0.0, "x")]))
    queue.replace("b", priorities([(VISIBLE, 0, 0.0, "x")]))
    queue.withdraw("a")
    assert "x" in queue, "b still wants it"
    queue.withdraw("b")
    assert "x" not in queue and queue.pop() is None


def test_the_engine_reads_a_chunk_two_views_want_once(tmp_path):
    voxels = np.zeros((32, 32, 32), np.uint16)
    path = tmp_path / "s.ome.zarr"
    bigvolume.write_pyramid(voxels, path, chunks=(16, 16, 16), coarsest=16)
    image = bigvolume.open_image(path)
    engine = FetchEngine(ChunkCache(1 << 24))
    source = engine.add_source(ChunkSource(image))
    shared = source.key(0, (0, 0, 0))
    engine.submit("a", [(PREFETCH, 0, 0.0, shared)])
    engine.submit("b", [(VISIBLE, 0, 0.0, shared), (VISIBLE, 0, 1.0, source.key(0, (0, 0, 1)))])
    assert engine.wait_idle(10) and engine.chunks_read == 2
    engine.close()


def test_a_moving_view_cancels_what_it_no_longer_needs_in_a_queue_of_over_ten_thousand_chunks():
    queue = RequestQueue()
    for view in range(4):  # four views, 3,000 chunks each: 12,000 outstanding
        queue.replace(f"view{view}", priorities([(VISIBLE, 0, float(i), (view, i)) for i in range(3000)]))
    assert len(queue) == 12_000
    # view0 moves: half of its chunks stay in view, half are new.
    queue.replace("view0", priorities([(VISIBLE, 0, float(i), (0, i)) for i in range(1500, 4500)]))
    assert len(queue) == 12_000
    assert not any((0, i) in queue for i in range(1500)), "what left the view is cancelled before it is read"
    served = _drain(queue)
    assert len(served) == 12_000 and len(set(served)) == 12_000
    assert not {(0, i) for i in range(1500)} & set(served)
    # Repeated moves leave no unbounded heap behind.
    for view in range(4):
        queue.replace(f"view{view}", priorities([(VISIBLE, 0, float(i), (view, i)) for i in range(3000)]))
    for shift in range(200):
        queue.replace("view1", priorities([(VISIBLE, 0, float(i), (1, i + 100 * shift)) for i in range(3000)]))
    assert len(queue._heads) <= 4 * 4 + 64 and len(queue) == 12_000


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    voxels = np.arange(64 * 64 * 64, dtype=np.uint16).reshape(64, 64, 64)
    path = tmp_path_factory.mktemp("engine") / "s.ome.zarr"
    bigvolume.write_pyramid(voxels, path, chunks=(16, 16, 16), coarsest=16)
    return path, voxels


def test_two_sources_share_one_cache_and_their_keys_never_mix(store):
    path, voxels = store
    a, b = bigvolume.open_image(path), bigvolume.open_image(path)
    engine = FetchEngine(ChunkCache(1 << 26))
    first, second = engine.add_source(ChunkSource(a)), engine.add_source(ChunkSource(b))
    assert first.id != second.id
    engine.submit("view", [(VISIBLE, 0, 0.0, first.key(0, (0, 0, 0))), (VISIBLE, 0, 0.0, second.key(0, (1, 1, 1)))])
    assert engine.wait_idle(10) and engine.chunks_read == 2
    np.testing.assert_array_equal(engine.cache.peek(first.key(0, (0, 0, 0))), voxels[:16, :16, :16])
    np.testing.assert_array_equal(engine.cache.peek(second.key(0, (1, 1, 1))), voxels[16:32, 16:32, 16:32])
    assert first.key(0, (1, 1, 1)) not in engine.cache
    engine.remove_source(second.id)  # its chunks leave the cache, the other source's stay
    assert second.key(0, (1, 1, 1)) not in engine.cache and first.key(0, (0, 0, 0)) in engine.cache
    engine.close()


def test_workers_change_in_place_and_reads_go_on(store):
    path, _ = store
    image = bigvolume.open_image(path)
    engine = FetchEngine(ChunkCache(1 << 26), workers=2)
    source = engine.add_source(ChunkSource(image, reader=DirectChunkReader(image)))
    coords = image.levels[0].all_chunks()
    engine.submit("view", [(VISIBLE, 0, float(i), source.key(0, c)) for i, c in enumerate(coords[:30])])
    engine.step()
    engine.set_workers(1)  # reads already started finish; new ones use one thread
    engine.submit("view2", [(VISIBLE, 0, float(i), source.key(0, c)) for i, c in enumerate(coords[30:])])
    assert engine.wait_idle(10) and engine.chunks_read == len(coords) and engine.concurrency == 128
    engine.close()


def test_readers_leave_no_threads_behind(store):
    path, _ = store
    image = bigvolume.open_image(path)
    before = {t for t in threading.enumerate() if t.name.startswith("bigvolume-")}
    for reader_class in (DirectChunkReader, ZarrChunkReader):
        for _ in range(5):  # as many opens and closes as a user makes
            engine = FetchEngine(ChunkCache(1 << 24))
            source = engine.add_source(ChunkSource(image, reader=reader_class(image)))
            engine.submit("v", [(VISIBLE, 0, 0.0, source.key(0, c)) for c in image.levels[0].all_chunks()[:8]])
            assert engine.wait_idle(10)
            engine.close()
    after = {t for t in threading.enumerate() if t.name.startswith("bigvolume-") and t.is_alive()}
    assert after <= before


def test_chunk_blocks_cover_exactly_the_chunks_asked_for_in_few_boxes():
    from bigvolume.streaming.readers.base import chunk_blocks

    rng = np.random.default_rng(1)
    plane = [(3, y, x) for y in range(16) for x in range(16)]  # an axial view's chunks
    scattered = [tuple(int(v) for v in c) for c in rng.integers(0, 6, (80, 3))]
    for coords, most in ((plane, 32), (scattered, 8), (plane + [(4, 0, 0)], 32)):
        boxes = chunk_blocks(coords, most)
        covered = [(z, y, x) for (z0, z1), (y0, y1), (x0, x1) in boxes
                   for z in range(z0, z1) for y in range(y0, y1) for x in range(x0, x1)]
        assert sorted(covered) == sorted(set(coords)), "every chunk once, nothing else"
        assert all((z1 - z0) * (y1 - y0) * (x1 - x0) <= most for (z0, z1), (y0, y1), (x0, x1) in boxes)
    assert len(chunk_blocks(plane, 32)) == 8  # 256 chunks in eight reads


def test_reads_in_flight_keep_to_a_quarter_of_the_budget(store):
    path, _ = store
    image = bigvolume.open_image(path)
    chunk = image.levels[0].chunk_nbytes
    engine = FetchEngine(ChunkCache(40 * chunk), workers=2)  # room for 40 chunks: at most 5 being read
    source = engine.add_source(ChunkSource(image))
    engine.submit("v", [(VISIBLE, 0, float(i), source.key(0, c)) for i, c in enumerate(image.levels[0].all_chunks())])
    engine.step()
    # Each is reserved twice over (its encoded bytes too): 5 chunks take the quarter of the budget.
    assert 0 < engine.in_flight <= 5 and engine.cache.reserved_bytes <= 10 * chunk
    assert engine.wait_idle(10) and engine.chunks_read == 64 and engine.cache.nbytes <= 40 * chunk
    engine.close()


def test_chunks_read_as_one_block_are_cached_evicted_and_counted_together():
    block = np.zeros((2, 4, 4), np.uint16)  # 64 bytes: two chunks of 32
    cache = ChunkCache(budget_bytes=100)
    cache.put_group({"a": block[:1], "b": block[1:]})
    assert cache.nbytes == 64 and len(cache) == 2
    cache.put("c", np.zeros(16, np.uint16))  # 32 more: 96
    cache.get("a")  # the group is used again: "c" is now the least recently used
    cache.put("d", np.zeros(8, np.uint16))
    assert "c" not in cache and "a" in cache and "b" in cache and cache.nbytes == 80
    cache.put("a", np.zeros(4, np.uint16))  # "a" read again on its own: the block stays while "b" holds it
    assert cache.nbytes == 88
    cache.put("e", np.zeros(48, np.uint16))  # 96 more: the block goes, and only then is its memory counted free
    assert "b" not in cache and cache.nbytes <= 100
    cache.discard(lambda key: True)
    assert cache.nbytes == 0 and len(cache) == 0


def test_a_box_read_caches_its_chunks_as_views_of_one_buffer(store):
    path, voxels = store
    image = bigvolume.open_image(path)
    engine = FetchEngine(ChunkCache(1 << 26))
    source = engine.add_source(ChunkSource(image))
    plane = [(1, y, x) for y in range(4) for x in range(4)]
    engine.submit("v", [(VISIBLE, 0, 0.0, source.key(0, c)) for c in plane])
    assert engine.wait_idle(10)
    chunks = [engine.cache.peek(source.key(0, c)) for c in plane]
    assert len({id(chunk.base) for chunk in chunks}) == 1, "one read, one buffer, no copies"
    assert engine.cache.nbytes == 16 * 16**3 * 2
    for (z, y, x), chunk in zip(plane, chunks):
        np.testing.assert_array_equal(chunk, voxels[16 * z:16 * z + 16, 16 * y:16 * y + 16, 16 * x:16 * x + 16])
    engine.close()


def test_a_source_added_to_the_engine_is_opened_once_and_a_corrupt_box_is_re_read_once(tmp_path, monkeypatch):
    from bigvolume.streaming.readers import TensorstoreReader

    volume = np.arange(32 * 32 * 32, dtype=np.uint16).reshape(32, 32, 32)
    path = tmp_path / "c.ome.zarr"
    bigvolume.write_pyramid(volume, path, chunks=(16, 16, 16), shard_chunks=None, coarsest=64)
    (path / "0" / "c" / "1" / "1" / "1").write_bytes(b"garbage")
    image = bigvolume.open_image(path)
    engine = FetchEngine(ChunkCache(1 << 24), workers=2)
    source = ChunkSource(image, threads=2)
    opened = source.reader._arrays
    engine.add_source(source)
    assert source.reader._arrays is opened, "the same thread count: nothing is opened again"
    re_reads = []
    read_each = TensorstoreReader.read_each
    monkeypatch.setattr(TensorstoreReader, "read_each", lambda self, *a: re_reads.append(1) or read_each(self, *a))
    engine.submit("v", [(NOW, 0, 0.0, source.key(0, c)) for c in image.levels[0].all_chunks()])
    engine.step()
    assert re_reads == [1] and engine.error_count == 1 and engine.chunks_read == 7
    engine.close()


def test_removing_a_source_cancels_its_reads_in_flight_and_frees_their_room(store):
    path, _ = store
    image = bigvolume.open_image(path)

    class Held:
        """Reads that finish only when cancelled (a slow store)."""

        name, shares_memory = "held", False

        def __init__(self):
            self.cancelled = []

        def set_threads(self, threads):
            pass

        def start(self, level, coords):
            reader = self

            class Read:
                def __init__(self, c):
                    self.coords, self.shares_memory = [c], False

                def done(self):
                    return False

                def cancel(self):
                    reader.cancelled.append(self.coords[0])

            return [Read(c) for c in coords]

        def close(self, wait=True):
            pass

    engine = FetchEngine(ChunkCache(1 << 26))
    held = Held()
    source = engine.add_source(ChunkSource(image, reader=held))
    engine.submit("v", [(VISIBLE, 0, 0.0, source.key(0, c)) for c in image.levels[0].all_chunks()[:5]])
    engine.step()
    assert engine.in_flight == 5 and engine.cache.reserved_bytes > 0
    engine.remove_source(source.id)
    assert len(held.cancelled) == 5 and engine.in_flight == 0 and engine.cache.reserved_bytes == 0
    assert engine.error_count == 0, "a cancelled read is not a failure"
    engine.close()


def test_content_changes_are_logged_for_the_views_that_repaint_them():
    from bigvolume.streaming import engine as engine_module

    engine = FetchEngine(workers=1)
    assert engine.edit_count("labels") == 0 and engine.edited_since("labels", 0) == set()
    engine.chunks_changed("labels", {0: [(0, 0, 0)], 1: [(0, 0, 0)]})
    engine.chunks_changed("labels", {0: [(1, 0, 0)]})
    engine.step()  # changes apply in the next step (they may come from any thread)
    assert engine.edit_count("labels") == 2
    assert engine.edited_since("labels", 0) == {("labels", 0, (0, 0, 0)), ("labels", 1, (0, 0, 0)),
                                                ("labels", 0, (1, 0, 0))}
    assert engine.edited_since("labels", 1) == {("labels", 0, (1, 0, 0))}
    assert engine.edited_since("labels", 2) == set()
    for n in range(engine_module._EDITS_KEPT):
        engine.chunks_changed("labels", {0: [(n, 1, 0)]})
    engine.step()
    assert engine.edit_count("labels") == 2 + engine_module._EDITS_KEPT
    assert engine.edited_since("labels", 1) is None  # the log no longer reaches back: the view repaints all
    last = engine_module._EDITS_KEPT - 1
    assert engine.edited_since("labels", engine.edit_count("labels") - 1) == {("labels", 0, (last, 1, 0))}
    engine.close()
