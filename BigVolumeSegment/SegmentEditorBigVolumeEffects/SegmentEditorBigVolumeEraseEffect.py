from slicer.i18n import tr as _

from .SegmentEditorBigVolumePaintEffect import SegmentEditorBigVolumePaintEffect


class SegmentEditorBigVolumeEraseEffect(SegmentEditorBigVolumePaintEffect):
    """BigVolume Paint that erases the selected segment (Slicer's Erase to its Paint)."""

    erase = True
    iconName = "SegmentEditorBigVolumeErase.png"
    effectName = "BigVolume Erase"

    def clone(self):
        import qSlicerSegmentationsEditorEffectsPythonQt as effects

        clonedEffect = effects.qSlicerSegmentEditorScriptedEffect(None)
        clonedEffect.setPythonSource(__file__.replace("\\", "/"))
        return clonedEffect

    def helpText(self):
        return "<html>" + _("""Erase the selected segment of a BigVolume label pyramid, at full resolution
whatever the zoom.<br><p><ul style="margin: 0">
<li><b>Left-button drag</b>: erase; the stroke is applied on release.</li>
<li><b>Shift + mouse wheel</b> or <b>+/-</b>: brush size.</li>
<li><b>z / y</b> (and the platform's undo / redo keys): undo / redo edits of the label pyramid.</li>
</ul>""") + "</html>"
