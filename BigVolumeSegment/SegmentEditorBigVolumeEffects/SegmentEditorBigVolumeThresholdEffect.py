import vtk

import ctk
import qt
import slicer
from slicer.i18n import tr as _

from SegmentEditorEffects import AbstractScriptedSegmentEditorEffect

from .effect_base import BigVolumeEffectMixin


class SegmentEditorBigVolumeThresholdEffect(BigVolumeEffectMixin, AbstractScriptedSegmentEditorEffect):
    """Threshold a BigVolume image into a segment: previewed in every slice view at the level it shows, applied
    at full resolution in an ROI or the whole volume by the background writer, with progress and cancel.

    The preview thresholds what each view's image layer shows (the streamed proxy at that view's level), as
    Slicer's Threshold effect previews on the resliced source layer.
    """

    iconName = "SegmentEditorBigVolumeThreshold.png"
    previewIntervalMs = 200

    def __init__(self, scriptedEffect):
        scriptedEffect.name = "BigVolume Threshold"  # not translated: it identifies the effect
        scriptedEffect.title = _("BigVolume Threshold")
        scriptedEffect.perSegment = True
        scriptedEffect.requireSegments = True
        AbstractScriptedSegmentEditorEffect.__init__(self, scriptedEffect)
        self.previews = {}  # view widget -> (threshold filter, colour map, actor)
        self.timer = qt.QTimer()
        self.timer.setInterval(self.previewIntervalMs)
        self.timer.connect("timeout()", self.onTimer)
        self.submitted = None  # sequence number of the threshold being written

    def clone(self):
        import qSlicerSegmentationsEditorEffectsPythonQt as effects

        clonedEffect = effects.qSlicerSegmentEditorScriptedEffect(None)
        clonedEffect.setPythonSource(__file__.replace("\\", "/"))
        return clonedEffect

    def helpText(self):
        return "<html>" + _("""Set the selected segment to the voxels whose intensity is in the range.<br>
The slice views preview it at the level they show. <b>Apply</b> writes it at full resolution within the ROI
(or the whole volume when none is chosen) in the background; <b>Cancel</b> takes it back.""") + "</html>"

    def setupOptionsFrame(self):
        self.rangeWidget = ctk.ctkRangeWidget()
        self.rangeWidget.spinBoxAlignment = qt.Qt.AlignTop
        self.rangeWidget.singleStep = 0.01
        self.scriptedEffect.addLabeledOptionsWidget(_("Threshold range:"), self.rangeWidget)
        self.roiSelector = slicer.qMRMLNodeComboBox()
        self.roiSelector.nodeTypes = ["vtkMRMLMarkupsROINode"]
        self.roiSelector.noneEnabled = True
        self.roiSelector.noneDisplay = _("Whole volume")
        self.roiSelector.addEnabled = False
        self.roiSelector.removeEnabled = False
        self.roiSelector.setMRMLScene(slicer.mrmlScene)
        self.roiSelector.setToolTip(_("Threshold within this ROI only (its bounding box)."))
        self.scriptedEffect.addLabeledOptionsWidget(_("Region:"), self.roiSelector)
        self.applyButton = qt.QPushButton(_("Apply"))
        self.cancelButton = qt.QPushButton(_("Cancel"))
        self.cancelButton.enabled = False
        buttons = qt.QHBoxLayout()
        buttons.addWidget(self.applyButton)
        buttons.addWidget(self.cancelButton)
        self.scriptedEffect.addOptionsWidget(buttons)
        self.progressLabel = qt.QLabel()
        self.scriptedEffect.addOptionsWidget(self.progressLabel)
        self.addUndoRedo()
        self.rangeWidget.connect("valuesChanged(double,double)", self.updateMRMLFromGUI)
        self.applyButton.connect("clicked()", self.onApply)
        self.cancelButton.connect("clicked()", self.onCancel)

    def setMRMLDefaults(self):
        self.scriptedEffect.setParameterDefault("MinimumThreshold", 0.0)
        self.scriptedEffect.setParameterDefault("MaximumThreshold", 0.0)

    def activate(self):
        self.takeUndoKeys()
        self.sourceVolumeNodeChanged()
        self.updateGUIFromMRML()
        self.timer.start()

    def sourceVolumeNodeChanged(self):
        """The range slider spans the source volume's intensities (a new source volume: a new range)."""
        source = self.scriptedEffect.parameterSetNode().GetSourceVolumeNode()
        if source is None or source.GetImageData() is None:
            return
        low, high = source.GetImageData().GetScalarRange()
        wasBlocked = self.rangeWidget.blockSignals(True)
        self.rangeWidget.setRange(low, high)
        self.rangeWidget.blockSignals(wasBlocked)
        if self.scriptedEffect.doubleParameter("MinimumThreshold") == \
                self.scriptedEffect.doubleParameter("MaximumThreshold"):
            with slicer.util.NodeModify(self.scriptedEffect.parameterSetNode()):
                self.scriptedEffect.setParameter("MinimumThreshold", low + (high - low) * 0.25)
                self.scriptedEffect.setParameter("MaximumThreshold", high)

    def deactivate(self):
        self.releaseUndoKeys()
        self.timer.stop()
        for viewWidget, (_threshold, _colours, actor) in self.previews.items():
            self.scriptedEffect.removeActor2D(viewWidget, actor)
        self.previews.clear()

    def updateGUIFromMRML(self):
        wasBlocked = self.rangeWidget.blockSignals(True)
        self.rangeWidget.setValues(self.scriptedEffect.doubleParameter("MinimumThreshold"),
                                   self.scriptedEffect.doubleParameter("MaximumThreshold"))
        self.rangeWidget.blockSignals(wasBlocked)

    def updateMRMLFromGUI(self):
        with slicer.util.NodeModify(self.scriptedEffect.parameterSetNode()):  # one update for both values
            self.scriptedEffect.setParameter("MinimumThreshold", self.rangeWidget.minimumValue)
            self.scriptedEffect.setParameter("MaximumThreshold", self.rangeWidget.maximumValue)

    def cleanup(self):
        self.timer.disconnect("timeout()", self.onTimer)

    # -- preview ---------------------------------------------------------------------------------------
    def onTimer(self):
        self._updatePreviews()
        self._updateProgress()

    def _updatePreviews(self):
        segmentationNode = self.scriptedEffect.parameterSetNode().GetSegmentationNode()
        segmentID = self.selectedSegmentID()
        segment = segmentationNode.GetSegmentation().GetSegment(segmentID) if segmentationNode and segmentID else None
        if segment is None:
            return
        color = segment.GetColor()
        low = self.scriptedEffect.doubleParameter("MinimumThreshold")
        high = self.scriptedEffect.doubleParameter("MaximumThreshold")
        layoutManager = slicer.app.layoutManager()
        for name in layoutManager.sliceViewNames():
            viewWidget = layoutManager.sliceWidget(name)
            layer = self._imageLayer(viewWidget)
            if not viewWidget.isVisible() or layer is None or \
                    not self.scriptedEffect.segmentationDisplayableInView(viewWidget.mrmlSliceNode()):
                continue
            if viewWidget not in self.previews:
                self.previews[viewWidget] = self._previewPipeline(viewWidget)
            threshold, colours, _actor = self.previews[viewWidget]
            threshold.SetInputConnection(layer.GetReslice().GetOutputPort())  # the layer may have changed
            threshold.ThresholdBetween(low, high)
            colours.GetLookupTable().SetTableValue(1, color[0], color[1], color[2], 0.6)
            threshold.Update()
            self.scriptedEffect.scheduleRender(viewWidget)

    @staticmethod
    def _imageLayer(viewWidget):
        """The view's layer that shows an image (BigVolume streams into the background by default)."""
        logic = viewWidget.sliceLogic()
        for layer in (logic.GetBackgroundLayer(), logic.GetForegroundLayer()):
            if layer is not None and layer.GetVolumeNode() is not None:
                return layer
        return None

    def _previewPipeline(self, viewWidget):
        """Threshold of what the view's image layer shows (its resliced 2D image), coloured, drawn over it."""
        threshold = vtk.vtkImageThreshold()
        threshold.SetInValue(1)
        threshold.SetOutValue(0)
        threshold.SetOutputScalarTypeToUnsignedChar()
        table = vtk.vtkLookupTable()
        table.SetNumberOfTableValues(2)
        table.SetTableRange(0, 1)
        table.SetTableValue(0, 0, 0, 0, 0)
        table.Build()
        colours = vtk.vtkImageMapToRGBA()
        colours.SetInputConnection(threshold.GetOutputPort())
        colours.SetLookupTable(table)
        mapper = vtk.vtkImageMapper()
        mapper.SetInputConnection(colours.GetOutputPort())
        mapper.SetColorWindow(255)
        mapper.SetColorLevel(127.5)
        actor = vtk.vtkActor2D()
        actor.SetMapper(mapper)
        self.scriptedEffect.addActor2D(viewWidget, actor)
        return threshold, colours, actor

    # -- apply, progress, cancel -----------------------------------------------------------------------
    def onApply(self):
        editing = self.requireEditing()
        if editing is None:
            return
        with slicer.util.tryWithErrorDisplay(_("Failed to apply the threshold."), waitCursor=True):
            operation = editing.threshold(self.selectedSegmentID(), self.scriptedEffect.doubleParameter("MinimumThreshold"),
                                          self.scriptedEffect.doubleParameter("MaximumThreshold"),
                                          self.roiSelector.currentNode())
            self.submitted = editing.submit(operation)
            self.cancelButton.enabled = True

    def onCancel(self):
        """Take back the threshold: dropped if still queued; if the writer is writing it, it stops at its next
        chunk and puts back what it wrote (on a thread: the panel stays responsive meanwhile)."""
        import threading

        editing = self.editing()
        if editing is None or self.submitted is None:
            return
        self.cancelButton.enabled = False
        self.progressLabel.text = _("Cancelling...")
        seq, self.submitted = self.submitted, None
        threading.Thread(target=editing.editor.cancel, args=(seq,), name="bigvolume-threshold-cancel",
                         daemon=True).start()

    def _updateProgress(self):
        if self.submitted is None:
            return
        editing = self.editing()
        if editing is None:
            return
        status = editing.editor.status()
        if status["pending"] == 0:
            self.progressLabel.text = _("Written at full resolution.")
            self.submitted = None
            self.cancelButton.enabled = False
        elif status["chunks_total"]:
            self.progressLabel.text = _("Writing: {done} of {total} chunks").format(done=status["chunks_done"],
                                                                                 total=status["chunks_total"])
        else:
            self.progressLabel.text = editing.editor.describe_backlog()
