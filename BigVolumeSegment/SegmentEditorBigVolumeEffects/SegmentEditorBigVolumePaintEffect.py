import vtk

import qt
import slicer
from slicer.i18n import tr as _

from SegmentEditorEffects import AbstractScriptedSegmentEditorEffect

from .effect_base import BigVolumeEffectMixin


class SegmentEditorBigVolumePaintEffect(BigVolumeEffectMixin, AbstractScriptedSegmentEditorEffect):
    """Paint on a label pyramid in any slice view, at any zoom and orientation.

    The stroke is recorded in view pixels while the button is down (a brush circle follows the mouse) and,
    as Slicer's Paint effect with its default delayed paint, applied on release: BigVolume's editing engine
    turns it into one brush operation in RAS (the brush diameter and the strokes' interpolation follow Slicer's
    Paint and share its parameters), journals it, and every view shows it at its own level while the
    background writer writes it at full resolution.
    """

    erase = False
    iconName = "SegmentEditorBigVolumePaint.png"
    effectName = "BigVolume Paint"  # not translated: it identifies the effect

    def __init__(self, scriptedEffect):
        scriptedEffect.name = self.effectName
        scriptedEffect.title = _("BigVolume Erase") if self.erase else _("BigVolume Paint")
        scriptedEffect.perSegment = True
        scriptedEffect.requireSegments = True
        AbstractScriptedSegmentEditorEffect.__init__(self, scriptedEffect)
        self.strokes = {}  # view widget -> view pixels of the stroke being drawn
        self.brushes = {}  # view widget -> (circle source, actor)

    def clone(self):
        import qSlicerSegmentationsEditorEffectsPythonQt as effects

        clonedEffect = effects.qSlicerSegmentEditorScriptedEffect(None)
        clonedEffect.setPythonSource(__file__.replace("\\", "/"))
        return clonedEffect

    def helpText(self):
        return "<html>" + _("""Paint on a BigVolume label pyramid, at full resolution whatever the zoom.<br>
<p><ul style="margin: 0">
<li><b>Left-button drag</b>: paint; the stroke is applied on release.</li>
<li><b>Shift + mouse wheel</b> or <b>+/-</b>: brush size.</li>
<li><b>z / y</b> (and the platform's undo / redo keys): undo / redo edits of the label pyramid.</li>
</ul><p>
Masking settings apply. The view that painted shows the stroke at once, at its own level; the writer writes it
at full resolution in the background.""") + "</html>"

    # -- options ---------------------------------------------------------------------------------------
    def setupOptionsFrame(self):
        self.diameterSpinBox = qt.QDoubleSpinBox()
        self.diameterSpinBox.setRange(0.01, 10000.0)
        self.diameterSpinBox.setDecimals(2)
        self.diameterSpinBox.setToolTip(_("Brush diameter, in % of the screen height or in mm."))
        self.relativeCheckBox = qt.QCheckBox(_("% of screen"))
        self.relativeCheckBox.setToolTip(_("Diameter relative to the screen (the brush keeps its size on the screen "
                                           "when zooming), as Slicer's Paint effect."))
        diameterLayout = qt.QHBoxLayout()
        diameterLayout.addWidget(self.diameterSpinBox)
        diameterLayout.addWidget(self.relativeCheckBox)
        self.scriptedEffect.addLabeledOptionsWidget(_("Diameter:"), diameterLayout)
        self.sphereCheckBox = qt.QCheckBox(_("Sphere brush"))
        self.sphereCheckBox.setToolTip(_("Paint a sphere in 3D; otherwise a disc one displayed slice thick."))
        self.scriptedEffect.addOptionsWidget(self.sphereCheckBox)
        self.addUndoRedo()
        self.diameterSpinBox.connect("valueChanged(double)", self.updateMRMLFromGUI)
        self.relativeCheckBox.connect("toggled(bool)", self.updateMRMLFromGUI)
        self.sphereCheckBox.connect("toggled(bool)", self.updateMRMLFromGUI)

    def setMRMLDefaults(self):
        # Slicer's Paint effect's common parameters, so both effects share one brush.
        from BigVolumeLib.segmentation.editing import PAINT_DEFAULTS

        for name, value in PAINT_DEFAULTS.items():
            self.scriptedEffect.setCommonParameterDefault(name, value)

    def _relative(self):
        return self.scriptedEffect.integerParameter("BrushDiameterIsRelative") != 0

    def updateGUIFromMRML(self):
        relative = self._relative()
        wasBlocked = [w.blockSignals(True) for w in (self.diameterSpinBox, self.relativeCheckBox, self.sphereCheckBox)]
        self.relativeCheckBox.checked = relative
        self.diameterSpinBox.value = self.scriptedEffect.doubleParameter(
            "BrushRelativeDiameter" if relative else "BrushAbsoluteDiameter")
        self.diameterSpinBox.suffix = "%" if relative else " mm"
        self.sphereCheckBox.checked = self.scriptedEffect.integerParameter("BrushSphere") != 0
        for widget, blocked in zip((self.diameterSpinBox, self.relativeCheckBox, self.sphereCheckBox), wasBlocked):
            widget.blockSignals(blocked)

    def updateMRMLFromGUI(self):
        relativeBefore = self._relative()
        self.scriptedEffect.setCommonParameter("BrushDiameterIsRelative", 1 if self.relativeCheckBox.checked else 0)
        if self.relativeCheckBox.checked == relativeBefore:  # the number belongs to the current unit
            name = "BrushRelativeDiameter" if relativeBefore else "BrushAbsoluteDiameter"
            self.scriptedEffect.setCommonParameter(name, self.diameterSpinBox.value)
        self.scriptedEffect.setCommonParameter("BrushSphere", 1 if self.sphereCheckBox.checked else 0)
        self.updateGUIFromMRML()

    def _parameters(self):
        return {name: self.scriptedEffect.doubleParameter(name) for name in
                ("BrushAbsoluteDiameter", "BrushRelativeDiameter", "BrushDiameterIsRelative", "BrushSphere")}

    def _diameterMm(self, viewWidget):
        from BigVolumeLib.segmentation.editing import brush_diameter_mm

        screenHeight = viewWidget.sliceView().renderWindow().GetScreenSize()[1]
        return brush_diameter_mm(self._parameters(), viewWidget.sliceLogic().GetSliceNode(), screenHeight)

    def _scaleBrush(self, factor):
        name = "BrushRelativeDiameter" if self._relative() else "BrushAbsoluteDiameter"
        self.scriptedEffect.setCommonParameter(name, self.scriptedEffect.doubleParameter(name) * factor)
        if hasattr(self, "diameterSpinBox"):  # the options frame is built (it is, once the effect was shown)
            self.updateGUIFromMRML()

    # -- interaction -----------------------------------------------------------------------------------
    def processInteractionEvents(self, callerInteractor, eventId, viewWidget):
        inSlice, xy, modified = self.sliceEvent(callerInteractor, eventId, viewWidget)
        if not inSlice:
            return False
        if eventId == vtk.vtkCommand.LeftButtonPressEvent and not modified:
            if not self.startEdit():
                return True  # a dialog took the release: the press must not reach the view either
            self.strokes[viewWidget] = [xy]
            self._showBrush(viewWidget, xy)
            return True
        if eventId == vtk.vtkCommand.MouseMoveEvent:
            self._showBrush(viewWidget, xy)
            if viewWidget in self.strokes:
                self.strokes[viewWidget].append(xy)
                return True
            return False
        if eventId == vtk.vtkCommand.LeftButtonReleaseEvent and viewWidget in self.strokes:
            self._apply(viewWidget, self.strokes.pop(viewWidget))
            return True
        grow = (vtk.vtkCommand.MouseWheelForwardEvent, vtk.vtkCommand.MouseWheelLeftEvent)
        shrink = (vtk.vtkCommand.MouseWheelBackwardEvent, vtk.vtkCommand.MouseWheelRightEvent)
        if callerInteractor.GetShiftKey() and eventId in grow + shrink:  # as Slicer's Paint (a horizontal wheel too)
            self._scaleBrush(1.2 if eventId in grow else 0.8)
            self._showBrush(viewWidget, xy)
            return True
        if eventId == vtk.vtkCommand.KeyPressEvent and callerInteractor.GetKeySym() in ("plus", "equal", "minus",
                                                                                       "underscore"):
            self._scaleBrush(1.2 if callerInteractor.GetKeySym() in ("plus", "equal") else 0.8)
            return True
        if eventId == vtk.vtkCommand.LeaveEvent:
            self._hideBrush(viewWidget)
        return False

    def _apply(self, viewWidget, stroke):
        editing = self.editing()
        if editing is None:
            return
        with slicer.util.tryWithErrorDisplay(_("Failed to paint."), waitCursor=False):
            sliceNode = viewWidget.sliceLogic().GetSliceNode()
            operation = editing.stroke(sliceNode, stroke, self.selectedSegmentID(), self._diameterMm(viewWidget),
                                       sphere=self.scriptedEffect.integerParameter("BrushSphere") != 0,
                                       erase=self.erase)
            editing.submit(operation)

    # -- the brush circle ------------------------------------------------------------------------------
    def _showBrush(self, viewWidget, xy):
        from BigVolumeLib.segmentation.editing import mm_per_pixel

        if viewWidget not in self.brushes:
            circle = vtk.vtkRegularPolygonSource()
            circle.SetNumberOfSides(48)
            circle.GeneratePolygonOff()
            mapper = vtk.vtkPolyDataMapper2D()
            mapper.SetInputConnection(circle.GetOutputPort())
            actor = vtk.vtkActor2D()
            actor.SetMapper(mapper)
            actor.GetProperty().SetColor(1.0, 1.0, 0.0)
            self.scriptedEffect.addActor2D(viewWidget, actor)
            self.brushes[viewWidget] = (circle, actor)
        circle, actor = self.brushes[viewWidget]
        sliceNode = viewWidget.sliceLogic().GetSliceNode()
        circle.SetRadius(self._diameterMm(viewWidget) / 2.0 / mm_per_pixel(sliceNode))
        circle.SetCenter(xy[0], xy[1], 0.0)
        actor.VisibilityOn()
        self.scriptedEffect.scheduleRender(viewWidget)

    def _hideBrush(self, viewWidget):
        if viewWidget in self.brushes:
            self.brushes[viewWidget][1].VisibilityOff()
            self.scriptedEffect.scheduleRender(viewWidget)

    def activate(self):
        self.takeUndoKeys()

    def deactivate(self):
        self.releaseUndoKeys()
        for viewWidget, (_circle, actor) in self.brushes.items():
            self.scriptedEffect.removeActor2D(viewWidget, actor)
        self.brushes.clear()
        self.strokes.clear()
