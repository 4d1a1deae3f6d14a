"""One label streamer per slice view and label pyramid: the segments, at the level the view shows.

Planned, fetched and composed exactly as an image (slice_streamer.py: the same
plans, the same engine, coarse before fine), but the proxy is a segmentation
node whose segments share one labelmap, the composed region, so Slicer's 2D
segmentation displayable manager draws fill and outline in segment colours
with the bound segmentation's display settings (segment_display.py). An edit
is painted at once into every view that shows it (`show_edit`);
edited chunks are painted again as they are rewritten, and until then their
old voxels stay, so an edit never opens a hole.
"""

import numpy as np
import slicer

from bigvolume.labels.apply import local
from bigvolume.labels.operations import intersect
from bigvolume.streaming.slice_composition import in_box, nearest_voxels, pixels_of_box

from ..volume_nodes import vtk_matrix
from .segment_display import labelmap_modified
from .slice_streamer import SliceStreamer


class LabelSliceStreamer(SliceStreamer):
    """Streams a label source into one slice view; `display` is the source's SegmentDisplay."""

    def __init__(self, scene, slice_node, source, engine, display, name=None):
        super().__init__(scene, slice_node, source, engine, display, layer="label", name=name)

    def _make_proxy(self, name):
        self.proxy = self.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
        self.proxy.SetHideFromEditors(True)
        self.proxy.SetSaveWithScene(False)  # the scene keeps the binding to the label pyramid, not voxels
        self.proxy.CreateDefaultDisplayNodes()
        self.proxy.GetDisplayNode().SetSaveWithScene(False)
        self._labelmap = slicer.vtkOrientedImageData()
        self._display_observer = self.display.bound.AddObserver(
            slicer.vtkMRMLDisplayableNode.DisplayModifiedEvent, self._on_view_modified)  # shown or hidden
        self.display.attach(self.proxy, self.slice_node.GetID(), self._labelmap)

    @property
    def shown(self):
        """False while the bound segmentation is hidden in this view: it then fetches nothing."""
        return self.display.shown_in(self.slice_node)

    def _push(self, data):
        self._set_scalars(self._labelmap, data)
        self._labelmap.SetImageToWorldMatrix(vtk_matrix(self._plan.proxy_ijk_to_ras))
        labelmap_modified(self.proxy)

    def show_edit(self, op, editor):
        """Paint a just-submitted operation into the view at once, at the level it shows (the rasteriser the
        overlay and the writer use, so the refreshed chunks bring the same labels: no flicker). True if painted;
        False where it is left to the refreshed chunks (Fill; an oblique view under an edit of a large box)."""
        plan, composition = self._plan, self._composition
        if plan is None or composition is None or not self.shown:
            return False
        level = self.image.levels[plan.level]
        op_box = op.voxel_box(level)
        if op_box is None:
            return False
        if plan.kind == "aligned":
            box = intersect(op_box, plan.box)
            if box is None:
                return False
            inside = local(box, plan.box)
            painted = editor.rasterise(op, plan.level, box, composition.out[inside])
            if painted is None:
                return False
            composition.out[inside] = painted
        else:  # the proxy is the view's pixels, each the nearest voxel of the level
            height, width = composition.out.shape[1:]
            pixels = pixels_of_box(level, plan.xy_to_ras, op_box, width, height)
            if pixels is None:
                return False
            ys, xs = pixels
            ijk = nearest_voxels(level, plan.xy_to_ras, xs, ys)
            hit = in_box(ijk, op_box)
            if not hit.any():
                return False
            zyx = np.stack([ijk[2][hit], ijk[1][hit], ijk[0][hit]], axis=1)
            low, high = zyx.min(axis=0), zyx.max(axis=0) + 1
            painted = editor.rasterise_voxels(op, plan.level, tuple(zip(low.tolist(), high.tolist())), zyx - low,
                                              composition.out[0, ys[hit], xs[hit]])
            if painted is None:
                return False
            composition.out[0, ys[hit], xs[hit]] = painted
        self._push(composition.out)
        return True

    def _close_proxy(self):
        self.display.bound.RemoveObserver(self._display_observer)
        self.display.detach(self.proxy)
        if self.proxy.GetScene() is not None:
            self.scene.RemoveNode(self.proxy)
