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
    try:
        logic = slicer.util.getModuleLogic("BigVolume")
    except RuntimeError:  # no BigVolume module: nothing is bound
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
        """Undo and redo buttons for the label pyramid, which has its own history (the Segment Editor's does not
        reach it); while the effect is active the Segment Editor's undo and redo keys do the same
        (`takeUndoKeys`)."""
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

    def takeUndoKeys(self):
        """While the effect is active, the Segment Editor's undo and redo keys (z, Ctrl+Z, y, the platform's
        redo; window shortcuts of the main window, which the views never see) undo and redo the label pyramid
        instead of the bound segmentation's history."""
        self.releaseUndoKeys()
        mainWindow = slicer.util.mainWindow()
        if mainWindow is None:
            return
        undo = {qt.QKeySequence(qt.QKeySequence.Undo).toString(), "Z"}
        redo = {qt.QKeySequence(qt.QKeySequence.Redo).toString(), "Y"}
        for shortcut in mainWindow.findChildren(qt.QShortcut):
            if shortcut.enabled and shortcut.key.toString() in undo | redo:
                shortcut.enabled = False
                self._disabledShortcuts.append(shortcut)
        for keys, slot in ((undo, self.onUndo), (redo, self.onRedo)):
            for key in keys:
                shortcut = qt.QShortcut(qt.QKeySequence(key), mainWindow)
                shortcut.connect("activated()", slot)
                self._ownShortcuts.append(shortcut)

    def releaseUndoKeys(self):
        for shortcut in getattr(self, "_disabledShortcuts", []):
            shortcut.enabled = True
        for shortcut in getattr(self, "_ownShortcuts", []):
            shortcut.setParent(None)
            shortcut.deleteLater()
        self._disabledShortcuts, self._ownShortcuts = [], []

    def startEdit(self):
        """At a left-button press that starts an edit: True if it may start. Like Slicer's Paint and Draw, a
        press that opened a dialog (a hidden segment to confirm, an unbound segmentation) starts nothing: the
        dialog took the button's release."""
        if self.requireEditing() is None:
            return False
        confirmed = self.scriptedEffect.confirmCurrentSegmentVisible()
        return confirmed not in (self.scriptedEffect.NotConfirmed, self.scriptedEffect.ConfirmedWithDialog)

    def sliceEvent(self, callerInteractor, eventId, viewWidget):
        """(is a slice view, xy, modified) of a view event: the effects edit in slice views only; xy the
        event's view pixel; modified whether Shift, Ctrl or Alt is down."""
        if viewWidget.className() != "qMRMLSliceWidget":
            return False, None, None
        modified = callerInteractor.GetShiftKey() or callerInteractor.GetControlKey() or callerInteractor.GetAltKey()
        return True, callerInteractor.GetEventPosition(), bool(modified)
