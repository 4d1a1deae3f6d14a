"""Label pyramids streamed into slice views as segmentations, against Slicer drawing an ordinary segmentation.

The oracle: a vtkMRMLSegmentationNode holding the same level of the same
labels whole, with the bound node's display settings, drawn in the same
slice view by the same displayable manager (vtkMRMLSegmentationsDisplayableManager2D).
"""

import numpy as np
import pytest
import slicer
import vtk
from vtk.util import numpy_support

from bigvolume.labels.editor import LabelEditor
from bigvolume.labels.label_store import create_labels
from bigvolume.labels.operations import Brush
from bigvolume.labels.segments import Segment
from BigVolumeLib.offscreen.views import OffscreenScene, offscreen_3d_works
from BigVolumeLib.segmentation.binding import SegmentationBinding
from BigVolumeLib.streaming.segment_display import LABELMAP
from BigVolumeLib.streaming.streaming_scene import StreamingScene
from BigVolumeLib.volume_nodes import vtk_matrix
from label_helpers import blobs, fill, make_image

pytestmark = pytest.mark.skipif(not offscreen_3d_works(), reason="no offscreen OpenGL (EGL or OSMesa) on this machine")

SEGMENTS = [Segment(1, "bone", (0.9, 0.8, 0.6)), Segment(2, "pore", (0.2, 0.4, 1.0)), Segment(3, "crack", (1.0, 0.1, 0.1))]


@pytest.fixture
def labelled(tmp_path):
    image, volume = make_image(tmp_path / "img.ome.zarr")
    store = create_labels(image, "phases", segments=SEGMENTS)
    fill(store, blobs(volume.shape))
    return image, store


def _setup(labelled, views=(("Red", "Axial", (200, 150)),), start=True):
    image, store = labelled
    scene = OffscreenScene()
    logic = slicer.vtkSlicerSegmentationsModuleLogic()  # registers the representation converters
    logic.SetMRMLScene(scene.scene)
    nodes = {name: scene.add_view(name, orientation, size) for name, orientation, size in views}
    editor = LabelEditor(store, durable=False, start=start)
    streaming = StreamingScene(scene.scene)
    streaming.add_image(image)
    binding = SegmentationBinding(scene.scene, editor)
    labels = streaming.add_labels(binding)
    return scene, nodes, streaming, binding, labels, logic


def _reference(scene, binding, level):
    """An ordinary segmentation holding `level` of the labels as stored (and pending) now, drawn like the bound one."""
    store = binding.store
    lvl = store.levels[level]
    labels = np.ascontiguousarray(binding.editor.read_box(level, tuple((0, n) for n in lvl.volume_shape)))
    image = slicer.vtkOrientedImageData()
    image.SetDimensions(labels.shape[2], labels.shape[1], labels.shape[0])
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(labels.reshape(-1), deep=True))
    image.SetImageToWorldMatrix(vtk_matrix(lvl.ijk_to_ras))
    node = scene.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "reference")
    node.CreateDefaultDisplayNodes()
    bound = binding.node.GetSegmentation()
    for i in range(bound.GetNumberOfSegments()):
        segment_id = bound.GetNthSegmentID(i)
        segment = slicer.vtkSegment()
        segment.SetName(bound.GetSegment(segment_id).GetName())
        segment.SetColor(bound.GetSegment(segment_id).GetColor())
        segment.SetLabelValue(binding.value_of(segment_id))
        segment.AddRepresentation(LABELMAP, image)
        node.GetSegmentation().AddSegment(segment, segment_id)
    node.GetDisplayNode().CopyContent(binding.node.GetDisplayNode())
    node.GetDisplayNode().SetVisibility(True)  # the bound node is hidden meanwhile (and with it the proxies)
    return node


def _compare(scene, binding, streaming, name, node):
    """Render the streamed labels, then the ordinary segmentation of the level the view shows, in view `name`."""
    assert streaming.wait_complete()
    streamer = next(s for s in streaming.sources[_label_id(streaming)].streamers.values()
                    if s.slice_node is node)
    streamed = scene.render_overlays(name)
    display = binding.node.GetDisplayNode()
    display.SetVisibility(False)  # hides every proxy (they follow the bound node)
    reference = _reference(scene, binding, streamer.level)
    expected = scene.render_overlays(name)
    scene.scene.RemoveNode(reference)
    display.SetVisibility(True)
    return streamed, expected, streamer


def _label_id(streaming):
    return next(i for i, s in streaming.sources.items() if s.layer == "segmentation")


def _colours(rgba):
    return {tuple(c) for c in rgba.reshape(-1, 4)[:, :3] if c.any()}


@pytest.mark.parametrize("orientation", ["Axial", "Sagittal", "Coronal"])
def test_streamed_labels_draw_as_slicer_draws_the_same_level(labelled, orientation):
    scene, nodes, streaming, binding, _, _ = _setup(labelled, views=(("Red", orientation, (200, 150)),))
    image, store = labelled
    level0 = store.levels[0]
    z, y, x = np.nonzero(store.read_box(0, tuple((0, n) for n in level0.volume_shape)) == 2)
    pick = np.argmin((z - z.mean()) ** 2 + (y - y.mean()) ** 2 + (x - x.mean()) ** 2)
    through = (level0.ijk_to_ras @ [x[pick], y[pick], z[pick], 1.0])[:3]  # a voxel of a pore
    nodes["Red"].JumpSliceByCentering(*through)
    seen = set()
    for zoom in (1.0, 3.0):
        node = nodes["Red"]
        fov = node.GetFieldOfView()
        node.SetFieldOfView(fov[0] / zoom, fov[1] / zoom, fov[2])
        # Off the voxel lattice by a fraction of a pixel: a pixel centre exactly on a voxel border (a tie) may round
        # to either voxel, and VTK's reslice and the composition do their arithmetic in different orders.
        node.SetXYZOrigin(0.137, 0.291, 0.0)
        node.UpdateMatrices()
        streamed, expected, streamer = _compare(scene, binding, streaming, "Red", node)
        assert _colours(streamed), "the view should show a segment"
        seen |= _colours(streamed)
        assert np.array_equal(streamed, expected), f"{orientation} x{zoom} at level {streamer.level}"
    assert len(seen) >= 2, "fill and outline"
    streaming.close()
    binding.editor.close()


def test_oblique_view_draws_as_slicer_draws(labelled):
    scene, nodes, streaming, binding, _, _ = _setup(labelled)
    node = nodes["Red"]
    transform = vtk.vtkTransform()
    transform.RotateWXYZ(25, 1, 0.5, 0.2)
    node.GetSliceToRAS().DeepCopy(_rotated(node.GetSliceToRAS(), transform))
    node.UpdateMatrices()
    streamed, expected, streamer = _compare(scene, binding, streaming, "Red", node)
    assert streamer.current_plan.kind == "oblique"
    assert _colours(streamed) and np.array_equal(streamed, expected)
    streaming.close()
    binding.editor.close()


def _rotated(matrix, transform):
    out = vtk.vtkMatrix4x4()
    vtk.vtkMatrix4x4.Multiply4x4(transform.GetMatrix(), matrix, out)
    for r in range(3):
        out.SetElement(r, 3, matrix.GetElement(r, 3))
    return out


def test_display_settings_of_the_bound_segmentation_apply(labelled):
    scene, nodes, streaming, binding, _, _ = _setup(labelled)
    assert streaming.wait_complete()
    before = scene.render_overlays("Red")
    display = binding.node.GetDisplayNode()
    display.SetSegmentVisibility("pore", False)
    display.SetOpacity2DFill(0.25)
    display.SetSegmentOpacity2DOutline("bone", 0.5)
    binding.node.GetSegmentation().GetSegment("crack").SetColor(0.0, 1.0, 0.0)
    streamed, expected, _ = _compare(scene, binding, streaming, "Red", nodes["Red"])
    assert not np.array_equal(streamed, before)
    assert np.array_equal(streamed, expected)
    assert (0, 255, 0) in _colours(streamed) and (51, 102, 255) not in _colours(streamed)
    streaming.close()
    binding.editor.close()


def test_hidden_segmentation_fetches_nothing(labelled):
    scene, nodes, streaming, binding, labels, _ = _setup(labelled)
    binding.node.GetDisplayNode().SetVisibility(False)
    streaming.update()
    streamer = next(iter(labels.streamers.values()))
    assert not streamer.shown
    assert not streaming.engine.wants(streamer.requester)
    assert not scene.render_overlays("Red").any()
    binding.node.GetDisplayNode().SetVisibility(True)
    assert streaming.wait_complete() and streamer.complete and scene.render_overlays("Red").any()
    streaming.close()
    binding.editor.close()


def test_edits_show_queued_and_written(labelled):
    image, store = labelled
    scene, nodes, streaming, binding, labels, _ = _setup(labelled, start=False)
    streamer = next(iter(labels.streamers.values()))
    assert streaming.wait_complete()
    centre = np.mean(image.bounds_ras(0, edges=True), axis=0)
    before = scene.render_overlays("Red")
    stroke = Brush(value=2, points=[tuple(centre - (3, 0, 0)), tuple(centre + (3, 0, 0))], radius_mm=2.0)
    binding.editor.submit(stroke)  # queued: the writer has not started
    streamed, expected, _ = _compare(scene, binding, streaming, "Red", nodes["Red"])
    assert not np.array_equal(streamed, before) and np.array_equal(streamed, expected)
    binding.editor.start()
    binding.editor.wait()  # written at full resolution, coarser levels rebuilt: the views repaint those chunks
    streamed, expected, _ = _compare(scene, binding, streaming, "Red", nodes["Red"])
    assert np.array_equal(streamed, expected)
    assert streamer.complete
    streaming.close()
    binding.editor.close()


def test_segments_added_renamed_and_removed_in_slicer_reach_the_pyramid(labelled):
    image, store = labelled
    scene, nodes, streaming, binding, _, _ = _setup(labelled)
    segmentation = binding.node.GetSegmentation()
    assert [segmentation.GetNthSegmentID(i) for i in range(3)] == ["bone", "pore", "crack"]
    assert binding.node.GetSegmentation().GetSegment("pore").GetLabelValue() == 2
    segmentation.AddEmptySegment("gas", "gas", [0.1, 0.9, 0.1])
    segmentation.GetSegment("bone").SetName("matrix")
    assert [(s.id, s.name, s.value) for s in store.segments] == \
        [("bone", "matrix", 1), ("pore", "pore", 2), ("crack", "crack", 3), ("gas", "gas", 4)]
    level0 = store.levels[0]
    whole = tuple((0, n) for n in level0.volume_shape)
    assert (store.read_box(0, whole) == 3).any()
    segmentation.RemoveSegment("crack")
    binding.editor.wait()
    assert [s.id for s in store.segments] == ["bone", "pore", "gas"]
    assert not (store.read_box(0, whole) == 3).any()  # its voxels cleared at every level
    assert not (store.read_box(len(store.levels) - 1, tuple((0, n) for n in store.levels[-1].volume_shape)) == 3).any()
    streaming.close()
    binding.editor.close()


def test_an_edit_shows_at_once_in_the_view_and_the_refresh_brings_the_same_labels(labelled):
    from BigVolumeLib.segmentation.editing import SegmentEditing

    import bigvolume

    path = labelled[0].location + "-aligned"  # axis-aligned: an axial view is aligned with the voxels
    bigvolume.write_pyramid(np.zeros((22, 37, 41), np.uint16), path, bigvolume.VolumeGeometry(spacing=(0.4, 0.5, 0.7)),
                            coarsest=8, chunks=(16, 16, 16))
    image = bigvolume.open_image(path)
    store = create_labels(image, "phases", segments=SEGMENTS)
    fill(store, blobs((22, 37, 41)))
    scene, nodes, streaming, binding, labels, _ = _setup((image, store), start=False)
    streamer = next(iter(labels.streamers.values()))
    assert streaming.wait_complete() and streamer.current_plan.kind == "aligned"
    editing = SegmentEditing(binding, streaming, None)
    red = nodes["Red"]
    before = streamer.voxels.copy()
    op = editing.stroke(red, [(60, 50), (140, 90)], "pore", 3.0)
    editing.submit(op)  # no update yet: painted into the view at its level by the engine's rasteriser
    shown = streamer.voxels.copy()
    assert (shown != before).any() and ((shown == 2) | (shown == before)).all()
    assert streaming.wait_complete()  # the edited chunks re-read through the overlay of the queued operation
    assert np.array_equal(streamer.voxels, shown)
    binding.editor.start()
    binding.editor.wait()  # written, coarser levels rebuilt: the view shows the same voxels
    assert streaming.wait_complete() and np.array_equal(streamer.voxels, shown)
    streaming.close()
    binding.editor.close()


def test_an_edit_shows_at_once_in_an_oblique_view_too(labelled):
    from BigVolumeLib.segmentation.editing import SegmentEditing

    scene, nodes, streaming, binding, labels, _ = _setup(labelled, start=False)  # rotated voxels: axial is oblique
    streamer = next(iter(labels.streamers.values()))
    assert streaming.wait_complete() and streamer.current_plan.kind == "oblique"
    editing = SegmentEditing(binding, streaming, None)
    before = streamer.voxels.copy()
    editing.submit(editing.stroke(nodes["Red"], [(60, 50), (140, 90)], "pore", 3.0))
    shown = streamer.voxels.copy()
    assert (shown != before).any() and ((shown == 2) | (shown == before)).all()
    assert streaming.wait_complete() and np.array_equal(streamer.voxels, shown)  # the overlay brings the same
    binding.editor.start()
    binding.editor.wait()
    assert streaming.wait_complete() and np.array_equal(streamer.voxels, shown)
    streaming.close()
    binding.editor.close()
