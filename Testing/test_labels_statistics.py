"""Per-segment statistics, chunk by chunk, against a brute-force numpy computation on the whole small arrays."""

import math

import numpy as np
import pytest

import bigvolume
from bigvolume.labels.editor import LabelEditor
from bigvolume.labels.label_store import create_labels
from bigvolume.labels.operations import Brush
from bigvolume.labels.segments import Segment
from bigvolume.labels.statistics import format_table, segment_statistics
from label_helpers import blobs, fill

SHAPE = (22, 37, 41)
ANGLE = math.radians(25)
DIRECTION = ((math.cos(ANGLE), 0.0, math.sin(ANGLE)), (0.0, 1.0, 0.0), (-math.sin(ANGLE), 0.0, math.cos(ANGLE)))
GEOMETRY = bigvolume.VolumeGeometry(spacing=(0.4, 0.5, 0.7), origin=(3.0, -2.0, 1.0), direction=DIRECTION)


pytestmark = pytest.mark.usefixtures("small_chunks")


def whole(reader, level, levels):
    return reader.read_box(level, tuple((0, n) for n in levels[level].volume_shape))


def make(tmp_path, volume):
    bigvolume.write_pyramid(volume, tmp_path / "img.ome.zarr", GEOMETRY, coarsest=8, chunks=(16, 16, 16))
    image = bigvolume.open_image(tmp_path / "img.ome.zarr")
    store = create_labels(image, "seg", segments=[Segment(1, "bone"), Segment(2, "pore"), Segment(4, "empty")])
    fill(store, blobs(SHAPE))  # value 3 names no segment
    return image, store


@pytest.fixture
def labelled(tmp_path):
    volume = (np.random.default_rng(0).random(SHAPE) * 1000).astype(np.uint16)
    return make(tmp_path, volume)


def brute_force(image, labels, level, value):
    """The statistics of one value from the whole arrays."""
    lvl = image.levels[level]
    intensities = image.read(level, tuple((0, n) for n in lvl.volume_shape)).astype(np.float64)
    mask = labels == value
    k, j, i = np.nonzero(mask)
    # every voxel centre of the index bounding box, in RAS: its extremes are the reported corners
    kk, jj, ii = np.meshgrid(np.arange(k.min(), k.max() + 1), np.arange(j.min(), j.max() + 1),
                             np.arange(i.min(), i.max() + 1), indexing="ij")
    box_ras = lvl.ijk_to_ras[:3, :3] @ np.stack([ii.ravel(), jj.ravel(), kk.ravel()]) + lvl.ijk_to_ras[:3, 3:]
    voxel_ras = lvl.ijk_to_ras[:3, :3] @ np.stack([i, j, k]) + lvl.ijk_to_ras[:3, 3:]
    values = intensities[mask]
    return {"count": int(mask.sum()), "volume": mask.sum() * np.prod(lvl.voxel_size_mm),
            "bbox": ((i.min(), j.min(), k.min()), (i.max(), j.max(), k.max())),
            "ras_min": box_ras.min(axis=1), "ras_max": box_ras.max(axis=1), "voxel_ras": voxel_ras,
            "min": values.min(), "max": values.max(), "mean": values.mean(), "std": values.std()}


@pytest.mark.parametrize("level", [0, 1])
def test_statistics_equal_brute_force(labelled, level):
    image, store = labelled
    labels = whole(store, level, store.levels)
    stats = segment_statistics(store, level=level)
    assert [(s.value, s.name, s.listed) for s in stats] == \
        [(1, "bone", True), (2, "pore", True), (3, "label 3", False), (4, "empty", True)]
    for s in stats:
        if s.value == 4:
            continue
        expected = brute_force(image, labels, level, s.value)
        assert expected["count"] > 0 and s.voxel_count == expected["count"]
        assert s.volume_mm3 == pytest.approx(expected["volume"], rel=1e-12)
        assert s.bbox_ijk == expected["bbox"]
        np.testing.assert_allclose(s.ras_min, expected["ras_min"], atol=1e-9)
        np.testing.assert_allclose(s.ras_max, expected["ras_max"], atol=1e-9)
        assert np.all(expected["voxel_ras"] >= np.array(s.ras_min)[:, None] - 1e-9)
        assert np.all(expected["voxel_ras"] <= np.array(s.ras_max)[:, None] + 1e-9)
        assert (s.intensity_min, s.intensity_max) == (expected["min"], expected["max"])
        assert s.intensity_mean == pytest.approx(expected["mean"], rel=1e-12)
        assert s.intensity_std == pytest.approx(expected["std"], rel=1e-9)
    empty = stats[-1]
    assert (empty.voxel_count, empty.volume_mm3) == (0, 0.0)
    assert empty.bbox_ijk is None and empty.ras_min is None and empty.intensity_mean is None


def test_level_1_counts_its_own_voxels(labelled):
    image, store = labelled
    level0 = {s.value: s.voxel_count for s in segment_statistics(store, with_image=False)}
    level1 = {s.value: s.voxel_count for s in segment_statistics(store, level=1, with_image=False)}
    labels1 = whole(store, 1, store.levels)
    assert level1 == {v: int((labels1 == v).sum()) for v in (1, 2, 3, 4)}
    assert level1 != level0  # coarser voxels: fewer of them


def test_without_the_image_no_intensities(labelled):
    _, store = labelled
    for s in segment_statistics(store, with_image=False):
        assert s.intensity_min is None and s.intensity_std is None


def test_intensities_far_from_zero_keep_their_spread(tmp_path):
    # A large offset makes sum-of-squares cancel; the pairwise merge keeps the standard deviation.
    rng = np.random.default_rng(5)
    volume = (1e7 + rng.random(SHAPE) * 4).astype(np.float64)
    image, store = make(tmp_path, volume)
    labels = whole(store, 0, store.levels)
    read = image.read(0, tuple((0, n) for n in SHAPE))
    for s in segment_statistics(store):
        if s.voxel_count:
            values = read[labels == s.value].astype(np.float64)
            assert s.intensity_std == pytest.approx(values.std(), rel=1e-9)
            assert s.intensity_mean == pytest.approx(values.mean(), rel=1e-14)


def test_an_editor_is_waited_for(labelled):
    image, store = labelled
    before = {s.value: s.voxel_count for s in segment_statistics(store, with_image=False)}
    with LabelEditor(store) as editor:
        centre = (image.levels[0].ijk_to_ras @ [20, 18, 11, 1.0])[:3]
        editor.submit(Brush(4, points=[centre], radius_mm=2.0))
        stats = {s.value: s.voxel_count for s in segment_statistics(editor, with_image=False)}
        assert editor.status()["pending"] == 0
        labels = whole(store, 0, store.levels)
    assert before[4] == 0 and stats[4] == int((labels == 4).sum()) > 0
    assert stats == {v: int((labels == v).sum()) for v in (1, 2, 3, 4)}


def test_format_table(labelled):
    _, store = labelled
    stats = segment_statistics(store)
    text = format_table(stats)
    lines = text.splitlines()
    assert lines[0].split()[:4] == ["value", "segment", "voxels", "volume"]
    assert len(lines) == 2 + len(stats)
    assert "bone" in lines[2] and f"{stats[0].voxel_count:,}" in lines[2]
    assert "label 3 (no segment)" in lines[4]
    assert lines[5].split()[:3] == ["4", "empty", "0"] and lines[5].rstrip().endswith("-")
