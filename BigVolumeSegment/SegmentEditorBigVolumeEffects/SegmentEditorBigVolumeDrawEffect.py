import vtk

import slicer
from slicer.i18n import tr as _

from SegmentEditorEffects import AbstractScriptedSegmentEditorEffect

from .effect_base import BigVolumeEffectMixin


class SegmentEditorBigVolumeDrawEffect(BigVolumeEffectMixin, AbstractScriptedSegmentEditorEffect):
    """Draw a filled outline on a label pyramid in a slice view, with the controls of Slicer's Draw effect.

    The outline is kept in RAS while it is drawn (as Draw keeps its points) and applied as one polygon
    operation one displayed slice thick, at full resolution in the background.
    """

    iconName = "SegmentEditorBigVolumeDraw.png"

    def __init__(self, scriptedEffect):
        scriptedEffect.name = "BigVolume Draw"  # not translated: it identifies the effect
        scriptedEffect.title = _("BigVolume Draw")
        scriptedEffect.perSegment = True
        scriptedEffect.requireSegments = True
        AbstractScriptedSegmentEditorEffect.__init__(self, scriptedEffect)
        self.drawings = {}  # view widget -> {"ras": [...], "drawing": bool, "actor", "points"}

    def clone(self):
        import qSlicerSegmentationsEditorEffectsPythonQt as effects

        clonedEffect = effects.qSlicerSegmentEditorScriptedEffect(None)
        clonedEffect.setPythonSource(__file__.replace("\\", "/"))
        return clonedEffect

    def helpText(self):
        return "<html>" + _("""Draw an outline on a BigVolume label pyramid; it is filled at full resolution.<br>
<p><ul style="margin: 0">
<li><b>Left-button click</b>: add a point. <b>Left-button drag</b>: add points along the way.</li>
<li><b>x</b>: delete the last point.</li>
<li><b>Right-button click</b> (without dragging), <b>double-click</b>, <b>a</b> or <b>Enter</b>: fill the
outline.</li>
<li><b>z / y</b> (and the platform's undo / redo keys): undo / redo edits of the label pyramid.</li>
</ul>""") + "</html>"

    def setupOptionsFrame(self):
        self.addUndoRedo()

    def processInteractionEvents(self, callerInteractor, eventId, viewWidget):
        inSlice, xy, modified = self.sliceEvent(callerInteractor, eventId, viewWidget)
        if not inSlice:
            return False
        drawing = self.drawings.get(viewWidget)
        if eventId == vtk.vtkCommand.LeftButtonPressEvent and not modified:
            if not self.startEdit():
                return True  # a dialog took the release: the press must not reach the view either
            drawing = self._drawing(viewWidget)
            drawing["drawing"] = True
            self._addPoint(viewWidget, xy)
            return True
        if eventId == vtk.vtkCommand.MouseMoveEvent and drawing is not None and drawing["drawing"]:
            self._addPoint(viewWidget, xy)
            return True
        if eventId == vtk.vtkCommand.LeftButtonReleaseEvent and drawing is not None and drawing["drawing"]:
            drawing["drawing"] = False
            return True
        if drawing is None:
            return False
        sliceNode = viewWidget.sliceLogic().GetSliceNode()
        if eventId == vtk.vtkCommand.RightButtonPressEvent and not modified:
            # As Slicer's Draw: applied on the release, unless the press became a right-drag zoom meanwhile.
            drawing["finishing"] = sliceNode.GetMTime()
            return False
        if eventId == vtk.vtkCommand.RightButtonReleaseEvent and drawing.get("finishing") is not None:
            if sliceNode.GetMTime() - drawing.pop("finishing") >= 2:
                return False  # zoomed: the view ends its zoom
            self._apply(viewWidget)
            return True
        if eventId == vtk.vtkCommand.LeftButtonDoubleClickEvent:
            self._apply(viewWidget)
            return True
        if eventId == vtk.vtkCommand.KeyPressEvent:
            key = callerInteractor.GetKeySym()
            if key in ("a", "Return"):
                self._apply(viewWidget)
                return True
            if key == "x" and drawing["ras"]:
                drawing["ras"].pop()
                self._update(viewWidget)
                return True
        return False

    def processViewNodeEvents(self, callerViewNode, eventId, viewWidget):
        if viewWidget in self.drawings:
            self._update(viewWidget)  # panned or zoomed: the outline stays where it was drawn

    def _drawing(self, viewWidget):
        if viewWidget not in self.drawings:
            points = vtk.vtkPoints()
            lines = vtk.vtkCellArray()
            polyData = vtk.vtkPolyData()
            polyData.SetPoints(points)
            polyData.SetLines(lines)
            mapper = vtk.vtkPolyDataMapper2D()
            mapper.SetInputData(polyData)
            actor = vtk.vtkActor2D()
            actor.SetMapper(mapper)
            actor.GetProperty().SetColor(1.0, 1.0, 0.0)
            actor.GetProperty().SetLineWidth(1)
            self.scriptedEffect.addActor2D(viewWidget, actor)
            self.drawings[viewWidget] = {"ras": [], "drawing": False, "actor": actor, "polyData": polyData}
        return self.drawings[viewWidget]

    def _addPoint(self, viewWidget, xy):
        from BigVolumeLib.segmentation.editing import xy_to_ras

        drawing = self.drawings[viewWidget]
        drawing["ras"].append(xy_to_ras(viewWidget.sliceLogic().GetSliceNode(), [xy])[0])
        self._update(viewWidget)

    def _update(self, viewWidget):
        """The outline in view pixels, from its RAS points."""
        from BigVolumeLib.segmentation.editing import ras_to_xy

        drawing = self.drawings[viewWidget]
        points = vtk.vtkPoints()
        lines = vtk.vtkCellArray()
        if drawing["ras"]:
            for x, y in ras_to_xy(viewWidget.sliceLogic().GetSliceNode(), drawing["ras"]):
                points.InsertNextPoint(x, y, 0.0)
        if points.GetNumberOfPoints() > 1:
            line = vtk.vtkPolyLine()
            line.GetPointIds().SetNumberOfIds(points.GetNumberOfPoints())
            for i in range(points.GetNumberOfPoints()):
                line.GetPointIds().SetId(i, i)
            lines.InsertNextCell(line)
        drawing["polyData"].SetPoints(points)
        drawing["polyData"].SetLines(lines)
        drawing["polyData"].Modified()
        self.scriptedEffect.scheduleRender(viewWidget)

    def _apply(self, viewWidget):
        drawing = self.drawings.get(viewWidget)
        editing = self.editing()
        if drawing is None or editing is None:
            return
        ras = drawing["ras"]
        self._clear(viewWidget)
        if len(ras) < 3:
            return
        from BigVolumeLib.segmentation.editing import ras_to_xy

        with slicer.util.tryWithErrorDisplay(_("Failed to fill the outline."), waitCursor=False):
            sliceNode = viewWidget.sliceLogic().GetSliceNode()
            # Projected onto the current slice (as Slicer's Draw): the engine takes view pixels.
            editing.submit(editing.polygon(sliceNode, ras_to_xy(sliceNode, ras), self.selectedSegmentID()))

    def _clear(self, viewWidget):
        drawing = self.drawings.pop(viewWidget, None)
        if drawing is not None:
            self.scriptedEffect.removeActor2D(viewWidget, drawing["actor"])
            self.scriptedEffect.scheduleRender(viewWidget)

    def activate(self):
        self.takeUndoKeys()

    def deactivate(self):
        self.releaseUndoKeys()
        for viewWidget in list(self.drawings):
            self._clear(viewWidget)
