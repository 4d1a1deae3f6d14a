"""The open path of streaming views and its memory: first frame, incremental composition, fill levels, budget."""

import threading

import numpy as np
import pytest

import bigvolume
from bigvolume.streaming.cache import ChunkCache
from bigvolume.streaming.engine import FetchEngine
from bigvolume.streaming.ordering import NOW, VISIBLE
from bigvolume.streaming.readers import ZarrChunkReader
from bigvolume.streaming.slice_composition import Composition
from bigvolume.streaming.slice_planner import fill_levels, plan_slice
from bigvolume.streaming.sources import ChunkSource
from bigvolume.streaming.window import _percentiles
from BigVolumeLib.offscreen.views import OffscreenScene
from streaming_helpers import StreamedImage


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    """128^3 in 8^3 chunks: five levels, and a full slice of level 0 needs 256 chunks."""
    z, y, x = np.mgrid[0:128, 0:128, 0:128]
    voxels = (1000 + 7 * x + 3 * y + 5 * z + (x * y * z) % 97).astype(np.uint16)
    path = tmp_path_factory.mktemp("open") / "cube.ome.zarr"
    bigvolume.write_pyramid(voxels, path, bigvolume.VolumeGeometry(spacing=(0.5, 0.5, 0.5)), chunks=(8, 8, 8), coarsest=8)
    return bigvolume.open_image(path)


@pytest.fixture(scope="module")
def source(image):
    source = ChunkSource(image, reader=ZarrChunkReader(image))
    yield source
    source.close()


def _xy_to_ras(image, level, width, height, oblique=False):
    """A view of `width` x `height` pixels of `level`'s voxel size, centred on the volume, axial (or tilted)."""
    pixel = image.levels[level].voxel_size_mm[0]
    rotation = np.eye(3)
    if oblique:
        angle = np.radians(20)
        rotation = np.array([[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]])
    centre = (image.levels[0].ijk_to_ras @ np.array([63.5, 63.5, 60.0, 1.0]))[:3]  # the slice on voxel centres
    matrix = np.eye(4)
    matrix[:3, :3] = rotation * pixel
    matrix[:3, 2] = rotation[:, 2]
    matrix[:3, 3] = centre - matrix[:3, :3] @ np.array([(width - 1) / 2.0, (height - 1) / 2.0, 0.0])
    return matrix


@pytest.mark.parametrize("oblique", [False, True], ids=["aligned", "oblique"])
def test_painting_chunks_as_they_arrive_gives_the_same_view_as_painting_them_all_at_once(image, source, oblique):
    plan = plan_slice(image, _xy_to_ras(image, 0, 120, 100, oblique), (120, 100))
    chunks = {source.key(level, index): data for level, indices in plan.chunks.items()
              for index, data in source.reader.read_chunks(level, indices).items()}
    everything = ChunkCache()
    for key, data in chunks.items():
        everything.put(key, data)
    expected = Composition(source, plan)
    expected.update(everything)
    assert expected.complete
    # Arrivals in a shuffled order: fine chunks before coarse ones too, which forces a repaint.
    order = list(chunks)
    np.random.default_rng(5).shuffle(order)
    cache, composition = ChunkCache(), Composition(source, plan)
    for start in range(0, len(order), 7):
        for key in order[start:start + 7]:
            cache.put(key, chunks[key])
        composition.update(cache)
        assert composition.complete == all(source.key(plan.level, i) in cache for i in plan.chunks[plan.level])
    np.testing.assert_array_equal(composition.out, expected.out)
    assert not composition.update(cache), "nothing new arrived: nothing to paint"


def test_an_update_paints_only_what_arrived_since_the_last(image, source):
    plan = plan_slice(image, _xy_to_ras(image, 0, 128, 128), (128, 128))
    reader = source.reader
    cache = ChunkCache()
    top = max(plan.chunks)
    for index, data in reader.read_chunks(top, plan.chunks[top]).items():
        cache.put(source.key(top, index), data)
    composition = Composition(source, plan)
    assert composition.update(cache) and not composition.complete
    painted = composition.out.copy()
    first = plan.chunks[0][0]
    cache.put(source.key(0, first), reader.read_chunks(0, [first])[first])
    assert composition.update(cache)
    changed = np.argwhere(composition.out != painted)
    assert len(changed) and (changed[:, 1:] // 8 == np.array(first[1:])).all(), "only that chunk's pixels change"


def test_a_view_counts_cache_hits_and_misses_once_per_move(image, source):
    plan = plan_slice(image, _xy_to_ras(image, 0, 64, 64), (64, 64))
    cache = ChunkCache()
    composition = Composition(source, plan)
    composition.update(cache)
    needed = sum(len(indices) for indices in plan.chunks.values())
    assert (cache.hits, cache.misses) == (0, needed)
    composition.update(cache)
    assert (cache.hits, cache.misses) == (0, needed)


def test_only_cheap_coarser_levels_are_fetched_to_fill_a_view(image):
    plan = plan_slice(image, _xy_to_ras(image, 0, 256, 256), (256, 256))
    assert plan.level == 0 and len(plan.chunks[0]) == 256
    counts = {level: len(indices) for level, indices in plan.chunks.items()}
    assert counts[1] == 64 and counts[2] == 16
    # Level 1 would add a quarter of the view's own reads; level 2 costs 1/16 of them, and the rest are tiny.
    assert fill_levels(image, plan) == [2, 3, 4]
    requested = {level for _, level, _, _ in plan.needs}
    assert requested == {0, 2, 3, 4}
    # A small view: every coarser level is a handful of chunks, so all of them are fetched.
    small = plan_slice(image, _xy_to_ras(image, 0, 16, 16), (16, 16))
    assert fill_levels(image, small) == sorted(level for level in small.chunks if level > 0)


class _ThreadRecordingReader(ZarrChunkReader):
    """Records (level, thread name) of every read; reads of levels other than `free` wait for `released`."""

    def __init__(self, image, free):
        super().__init__(image)
        self.free, self.reads = free, []
        self.released = threading.Event()

    def read_chunks(self, level_index, indices):
        if level_index != self.free:
            self.released.wait(30)
        self.reads.append((level_index, threading.current_thread().name))
        return super().read_chunks(level_index, indices)


def test_the_first_update_shows_the_coarsest_level_before_any_other_read_starts(image, monkeypatch):
    from BigVolumeLib.streaming.slice_streamer import SliceStreamer

    scene = OffscreenScene()
    for name, orientation in {"Red": "Axial", "Yellow": "Sagittal", "Green": "Coronal"}.items():
        scene.add_view(name, orientation, (300, 300))
    coarsest = len(image.levels) - 1
    reader = _ThreadRecordingReader(image, free=coarsest)
    views = StreamedImage(scene.scene, image, reader=reader)
    in_flight_when_composed = []
    compose = SliceStreamer.compose
    monkeypatch.setattr(SliceStreamer, "compose",
                        lambda self: in_flight_when_composed.append(views.engine.in_flight) or compose(self))
    try:
        assert views.update(), "the first update already composes every view"
        assert views.window_level is not None
        assert in_flight_when_composed == [0, 0, 0], "nothing else was started before the first frame was composed"
        assert [level for level, _ in reader.reads] == [coarsest], "the first frame's chunks, read at once"
        for streamer in views.streamers.values():
            assert streamer.showing and streamer.voxels.std() > 0, "the view shows the coarse data"
            assert streamer.level < coarsest and not streamer.complete
        assert views.engine.in_flight == 0 and views.engine.wants(streamer.requester), "the rest waits an update"
        views.update()
        assert views.engine.in_flight > 0, "the next update starts them"
    finally:
        reader.released.set()
        views.close()


def test_now_requests_are_read_at_once_and_hold_back_everything_else_for_one_step(image, source):
    engine = FetchEngine(ChunkCache())
    engine.add_source(source)
    engine.submit("view", [(VISIBLE, 0, float(x), source.key(0, (0, 0, x))) for x in range(8)]
                  + [(NOW, 4, 0.0, source.key(4, (0, 0, 0)))])
    assert engine.step() == 1 and source.key(4, (0, 0, 0)) in engine.cache
    assert engine.in_flight == 0 and len(engine.wants("view")) == 8
    engine.step()
    assert engine.in_flight + engine.chunks_read == 9
    assert engine.wait_idle(10) and engine.chunks_read == 9
    engine.submit("again", [(NOW, 4, 0.0, source.key(4, (0, 0, 0)))])
    engine.step()
    assert engine.chunks_read == 9, "a cached chunk is not read again"
    engine.close()


def test_chunks_being_read_count_against_the_cache_budget():
    cache = ChunkCache(budget_bytes=10 * 1000)
    for i in range(10):
        cache.put(i, np.zeros(1000, np.uint8))
    cache.reserve(3000)
    assert cache.nbytes == 7000 and cache.evicted_bytes == 3000
    cache.put("late", np.zeros(1000, np.uint8))  # still within what is reserved
    assert cache.nbytes + 3000 <= cache.budget_bytes
    cache.release(3000)
    cache.put("next", np.zeros(1000, np.uint8))
    assert cache.nbytes == 8000 and cache.reserved_bytes == 0


def test_fetch_engine_reserves_room_for_a_batch_before_reading_it(image):
    chunk_bytes = 8 * 8 * 8 * 2
    seen = []

    class Watching(ZarrChunkReader):
        def read_chunks(self, level_index, indices):
            seen.append((engine.cache.nbytes, engine.cache.reserved_bytes))
            return super().read_chunks(level_index, indices)

    engine = FetchEngine(ChunkCache(budget_bytes=20 * chunk_bytes), workers=1)
    source = engine.add_source(ChunkSource(image, reader=Watching(image)))
    engine.submit("view", [(VISIBLE, 0, float(x), source.key(0, (0, 0, x))) for x in range(16)])
    assert engine.wait_idle(10)
    engine.submit("view", [(VISIBLE, 0, float(x), source.key(0, (1, 0, x))) for x in range(16)])
    assert engine.wait_idle(10)
    assert seen and all(cached + reserved <= 20 * chunk_bytes for cached, reserved in seen)
    assert engine.cache.reserved_bytes == 0 and engine.cache.nbytes <= 20 * chunk_bytes
    engine.close()


@pytest.mark.parametrize("size", [1, 2, 7, 1000, 262144])
def test_window_percentiles_are_numpys(size):
    values = np.random.default_rng(size).integers(0, 65535, size).astype(np.uint16)
    np.testing.assert_allclose(_percentiles(values, (0.5, 99.5)), np.percentile(values, [0.5, 99.5]), rtol=0, atol=1e-6)
