"""Label pyramids edited through operations: the result at full resolution and at every level, against an
independent brute-force model (label_oracle), and the writer's promises (overlay, back-pressure, undo)."""

import math

import numpy as np
import pytest

import bigvolume
import label_oracle
from bigvolume.errors import BigVolumeError, MetadataError, StoreError
from bigvolume.labels.apply import level_factors
from bigvolume.labels.editor import LabelEditor, WriterBehind
from bigvolume.labels.label_store import create_labels, label_names, open_labels
from bigvolume.labels.operations import (Brush, Clear, Fill, Mask, Masking, Polygon, Replace, Threshold, flood,
                                         operation_from_json)
from bigvolume.labels.segments import Segment
from label_helpers import SHAPE, make_image, stored_levels

store_dtype = np.uint8  # the label dtype of the stores these tests create (up to 255 segments)

def random_op(rng, image, level_index):
    lvl = image.levels[level_index]
    low, high = image.bounds_ras()
    point = lambda: low + rng.random(3) * (high - low)  # noqa: E731
    value = int(rng.integers(1, 4))
    masking = Masking(area=str(rng.choice(["everywhere", "everywhere", "outside_all", "inside_segments"])),
                      area_values=(int(rng.integers(0, 4)),),
                      intensity_range=None if rng.random() < 0.6 else tuple(sorted(rng.random(2) * 1000)),
                      overwrite=str(rng.choice(["all", "none", "listed"])), overwrite_values=(int(rng.integers(1, 4)),))
    kind = rng.choice(["sphere", "disc", "erase", "polygon", "threshold", "mask", "replace", "clear"])
    radius = float(rng.uniform(0.6, 3.0))
    if kind in ("sphere", "erase"):
        return Brush(value, masking, points=[point() for _ in range(int(rng.integers(1, 4)))], radius_mm=radius,
                     erase=kind == "erase")
    if kind == "disc":  # in the slice plane of the level's k axis, one voxel of that level thick
        normal = lvl.ijk_to_ras[:3, 2] / np.linalg.norm(lvl.ijk_to_ras[:3, 2])
        start = point()
        step = np.cross(normal, [0, 0, 1.0]) + np.cross(normal, [1.0, 0, 0])
        return Brush(value, masking, points=[start, start + step * rng.uniform(0.5, 3)], radius_mm=radius,
                     normal=normal, thickness_mm=lvl.voxel_size_mm[2])
    if kind == "polygon":
        normal = lvl.ijk_to_ras[:3, 2] / np.linalg.norm(lvl.ijk_to_ras[:3, 2])
        centre = point()
        u = np.cross(normal, [1.0, 0, 0])
        u /= np.linalg.norm(u)
        w = np.cross(normal, u)
        angles = np.sort(rng.random(5) * 2 * np.pi)
        vertices = [centre + rng.uniform(1, 5) * (math.cos(a) * u + math.sin(a) * w) for a in angles]
        return Polygon(value, masking, vertices=vertices, normal=normal, thickness_mm=lvl.voxel_size_mm[2] * 1.5)
    if kind == "threshold":
        a, b = point(), point()
        return Threshold(value, masking, low=float(rng.uniform(0, 500)), high=float(rng.uniform(500, 1000)),
                         box_ras=None if rng.random() < 0.3 else (tuple(a), tuple(b)))
    box = tuple((int(s), int(s + rng.integers(1, 6))) for s in (rng.integers(0, n - 1) for n in lvl.volume_shape))
    box = tuple((a, min(b, n)) for (a, b), n in zip(box, lvl.volume_shape))
    if kind == "clear":
        return Clear(value)
    if kind == "replace":  # a patch of labels edited elsewhere, written back whole
        return Replace.from_labels(lvl, box, rng.integers(0, 4, [b - a for a, b in box]).astype(store_dtype))
    mask = rng.random([b - a for a, b in box]) < 0.5
    return Mask.from_array(value, lvl, box, mask, mask_mode=str(rng.choice(["add", "remove", "set"])), masking=masking)


def check_against_oracle(store, image, volume, ops):
    expected = np.zeros(store.levels[0].volume_shape, dtype=store.dtype)
    for op in ops:
        expected = label_oracle.apply(op, expected, volume, image.levels[0].ijk_to_ras)
    pyramid = label_oracle.pyramid_of(expected, level_factors(store.levels))
    for level, (got, want) in enumerate(zip(stored_levels(store), pyramid)):
        assert np.array_equal(got, want), f"level {level}: {np.count_nonzero(got != want)} voxels differ"


@pytest.mark.parametrize("seed", range(8))
def test_random_operations_undo_and_redo_match_brute_force(tmp_path, small_chunks, seed):
    rng = np.random.default_rng(seed)
    image, volume = make_image(tmp_path / "img.ome.zarr", seed=seed)
    store = create_labels(image, "seg", segments=[Segment(v, f"s{v}") for v in (1, 2, 3)])
    applied, undone = [], []
    with LabelEditor(store, durable=False) as editor:
        for _ in range(24):
            action = rng.random()
            if action < 0.15 and applied:
                assert editor.undo() is not None
                undone.append(applied.pop())
            elif action < 0.25 and undone:
                assert editor.redo() is not None
                applied.append(undone.pop())
            else:
                op = random_op(rng, image, int(rng.integers(0, len(image.levels))))
                editor.submit(op)
                applied.append(op)
                undone.clear()
        editor.wait()
    check_against_oracle(open_labels(image, "seg"), image, volume, applied)


@pytest.mark.parametrize("seed", range(3))
def test_operations_written_together_undo_one_by_one(tmp_path, small_chunks, seed):
    """A backlog is written in batches (each chunk once for many operations); each operation's before-images are
    still its own, so undoing them one at a time walks back through every state."""
    rng = np.random.default_rng(100 + seed)
    image, volume = make_image(tmp_path / "img.ome.zarr", seed=seed)
    store = create_labels(image, "seg", segments=[Segment(v, f"s{v}") for v in (1, 2, 3)])
    ops = [op for op in (random_op(rng, image, int(rng.integers(0, len(image.levels)))) for _ in range(40))
           if not op.needs_labels_around][:12]
    with LabelEditor(store, durable=False, start=False) as editor:
        for op in ops:
            editor.submit(op)
        editor.start()
        editor.wait()
        status = editor.status()
        assert status["written_operations"] == len(ops) and status["written_batches"] < len(ops)
        check_against_oracle(store, image, volume, ops)
        for undone in range(1, 5):
            editor.undo()
            check_against_oracle(store, image, volume, ops[:-undone])
        editor.redo()
        editor.wait()
        check_against_oracle(store, image, volume, ops[:-3])


def test_operations_round_trip_through_json(tmp_path):
    image, _ = make_image(tmp_path / "img.ome.zarr")
    rng = np.random.default_rng(3)
    for level in range(len(image.levels)):
        for _ in range(10):
            op = random_op(rng, image, level)
            assert operation_from_json(op.to_json()) == op


def test_preview_at_the_displayed_level_differs_from_the_written_level_only_on_the_boundary(tmp_path, small_chunks):
    image, _ = make_image(tmp_path / "img.ome.zarr")
    store = create_labels(image, "seg", segments=[Segment(1, "a")])
    centre = np.mean(image.bounds_ras(), axis=0)
    op = Brush(1, points=[centre - [2, 1, 0], centre + [2, 1, 0]], radius_mm=3.1)
    with LabelEditor(store, durable=False, start=False) as editor:
        seq, box, shown = editor.apply(op, level=2)
        assert shown.any()
        editor.start()
        editor.wait()
        written = store.read_box(2, box)
    level0 = store.read_box(0, tuple((0, n) for n in store.levels[0].volume_shape))
    # A coarse voxel can change only if the full-resolution voxels under it are not all inside or all outside.
    factors = np.prod([np.asarray(f) for f in level_factors(store.levels)[1:3]], axis=0)
    differs = np.argwhere(shown != written) + [a for a, _ in box]
    assert len(differs) <= 0.25 * max(1, np.count_nonzero(shown))
    for z, y, x in differs:
        under = level0[z * factors[0]:(z + 1) * factors[0], y * factors[1]:(y + 1) * factors[1],
                       x * factors[2]:(x + 1) * factors[2]]
        assert 0 < np.count_nonzero(under) < under.size, f"voxel {(z, y, x)} changed but is not on the boundary"


def test_reads_show_pending_operations_before_the_writer_runs(tmp_path, small_chunks):
    image, volume = make_image(tmp_path / "img.ome.zarr")
    store = create_labels(image, "seg", segments=[Segment(1, "a")])
    op = Threshold(1, low=200, high=700)
    editor = LabelEditor(store, durable=False, start=False)
    editor.submit(op)
    assert store.stored_chunks(0) == []  # nothing written yet
    for level, lvl in enumerate(store.levels):
        for coords in lvl.all_chunks()[:5]:
            box = lvl.chunk_box(coords)
            intens = image.read(level, box)
            assert np.array_equal(editor.read_chunk(level, coords) == 1, (intens >= 200) & (intens <= 700))
    editor.start()
    editor.close()
    assert np.array_equal(stored_levels(store)[0] == 1, (volume >= 200) & (volume <= 700))


def test_the_queue_is_bounded_and_says_how_far_behind_the_writer_is(tmp_path, small_chunks):
    image, _ = make_image(tmp_path / "img.ome.zarr")
    store = create_labels(image, "seg", segments=[Segment(1, "a")])
    editor = LabelEditor(store, durable=False, start=False, max_pending=2)
    editor.submit(Threshold(1, low=0, high=10))
    editor.submit(Threshold(1, low=0, high=20))
    with pytest.raises(WriterBehind, match=r"2 operations \(66,? ?\d+|2 operations"):
        editor.submit(Threshold(1, low=0, high=30), block=False)
    with pytest.raises(WriterBehind):
        editor.submit(Threshold(1, low=0, high=30), timeout=0.05)
    assert editor.status()["pending"] == 2
    assert editor.status()["pending_voxels"] == 2 * int(np.prod(SHAPE))
    editor.start()
    editor.submit(Threshold(1, low=0, high=30))  # waits for room, then goes in
    editor.close()
    assert editor.status()["pending"] == 0


def test_undo_of_a_pending_operation_drops_it_and_undo_survives_a_restart(tmp_path, small_chunks):
    image, volume = make_image(tmp_path / "img.ome.zarr")
    store = create_labels(image, "seg", segments=[Segment(1, "a"), Segment(2, "b")])
    first = Threshold(1, low=0, high=400)
    second = Threshold(2, low=600, high=1000)
    editor = LabelEditor(store, durable=False, start=False)
    editor.submit(first)
    editor.submit(second)
    assert editor.undo() == 2  # still queued: dropped, never written
    editor.start()
    editor.close()
    check_against_oracle(store, image, volume, [first])
    with LabelEditor(store, durable=False) as editor:  # a new session: the journal kept the undo state
        assert editor.can_undo and editor.can_redo
        assert editor.redo() == 2
        editor.wait()
    check_against_oracle(store, image, volume, [first, second])
    with LabelEditor(store, durable=False) as editor:
        assert editor.undo() == 2
        assert editor.undo() == 1
        assert editor.undo() is None
    assert store.stored_chunks(0) == [] and all(not level.any() for level in stored_levels(store))


def test_undo_is_bounded_by_steps_and_by_bytes(tmp_path, small_chunks):
    image, _ = make_image(tmp_path / "img.ome.zarr")
    store = create_labels(image, "seg", segments=[Segment(1, "a")])
    centre = np.mean(image.bounds_ras(), axis=0)
    with LabelEditor(store, durable=False, undo_steps=3) as editor:
        for i in range(6):
            editor.submit(Brush(1, points=[centre + [i, 0, 0]], radius_mm=1.5))
            editor.wait()
        assert editor.status()["undo_steps"] == 3
        assert [editor.undo() for _ in range(4)] == [6, 5, 4, None]
    with LabelEditor(store, durable=False, undo_bytes=1) as editor:  # no before-image fits: nothing to undo
        editor.submit(Threshold(1, low=0, high=500))
        editor.wait()
        assert editor.undo() is None and not editor.can_undo


def test_fill_fills_the_connected_region_of_the_seed_label(tmp_path, small_chunks):
    allowed = np.zeros((5, 6, 7), dtype=bool)
    allowed[1:4, 1:5, 1:3] = True
    allowed[1:4, 4, 1:6] = True  # an L shape
    allowed[1:4, 1, 5] = True  # not connected to it
    filled = flood(allowed, (2, 2, 1))
    expected = allowed.copy()
    expected[1:4, 1, 5] = False
    assert np.array_equal(filled, expected)
    image, _ = make_image(tmp_path / "img.ome.zarr")
    store = create_labels(image, "seg", segments=[Segment(1, "wall"), Segment(2, "inside")])
    lvl = store.levels[0]
    shell = np.zeros(lvl.volume_shape, dtype=bool)
    shell[4:18, 8:30, 8:34] = True
    shell[5:17, 9:29, 9:33] = False
    low, high = image.bounds_ras()
    centre = lvl.ijk_to_ras @ [20, 18, 11, 1.0]
    with LabelEditor(store, durable=False) as editor:
        editor.submit(Mask.from_array(1, lvl, tuple((0, n) for n in lvl.volume_shape), shell))
        editor.submit(Fill(2, seed_ras=centre[:3], box_ras=(tuple(low), tuple(high))))
        editor.wait()
    labels = store.read_box(0, tuple((0, n) for n in lvl.volume_shape))
    inside = np.zeros(lvl.volume_shape, dtype=bool)
    inside[5:17, 9:29, 9:33] = True
    assert np.array_equal(labels == 2, inside) and np.array_equal(labels == 1, shell)


def test_labels_sit_beside_the_image_as_ngff_labels(tmp_path):
    image, _ = make_image(tmp_path / "img.ome.zarr")
    store = create_labels(image, "cells", segments=[Segment(1, "bone", color=(1.0, 0.5, 0.0), tags={"k": "v"})])
    assert label_names(image.location) == ["cells"]
    group = __import__("zarr").open_group(store.path, mode="r")
    ome = group.attrs["ome"]
    assert ome["image-label"]["colors"] == [{"label-value": 1, "rgba": [255, 128, 0, 255]}]
    assert ome["image-label"]["properties"][0]["name"] == "bone"
    assert [d["path"] for d in ome["multiscales"][0]["datasets"]] == [lvl.path for lvl in image.levels]
    for label_level, image_level in zip(store.levels, image.levels):
        assert label_level.volume_shape == image_level.volume_shape
        assert np.allclose(label_level.ijk_to_ras, image_level.ijk_to_ras)
        assert label_level.dtype == np.uint8
    reopened = open_labels(image, "cells")
    assert reopened.segments == store.segments
    create_labels(image, "more", max_segments=1000)
    assert label_names(image.location) == ["cells", "more"] and open_labels(image, "more").dtype == np.uint16
    with pytest.raises(StoreError, match="already exist"):
        create_labels(image, "cells")


def test_an_image_opened_by_url_gets_a_separate_store_that_refuses_another_image(tmp_path):
    make_image(tmp_path / "img.ome.zarr")
    image = bigvolume.open_image(f"file://{tmp_path}/img.ome.zarr")  # read through fsspec, as a web store is
    other, _ = make_image(tmp_path / "other.ome.zarr", shape=(22, 37, 40))
    with pytest.raises(StoreError, match="cannot be written.*store="):
        create_labels(image, "seg")
    separate = tmp_path / "my-labels.ome.zarr"
    store = create_labels(image, "seg", store=separate, segments=[Segment(1, "a")])
    assert store.path.startswith(str(separate))
    assert label_names(separate) == ["seg"] and label_names(image.location) == []
    with LabelEditor(store, durable=False) as editor:
        editor.submit(Threshold(1, low=0, high=300))
    assert np.array_equal(open_labels(image, "seg", store=separate).read_box(0, ((0, 22), (0, 37), (0, 41))) == 1,
                          (image.read(0, ((0, 22), (0, 37), (0, 41))) <= 300))
    with pytest.raises(StoreError, match="belong to the image"):
        open_labels(other, "seg", store=separate)


def test_levels_that_disagree_with_the_image_are_refused(tmp_path):
    import json

    image, _ = make_image(tmp_path / "img.ome.zarr")
    store = create_labels(image, "seg")
    meta_path = tmp_path / "img.ome.zarr" / "labels" / "seg" / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["attributes"]["bigvolume"]["labels"]["fingerprint"] = None  # an unpaired store: only the grids decide
    meta["attributes"]["ome"]["multiscales"][0]["datasets"][1]["coordinateTransformations"][0]["scale"][2] *= 1.01
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(MetadataError, match="does not lie on image level 1"):
        open_labels(image, "seg")
    assert store.levels  # the first store object was opened before the damage


def test_segments_can_be_renamed_and_recoloured(tmp_path):
    image, _ = make_image(tmp_path / "img.ome.zarr")
    store = create_labels(image, "seg", segments=[Segment(1, "a")])
    store.set_segments([Segment(1, "bone", color=(1.0, 0.0, 0.0)), Segment(2, "pore")])
    assert [(s.name, s.color) for s in open_labels(image, "seg").segments] == [("bone", (1.0, 0.0, 0.0)), ("pore", store.segments[1].color)]
    editor = LabelEditor(store, durable=False, start=False)
    editor.submit(Threshold(1, low=0, high=10))
    with pytest.raises(BigVolumeError, match="not running"):
        editor.wait()


def test_cancel_drops_a_queued_operation_and_stops_one_being_written(tmp_path, small_chunks):
    import threading

    image, volume = make_image(tmp_path / "img.ome.zarr")
    store = create_labels(image, "seg", segments=[Segment(v, f"s{v}") for v in (1, 2)])
    editor = LabelEditor(store, durable=False, start=False)
    editor.submit(Brush(1, points=[tuple(np.mean(image.bounds_ras(), axis=0))], radius_mm=3.0))
    threshold = Threshold(2, low=0, high=600)
    seq = editor.submit(threshold)
    assert editor.cancel(seq) and editor.can_redo  # queued: dropped
    assert not editor.cancel(seq)  # no longer the latest operation
    editor.start()
    editor.wait()
    before = stored_levels(store)
    assert (before[0] == 1).any() and not (before[0] == 2).any()

    # Being written: the writer stops at its next chunk and puts back what it wrote.
    gate, written = threading.Event(), []
    put = editor._put

    def slow_put(level, coords, encoded):
        put(level, coords, encoded)
        written.append((level, coords))
        if level == 0 and len(written) == 2:
            gate.wait(10)

    editor._put = slow_put
    seq = editor.submit(threshold)
    while len(written) < 2:
        threading.Event().wait(0.01)
    assert (store.read_box(0, tuple((0, n) for n in SHAPE)) == 2).any()  # partly written
    cancelled = []
    canceller = threading.Thread(target=lambda: cancelled.append(editor.cancel(seq)))
    canceller.start()
    while editor._cancelling != seq:
        threading.Event().wait(0.01)
    gate.set()
    canceller.join(10)
    assert cancelled == [True] and editor.can_redo and editor.status()["pending"] == 0
    assert editor.status()["chunks_total"] == 0
    for level, (got, want) in enumerate(zip(stored_levels(store), before)):
        assert np.array_equal(got, want), f"level {level}"
    editor.close()

    # Reopened: nothing to replay, the operation can be redone and lands as the oracle says.
    with LabelEditor(store, durable=False) as reopened:
        assert reopened.replayed == 0 and reopened.can_redo
        reopened.redo()
        reopened.wait()
    check_against_oracle(store, image, volume,
                         [Brush(1, points=[tuple(np.mean(image.bounds_ras(), axis=0))], radius_mm=3.0), threshold])
