"""BigVolumeSegment's own Qt-free code. The segmentation engine the module drives (label pyramids bound to
segmentation nodes, streamed labels, editing, ROI round trip, results) is BigVolumeLib.segmentation, shared with
the BigVolume session that owns the open image; the Segment Editor effects are SegmentEditorBigVolumeEffects."""
