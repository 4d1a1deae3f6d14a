"""A segmentation node bound to a label pyramid: what the Segment Editor edits stands for the pyramid.

The node's segments are the pyramid's segments (ID, name, colour, tags), each
with the pyramid's label value; adding, renaming or recolouring a segment in
Slicer changes the pyramid's metadata at once. The node holds no voxels (its
segments are empty labelmaps): every view shows the pyramid through proxies
streamed at the view's own level (streaming/label_streamer.py), and edits go
to the pyramid as operations (segmentation/editing.py).

Source volume for the Segment Editor (which enables its effects only with
one): a small ordinary volume holding the image's coarsest level
(`source_volume`), which also gives effects an intensity range; it is a
stand-in, the pyramid is read for every edit. Reference geometry: that same
coarsest level. Slicer's own effects allocate whole reference-geometry
images (the modifier and mask labelmaps), so with level 0 there one of them
used on the bound node by mistake would try to allocate the full-resolution
volume; at the coarsest level it stays small (and edits only the bound node,
never the pyramid: the ROI round trip is the way to use them).
"""

import slicer
import vtk

from bigvolume.labels.operations import Clear
from bigvolume.labels.segments import Segment, new_segment

from ..volume_nodes import read_region_into_volume_node, vtk_matrix

STORE_ATTRIBUTE = "BigVolume.LabelStore"  # the bound pyramid's location, kept with the scene
NAME_ATTRIBUTE = "BigVolume.LabelName"


class SegmentationBinding:
    def __init__(self, scene, editor, segmentation_node=None):
        self.scene, self.editor, self.store = scene, editor, editor.store
        node = segmentation_node or scene.AddNewNodeByClass("vtkMRMLSegmentationNode", self.store.name)
        if node.GetDisplayNode() is None:
            node.CreateDefaultDisplayNodes()
        self.node = node
        node.SetAttribute(STORE_ATTRIBUTE, self.store.root)
        node.SetAttribute(NAME_ATTRIBUTE, self.store.name)
        self._set_reference_geometry()
        self._syncing = False
        self._load_segments()
        segmentation = node.GetSegmentation()
        self._observers = [segmentation.AddObserver(event, self._on_segments_changed)
                           for event in (slicer.vtkSegmentation.SegmentAdded, slicer.vtkSegmentation.SegmentRemoved,
                                         slicer.vtkSegmentation.SegmentModified)]
        self._source_volume = None

    # -- geometry and the Segment Editor's source volume --------------------------------------------------
    def _set_reference_geometry(self):
        level = self.store.levels[-1]
        z, y, x = level.volume_shape
        geometry = slicer.vtkSegmentationConverter.SerializeImageGeometry(vtk_matrix(level.ijk_to_ras),
                                                                          [0, x - 1, 0, y - 1, 0, z - 1])
        self.node.GetSegmentation().SetConversionParameter(
            slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName(), geometry)

    @property
    def source_volume(self):
        """The Segment Editor's source volume: the image's coarsest level as an ordinary volume node (made once)."""
        if self._source_volume is None or self._source_volume.GetScene() is None:
            image = self.store.image
            coarsest = len(image.levels) - 1
            box = tuple((0, n) for n in image.levels[coarsest].volume_shape)
            node = read_region_into_volume_node(self.scene, image, coarsest, box,
                                                name=f"{image.name or self.store.name} (BigVolume level {coarsest})")
            node.SetSaveWithScene(False)  # made again from the store when the scene is reopened
            node.CreateDefaultDisplayNodes()
            self._source_volume = node
        return self._source_volume

    # -- segments -------------------------------------------------------------------------------------
    def value_of(self, segment_id):
        """The label value of a segment of the bound node."""
        return self.store.segment(segment_id).value

    def _load_segments(self):
        """The node's segments become the pyramid's (after a scene reload the node may hold some already)."""
        self._syncing = True
        try:
            segmentation = self.node.GetSegmentation()
            known = {s.id for s in self.store.segments}
            for segment_id in [segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())]:
                if segment_id not in known:
                    segmentation.RemoveSegment(segment_id)
            for s in self.store.segments:
                segment = segmentation.GetSegment(s.id)
                if segment is None:
                    segmentation.AddEmptySegment(s.id, s.name, list(s.color))
                    segment = segmentation.GetSegment(s.id)
                segment.SetName(s.name)
                segment.SetColor(*s.color)
                segment.SetLabelValue(s.value)
                segment.SetNameAutoGenerated(s.name_auto_generated)
                segment.SetColorAutoGenerated(s.color_auto_generated)
                for key, text in s.tags.items():
                    segment.SetTag(key, text)
        finally:
            self._syncing = False

    def _on_segments_changed(self, caller, event):
        if self._syncing:
            return
        self._syncing = True
        try:
            self._save_segments()
        finally:
            self._syncing = False

    def _save_segments(self):
        """The node's segment list, as the user left it, into the pyramid's metadata: new segments get the next
        free label value; a removed segment's voxels are cleared in the background."""
        segmentation = self.node.GetSegmentation()
        by_id = {s.id: s for s in self.store.segments}
        segments = []
        for i in range(segmentation.GetNumberOfSegments()):
            segment_id = segmentation.GetNthSegmentID(i)
            segment = segmentation.GetSegment(segment_id)
            old = by_id.get(segment_id)
            # Tags Slicer's segments carry that the pyramid keeps (the tag list itself is not wrapped for Python).
            names = set(old.tags if old is not None else ()) | {slicer.vtkSegment.GetTerminologyEntryTagName()}
            tags = {name: _tag(segment, name) for name in sorted(names) if segment.HasTag(name)}
            fields = dict(name=segment.GetName(), color=tuple(segment.GetColor()), id=segment_id, tags=tags,
                          name_auto_generated=bool(segment.GetNameAutoGenerated()),
                          color_auto_generated=bool(segment.GetColorAutoGenerated()))
            if old is None:
                fields.pop("name_auto_generated"), fields.pop("color_auto_generated")
                s = new_segment(list(self.store.segments) + segments, name=fields.pop("name"),
                                color=fields.pop("color"), **fields)
            else:
                s = Segment(value=old.value, **fields)
            segment.SetLabelValue(s.value)
            segments.append(s)
        kept = {s.id for s in segments}
        removed = [s for s in self.store.segments if s.id not in kept]
        if segments != list(self.store.segments):
            self.store.set_segments(segments)
        for s in removed:  # queued before any later edit, so a new segment that reuses the value starts empty
            self.editor.submit(Clear(s.value))

    def close(self):
        segmentation = self.node.GetSegmentation()
        for tag in self._observers:
            segmentation.RemoveObserver(tag)
        self._observers = []
        if self._source_volume is not None and self._source_volume.GetScene() is not None:
            self.scene.RemoveNode(self._source_volume)


def _tag(segment, name):
    value = vtk.reference("")
    segment.GetTag(name, value)
    return str(value)
