"""BigVolumeSegment's panel and logic, run with the Slicer application's parts stood in (slicer_app_stand_in):
the MRML scene and nodes are real, the BigVolume session streams into it."""

import importlib.util
import inspect
import os
import sys
import types

import numpy as np
import pytest
import slicer
import vtk
import zarr

import bigvolume
from bigvolume.tools.synthetic import SyntheticRockCore
from BigVolumeLib.offscreen.views import OffscreenScene
from conftest import ROOT
from slicer_app_stand_in import load_module


def _load_segment(monkeypatch, tmp_path, scene=None):
    """BigVolumeSegment.py and the BigVolume module it imports from, as Slicer loads them."""
    bigvolume_module, bigvolume_logic = load_module(monkeypatch, scene or slicer.vtkMRMLScene(), tmp_path / "cache")
    spec = importlib.util.spec_from_file_location(
        "BigVolumeSegment", os.path.join(ROOT, "BigVolumeSegment", "BigVolumeSegment.py"))
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "BigVolumeSegment", module)
    spec.loader.exec_module(module)
    return bigvolume_module, bigvolume_logic, module


def _widget(segment, ui):
    widget = segment.BigVolumeSegmentWidget.__new__(segment.BigVolumeSegmentWidget)  # setup() needs Qt's loader
    widget.logic = segment.BigVolumeSegmentLogic()
    widget.roundTrip = None
    widget.ui = ui
    return widget


def _ui(name="", store=""):
    """The panel's widgets the handlers use, as plain values."""
    button = lambda: types.SimpleNamespace(enabled=False)  # noqa: E731
    combo = types.SimpleNamespace(currentText=name, items=[])
    combo.clear = lambda: combo.items.clear()
    combo.addItem = combo.items.append
    combo.setEditText = lambda text: setattr(combo, "currentText", text)
    return types.SimpleNamespace(
        labelNameComboBox=combo, separateStorePathLineEdit=types.SimpleNamespace(currentPath=store),
        labelsStatusLabel=types.SimpleNamespace(text=""), closeLabelsButton=button(), segmentEditorButton=button(),
        statisticsButton=button(), exportMeshesButton=button(), loadRoiButton=button(), writeBackButton=button(),
        discardRoiButton=button())


@pytest.fixture
def image_path(tmp_path):
    path = tmp_path / "core.ome.zarr"
    bigvolume.write_pyramid(SyntheticRockCore((48, 64, 64), seed=4)[0:48], path, coarsest=16, chunks=(16, 32, 32))
    return str(path)


def test_open_labels_creates_then_opens_binds_and_reports(monkeypatch, tmp_path, image_path):
    views = OffscreenScene()
    slicer.vtkSlicerSegmentationsModuleLogic().SetMRMLScene(views.scene)
    views.add_view("Red", "Axial", (128, 128))
    bigvolume_module, bigvolume_logic, segment = _load_segment(monkeypatch, tmp_path, views.scene)
    ensure, calls = bigvolume_module.ensurePythonDependencies, []
    # The call is bound to the real signature but not run: it would pip-install what this environment lacks.
    monkeypatch.setattr(bigvolume_module, "ensurePythonDependencies",
                        lambda *args, **kwargs: calls.append(inspect.signature(ensure).bind(*args, **kwargs)))
    monkeypatch.setattr(slicer.app, "testingEnabled", lambda: True, raising=False)  # errors raise, no dialog
    widget = _widget(segment, _ui("phases"))
    with pytest.raises(RuntimeError, match="Open an image"):
        widget.onOpenLabels()
    assert calls  # the dependencies come first

    bigvolume_logic.open(image_path)
    widget.ui.labelNameComboBox.currentText = "  "
    with pytest.raises(ValueError, match="name"):
        widget.onOpenLabels()
    widget.ui.labelNameComboBox.currentText = "phases"
    widget.onOpenLabels()  # no such pyramid yet: created
    labels = widget.logic.openedLabels("phases")
    assert labels is not None and widget.logic.labelNames() == ["phases"]
    assert widget.ui.labelNameComboBox.items == ["phases"] and widget.ui.statisticsButton.enabled
    assert "labels phases" in widget.ui.labelsStatusLabel.text
    labels.node.GetSegmentation().AddEmptySegment("pore", "pore", [0.2, 0.4, 1.0])
    assert labels.editor.store.segment("pore").value == 1
    widget.onCloseLabels()
    assert widget.logic.openedLabels("phases") is None and not widget.ui.statisticsButton.enabled
    reopened = widget.logic.openLabels("phases")  # exists now: opened, its segments back
    assert reopened.node.GetSegmentation().GetSegment("pore") is not None
    bigvolume_logic.close()


def test_statistics_meshes_and_roi_round_trip_from_the_logic(monkeypatch, tmp_path, image_path):
    views = OffscreenScene()
    slicer.vtkSlicerSegmentationsModuleLogic().SetMRMLScene(views.scene)
    red = views.add_view("Red", "Axial", (128, 128))
    _, bigvolume_logic, segment = _load_segment(monkeypatch, tmp_path, views.scene)
    bigvolume_logic.open(image_path)
    logic = segment.BigVolumeSegmentLogic()
    labels = logic.openLabels("phases")
    labels.node.GetSegmentation().AddEmptySegment("pore", "pore", [0.2, 0.4, 1.0])
    assert bigvolume_logic.session.streaming.wait_complete(30)
    labels.editing.submit(labels.editing.stroke(red, [(64, 64)], "pore", 8.0, sphere=True))
    table = logic.statisticsTable(labels)
    assert table.GetCellText(0, 0) == "pore" and int(table.GetCellText(0, 2)) > 0
    with pytest.raises(ValueError, match="folder"):
        logic.exportMeshes(labels, "")
    written = logic.exportMeshes(labels, str(tmp_path / "meshes"), format="ply", smoothing=0.0)
    assert [os.path.basename(w.path) for w in written] == ["pore.ply"]
    (model,) = slicer.util.getNodes("pore", scene=views.scene).values()
    assert model.IsA("vtkMRMLModelNode") and model.GetPolyData().GetNumberOfPolys() > 0
    with pytest.raises(ValueError, match="ROI"):
        logic.startRoiEdit(labels, None)
    roi = views.scene.AddNewNodeByClass("vtkMRMLMarkupsROINode")
    roi.SetCenter(*np.mean(labels.editor.store.image.bounds_ras(0, edges=True), axis=0))
    roi.SetSize(4.0, 4.0, 4.0)
    trip = logic.startRoiEdit(labels, roi)
    assert (trip.labels() == 1).any() and trip.write_back() is None
    bigvolume_logic.close()


def test_label_names_of_any_image(monkeypatch, tmp_path):
    _, _, segment = _load_segment(monkeypatch, tmp_path)
    path = tmp_path / "image.ome.zarr"
    bigvolume.write_pyramid(np.zeros((8, 8, 8), np.uint8), path)
    logic = segment.BigVolumeSegmentLogic()
    assert logic.labelNames(str(path)) == [] and logic.labelNames() == []  # and none open
    zarr.open_group(path, mode="r+").create_group("labels").attrs.put({"ome": {"version": "0.5", "labels": ["cells"]}})
    assert logic.labelNames(str(path)) == ["cells"]


class ScriptedEffect:
    """What qSlicerSegmentEditorScriptedEffect gives a Python effect, over a real vtkMRMLSegmentEditorNode."""

    NotConfirmed, ConfirmedWithoutDialog, ConfirmedWithDialog = 0, 1, 2

    def __init__(self, editor_node, confirmation=1):
        self.editor_node, self.actors, self.name, self.title = editor_node, [], "", ""
        self.perSegment = self.requireSegments = True
        self.confirmation = confirmation  # what confirmCurrentSegmentVisible answers

    def parameterSetNode(self):
        return self.editor_node

    def setCommonParameterDefault(self, name, value):
        if not self.editor_node.GetAttribute(name):
            self.setCommonParameter(name, value)

    def setCommonParameter(self, name, value):
        self.editor_node.SetAttribute(name, str(value))

    def doubleParameter(self, name):
        return float(self.editor_node.GetAttribute(name))

    def integerParameter(self, name):
        return int(float(self.editor_node.GetAttribute(name)))

    def confirmCurrentSegmentVisible(self):
        return self.confirmation

    def addActor2D(self, view, actor):
        self.actors.append(actor)

    def removeActor2D(self, view, actor):
        self.actors.remove(actor)

    def scheduleRender(self, view):
        pass


class SliceWidget:
    """What a qMRMLSliceWidget gives an effect: its class name, slice logic and render window's screen size."""

    def __init__(self, logic):
        self.logic = logic

    def className(self):
        return "qMRMLSliceWidget"

    def sliceLogic(self):
        return self.logic

    def sliceView(self):
        return types.SimpleNamespace(renderWindow=lambda: types.SimpleNamespace(GetScreenSize=lambda: (1920, 1080)))


def _effects(monkeypatch):
    """The SegmentEditorBigVolumeEffects package, imported with Slicer's effect base class and Qt stood in."""
    base = types.ModuleType("SegmentEditorEffects")
    base.AbstractScriptedSegmentEditorEffect = type(
        "AbstractScriptedSegmentEditorEffect", (), {"__init__": lambda self, scriptedEffect: setattr(
            self, "scriptedEffect", scriptedEffect)})
    monkeypatch.setitem(sys.modules, "SegmentEditorEffects", base)
    monkeypatch.setitem(sys.modules, "ctk", types.ModuleType("ctk"))
    monkeypatch.syspath_prepend(os.path.join(ROOT, "BigVolumeSegment"))
    for name in [n for n in sys.modules if n.startswith("SegmentEditorBigVolumeEffects")]:
        monkeypatch.delitem(sys.modules, name)
    import SegmentEditorBigVolumeEffects

    return SegmentEditorBigVolumeEffects


def _interactor(x, y, shift=False, key=""):
    interactor = vtk.vtkRenderWindowInteractor()
    interactor.SetEventPosition(int(x), int(y))
    interactor.SetShiftKey(shift)
    interactor.SetKeySym(key)
    return interactor


def test_paint_and_draw_effects_turn_view_events_into_operations(monkeypatch, tmp_path, image_path):
    views = OffscreenScene()
    slicer.vtkSlicerSegmentationsModuleLogic().SetMRMLScene(views.scene)
    red = views.add_view("Red", "Axial", (128, 128))
    _, bigvolume_logic, segment = _load_segment(monkeypatch, tmp_path, views.scene)
    monkeypatch.setattr(slicer.app, "testingEnabled", lambda: True, raising=False)
    bigvolume_logic.open(image_path)
    labels = segment.BigVolumeSegmentLogic().openLabels("phases")
    labels.node.GetSegmentation().AddEmptySegment("pore", "pore", [0.2, 0.4, 1.0])
    editor_node = views.scene.AddNewNodeByClass("vtkMRMLSegmentEditorNode")
    editor_node.SetAndObserveSegmentationNode(labels.node)
    editor_node.SetSelectedSegmentID("pore")
    effects = _effects(monkeypatch)
    scripted = ScriptedEffect(editor_node)
    paint = effects.SegmentEditorBigVolumePaintEffect(scripted)
    assert scripted.name == "BigVolume Paint"
    paint.setMRMLDefaults()
    scripted.setCommonParameter("BrushDiameterIsRelative", 0)
    scripted.setCommonParameter("BrushAbsoluteDiameter", 6.0)
    view = SliceWidget(views.logics["Red"])
    Event = vtk.vtkCommand
    assert paint.processInteractionEvents(_interactor(50, 60), Event.LeftButtonPressEvent, view) is True
    assert paint.processInteractionEvents(_interactor(70, 60), Event.MouseMoveEvent, view) is True
    assert paint.processInteractionEvents(_interactor(70, 60), Event.LeftButtonReleaseEvent, view) is True
    labels.editor.wait()
    whole = tuple((0, n) for n in labels.editor.store.levels[0].volume_shape)
    painted = labels.editor.store.read_box(0, whole) == 1
    assert painted.any() and len(np.nonzero(painted.any(axis=(1, 2)))[0]) <= 2  # a disc: one displayed slice
    assert paint.processInteractionEvents(_interactor(70, 60, shift=True), Event.MouseWheelForwardEvent, view)
    assert scripted.doubleParameter("BrushAbsoluteDiameter") == pytest.approx(7.2)
    assert paint.processInteractionEvents(_interactor(70, 60), Event.MouseMoveEvent, view) is False  # not painting
    paint.deactivate()
    assert scripted.actors == []
    # A hidden segment the user would not show (the dialog took the release): nothing starts, nothing leaks.
    refused = effects.SegmentEditorBigVolumePaintEffect(ScriptedEffect(editor_node, confirmation=0))
    assert refused.processInteractionEvents(_interactor(50, 60), Event.LeftButtonPressEvent, view) is True
    assert refused.strokes == {}
    assert refused.processInteractionEvents(_interactor(80, 60), Event.MouseMoveEvent, view) is False

    draw = effects.SegmentEditorBigVolumeDrawEffect(ScriptedEffect(editor_node))
    for x, y in ((30, 30), (60, 30), (60, 50)):
        draw.processInteractionEvents(_interactor(x, y), Event.LeftButtonPressEvent, view)
        draw.processInteractionEvents(_interactor(x, y), Event.LeftButtonReleaseEvent, view)
    assert draw.processInteractionEvents(_interactor(60, 50, key="x"), Event.KeyPressEvent, view)  # last point out
    draw.processInteractionEvents(_interactor(30, 50), Event.LeftButtonPressEvent, view)
    draw.processInteractionEvents(_interactor(30, 50), Event.LeftButtonReleaseEvent, view)
    before = labels.editor.store.read_box(0, whole) == 1
    assert draw.processInteractionEvents(_interactor(30, 50), Event.RightButtonPressEvent, view) is False  # may zoom
    assert draw.processInteractionEvents(_interactor(30, 50), Event.RightButtonReleaseEvent, view) is True
    labels.editor.wait()
    filled = (labels.editor.store.read_box(0, whole) == 1) & ~before
    spacing = labels.editor.store.levels[0].voxel_size_mm
    area = filled.sum() * spacing[0] * spacing[1]
    pixel = red.GetFieldOfView()[0] / 128
    assert area == pytest.approx(30 * 20 / 2 * pixel * pixel, rel=0.15)  # (60, 50) went: a right triangle
    draw.onUndo()  # what the effect's Undo button and the Segment Editor's undo keys do while it is active
    labels.editor.wait()
    assert np.array_equal(labels.editor.store.read_box(0, whole) == 1, before)
    bigvolume_logic.close()


def test_effects_leave_unbound_segmentations_to_slicer(monkeypatch, tmp_path):
    views = OffscreenScene()
    slicer.vtkSlicerSegmentationsModuleLogic().SetMRMLScene(views.scene)
    views.add_view("Red", "Axial", (64, 64))
    _load_segment(monkeypatch, tmp_path, views.scene)
    effects = _effects(monkeypatch)
    editor_node = views.scene.AddNewNodeByClass("vtkMRMLSegmentEditorNode")
    editor_node.SetAndObserveSegmentationNode(views.scene.AddNewNodeByClass("vtkMRMLSegmentationNode"))
    warnings = []
    monkeypatch.setattr(slicer.util, "warningDisplay", warnings.append)
    paint = effects.SegmentEditorBigVolumePaintEffect(ScriptedEffect(editor_node))
    view = SliceWidget(views.logics["Red"])
    # The warning dialog takes the release: the press is kept from the view, and nothing is started.
    assert paint.processInteractionEvents(_interactor(1, 1), vtk.vtkCommand.LeftButtonPressEvent, view) is True
    assert warnings and "not bound" in warnings[0] and paint.strokes == {}
