"""Labelmap export and import (.seg.nrrd, .nrrd), checked with SimpleITK as an independent reader and against
brute-force placements computed voxel by voxel here."""

import math
import os

import numpy as np
import pytest
import SimpleITK as sitk

import bigvolume
from bigvolume.errors import InputError, StoreError
from bigvolume.labels import label_store
from bigvolume.labels.apply import level_factors, rebuild_coarser
from bigvolume.labels.editor import LabelEditor
from bigvolume.labels.label_store import create_labels, label_names, open_labels
from bigvolume.labels.operations import Brush
from bigvolume.labels.seg_nrrd import export_labels, import_labels
from bigvolume.labels.segments import DEFAULT_COLORS, Segment
from bigvolume.writing.downsample import mode_halve

SHAPE = (22, 37, 41)
ANGLE = math.radians(30)
DIRECTION = ((math.cos(ANGLE), -math.sin(ANGLE), 0.0), (math.sin(ANGLE), math.cos(ANGLE), 0.0), (0.0, 0.0, 1.0))
GEOMETRY = bigvolume.VolumeGeometry(spacing=(0.4, 0.5, 0.7), origin=(3.0, -2.0, 1.0), direction=DIRECTION)
FLIP = np.diag([-1.0, -1.0, 1.0])  # LPS <-> RAS


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    monkeypatch.setattr(label_store, "LABEL_CHUNKS", (8, 8, 8))  # many chunks in a small volume


def blobs(shape, seed=1, values=(1, 2, 3)):
    """Deterministic label blobs: balls of several values, some overlapping chunk borders."""
    rng = np.random.default_rng(seed)
    z, y, x = np.indices(shape)
    out = np.zeros(shape, dtype=np.uint8)
    for n in range(9):
        c = rng.random(3) * shape
        r = rng.uniform(2, 6)
        out[(z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2 <= r * r] = values[n % len(values)]
    return out


def fill(store, level0):
    """Write a whole level-0 array chunk by chunk and rebuild the coarser levels."""
    lvl = store.levels[0]
    written = []
    for coords in lvl.all_chunks():
        data = level0[tuple(slice(a, b) for a, b in lvl.chunk_box(coords))]
        if data.any():
            store.write_chunk(0, coords, data)
            written.append(coords)
    rebuild_coarser(store, written, store.write_chunk)


def whole(store, level):
    return store.read_box(level, tuple((0, n) for n in store.levels[level].volume_shape))


@pytest.fixture
def labelled(tmp_path):
    volume = (np.random.default_rng(0).random(SHAPE) * 1000).astype(np.uint16)
    bigvolume.write_pyramid(volume, tmp_path / "img.ome.zarr", GEOMETRY, coarsest=8, chunks=(16, 16, 16))
    image = bigvolume.open_image(tmp_path / "img.ome.zarr")
    store = create_labels(image, "seg", segments=[Segment(1, "bone", tags={"TerminologyEntry": "a~b"}),
                                                  Segment(2, "pore", color=(1, 0, 0)), Segment(5, "never used")])
    level0 = blobs(SHAPE)  # value 3 names no segment
    fill(store, level0)
    return image, store, level0


def sitk_geometry(path):
    image = sitk.ReadImage(str(path))
    return image, np.array(image.GetSpacing()), np.array(image.GetOrigin()), np.reshape(image.GetDirection(), (3, 3))


def expected_geometry(level, corner_zyx):
    """Spacing, LPS origin and direction of a region of `level` starting at `corner_zyx`, from IJK->RAS."""
    m = level.ijk_to_ras
    lps = FLIP @ m[:3, :3]
    spacing = np.linalg.norm(lps, axis=0)
    origin = FLIP @ (m @ np.array([corner_zyx[2], corner_zyx[1], corner_zyx[0], 1.0]))[:3]
    return spacing, origin, lps / spacing


def brute_extents(array):
    out = {}
    for value in np.unique(array):
        if value:
            k, j, i = np.nonzero(array == value)
            out[int(value)] = f"{i.min()} {i.max()} {j.min()} {j.max()} {k.min()} {k.max()}"
    return out


def segment_keys(image):
    keys = {k: image.GetMetaData(k) for k in image.GetMetaDataKeys()}
    found, n = {}, 0
    while f"Segment{n}_ID" in keys:
        found[int(keys[f"Segment{n}_LabelValue"])] = {k.split("_", 1)[1]: v for k, v in keys.items()
                                                      if k.startswith(f"Segment{n}_")}
        n += 1
    return keys, found


# -- export -------------------------------------------------------------------------------------------------
def test_export_whole_level0_as_seg_nrrd(labelled, tmp_path):
    image, store, level0 = labelled
    result = export_labels(store, tmp_path / "out.seg.nrrd")
    assert result.shape == SHAPE and result.bytes == os.path.getsize(tmp_path / "out.seg.nrrd")
    read, spacing, origin, direction = sitk_geometry(tmp_path / "out.seg.nrrd")
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read), level0)
    np.testing.assert_allclose(spacing, GEOMETRY.spacing, atol=1e-12)
    np.testing.assert_allclose(origin, GEOMETRY.origin, atol=1e-12)
    np.testing.assert_allclose(direction, np.asarray(DIRECTION), atol=1e-12)
    keys, segments = segment_keys(read)
    assert keys["Segmentation_MasterRepresentation"] == "Binary labelmap"
    assert sorted(segments) == [1, 2, 3]  # present ones only; "never used" has no voxels; 3 gets a name
    assert segments[1]["Name"] == "bone" and segments[1]["Tags"] == "TerminologyEntry:a~b|"
    assert segments[2]["Name"] == "pore" and [float(v) for v in segments[2]["Color"].split()] == [1.0, 0.0, 0.0]
    assert segments[3]["Name"] == "Segment_3" and segments[3]["NameAutoGenerated"] == "1"
    assert all(s["Layer"] == "0" for s in segments.values())
    extents = brute_extents(level0)
    assert {v: s["Extent"] for v, s in segments.items()} == extents
    assert [s.value for s in result.segments] == [1, 2, 3]


def test_export_region_of_level1_with_every_segment(labelled, tmp_path):
    image, store, _ = labelled
    lvl = store.levels[1]
    box = ((2, 9), (3, 17), (1, 20))
    export_labels(store, tmp_path / "part.seg.nrrd", level=1, box=box, segments_only=False)
    read, spacing, origin, direction = sitk_geometry(tmp_path / "part.seg.nrrd")
    expected = store.read_box(1, box)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read), expected)
    e_spacing, e_origin, e_direction = expected_geometry(lvl, (2, 3, 1))
    np.testing.assert_allclose(spacing, e_spacing, atol=1e-12)
    factors = np.array(level_factors(store.levels)[1][::-1])  # x, y, z
    np.testing.assert_allclose(spacing, np.array(GEOMETRY.spacing) * factors, atol=1e-12)
    np.testing.assert_allclose(origin, e_origin, atol=1e-12)
    np.testing.assert_allclose(direction, np.asarray(DIRECTION), atol=1e-12)
    # The region's voxel 0 is where level 1's voxel (1, 3, 2) is, in the physical space of both.
    np.testing.assert_allclose(read.TransformIndexToPhysicalPoint((0, 0, 0)),
                               FLIP @ (lvl.ijk_to_ras @ [1, 3, 2, 1.0])[:3], atol=1e-12)
    _, segments = segment_keys(read)
    assert segments[5]["Name"] == "never used" and segments[5]["Extent"] == "0 -1 0 -1 0 -1"
    present = brute_extents(expected)
    assert {v: s["Extent"] for v, s in segments.items() if v in present} == present


def test_export_plain_labelmap_has_no_segment_keys_and_raw_encoding(labelled, tmp_path):
    _, store, level0 = labelled
    export_labels(store, tmp_path / "plain.nrrd", compression=0)
    read = sitk.ReadImage(str(tmp_path / "plain.nrrd"))
    assert not any(k.startswith("Segment") for k in read.GetMetaDataKeys())
    assert b"encoding: raw" in open(tmp_path / "plain.nrrd", "rb").read(600)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read), level0)


def test_export_through_an_editor_includes_pending_edits(labelled, tmp_path):
    image, store, level0 = labelled
    editor = LabelEditor(store, start=False)  # the writer never runs: the edit stays pending
    try:
        centre = (image.levels[0].ijk_to_ras @ [20, 18, 11, 1.0])[:3]
        editor.submit(Brush(2, points=[centre], radius_mm=2.5))
        pending = editor.read_box(0, tuple((0, n) for n in SHAPE))
        assert not np.array_equal(pending, level0)
        export_labels(editor, tmp_path / "pending.seg.nrrd")
        exported = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "pending.seg.nrrd")))
        np.testing.assert_array_equal(exported, pending)
        np.testing.assert_array_equal(whole(store, 0), level0)  # nothing written behind the editor's back
    finally:
        editor.close(wait=False)


def test_failed_export_leaves_no_file(labelled, tmp_path, monkeypatch):
    _, store, _ = labelled
    with pytest.raises(StoreError, match="does not exist"):
        export_labels(store, tmp_path / "missing" / "out.seg.nrrd")
    assert not (tmp_path / "missing").exists()

    calls = []

    def failing(level, box):  # the second slab fails
        calls.append(box)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return label_store.LabelStore.read_box(store, level, box)

    monkeypatch.setattr(store, "read_box", failing)
    for name in ("out.seg.nrrd", "out.nrrd"):
        calls.clear()
        with pytest.raises(StoreError, match="No space left"):
            export_labels(store, tmp_path / name)
    assert sorted(os.listdir(tmp_path)) == ["img.ome.zarr"]  # no final file, no temporary one


def test_export_refuses_a_box_outside_the_level(labelled, tmp_path):
    _, store, _ = labelled
    with pytest.raises(ValueError, match="inside level 1"):
        export_labels(store, tmp_path / "x.seg.nrrd", level=1, box=((0, 30), (0, 5), (0, 5)))
    assert not (tmp_path / "x.seg.nrrd").exists()


# -- round trip -----------------------------------------------------------------------------------------------
def test_round_trip_is_exact_at_every_level(labelled, tmp_path):
    image, store, level0 = labelled
    export_labels(store, tmp_path / "out.seg.nrrd")
    result = import_labels(image, "copy", tmp_path / "out.seg.nrrd")
    copy = result.store
    assert result.exact and result.offset_xyz == (0, 0, 0) and result.unlisted_voxels == 0
    assert "copy" in label_names(image.location)
    np.testing.assert_array_equal(whole(copy, 0), level0)
    expected = level0
    for level, factors in enumerate(level_factors(copy.levels)):
        if level:
            expected = mode_halve(expected, factors)
        np.testing.assert_array_equal(whole(copy, level), expected)
        np.testing.assert_array_equal(whole(copy, level), whole(store, level))
    reopened = open_labels(image, "copy")
    assert [(s.value, s.name, s.color, s.tags) for s in reopened.segments] == \
        [(1, "bone", (0.5, 0.68, 0.5), {"TerminologyEntry": "a~b"}), (2, "pore", (1.0, 0.0, 0.0), {}),
         (3, "Segment_3", DEFAULT_COLORS[2], {})]
    attrs = reopened.pyramid.group.attrs.asdict()["bigvolume"]
    assert attrs["import"]["state"] == "complete"
    # only chunks with labels were written at level 0
    assert len(copy.stored_chunks(0)) == result.chunks_written == len(store.stored_chunks(0))


def test_import_of_a_region_on_a_shifted_grid_is_exact(labelled, tmp_path):
    image, store, level0 = labelled
    box = ((3, 19), (5, 30), (7, 38))
    export_labels(store, tmp_path / "part.seg.nrrd", box=box)
    result = import_labels(image, "part", tmp_path / "part.seg.nrrd")
    assert result.exact and result.offset_xyz == (-7, -5, -3)
    expected = np.zeros_like(level0)
    region = tuple(slice(a, b) for a, b in box)
    expected[region] = level0[region]
    np.testing.assert_array_equal(whole(result.store, 0), expected)


def test_import_of_a_labelmap_reaching_outside_the_image(labelled, tmp_path):
    image, _, _ = labelled
    rng = np.random.default_rng(3)
    source = (rng.random((10, 50, 12)) < 0.3).astype(np.int16) * rng.integers(1, 4, (10, 50, 12)).astype(np.int16)
    shift = np.array([35, -6, 15])  # source voxel 0 is level-0 voxel (x, y, z) = shift
    item = sitk.GetImageFromArray(source)
    item.SetSpacing(GEOMETRY.spacing)
    item.SetDirection(np.asarray(DIRECTION).ravel().tolist())
    item.SetOrigin((np.asarray(GEOMETRY.origin) + np.asarray(DIRECTION) @ (shift * GEOMETRY.spacing)).tolist())
    sitk.WriteImage(item, str(tmp_path / "shifted.nrrd"), True)
    result = import_labels(image, "shifted", tmp_path / "shifted.nrrd")
    assert result.exact and result.offset_xyz == tuple(-shift)
    expected = np.zeros(SHAPE, dtype=np.uint8)
    z, y, x = np.indices(SHAPE)
    sz, sy, sx = z - shift[2], y - shift[1], x - shift[0]
    inside = (sz >= 0) & (sz < 10) & (sy >= 0) & (sy < 50) & (sx >= 0) & (sx < 12)
    expected[inside] = source[sz[inside], sy[inside], sx[inside]]
    np.testing.assert_array_equal(whole(result.store, 0), expected)
    assert [s.value for s in result.store.segments] == sorted(set(np.unique(expected)) - {0})
    assert [s.name for s in result.store.segments] == [f"Segment_{v}" for v in sorted(set(np.unique(expected)) - {0})]


def test_import_resampled_equals_brute_force_nearest_neighbour(labelled, tmp_path):
    image, _, _ = labelled
    rng = np.random.default_rng(4)
    source = np.zeros((13, 21, 17), dtype=np.uint16)
    source[rng.random(source.shape) < 0.4] = 7
    source[rng.random(source.shape) < 0.2] = 300  # does not fit 8 bits
    angle = math.radians(-12)
    direction = np.array([[1.0, 0, 0], [0, math.cos(angle), -math.sin(angle)], [0, math.sin(angle), math.cos(angle)]])
    spacing = np.array([1.03, 0.77, 1.31])
    origin = np.array([2.1, -1.3, 3.7])
    item = sitk.GetImageFromArray(source)
    item.SetSpacing(spacing.tolist())
    item.SetOrigin(origin.tolist())
    item.SetDirection(direction.ravel().tolist())
    sitk.WriteImage(item, str(tmp_path / "coarse.nrrd"), True)

    result = import_labels(image, "coarse", tmp_path / "coarse.nrrd")
    assert not result.exact and result.offset_xyz is None
    # Brute force: each level-0 voxel centre (LPS, from the image's geometry) into the source's index space.
    k, j, i = np.indices(SHAPE).reshape(3, -1)
    points = np.asarray(GEOMETRY.origin)[:, None] + np.asarray(DIRECTION) @ (np.asarray(GEOMETRY.spacing)[:, None]
                                                                               * np.stack([i, j, k]))
    continuous = (direction.T @ (points - origin[:, None])) / spacing[:, None]
    assert np.abs(continuous - np.floor(continuous) - 0.5).min() > 1e-6  # no voxel centre on a source boundary
    nearest = np.floor(continuous + 0.5).astype(int)
    inside = np.all((nearest >= 0) & (nearest < np.array(source.shape[::-1])[:, None]), axis=0)
    expected = np.zeros(k.size, dtype=np.uint16)
    expected[inside] = source[nearest[2, inside], nearest[1, inside], nearest[0, inside]]
    expected = expected.reshape(SHAPE)
    assert inside.any() and not inside.all()
    imported = whole(result.store, 0)
    assert imported.dtype == np.uint16
    np.testing.assert_array_equal(imported, expected)
    assert [s.value for s in result.store.segments] == [7, 300]
    for level, factors in enumerate(level_factors(result.store.levels)):
        if level:
            expected = mode_halve(expected, factors)
            np.testing.assert_array_equal(whole(result.store, level), expected)


def test_seg_nrrd_values_naming_no_segment_import_as_background(labelled, tmp_path):
    image, store, level0 = labelled
    export_labels(store, tmp_path / "out.seg.nrrd")
    text = open(tmp_path / "out.seg.nrrd", "rb").read()
    header, data = text.split(b"\n\n", 1)
    kept = b"\n".join(line for line in header.split(b"\n") if not line.startswith(b"Segment2_"))  # drop value 3
    (tmp_path / "two.seg.nrrd").write_bytes(kept + b"\n\n" + data)
    result = import_labels(image, "two", tmp_path / "two.seg.nrrd")
    assert [s.value for s in result.segments] == [1, 2]
    assert result.unlisted_voxels == int((level0 == 3).sum()) > 0
    np.testing.assert_array_equal(whole(result.store, 0), np.where(level0 == 3, 0, level0))


def test_import_recovers_utf8_segment_names(labelled, tmp_path):
    image, store, _ = labelled
    store2 = create_labels(image, "named", segments=[Segment(1, "Knochen – Schädel")])
    fill(store2, (blobs(SHAPE) == 1).astype(np.uint8))
    export_labels(store2, tmp_path / "named.seg.nrrd")
    result = import_labels(image, "named_copy", tmp_path / "named.seg.nrrd")
    assert result.segments[0].name == "Knochen – Schädel"


# -- refusals -------------------------------------------------------------------------------------------------
def assert_no_labels(image, name):
    assert name not in label_names(image.location)
    assert not os.path.exists(os.path.join(image.location, "labels", name))


def write_sitk(path, array, spacing=(0.4, 0.5, 0.7), origin=(3.0, -2.0, 1.0)):
    item = sitk.GetImageFromArray(array)
    item.SetSpacing(spacing)
    item.SetOrigin(origin)
    sitk.WriteImage(item, str(path), True)


def test_refuses_a_float_labelmap(labelled, tmp_path):
    image, _, _ = labelled
    write_sitk(tmp_path / "float.nrrd", np.ones((4, 5, 6), dtype=np.float32))
    with pytest.raises(InputError, match="not an integer type"):
        import_labels(image, "bad", tmp_path / "float.nrrd")
    assert_no_labels(image, "bad")


def test_refuses_a_labelmap_outside_the_image(labelled, tmp_path):
    image, _, _ = labelled
    write_sitk(tmp_path / "far.nrrd", np.ones((4, 5, 6), dtype=np.uint8), origin=(500.0, 0.0, 0.0))
    with pytest.raises(InputError, match="does not overlap"):
        import_labels(image, "far", tmp_path / "far.nrrd")
    assert_no_labels(image, "far")


def test_refuses_a_multi_layer_segmentation(labelled, tmp_path):
    image, _, _ = labelled
    header = ("NRRD0004\ntype: unsigned char\ndimension: 4\nspace: left-posterior-superior\nsizes: 2 6 5 4\n"
              "space directions: none (0.4,0,0) (0,0.5,0) (0,0,0.7)\nkinds: list domain domain domain\n"
              "encoding: raw\nspace origin: (3,-2,1)\nSegment0_ID:=a\nSegment0_LabelValue:=1\nSegment0_Layer:=0\n"
              "Segment1_ID:=b\nSegment1_LabelValue:=1\nSegment1_Layer:=1\n\n")
    (tmp_path / "layers.seg.nrrd").write_bytes(header.encode() + bytes(2 * 6 * 5 * 4))
    with pytest.raises(InputError, match="overlapping segments are not supported"):
        import_labels(image, "layers", tmp_path / "layers.seg.nrrd")
    assert_no_labels(image, "layers")


def test_refuses_a_missing_file_and_an_existing_name(labelled, tmp_path):
    image, store, level0 = labelled
    with pytest.raises(InputError, match="no such labelmap file"):
        import_labels(image, "nothing", tmp_path / "nothing.seg.nrrd")
    assert_no_labels(image, "nothing")
    export_labels(store, tmp_path / "out.seg.nrrd")
    with pytest.raises(StoreError, match="already exist"):
        import_labels(image, "seg", tmp_path / "out.seg.nrrd")
    np.testing.assert_array_equal(whole(open_labels(image, "seg"), 0), level0)  # untouched


def test_a_failure_while_writing_removes_the_new_pyramid(labelled, tmp_path, monkeypatch):
    image, store, _ = labelled
    export_labels(store, tmp_path / "out.seg.nrrd")
    original = label_store.LabelStore.write_chunk
    count = []

    def failing(self, level, coords, data, durable=True):
        count.append(coords)
        if len(count) == 3:
            raise OSError(28, "No space left on device")
        return original(self, level, coords, data, durable)

    monkeypatch.setattr(label_store.LabelStore, "write_chunk", failing)
    with pytest.raises(OSError, match="No space left"):
        import_labels(image, "broken", tmp_path / "out.seg.nrrd")
    assert_no_labels(image, "broken")
    assert label_names(image.location) == ["seg"]


def test_the_source_is_read_forward_in_slabs(labelled, tmp_path, monkeypatch):
    # A labelmap whose z runs opposite to the image's: level-0 z order would read it backwards (a gzip stream
    # restarted for every chunk row); the import reads each pass forward, each plane once.
    image, _, _ = labelled
    rng = np.random.default_rng(6)
    source = (rng.random((30, 20, 24)) < 0.3).astype(np.uint8) * 2
    flipped = np.asarray(DIRECTION) @ np.diag([1.0, 1.0, -1.0])
    item = sitk.GetImageFromArray(source)
    item.SetSpacing((0.55, 0.45, 0.6))
    item.SetDirection(flipped.ravel().tolist())
    item.SetOrigin((np.asarray(GEOMETRY.origin) + np.asarray(DIRECTION) @ [1.3, 2.1, 12.2]).tolist())
    sitk.WriteImage(item, str(tmp_path / "flipped.nrrd"), True)
    reads = []
    from bigvolume.labels import seg_nrrd

    opened = seg_nrrd.nrrd_reader.open

    def recording(path):
        src = opened(path)
        read = src._read
        src._read = lambda z0, z1: (reads.append((z0, z1)), read(z0, z1))[1]
        return src

    monkeypatch.setattr(seg_nrrd.nrrd_reader, "open", recording)
    import_labels(image, "flipped", tmp_path / "flipped.nrrd")
    passes = [[]]
    for z0, z1 in reads:  # a plain labelmap is read twice: values first, then writing
        if passes[-1] and z0 < passes[-1][-1][1]:
            passes.append([])
        passes[-1].append((z0, z1))
    assert len(passes) == 2
    for ranges in passes:
        planes = [z for z0, z1 in ranges for z in range(z0, z1)]
        assert planes == sorted(set(planes)) and len(ranges) > 1  # forward, each plane once, in several slabs


def test_import_of_a_seg_nrrd_written_by_another_writer(labelled, tmp_path):
    # SimpleITK writes the header its own way (number format, field order); keys as Slicer sets them.
    image, _, _ = labelled
    source = np.zeros((6, 9, 11), dtype=np.uint8)
    source[1:5, 2:7, 3:9] = 3
    source[2:4, 4:6, 5:7] = 8
    item = sitk.GetImageFromArray(source)
    item.SetSpacing(GEOMETRY.spacing)
    item.SetDirection(np.asarray(DIRECTION).ravel().tolist())
    corner = np.asarray(DIRECTION) @ (np.array([4, 6, 2]) * GEOMETRY.spacing)  # level-0 voxel (x, y, z) = (4, 6, 2)
    item.SetOrigin((np.asarray(GEOMETRY.origin) + corner).tolist())
    for n, (value, name, color) in enumerate([(3, "liver", "0.8 0.2 0.1"), (8, "tumour", "0.1 0.9 0.3")]):
        for key, text in (("ID", f"Segment_{n + 1}"), ("Name", name), ("Color", color), ("LabelValue", str(value)),
                          ("Layer", "0"), ("Tags", "TerminologyEntry:x~y|"), ("Extent", "0 10 0 8 0 5")):
            item.SetMetaData(f"Segment{n}_{key}", text)
    sitk.WriteImage(item, str(tmp_path / "other.seg.nrrd"), True)
    result = import_labels(image, "other", tmp_path / "other.seg.nrrd")
    assert result.exact and result.offset_xyz == (-4, -6, -2)
    assert [(s.value, s.name, s.id, s.color, s.tags) for s in result.segments] == [
        (3, "liver", "Segment_1", (0.8, 0.2, 0.1), {"TerminologyEntry": "x~y"}),
        (8, "tumour", "Segment_2", (0.1, 0.9, 0.3), {"TerminologyEntry": "x~y"})]
    expected = np.zeros(SHAPE, dtype=np.uint8)
    expected[2:8, 6:15, 4:15] = source
    np.testing.assert_array_equal(whole(result.store, 0), expected)
