"""BigVolume's Segment Editor effects: GUI glue over BigVolumeLib's Qt-free editing engine
(BigVolumeLib/segmentation). Slicer's qSlicerSegmentEditorScriptedEffect.setPythonSource looks each class up in
this package by its file name, so every effect is imported here (as Slicer's own SegmentEditorEffects package
does)."""

from .SegmentEditorBigVolumeDrawEffect import SegmentEditorBigVolumeDrawEffect
from .SegmentEditorBigVolumeEraseEffect import SegmentEditorBigVolumeEraseEffect
from .SegmentEditorBigVolumePaintEffect import SegmentEditorBigVolumePaintEffect
from .SegmentEditorBigVolumeThresholdEffect import SegmentEditorBigVolumeThresholdEffect

__all__ = ["SegmentEditorBigVolumeDrawEffect", "SegmentEditorBigVolumeEraseEffect",
           "SegmentEditorBigVolumePaintEffect", "SegmentEditorBigVolumeThresholdEffect"]
