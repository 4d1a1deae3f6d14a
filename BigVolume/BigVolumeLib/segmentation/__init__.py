"""Segmentation in Slicer on label pyramids: the bound segmentation node and the Qt-free editing engine."""
