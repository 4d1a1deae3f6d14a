"""A label pyramid streamed by the engine: pending edits show through the reader, written ones refresh the cache."""

import numpy as np

from bigvolume.labels.editor import LabelEditor
from bigvolume.labels.label_source import label_source
from bigvolume.labels.label_store import create_labels
from bigvolume.labels.operations import Threshold
from bigvolume.labels.segments import Segment
from bigvolume.streaming.engine import FetchEngine
from bigvolume.streaming.ordering import VISIBLE
from label_helpers import make_image


def fetch_all(engine, source, level):
    keys = [source.key(level, c) for c in source.levels[level].all_chunks()]
    engine.submit("view", [(VISIBLE, level, i, k) for i, k in enumerate(keys)])
    assert engine.wait_idle()
    return {k: engine.cache.peek(k) for k in keys}


def test_edits_reach_the_engine_queued_and_written(tmp_path):
    image, volume = make_image(tmp_path / "img.ome.zarr")
    store = create_labels(image, "seg", segments=[Segment(1, "a")])
    editor = LabelEditor(store, durable=False, start=False)
    engine = FetchEngine(workers=2)
    source = label_source(editor, engine)
    level = len(store.levels) - 1
    before = fetch_all(engine, source, level)
    assert all(chunk is not None and not chunk.any() for chunk in before.values())
    editor.submit(Threshold(1, low=0, high=500))  # queued, not written: the overlay shows it
    after = fetch_all(engine, source, level)
    expected = image.read(level, tuple((0, n) for n in store.levels[level].volume_shape)) <= 500
    got = np.zeros(expected.shape, dtype=bool)
    for (_, _, coords), chunk in after.items():
        box = store.levels[level].chunk_box(coords)
        got[tuple(slice(a, b) for a, b in box)] = chunk == 1
    assert np.array_equal(got, expected)
    editor.start()
    editor.close()  # written: the coarse level is now the mode downsampling, refreshed in the cache
    written = fetch_all(engine, source, level)
    stored = store.read_box(level, tuple((0, n) for n in store.levels[level].volume_shape))
    for (_, _, coords), chunk in written.items():
        box = store.levels[level].chunk_box(coords)
        assert np.array_equal(chunk, stored[tuple(slice(a, b) for a, b in box)])
    engine.close()
