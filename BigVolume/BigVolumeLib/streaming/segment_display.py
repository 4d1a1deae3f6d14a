"""Display state shared by every view of one label pyramid: the bound segmentation node's, mirrored.

The user sees and edits a label pyramid through one ordinary segmentation node
(bound to it, `segmentation.binding`): its segment list, names, colours,
visibility, fill and outline opacities are what the Segment Editor and the
Segmentations module show and change. That node holds no voxels. Each slice
view shows the labels through a proxy segmentation node of its own, whose
shared labelmap is the view's composed region; `SegmentDisplay` keeps every
proxy's segments and display settings equal to the bound node's, so Slicer's
2D segmentation displayable manager draws them exactly as it draws any
segmentation.
"""

import slicer

LABELMAP = "Binary labelmap"  # vtkSegmentationConverter's binary labelmap representation name


class SegmentDisplay:
    ready = True  # labels need no window/level before they are composed

    def __init__(self, segmentation_node):
        self.bound = segmentation_node
        self._proxies = {}  # proxy segmentation node -> (slice view node ID, shared labelmap)
        self._observers = []
        segmentation = segmentation_node.GetSegmentation()
        for event in (slicer.vtkSegmentation.SegmentAdded, slicer.vtkSegmentation.SegmentRemoved,
                      slicer.vtkSegmentation.SegmentModified, slicer.vtkSegmentation.SegmentsOrderModified):
            self._observers.append((segmentation, segmentation.AddObserver(event, self._on_changed)))
        self._observers.append((segmentation_node, segmentation_node.AddObserver(
            slicer.vtkMRMLDisplayableNode.DisplayModifiedEvent, self._on_changed)))

    def attach(self, proxy, view_id, labelmap):
        """Drive one view's proxy segmentation node, whose segments all share `labelmap` (vtkOrientedImageData)."""
        self._proxies[proxy] = (view_id, labelmap)
        self._sync(proxy)

    def detach(self, proxy):
        self._proxies.pop(proxy, None)

    def shown_in(self, view_node):
        """Whether the bound segmentation is shown in 2D in this view (a view that does not show it fetches nothing)."""
        display = self.bound.GetDisplayNode()
        return bool(display is not None and display.GetVisibility() and display.GetVisibility2D()
                    and (display.GetVisibility2DFill() or display.GetVisibility2DOutline())
                    and display.IsDisplayableInView(view_node.GetID()))

    def _on_changed(self, caller, event):
        for proxy in list(self._proxies):
            self._sync(proxy)

    def _sync(self, proxy):
        view_id, labelmap = self._proxies[proxy]
        source, target = self.bound.GetSegmentation(), proxy.GetSegmentation()
        wanted = [source.GetNthSegmentID(i) for i in range(source.GetNumberOfSegments())]
        for segment_id in [target.GetNthSegmentID(i) for i in range(target.GetNumberOfSegments())]:
            if segment_id not in wanted:
                target.RemoveSegment(segment_id)
        for segment_id in wanted:
            shown = source.GetSegment(segment_id)
            segment = target.GetSegment(segment_id) or \
                add_shared_segment(target, segment_id, shown, shown.GetLabelValue(), labelmap)
            segment.SetName(shown.GetName())
            segment.SetColor(shown.GetColor())
            segment.SetLabelValue(shown.GetLabelValue())
        display = proxy.GetDisplayNode()
        bound_display = self.bound.GetDisplayNode()
        if display is None or bound_display is None:
            return
        was = display.StartModify()
        display.CopyContent(bound_display)  # opacities, visibilities, per-segment overrides
        display.SetViewNodeIDs([view_id])  # its own view only: each view has its own proxy
        display.SetVisibility3D(False)
        display.EndModify(was)

    def close(self):
        for node, tag in self._observers:
            node.RemoveObserver(tag)
        self._observers = []
        self._proxies.clear()


def add_shared_segment(segmentation, segment_id, like, value, labelmap):
    """Add to `segmentation` a segment named and coloured as the segment `like`, whose voxels are those of label
    `value` in `labelmap`, shared with its other segments (Slicer's own layout of a segmentation's labelmaps)."""
    segment = slicer.vtkSegment()
    segment.SetName(like.GetName())
    segment.SetColor(like.GetColor())
    segment.SetLabelValue(value)
    segment.AddRepresentation(LABELMAP, labelmap)
    segmentation.AddSegment(segment, segment_id)
    return segment


def labelmap_modified(proxy):
    """Tell the displayable managers that a proxy's shared labelmap changed (voxels or geometry)."""
    proxy.GetSegmentation().InvokeEvent(slicer.vtkSegmentation.RepresentationModified)

