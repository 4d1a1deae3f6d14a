"""Segment surfaces in the 3D views: the coarse whole volume meshed in the background, rebuilt after edits,
following the bound segmentation's 3D display."""

import time

import numpy as np
import pytest
import slicer
import vtk

from bigvolume.labels.editor import LabelEditor
from bigvolume.labels.label_store import create_labels
from bigvolume.labels.meshes import segment_meshes
from bigvolume.labels.operations import Brush
from bigvolume.labels.segments import Segment
from BigVolumeLib.segmentation.binding import SegmentationBinding
from BigVolumeLib.segmentation.surfaces import SegmentSurfaces, surface_level
from label_helpers import blobs, fill, make_image

SHAPE = (40, 64, 72)


@pytest.fixture
def bound(tmp_path):
    image, _ = make_image(tmp_path / "img.ome.zarr", shape=SHAPE)
    store = create_labels(image, "phases", segments=[Segment(1, "grain", (0.9, 0.8, 0.6)),
                                                     Segment(2, "pore", (0.2, 0.4, 1.0)), Segment(3, "crack")])
    fill(store, blobs(SHAPE))
    scene = slicer.vtkMRMLScene()
    slicer.vtkSlicerSegmentationsModuleLogic().SetMRMLScene(scene)
    editor = LabelEditor(store, durable=False)
    binding = SegmentationBinding(scene, editor)
    yield scene, store, binding
    editor.close()


def _until(surfaces, condition, timeout=30):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the surfaces were not rebuilt"
        surfaces.update()
        time.sleep(0.01)


def test_surfaces_of_the_coarse_whole_volume_follow_edits_and_display(bound):
    scene, store, binding = bound
    assert surface_level(store, max_voxels=SHAPE[0] * SHAPE[1] * SHAPE[2]) == 0
    assert surface_level(store, max_voxels=50_000) == 1  # 40 x 32 x 36 = 46,080 voxels
    surfaces = SegmentSurfaces(scene, binding, max_voxels=50_000, smoothing=0.0, settle_seconds=0.0)
    _until(surfaces, lambda: surfaces.builds == 1)
    assert sorted(surfaces.models) == [1, 2, 3]
    expected = {m.value: m for m in segment_meshes(store, level=1)}
    for value, model in surfaces.models.items():
        polydata = model.GetPolyData()
        assert polydata.GetNumberOfPolys() == len(expected[value].triangles) > 0
        assert model.GetHideFromEditors() and not model.GetSaveWithScene()
    assert surfaces.models[2].GetDisplayNode().GetColor() == pytest.approx((0.2, 0.4, 1.0))
    assert "level 1, up to date" in surfaces.status_line()

    display = binding.node.GetDisplayNode()
    display.SetSegmentVisibility("pore", False)
    display.SetOpacity3D(0.5)
    binding.node.GetSegmentation().GetSegment("grain").SetColor(0.0, 1.0, 0.0)
    surfaces.update()
    assert not surfaces.models[2].GetDisplayNode().GetVisibility()
    assert surfaces.models[1].GetDisplayNode().GetVisibility()
    assert surfaces.models[1].GetDisplayNode().GetOpacity() == pytest.approx(0.5)
    assert surfaces.models[1].GetDisplayNode().GetColor() == pytest.approx((0.0, 1.0, 0.0))
    display.SetVisibility3D(False)
    surfaces.update()
    assert not any(m.GetDisplayNode().GetVisibility() for m in surfaces.models.values())

    before = surfaces.models[3].GetPolyData()
    mass = vtk.vtkMassProperties()
    mass.SetInputData(before)
    volume_before = mass.GetVolume()
    centre = np.mean(store.image.bounds_ras(0, edges=True), axis=0)
    binding.editor.submit(Brush(3, points=[tuple(centre)], radius_mm=4.0))
    binding.editor.wait()
    _until(surfaces, lambda: surfaces.builds == 2)
    after = vtk.vtkMassProperties()
    after.SetInputData(surfaces.models[3].GetPolyData())
    assert after.GetVolume() > volume_before + 50  # a 4 mm ball (268 mm3) joined the crack segment
    surfaces.close()
    assert surfaces.models == {} and scene.GetNodesByClass("vtkMRMLModelNode").GetNumberOfItems() == 0


def test_a_failed_rebuild_is_reported_and_the_next_edit_tries_again(bound, monkeypatch):
    from BigVolumeLib.segmentation import surfaces as surfaces_module

    scene, store, binding = bound
    real = surfaces_module.segment_meshes

    def failing(*args, **kwargs):
        raise OSError("disk gone")

    monkeypatch.setattr(surfaces_module, "segment_meshes", failing)
    surfaces = SegmentSurfaces(scene, binding, max_voxels=50_000, smoothing=0.0, settle_seconds=0.0)
    _until(surfaces, lambda: surfaces.error is not None)
    assert "failed: disk gone" in surfaces.status_line() and surfaces.models == {}
    monkeypatch.setattr(surfaces_module, "segment_meshes", real)
    binding.editor.submit(Brush(3, points=[tuple(np.mean(store.image.bounds_ras(0, edges=True), axis=0))],
                                radius_mm=2.0))
    _until(surfaces, lambda: surfaces.builds == 1)
    assert surfaces.error is None and sorted(surfaces.models) == [1, 2, 3]
    surfaces.close()
