"""BigVolumeSegment's MRML layer (Qt-free): label pyramids bound to Slicer segmentation nodes."""
