"""What every BigVolume Segment Editor effect shares: the label pyramid behind the edited segmentation,
the editing engine, undo and redo, and the effect's icon.

The effects are thin: `editing()` hands back BigVolumeLib's Qt-free SegmentEditing (segmentation/editing.py,
tested with real MRML nodes), which decides levels, geometry and masking; the effects turn view events into
its calls. A segmentation that is not bound to a label pyramid is left to Slicer's own effects.
"""

import os

import qt
import slicer
from slicer.i18n import tr as _

ICONS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "Resources", "Icons")


def boundLabels(segmentationNode):
    """The open BoundLabels whose bound segmentation is `segmentationNode`, or None."""
    if segmentationNode is None:
        return None
    logic = slicer.util.getModuleLogic("BigVolume")
    if logic is None:
        return None
    for labels in logic.session.labels.values():
        if labels.node.GetID() == segmentationNode.GetID():
            return labels
    return None


class BigVolumeEffectMixin:
    """Mixed into each effect class before AbstractScriptedSegmentEditorEffect."""

    iconName = ""

    def icon(self):
        return qt.QIcon(os.path.join(ICONS, self.iconName))

    def editing(self):
        """The editing engine of the bound label pyramid, masking from this Segment Editor; None if unbound."""
        parameterSetNode = self.scriptedEffect.parameterSetNode()
        labels = boundLabels(parameterSetNode.GetSegmentationNode() if parameterSetNode else None)
        if labels is None:
            return None
        labels.editing.editor_node = parameterSetNode
        return labels.editing

    def selectedSegmentID(self):
        return self.scriptedEffect.parameterSetNode().GetSelectedSegmentID()

    def requireEditing(self):
        """The editing engine, or None after telling the user why this effect cannot edit this segmentation."""
        editing = self.editing()
        if editing is None:
            slicer.util.warningDisplay(_("This segmentation is not bound to a BigVolume label pyramid. Open one in "
                                         "the BigVolume Segment module, or use Slicer's own effects."))
        return editing

    def addUndoRedo(self):
        """Undo and redo buttons for the label pyramid (its own history: the Segment Editor's undo does not reach
        it); Ctrl+Z and Ctrl+Y in a slice view do the same while the effect is active."""
        layout = qt.QHBoxLayout()
        self.undoButton = qt.QPushButton(_("Undo"))
        self.undoButton.setToolTip(_("Undo the last edit of the label pyramid (at full resolution)."))
        self.redoButton = qt.QPushButton(_("Redo"))
        layout.addWidget(self.undoButton)
        layout.addWidget(self.redoButton)
        self.scriptedEffect.addOptionsWidget(layout)
        self.undoButton.connect("clicked()", self.onUndo)
        self.redoButton.connect("clicked()", self.onRedo)

    def onUndo(self):
        editing = self.editing()
        if editing is not None:
            editing.undo()

    def onRedo(self):
        editing = self.editing()
        if editing is not None:
            editing.redo()

    def sliceEvent(self, callerInteractor, eventId, viewWidget):
        """(handled, xy, modified) of a view event: handled True when it was Ctrl+Z / Ctrl+Y (done), None when
        the view is not a slice view (the effects edit in slice views only); xy the event's view pixel; modified
        whether Shift, Ctrl or Alt is down."""
        if viewWidget.className() != "qMRMLSliceWidget":
            return None, None, None
        if self.processUndoKeys(callerInteractor, eventId):
            return True, None, None
        modified = callerInteractor.GetShiftKey() or callerInteractor.GetControlKey() or callerInteractor.GetAltKey()
        return False, callerInteractor.GetEventPosition(), bool(modified)

    def processUndoKeys(self, callerInteractor, eventId):
        """Ctrl+Z / Ctrl+Y in a slice view: True if handled."""
        import vtk

        if eventId != vtk.vtkCommand.KeyPressEvent or not callerInteractor.GetControlKey():
            return False
        key = callerInteractor.GetKeySym().lower()
        if key == "z":
            self.onUndo()
            return True
        if key == "y":
            self.onRedo()
            return True
        return False
