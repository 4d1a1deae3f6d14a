"""One label streamer per slice view and label pyramid: the segments, at the level the view shows.

Planned, fetched and composed exactly as an image (slice_streamer.py: the same
plans, the same engine, coarse before fine), but the proxy is a segmentation
node whose segments share one labelmap, the composed region, so Slicer's 2D
segmentation displayable manager draws fill and outline in segment colours
with the bound segmentation's display settings (segment_display.py). An edit
is painted at once into every aligned view that shows it (`show_edit`);
edited chunks are painted again as they are rewritten, and until then their
old voxels stay, so an edit never opens a hole.
"""

import slicer

from bigvolume.labels.apply import local
from bigvolume.labels.operations import intersect

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
        overlay and the writer use, so the refreshed chunks bring the same labels: no flicker). Aligned views
        only: an oblique view's proxy is its screen grid, which waits for the refreshed chunks. True if painted."""
        plan, composition = self._plan, self._composition
        if plan is None or plan.kind != "aligned" or composition is None or not self.shown:
            return False
        op_box = op.voxel_box(self.image.levels[plan.level])
        box = None if op_box is None else intersect(op_box, plan.box)
        if box is None:
            return False
        inside = local(box, plan.box)
        painted = editor.rasterise(op, plan.level, box, composition.out[inside])
        if painted is None:
            return False
        composition.out[inside] = painted
        self._push(composition.out)
        return True

    def _close_proxy(self):
        self.display.bound.RemoveObserver(self._display_observer)
        self.display.detach(self.proxy)
        if self.proxy.GetScene() is not None:
            self.scene.RemoveNode(self.proxy)
