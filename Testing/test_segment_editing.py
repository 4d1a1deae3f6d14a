"""The Qt-free editing engine: slice-view strokes, polygons and thresholds against Slicer's own Segment Editor.

The oracle paints the same strokes with vtkSlicerSegmentEditorLogic on an
ordinary segmentation of the full-resolution volume (slicer_paint_oracle.py).
Boundary tolerance: Slicer snaps each brush stamp to the nearest voxel and
rasterises a 32-facet polygonal sphere; BigVolume tests voxel centres against
the exact sphere around the exact point. Voxels may therefore differ only
where the brush surface passes within about one voxel: every differing voxel
centre must lie within one voxel diagonal of the ideal brush surface.
"""

import numpy as np
import pytest
import slicer
from vtk.util import numpy_support

from bigvolume.labels.editor import LabelEditor
from bigvolume.labels.label_store import create_labels
from bigvolume.labels.segments import Segment
from BigVolumeLib.offscreen.views import OffscreenScene
from BigVolumeLib.region_export import RegionTooLarge
from BigVolumeLib.segmentation.binding import SegmentationBinding
from BigVolumeLib.segmentation.editing import (SegmentEditing, brush_diameter_mm, interpolate_stroke, mm_per_pixel,
                                               ras_to_xy, xy_to_ras)
from BigVolumeLib.segmentation.round_trip import RoiRoundTrip
from BigVolumeLib.streaming.streaming_scene import StreamingScene
from label_helpers import make_image
from slicer_paint_oracle import SlicerPainter

SHAPE = (40, 64, 72)


@pytest.fixture
def setup(tmp_path):
    image, volume = make_image(tmp_path / "img.ome.zarr", shape=SHAPE)
    store = create_labels(image, "seg", segments=[Segment(1, "rock", (0.9, 0.8, 0.6)), Segment(2, "pore", (0.2, 0.4, 1))])
    scene = OffscreenScene()
    slicer.vtkSlicerSegmentationsModuleLogic().SetMRMLScene(scene.scene)
    red = scene.add_view("Red", "Axial", (120, 100))
    editor = LabelEditor(store, durable=False)
    streaming = StreamingScene(scene.scene)
    streaming.add_image(image)
    binding = SegmentationBinding(scene.scene, editor)
    streaming.add_labels(binding)
    editor_node = scene.scene.AddNewNodeByClass("vtkMRMLSegmentEditorNode")
    editing = SegmentEditing(binding, streaming, editor_node)
    assert streaming.wait_complete()
    yield image, volume, store, scene, red, editing
    streaming.close()
    editor.close()


def _distance_to_path(points, path):
    """Distance of each point (n, 3) to the polyline through `path` (m, 3)."""
    best = np.full(len(points), np.inf)
    for a, b in zip(path[:-1], path[1:]) if len(path) > 1 else [(path[0], path[0])]:
        ab = b - a
        t = np.clip(((points - a) @ ab) / max(ab @ ab, 1e-12), 0, 1)
        best = np.minimum(best, np.linalg.norm(points - (a + t[:, None] * ab), axis=1))
    return best


def _voxel_ras(store, zyx):
    ijk = np.column_stack([zyx[:, 2], zyx[:, 1], zyx[:, 0], np.ones(len(zyx))])
    return (ijk @ np.asarray(store.levels[0].ijk_to_ras).T)[:, :3]


def test_interpolation_and_brush_size_follow_slicers_paint_effect(setup):
    _, _, _, _, red, _ = setup
    points = interpolate_stroke([(0, 0, 0), (10, 0, 0)], diameter_mm=5.0)  # 0.2 x 5 = 1 mm steps: n = 10 - 1
    assert len(points) == 11 and np.allclose(np.diff(points[:, 0]), 1.0)
    assert len(interpolate_stroke([(0, 0, 0), (0.5, 0, 0)], diameter_mm=5.0)) == 2  # close points: none between
    fov = red.GetFieldOfView()
    assert mm_per_pixel(red) == pytest.approx(fov[1] / red.GetDimensions()[1])
    assert brush_diameter_mm({"BrushDiameterIsRelative": 0, "BrushAbsoluteDiameter": 7.5}, red, 1080) == 7.5
    assert brush_diameter_mm({"BrushRelativeDiameter": 3.0}, red, 1080) == pytest.approx(1080 * 0.03 * mm_per_pixel(red))
    xy_to = red.GetXYToRAS()
    assert np.allclose(xy_to_ras(red, [(10, 20)])[0], [xy_to.MultiplyPoint((10, 20, 0, 1))[i] for i in range(3)])
    assert np.allclose(ras_to_xy(red, xy_to_ras(red, [(10, 20), (33.5, 7)])), [(10, 20), (33.5, 7)])


def _zoom_to_level(red, editing, level):
    """Zoom the view until it shows `level`."""
    for _ in range(40):
        editing.streaming.wait_complete()
        if editing.displayed_level(red) == level:
            return
        fov = red.GetFieldOfView()
        factor = 0.8 if editing.displayed_level(red) > level else 1.25
        red.SetFieldOfView(fov[0] * factor, fov[1] * factor, fov[2])
        red.UpdateMatrices()
    raise AssertionError(f"the view never showed level {level}")


@pytest.mark.parametrize("level", [0, 2])
def test_sphere_strokes_at_a_coarse_level_match_slicer_painting_at_full_resolution(setup, level):
    image, volume, store, scene, red, editing = setup
    _zoom_to_level(red, editing, level)
    width, height = red.GetDimensions()[:2]
    strokes = [((0.3 * width, 0.4 * height), (0.6 * width, 0.5 * height), (0.7 * width, 0.7 * height)),
               ((0.5 * width, 0.2 * height),)]
    oracle = SlicerPainter(volume, store.levels[0].ijk_to_ras)
    oracle.add_segment(2)
    diameter = 6 * max(store.levels[0].voxel_size_mm)
    for xy in strokes:
        op = editing.stroke(red, xy, "pore", diameter, sphere=True)
        editing.submit(op)
        oracle.paint(2, np.asarray(op.points), op.radius_mm)
    editing.editor.wait()
    ours = store.read_box(0, tuple((0, n) for n in SHAPE)) == 2
    slicers = oracle.labels() == 2
    assert slicers.sum() > 500 and ours.sum() > 500
    differ = np.argwhere(ours != slicers)
    assert len(differ) < 0.10 * slicers.sum(), f"{len(differ)} voxels differ of {slicers.sum()}"
    tolerance = np.linalg.norm(store.levels[0].voxel_size_mm)  # one voxel diagonal
    ras = _voxel_ras(store, differ)
    near = np.zeros(len(differ), dtype=bool)
    for xy in strokes:
        op_points = interpolate_stroke(xy_to_ras(red, xy), diameter)
        near |= np.abs(_distance_to_path(ras, op_points) - diameter / 2) <= tolerance
    assert near.all(), f"{(~near).sum()} differing voxels are not at the brush boundary"


def test_a_disc_is_one_displayed_slice_thick(setup):
    image, volume, store, scene, red, editing = setup
    _zoom_to_level(red, editing, 1)
    op = editing.stroke(red, [(60, 50)], "rock", 4.0)
    assert op.normal is not None
    assert op.thickness_mm == pytest.approx(store.levels[1].voxel_size_mm[2])  # axial view: level 1's slice
    editing.submit(op)
    editing.editor.wait()
    painted = store.read_box(0, tuple((0, n) for n in SHAPE)) == 1
    z = np.nonzero(painted.any(axis=(1, 2)))[0]
    assert 1 <= len(z) <= 3  # level 1's slice holds two level-0 slices (a third where its edge falls on a centre)


def test_masking_comes_from_the_segment_editor_node(setup):
    image, volume, store, scene, red, editing = setup
    node = editing.editor_node
    node.SetMaskMode(slicer.vtkMRMLSegmentationNode.EditAllowedInsideSingleSegment)
    node.SetMaskSegmentID("rock")
    node.SetOverwriteMode(slicer.vtkMRMLSegmentEditorNode.OverwriteVisibleSegments)
    node.SourceVolumeIntensityMaskOn()
    node.SetSourceVolumeIntensityMaskRange(100, 600)
    editing.binding.node.GetDisplayNode().SetSegmentVisibility("pore", False)
    masking = editing.masking("pore")
    assert masking.area == "inside_segments" and masking.area_values == (1,)
    assert masking.overwrite == "listed" and masking.overwrite_values == (1,)
    assert masking.intensity_range == (100.0, 600.0)
    node.SetMaskMode(99)  # not one of Slicer's modes: refused, never guessed
    with pytest.raises(ValueError, match="mask mode 99"):
        editing.masking("pore")


def test_intensity_masked_stroke_matches_slicer(setup):
    image, volume, store, scene, red, editing = setup
    editing.editor_node.SourceVolumeIntensityMaskOn()
    editing.editor_node.SetSourceVolumeIntensityMaskRange(200, 700)
    oracle = SlicerPainter(volume, store.levels[0].ijk_to_ras)
    oracle.add_segment(1)
    oracle.editor_node.SourceVolumeIntensityMaskOn()
    oracle.editor_node.SetSourceVolumeIntensityMaskRange(200, 700)
    op = editing.stroke(red, [(40, 40), (80, 60)], "rock", 8.0, sphere=True)
    editing.submit(op)
    oracle.paint(1, np.asarray(op.points), op.radius_mm)
    editing.editor.wait()
    ours = store.read_box(0, tuple((0, n) for n in SHAPE)) == 1
    slicers = oracle.labels() == 1
    assert ours.sum() > 200
    inside = (volume >= 200) & (volume <= 700)
    assert not (ours & ~inside).any() and not (slicers & ~inside).any()
    assert (ours != slicers).sum() < 0.15 * slicers.sum()


def test_polygon_fills_the_drawn_outline_in_the_displayed_slice(setup):
    image, volume, store, scene, red, editing = setup
    op = editing.polygon(red, [(30, 30), (90, 30), (90, 70), (30, 70)], "rock")
    editing.submit(op)
    editing.editor.wait()
    painted = store.read_box(0, tuple((0, n) for n in SHAPE)) == 1
    zs = np.nonzero(painted.any(axis=(1, 2)))[0]
    assert len(zs) == 1  # one displayed slice at level 0
    corners = xy_to_ras(red, [(30, 30), (90, 30), (90, 70), (30, 70)])
    area_mm2 = np.linalg.norm(corners[1] - corners[0]) * np.linalg.norm(corners[3] - corners[0])
    voxel = store.levels[0].voxel_size_mm
    assert painted.sum() * voxel[0] * voxel[1] == pytest.approx(area_mm2, rel=0.1)


def test_threshold_in_an_roi_sets_the_segment(setup):
    image, volume, store, scene, red, editing = setup
    roi = scene.scene.AddNewNodeByClass("vtkMRMLMarkupsROINode")
    lo, hi = image.bounds_ras(0, edges=True)
    centre = (lo + hi) / 2
    roi.SetCenter(*centre)
    roi.SetSize(*((hi - lo) / 3))
    op = editing.threshold("pore", 300, 800, roi)
    editing.submit(op)
    editing.editor.wait()
    labels = store.read_box(0, tuple((0, n) for n in SHAPE))
    ras = _voxel_ras(store, np.argwhere(labels == 2))
    bounds = [0.0] * 6
    roi.GetRASBounds(bounds)
    assert (labels == 2).sum() > 100
    assert (ras >= np.array(bounds[0::2]) - 1e-6).all() and (ras <= np.array(bounds[1::2]) + 1e-6).all()
    assert ((volume[labels == 2] >= 300) & (volume[labels == 2] <= 800)).all()


def test_undo_and_redo_restore_the_labels(setup):
    image, volume, store, scene, red, editing = setup
    whole = tuple((0, n) for n in SHAPE)
    editing.submit(editing.stroke(red, [(60, 50)], "rock", 6.0, sphere=True))
    editing.editor.wait()
    painted = store.read_box(0, whole)
    assert (painted == 1).any()
    editing.undo()
    editing.editor.wait()
    assert not (store.read_box(0, whole) == 1).any()
    editing.redo()
    editing.editor.wait()
    assert np.array_equal(store.read_box(0, whole), painted)


def test_roi_round_trip_brings_any_slicer_effect_to_bear(setup):
    image, volume, store, scene, red, editing = setup
    binding = editing.binding
    whole = tuple((0, n) for n in SHAPE)
    editing.submit(editing.stroke(red, [(50, 50)], "rock", 5.0, sphere=True))
    editing.editor.wait()
    before = store.read_box(0, whole)
    roi = scene.scene.AddNewNodeByClass("vtkMRMLMarkupsROINode")
    lo, hi = image.bounds_ras(0, edges=True)
    roi.SetCenter(*((lo + hi) / 2))
    roi.SetSize(*((hi - lo) / 2))
    trip = RoiRoundTrip(binding, roi)
    box = trip.plan.box
    assert np.array_equal(trip.labels(), before[tuple(slice(a, b) for a, b in box)])  # loaded as stored
    # Edit with Slicer's own logic, as any effect would: erase part of "rock", paint a new segment.
    logic = slicer.vtkSlicerSegmentEditorLogic()
    node = scene.scene.AddNewNodeByClass("vtkMRMLSegmentEditorNode")
    logic.SetMRMLScene(scene.scene)
    logic.SetSegmentEditorNode(node)
    logic.SetSegmentationNode(trip.segmentation)
    logic.SetSourceVolumeNode(trip.volume)
    new_id = trip.segmentation.GetSegmentation().AddEmptySegment("gas", "gas", [0.1, 0.9, 0.1])
    logic.ResetModifierLabelmapToDefault()
    modifier = logic.GetModifierLabelmap()
    extent = modifier.GetExtent()
    shape = (extent[5] - extent[4] + 1, extent[3] - extent[2] + 1, extent[1] - extent[0] + 1)
    voxels = numpy_support.vtk_to_numpy(modifier.GetPointData().GetScalars()).reshape(shape)
    voxels[:, : shape[1] // 2, :] = 1
    modifier.Modified()
    logic.ModifySegmentByLabelmap(trip.segmentation, "rock", modifier,
                                  slicer.vtkSlicerSegmentEditorLogic.ModificationModeRemove, True, False)
    voxels[:] = 0
    voxels[2:5, 3:9, 4:12] = 1
    modifier.Modified()
    logic.ModifySegmentByLabelmap(trip.segmentation, new_id, modifier,
                                  slicer.vtkSlicerSegmentEditorLogic.ModificationModeAdd, True, False)
    edited = trip.labels()
    seq = trip.write_back()
    assert seq is not None and trip.segmentation is None  # one operation; the ROI's nodes are gone
    assert store.segment("gas").value == 3
    editing.editor.wait()
    after = store.read_box(0, whole)
    inside = tuple(slice(a, b) for a, b in box)
    assert np.array_equal(after[inside], edited)
    assert (edited == 3).sum() == 3 * 6 * 8 and not (edited[:, : shape[1] // 2] == 1).any()
    outside = np.ones(SHAPE, dtype=bool)
    outside[inside] = False
    assert np.array_equal(after[outside], before[outside])
    editing.undo()  # the whole write-back at once
    editing.editor.wait()
    assert np.array_equal(store.read_box(0, whole), before)


def test_roi_round_trip_refuses_a_region_too_large_and_writes_nothing_unchanged(setup):
    image, volume, store, scene, red, editing = setup
    roi = scene.scene.AddNewNodeByClass("vtkMRMLMarkupsROINode")
    lo, hi = image.bounds_ras(0, edges=True)
    roi.SetCenter(*((lo + hi) / 2))
    roi.SetSize(*(hi - lo))
    with pytest.raises(RegionTooLarge, match="level 0"):
        RoiRoundTrip(editing.binding, roi, limit_bytes=1000)
    trip = RoiRoundTrip(editing.binding, roi)
    assert trip.write_back() is None and not editing.editor.can_undo
