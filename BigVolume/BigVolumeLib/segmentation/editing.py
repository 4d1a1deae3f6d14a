"""What BigVolume's Segment Editor effects decide, without Qt: from a slice view, the bound segmentation and
the Segment Editor node's settings, the operation to submit and the level it shows at.

The effects (BigVolumeSegment's Lib folders) only turn mouse events into calls
here: `stroke` (Paint, Erase), `polygon` (Draw), `threshold`. Everything is
in RAS millimetres, so an operation made in a view at a coarse level is the
same operation the background writer rasterises at full resolution: a smooth
boundary, not upsampled blocks. The view that made an edit shows it at its
own level as soon as the streamed labels compose again (the label reader
overlays queued operations), the other views as their chunks refresh.

Slicer's conventions followed (qSlicerSegmentEditorPaintEffect.cxx,
SegmentEditorDrawEffect.py, vtkMRMLSegmentEditorNode):
- a view pixel (x, y) is at XYToRAS · (x, y, 0, 1);
- brush diameter: `BrushAbsoluteDiameter` mm, or with `BrushDiameterIsRelative`
  `BrushRelativeDiameter` % of the screen height in the view's mm per pixel;
- stroke points closer than 0.2 brush diameters apart (points are inserted
  between those further apart);
- a disc brush (`BrushSphere` off) is one slice thick: here the displayed
  level's voxel along the view normal (what the view shows as one slice);
- masking: the editor node's mask mode, mask segment, editable intensity
  range and overwrite mode, with "visible segments" taken from the bound
  segmentation's display node.
"""

import numpy as np
import slicer

from bigvolume.labels.operations import Brush, Masking, Polygon, Threshold

from ..region_export import roi_ras_bounds
from ..volume_nodes import numpy_matrix

MAXIMUM_POINT_DISTANCE_IN_STROKE = 0.2  # of the brush diameter, as Slicer's Paint effect
PAINT_DEFAULTS = {"BrushAbsoluteDiameter": 5.0, "BrushRelativeDiameter": 3.0, "BrushDiameterIsRelative": 1,
                  "BrushSphere": 0}  # Slicer's Paint effect defaults (common parameters of the editor node)


def xy_to_ras(slice_node, xy):
    """RAS of view pixels (x, y) (display coordinates, origin bottom left), an (n, 3) array."""
    xy = np.atleast_2d(np.asarray(xy, dtype=float))
    points = np.column_stack([xy[:, 0], xy[:, 1], np.zeros(len(xy)), np.ones(len(xy))])
    return (points @ numpy_matrix(slice_node.GetXYToRAS()).T)[:, :3]


def ras_to_xy(slice_node, ras):
    """View pixels (x, y) of RAS points projected onto the slice plane, an (n, 2) array (Draw keeps its outline
    in RAS and shows it, and fills it, in the view's pixels)."""
    ras = np.atleast_2d(np.asarray(ras, dtype=float))
    points = np.column_stack([ras, np.ones(len(ras))])
    return (points @ np.linalg.inv(numpy_matrix(slice_node.GetXYToRAS())).T)[:, :2]


def slice_normal(slice_node):
    to_ras = numpy_matrix(slice_node.GetSliceToRAS())
    normal = to_ras[:3, 2]
    return normal / np.linalg.norm(normal)


def mm_per_pixel(slice_node):
    """The view's millimetres per screen pixel (along its y axis, as Slicer's Paint effect measures)."""
    return float(np.linalg.norm(numpy_matrix(slice_node.GetXYToSlice())[:3, 1]))


def brush_diameter_mm(parameters, slice_node, screen_height):
    """The brush diameter from Paint's parameters: absolute mm, or % of the screen height in this view's scale."""
    values = {**PAINT_DEFAULTS, **parameters}
    if int(values["BrushDiameterIsRelative"]):
        return float(screen_height) * float(values["BrushRelativeDiameter"]) / 100.0 * mm_per_pixel(slice_node)
    return float(values["BrushAbsoluteDiameter"])


def interpolate_stroke(points, diameter_mm):
    """Stroke points with points inserted wherever two are more than 0.2 diameters apart (Slicer's rule: n =
    int(length / max distance) - 1 evenly spaced points between them)."""
    points = np.atleast_2d(np.asarray(points, dtype=float))
    step = MAXIMUM_POINT_DISTANCE_IN_STROKE * diameter_mm
    out = [points[0]]
    for last, new in zip(points[:-1], points[1:]):
        count = int(np.linalg.norm(new - last) / step) - 1 if step > 0 else 0
        for i in range(max(count, 0)):
            w = (i + 1) / (count + 1)
            out.append(w * new + (1 - w) * last)
        out.append(new)
    return np.array(out)


class SegmentEditing:
    """Edits of one bound segmentation from slice views (`streaming`: the StreamingScene that shows it;
    `editor_node`: the Segment Editor's vtkMRMLSegmentEditorNode, for masking; the effects set it)."""

    def __init__(self, binding, streaming, editor_node):
        self.binding, self.streaming, self.editor_node = binding, streaming, editor_node

    @property
    def editor(self):
        return self.binding.editor

    # -- what a view shows ----------------------------------------------------------------------------
    def displayed_level(self, slice_node):
        """The label level the view shows (its streamer's plan), else the level its zoom needs."""
        from bigvolume.streaming.slice_planner import plan_slice

        for streamed in self.streaming.sources.values():
            if streamed.source.image is self.binding.store:
                streamer = streamed.streamers.get(slice_node.GetID())
                if streamer is not None and streamer.level is not None:
                    return streamer.level
        dims = slice_node.GetDimensions()
        return plan_slice(self.binding.store, numpy_matrix(slice_node.GetXYToRAS()), (int(dims[0]), int(dims[1]))).level

    def slice_thickness_mm(self, slice_node, level):
        """One voxel of `level` measured along the view normal: what the view shows as one slice."""
        lvl = self.binding.store.levels[level]
        to_ijk = np.asarray(lvl.ras_to_ijk)[:3, :3]
        per_mm = np.abs(to_ijk @ slice_normal(slice_node))  # voxels per mm along the normal, per axis
        return float(1.0 / per_mm.max())

    # -- masking --------------------------------------------------------------------------------------
    def _visible_values(self):
        display = self.binding.node.GetDisplayNode()
        segmentation = self.binding.node.GetSegmentation()
        ids = [segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())]
        return tuple(self.binding.value_of(i) for i in ids if display is None or display.GetSegmentVisibility(i))

    def masking(self, segment_id):
        """Masking of an edit of `segment_id` from the editor node, as Slicer's Segment Editor applies it."""
        node, seg = self.editor_node, slicer.vtkMRMLSegmentationNode
        if node is None:  # no Segment Editor (scripts): edit everywhere, overwrite all, as Slicer's defaults
            return Masking()
        mode = node.GetMaskMode()
        if mode == seg.EditAllowedEverywhere:
            area, values = "everywhere", ()
        elif mode == seg.EditAllowedInsideAllSegments:
            area, values = "inside_all", ()
        elif mode == seg.EditAllowedOutsideAllSegments:
            area, values = "outside_all", ()
        elif mode == seg.EditAllowedInsideVisibleSegments:
            area, values = "inside_segments", self._visible_values()
        elif mode == seg.EditAllowedOutsideVisibleSegments:
            area, values = "outside_segments", self._visible_values()
        elif mode == seg.EditAllowedInsideSingleSegment:
            area, values = "inside_segments", (self.binding.value_of(node.GetMaskSegmentID()),)
        else:
            raise ValueError(f"unknown Segment Editor mask mode {mode}")
        intensity = tuple(node.GetSourceVolumeIntensityMaskRange()) if node.GetSourceVolumeIntensityMask() else None
        overwrite = node.GetOverwriteMode()
        if overwrite == slicer.vtkMRMLSegmentEditorNode.OverwriteAllSegments:
            overwrite, listed = "all", ()
        elif overwrite == slicer.vtkMRMLSegmentEditorNode.OverwriteVisibleSegments:
            overwrite, listed = "listed", self._visible_values()
        else:
            overwrite, listed = "none", ()
        return Masking(area=area, area_values=values, intensity_range=intensity, overwrite=overwrite,
                       overwrite_values=listed)

    # -- operations -----------------------------------------------------------------------------------
    def stroke(self, slice_node, xy_points, segment_id, diameter_mm, sphere=False, erase=False):
        """A Paint or Erase stroke through view pixels `xy_points`; returns the operation (not yet submitted)."""
        level = self.displayed_level(slice_node)
        points = interpolate_stroke(xy_to_ras(slice_node, xy_points), diameter_mm)
        disc = {} if sphere else {"normal": tuple(slice_normal(slice_node)),
                                  "thickness_mm": self.slice_thickness_mm(slice_node, level)}
        return Brush(value=self.binding.value_of(segment_id), masking=self.masking(segment_id),
                     points=tuple(map(tuple, points)), radius_mm=diameter_mm / 2.0, erase=erase, **disc)

    def polygon(self, slice_node, xy_points, segment_id, erase=False):
        """A Draw polygon through view pixels `xy_points`, one displayed slice thick."""
        level = self.displayed_level(slice_node)
        return Polygon(value=self.binding.value_of(segment_id), masking=self.masking(segment_id),
                       vertices=tuple(map(tuple, xy_to_ras(slice_node, xy_points))),
                       normal=tuple(slice_normal(slice_node)), thickness_mm=self.slice_thickness_mm(slice_node, level),
                       erase=erase)

    def threshold(self, segment_id, low, high, roi_node=None):
        """Threshold the image into the segment within an ROI node's RAS bounding box (None: the whole volume)."""
        box = None if roi_node is None else tuple(map(tuple, roi_ras_bounds(roi_node)))
        return Threshold(value=self.binding.value_of(segment_id), masking=self.masking(segment_id),
                         low=float(low), high=float(high), box_ras=box)

    def submit(self, op):
        """Journal and queue the operation (durable when this returns) and paint it at once into every view
        that shows these labels (a Fill, or an oblique view under a large edit, shows as its chunks refresh)."""
        seq = self.editor.submit(op)
        for streamed in self.streaming.sources.values():
            if streamed.source.image is self.binding.store:
                for streamer in streamed.streamers.values():
                    streamer.show_edit(op, self.editor)
        return seq

    def undo(self):
        return self.editor.undo()

    def redo(self):
        return self.editor.redo()
