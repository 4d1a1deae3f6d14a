import logging
import os
import traceback

import slicer
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.ScriptedLoadableModule import *
from slicer.util import VTKObservationMixin

# The Segment Editor effects this module registers, each a file of the SegmentEditorBigVolumeEffects package (the
# GUI glue; the file name is the class name: Slicer's qSlicerSegmentEditorScriptedEffect.setPythonSource finds
# the class by it, in the package named by the folder).
EFFECTS = ("SegmentEditorBigVolumePaintEffect", "SegmentEditorBigVolumeEraseEffect",
           "SegmentEditorBigVolumeDrawEffect", "SegmentEditorBigVolumeThresholdEffect")


#
# BigVolumeSegment
#


class BigVolumeSegment(ScriptedLoadableModule):
    """Segmentation of volumes far larger than memory: label pyramids beside BigVolume images."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("BigVolume Segment")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = ["BigVolume", "Segmentations"]
        self.parent.contributors = ["BigVolume developers"]
        self.parent.helpText = _("""
Segmentation of BigVolume images, stored as OME-Zarr label pyramids beside the image (or in a separate local
store). Open a label pyramid here: a segmentation bound to it appears, streamed into every slice view at the
level each view shows. Edit it in the Segment Editor with the BigVolume Paint, Erase, Draw and Threshold
effects, which edit at the displayed level and write every edit to full resolution in the background; any
other effect works on an ROI loaded at full resolution and written back. Statistics and meshes are computed at
full resolution, chunk by chunk.
""")
        self.parent.acknowledgementText = _("""
BigVolume builds on zarr-python, numpy, VTK and the OME-NGFF specification.
""")
        slicer.app.connect("startupCompleted()", registerEditorEffects)


def registerEditorEffects():
    """Register BigVolume's effects with the Segment Editor, as Slicer's scripted-effect template does."""
    import qSlicerSegmentationsEditorEffectsPythonQt as qSlicerSegmentationsEditorEffects

    import SegmentEditorBigVolumeEffects  # the effect classes, which setPythonSource reuses

    folder = os.path.join(os.path.dirname(__file__), "SegmentEditorBigVolumeEffects")
    for name in EFFECTS:
        try:  # one effect that fails to load must not keep the others away
            if not hasattr(SegmentEditorBigVolumeEffects, name):  # else setPythonSource would load the file alone
                raise ImportError(f"SegmentEditorBigVolumeEffects does not export {name}")
            instance = qSlicerSegmentationsEditorEffects.qSlicerSegmentEditorScriptedEffect(None)
            instance.setPythonSource(os.path.join(folder, name + ".py").replace("\\", "/"))
            instance.self().register()
        except Exception:
            logging.error(f"BigVolume: the {name} Segment Editor effect could not be registered:\n"
                          f"{traceback.format_exc()}")


#
# BigVolumeSegmentWidget
#


class BigVolumeSegmentWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Thin GUI glue: the work is done by BigVolumeSegmentLogic and below it BigVolumeLib's Qt-free session."""

    statusIntervalMs = 500

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self.roundTrip = None
        self._statusTimer = None

    def setup(self) -> None:
        import qt

        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/BigVolumeSegment.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = BigVolumeSegmentLogic()

        self.ui.openLabelsButton.connect("clicked(bool)", self.onOpenLabels)
        self.ui.closeLabelsButton.connect("clicked(bool)", self.onCloseLabels)
        self.ui.segmentEditorButton.connect("clicked(bool)", self.onSegmentEditor)
        self.ui.statisticsButton.connect("clicked(bool)", self.onStatistics)
        self.ui.exportMeshesButton.connect("clicked(bool)", self.onExportMeshes)
        self.ui.loadRoiButton.connect("clicked(bool)", self.onLoadRoi)
        self.ui.writeBackButton.connect("clicked(bool)", self.onWriteBack)
        self.ui.discardRoiButton.connect("clicked(bool)", self.onDiscardRoi)

        self._statusTimer = qt.QTimer()
        self._statusTimer.setInterval(self.statusIntervalMs)
        self._statusTimer.connect("timeout()", self.updateStatus)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.updateLabelNames()
        self.updateButtons()

    def enter(self) -> None:
        self.updateLabelNames()
        self._statusTimer.start()

    def exit(self) -> None:
        self._statusTimer.stop()

    def cleanup(self) -> None:
        self.removeObservers()
        if self._statusTimer is not None:
            self._statusTimer.stop()

    def onSceneEndClose(self, caller, event) -> None:
        self.roundTrip = None
        self.updateLabelNames()
        self.updateButtons()

    # -- label pyramids ------------------------------------------------------------------------------------
    def updateLabelNames(self) -> None:
        current = self.ui.labelNameComboBox.currentText
        self.ui.labelNameComboBox.clear()
        try:
            names = self.logic.labelNames()
        except ImportError:  # BigVolume's Python packages are installed when a label pyramid is first opened
            names = []
        for name in names:
            self.ui.labelNameComboBox.addItem(name)
        if current:
            self.ui.labelNameComboBox.setEditText(current)

    def currentLabels(self):
        return self.logic.openedLabels(self.ui.labelNameComboBox.currentText.strip())

    def updateButtons(self) -> None:
        opened = self.currentLabels() is not None
        for button in (self.ui.closeLabelsButton, self.ui.segmentEditorButton, self.ui.statisticsButton,
                       self.ui.exportMeshesButton, self.ui.loadRoiButton):
            button.enabled = opened
        self.ui.writeBackButton.enabled = self.ui.discardRoiButton.enabled = self.roundTrip is not None

    def updateStatus(self) -> None:
        self.ui.labelsStatusLabel.text = self.logic.statusText()
        self.updateButtons()

    def onOpenLabels(self) -> None:
        name = self.ui.labelNameComboBox.currentText.strip()
        with slicer.util.tryWithErrorDisplay(_("Failed to open the label pyramid."), waitCursor=True):
            from BigVolume import ensurePythonDependencies

            ensurePythonDependencies()  # BigVolume's requirements: this module runs on the same core
            store = self.ui.separateStorePathLineEdit.currentPath or None
            self.logic.openLabels(name, store=store)
            self.updateLabelNames()
            self.ui.labelNameComboBox.setEditText(name)
        self.updateStatus()

    def onCloseLabels(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to close the label pyramid."), waitCursor=True):
            self.logic.closeLabels(self.ui.labelNameComboBox.currentText.strip())
        self.updateStatus()

    def onSegmentEditor(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to open the Segment Editor."), waitCursor=True):
            self.logic.showInSegmentEditor(self.currentLabels())

    # -- full resolution -----------------------------------------------------------------------------------
    def onStatistics(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to compute the statistics."), waitCursor=True):
            table = self.logic.statisticsTable(self.currentLabels(), self.ui.levelSpinBox.value)
            self.logic.showTable(table)

    def onExportMeshes(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to export the meshes."), waitCursor=True):
            written = self.logic.exportMeshes(self.currentLabels(), self.ui.meshFolderLineEdit.currentPath,
                                              level=self.ui.levelSpinBox.value,
                                              format=self.ui.meshFormatComboBox.currentText,
                                              smoothing=self.ui.smoothingSpinBox.value,
                                              loadModels=self.ui.loadModelsCheckBox.checked)
            slicer.util.showStatusMessage(_("{count} meshes written.").format(count=len(written)), 5000)

    # -- ROI round trip ------------------------------------------------------------------------------------
    def onLoadRoi(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to load the ROI."), waitCursor=True):
            if self.roundTrip is not None:
                self.roundTrip.discard()
            self.roundTrip = self.logic.startRoiEdit(self.currentLabels(), self.ui.roiSelector.currentNode())
        self.updateButtons()

    def onWriteBack(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to write the ROI back."), waitCursor=True):
            self.roundTrip.write_back()
            self.roundTrip = None
        self.updateButtons()

    def onDiscardRoi(self) -> None:
        if self.roundTrip is not None:
            self.roundTrip.discard()
            self.roundTrip = None
        self.updateButtons()


#
# BigVolumeSegmentLogic
#


class BigVolumeSegmentLogic(ScriptedLoadableModuleLogic):
    """What the panel and the Python console call; the work is in BigVolumeLib (Qt-free, tested with MRML).
    From the console: `logic = slicer.util.getModuleLogic("BigVolumeSegment")`."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)

    @staticmethod
    def session():
        """The BigVolume module's session (the image it streams and its label pyramids)."""
        return slicer.util.getModuleLogic("BigVolume").session

    def labelNames(self, location=None):
        """Names of the OME-NGFF label images stored beside the image at `location` (default: the open one)."""
        from bigvolume.labels.label_store import label_names

        if location is None:
            session = self.session()
            if not session.is_open:
                return []
            location = session.image.location
        return label_names(location)

    def openedLabels(self, name):
        return self.session().labels.get(name) if name else None

    def openLabels(self, name, store=None):
        """Open the label pyramid `name` of the open image, creating it if it does not exist; its BoundLabels."""
        from bigvolume.labels.label_store import label_names

        session = self.session()
        if not name:
            raise ValueError(_("Give the label pyramid a name."))
        if not session.is_open:
            raise RuntimeError(_("Open an image in the BigVolume module first."))
        existing = label_names(store or session.image.location)
        return session.open_labels(name, create=name not in existing, store=store)

    def closeLabels(self, name):
        self.session().close_labels(name)

    def statusText(self):
        session = self.session()
        lines = [labels.status_line() for labels in session.labels.values()]
        return "\n".join(lines) if lines else _("No label pyramid open.")

    def showInSegmentEditor(self, labels):
        """Switch to the Segment Editor with the bound segmentation and its source volume selected."""
        slicer.util.selectModule("SegmentEditor")
        editor = slicer.modules.segmenteditor.widgetRepresentation().self().editor
        # The Segment Editor's own history would restore the bound node's segment list (an undo after adding a
        # segment removes it, and with it the segment's voxels in the pyramid): the pyramid keeps the history.
        editor.setMaximumNumberOfUndoStates(0)
        editor.setSegmentationNode(labels.node)
        editor.setSourceVolumeNode(labels.binding.source_volume)

    def statisticsTable(self, labels, level=0):
        from bigvolume.labels.statistics import segment_statistics
        from BigVolumeLib.segmentation.results import statistics_table

        return statistics_table(slicer.mrmlScene, segment_statistics(labels.editor, level=level),
                                name=f"{labels.name} statistics (level {level})")

    @staticmethod
    def showTable(table):
        layoutManager = slicer.app.layoutManager()
        layoutManager.setLayout(slicer.modules.tables.logic().GetLayoutWithTable(layoutManager.layout))
        slicer.app.applicationLogic().GetSelectionNode().SetActiveTableID(table.GetID())
        slicer.app.applicationLogic().PropagateTableSelection()

    def exportMeshes(self, labels, folder, level=0, format="stl", smoothing=0.5, loadModels=True):
        """Write every segment's mesh at `level` into `folder`; with loadModels, also as model nodes."""
        from bigvolume.labels.meshes import export_meshes, segment_meshes
        from BigVolumeLib.segmentation.results import mesh_model_node

        if not folder:
            raise ValueError(_("Choose a folder for the meshes."))
        written = export_meshes(labels.editor, folder, level=level, format=format, smoothing=smoothing)
        if loadModels:
            for mesh in segment_meshes(labels.editor, level=level, smoothing=smoothing):
                if len(mesh.triangles):
                    mesh_model_node(slicer.mrmlScene, mesh, color=labels.editor.store.segment(mesh.value).color)
        return [w for w in written if w.path is not None]

    def startRoiEdit(self, labels, roiNode, level=0):
        from BigVolumeLib.segmentation.round_trip import RoiRoundTrip

        if roiNode is None:
            raise ValueError(_("Choose or place a Markups ROI around the region to edit."))
        return RoiRoundTrip(labels.binding, roiNode, level=level)


#
# BigVolumeSegmentTest
#


class BigVolumeSegmentTest(ScriptedLoadableModuleTest):
    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_LabelNames()
        self.setUp()
        self.test_EditStatisticsMeshesAndEffects()

    def test_LabelNames(self):
        import tempfile

        import numpy as np
        import zarr

        import bigvolume

        self.delayDisplay("Writing an image without labels")
        path = os.path.join(tempfile.mkdtemp(), "image.ome.zarr")
        bigvolume.write_pyramid(np.zeros((8, 8, 8), np.uint8), path)
        logic = BigVolumeSegmentLogic()
        self.assertEqual(logic.labelNames(path), [])

        self.delayDisplay("Adding a labels group")
        zarr.open_group(path, mode="r+").create_group("labels").attrs.put({"ome": {"version": "0.5", "labels": ["cells"]}})
        self.assertEqual(logic.labelNames(path), ["cells"])
        self.delayDisplay("Test passed")

    def test_EditStatisticsMeshesAndEffects(self):
        import tempfile

        import bigvolume
        from bigvolume.tools.synthetic import SyntheticRockCore

        self.delayDisplay("Streaming a small image and creating a label pyramid beside it")
        folder = tempfile.mkdtemp()
        path = os.path.join(folder, "core.ome.zarr")
        bigvolume.write_pyramid(SyntheticRockCore((48, 64, 64), seed=1)[0:48], path, coarsest=16)
        bigvolumeLogic = slicer.util.getModuleLogic("BigVolume")
        bigvolumeLogic.open(path)
        logic = BigVolumeSegmentLogic()
        labels = logic.openLabels("phases")
        labels.node.GetSegmentation().AddEmptySegment("pore", "pore", [0.2, 0.4, 1.0])
        self.assertEqual(labels.editor.store.segment("pore").value, 1)

        self.delayDisplay("Painting in the Red view")
        red = slicer.app.layoutManager().sliceWidget("Red").sliceLogic().GetSliceNode()
        width, height = red.GetDimensions()[:2]
        labels.editing.submit(labels.editing.stroke(red, [(width / 2, height / 2)], "pore", 6.0, sphere=True))
        table = logic.statisticsTable(labels)
        self.assertGreater(int(table.GetCellText(0, 2)), 0)
        written = logic.exportMeshes(labels, os.path.join(folder, "meshes"), loadModels=True)
        self.assertEqual(len(written), 1)

        self.delayDisplay("The BigVolume effects in the Segment Editor")
        logic.showInSegmentEditor(labels)
        editor = slicer.modules.segmenteditor.widgetRepresentation().self().editor
        for name in ("BigVolume Paint", "BigVolume Erase", "BigVolume Draw", "BigVolume Threshold"):
            editor.setActiveEffectByName(name)
            self.assertIsNotNone(editor.activeEffect(), name)
            self.assertEqual(editor.activeEffect().name, name)
        editor.setActiveEffectByName("")

        self.delayDisplay("Editing an ROI with any effect and writing it back")
        roi = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsROINode")
        lo, hi = labels.editor.store.image.bounds_ras(0, edges=True)
        roi.SetCenter(*((lo + hi) / 2))
        roi.SetSize(*((hi - lo) / 4))
        trip = logic.startRoiEdit(labels, roi)
        self.assertIsNone(trip.write_back())  # nothing edited: nothing written
        bigvolumeLogic.close()
        self.delayDisplay("Test passed")
