"""Label pyramids through the session (what the BigVolumeSegment panel and the effects use): open or create,
edit from a slice view, status, and a saved scene that brings the bound segmentation back."""

import numpy as np
import pytest
import slicer
import vtk

import bigvolume
from bigvolume.labels.segments import Segment
from bigvolume.tools.synthetic import SyntheticRockCore
from BigVolumeLib.offscreen.views import OffscreenScene
from BigVolumeLib.segmentation.binding import NAME_ATTRIBUTE
from BigVolumeLib.session import BigVolumeSession


@pytest.fixture
def store(tmp_path):
    path = tmp_path / "core.ome.zarr"
    bigvolume.write_pyramid(SyntheticRockCore((48, 64, 64), seed=2)[0:48], path, coarsest=16, chunks=(16, 32, 32))
    return str(path)


def _views():
    scene = OffscreenScene()
    slicer.vtkSlicerSegmentationsModuleLogic().SetMRMLScene(scene.scene)
    scene.add_view("Red", "Axial", (128, 128))
    return scene


def _settle(session):
    assert session.streaming.wait_complete(30)


def test_labels_open_edit_report_and_come_back_with_the_scene(store, tmp_path):
    views = _views()
    session = BigVolumeSession(views.scene, workers=1)
    session.open(store)
    labels = session.open_labels("phases", create=True, segments=[Segment(1, "grain", (0.8, 0.7, 0.5)),
                                                                 Segment(2, "pore", (0.1, 0.3, 1.0))])
    assert session.open_labels("phases") is labels
    # The reference geometry is the source volume's, the coarsest level: Slicer's own effects on the bound node
    # allocate images of it, which stay small.
    geometry = slicer.vtkOrientedImageData()
    slicer.vtkSegmentationConverter.DeserializeImageGeometry(labels.node.GetSegmentation().GetConversionParameter(
        slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName()), geometry, False)
    coarsest = labels.editor.store.levels[-1].volume_shape
    assert geometry.GetExtent() == (0, coarsest[2] - 1, 0, coarsest[1] - 1, 0, coarsest[0] - 1)
    assert labels.binding.source_volume.GetImageData().GetDimensions() == coarsest[::-1]
    _settle(session)
    red = views.scene.GetSingletonNode("Red", "vtkMRMLSliceNode")
    op = labels.editing.stroke(red, [(40, 40), (90, 80)], "pore", 6.0)
    labels.editing.submit(op)
    labels.editor.wait()
    assert "labels phases: every edit written" in session.status_text()
    painted = labels.editor.store.read_box(0, tuple((0, n) for n in labels.editor.store.levels[0].volume_shape))
    assert (painted == 2).sum() > 100 and np.count_nonzero(painted) == (painted == 2).sum()
    display = labels.node.GetDisplayNode()
    display.SetSegmentVisibility("grain", False)
    display.SetOpacity2DFill(0.3)
    node_id = labels.node.GetID()
    mrml = tmp_path / "scene.mrml"
    views.scene.SetURL(str(mrml))
    assert views.scene.Commit()
    text = mrml.read_text()
    assert NAME_ATTRIBUTE in text and "phases" in text
    session.close()

    reloaded = _views()
    reloaded.scene.SetURL(str(mrml))
    assert reloaded.scene.Import()
    restored = BigVolumeSession(reloaded.scene, workers=1)
    assert restored.restore()
    back = restored.labels["phases"]
    assert back.node.GetID() == node_id  # the saved node, bound again
    segmentation = back.node.GetSegmentation()
    assert [segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())] == ["grain", "pore"]
    assert not back.node.GetDisplayNode().GetSegmentVisibility("grain")
    assert back.node.GetDisplayNode().GetOpacity2DFill() == pytest.approx(0.3)
    _settle(restored)
    streamer = next(iter(back.streamed.streamers.values()))
    assert streamer.complete and (streamer.voxels == 2).any()  # the painted labels stream into the view again
    restored.close()


def test_closing_the_image_closes_its_labels_without_waiting(store):
    views = _views()
    session = BigVolumeSession(views.scene, workers=1)
    session.open(store)
    labels = session.open_labels("phases", create=True, segments=[Segment(1, "grain")])
    session.close()
    assert session.labels == {}
    nodes = views.scene.GetNodesByClass("vtkMRMLSegmentationNode")
    nodes = [nodes.GetItemAsObject(i) for i in range(nodes.GetNumberOfItems())]
    assert [n.GetID() for n in nodes] == [labels.node.GetID()]  # the per-view proxies went; the bound node stays


def test_statistics_table_and_mesh_models(store):
    from bigvolume.labels.meshes import segment_meshes
    from bigvolume.labels.statistics import segment_statistics
    from BigVolumeLib.segmentation.results import mesh_model_node, statistics_table

    views = _views()
    session = BigVolumeSession(views.scene, workers=1)
    session.open(store)
    labels = session.open_labels("phases", create=True, segments=[Segment(1, "grain"), Segment(2, "pore")])
    _settle(session)
    red = views.scene.GetSingletonNode("Red", "vtkMRMLSliceNode")
    labels.editing.submit(labels.editing.stroke(red, [(64, 64)], "pore", 8.0, sphere=True))
    stats = segment_statistics(labels.editor)
    table = statistics_table(views.scene, stats)
    assert table.GetNumberOfRows() == 2 and table.GetColumnName(3) == "Volume"
    assert table.GetCellText(1, 0) == "pore" and int(table.GetCellText(1, 2)) == stats[1].voxel_count > 0
    assert table.GetCellText(0, 2) == "0" and table.GetColumnUnitLabel("Volume") == "mm3"
    (mesh,) = segment_meshes(labels.editor, ["pore"])
    model = mesh_model_node(views.scene, mesh, color=(0.1, 0.3, 1.0))
    polydata = model.GetPolyData()
    assert polydata.GetNumberOfPoints() == len(mesh.vertices) and polydata.GetNumberOfPolys() == len(mesh.triangles)
    mass = vtk.vtkMassProperties()
    mass.SetInputData(polydata)
    assert mass.GetVolume() == pytest.approx(mesh.volume_mm3, rel=1e-6)
    assert mesh.volume_mm3 == pytest.approx(stats[1].volume_mm3, rel=0.15)  # surface half-way between centres
    session.close()
