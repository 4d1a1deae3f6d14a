"""Any of Slicer's effects on a label pyramid: an ROI at full resolution, edited the ordinary way, written back.

`RoiRoundTrip` loads the region of an ROI at a level (level 0 by default) as
an ordinary volume node and an ordinary segmentation node holding the same
segments and their labels there (queued edits included). The user edits that
segmentation with any effect (Islands, Smoothing, Scissors, Grow from
seeds, ...). `write_back` submits what changed as one Replace operation over
the smallest box holding every changed voxel, so edits made meanwhile
elsewhere in the ROI are not undone, and one undo takes it back. Segments
added in the ROI segmentation join the bound segmentation.
"""

import numpy as np
import slicer
from vtk.util import numpy_support

from bigvolume.labels.operations import Replace

from ..region_export import RegionTooLarge, export_plan, plan_roi
from ..streaming.segment_display import add_shared_segment
from ..volume_nodes import region_ijk_to_ras, vtk_matrix


class RoiRoundTrip:
    def __init__(self, binding, roi_node, level=0, limit_bytes=None):
        self.binding, self.level = binding, level
        store, scene = binding.store, binding.scene
        self.plan = plan_roi(store.image, roi_node, level, limit_bytes)
        if not self.plan.fits:
            raise RegionTooLarge(f"Cannot edit the ROI at level {level}: {self.plan.reason}.")
        name = f"{binding.node.GetName()} ROI level {level}"
        self.volume = export_plan(scene, store.image, self.plan, name=f"{name} image")
        self.volume.CreateDefaultDisplayNodes()
        self.original = np.ascontiguousarray(binding.editor.read_box(level, self.plan.box))
        self.segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
        self.segmentation.CreateDefaultDisplayNodes()
        self.segmentation.SetReferenceImageGeometryParameterFromVolumeNode(self.volume)
        self._load()

    def _load(self):
        """The bound segments, sharing one labelmap that holds the ROI's labels (Slicer's own layout)."""
        labelmap = slicer.vtkOrientedImageData()
        z, y, x = self.original.shape
        labelmap.SetDimensions(x, y, z)
        labelmap.GetPointData().SetScalars(numpy_support.numpy_to_vtk(self.original.reshape(-1), deep=True))
        labelmap.SetImageToWorldMatrix(vtk_matrix(region_ijk_to_ras(self.binding.store.levels[self.level], self.plan.box)))
        bound = self.binding.node.GetSegmentation()
        target = self.segmentation.GetSegmentation()
        for i in range(bound.GetNumberOfSegments()):
            segment_id = bound.GetNthSegmentID(i)
            add_shared_segment(target, segment_id, bound.GetSegment(segment_id), self.binding.value_of(segment_id),
                               labelmap)

    def labels(self):
        """The ROI segmentation now, as label values of the bound segments over the ROI's box (z, y, x)."""
        out = np.zeros(self.original.shape, dtype=self.original.dtype)
        segmentation = self.segmentation.GetSegmentation()
        for layer in range(segmentation.GetNumberOfLayers()):
            image = segmentation.GetLayerDataObject(layer)
            extent = image.GetExtent()
            if extent[1] < extent[0] or image.GetPointData().GetScalars() is None:
                continue
            dims = [extent[1] - extent[0] + 1, extent[3] - extent[2] + 1, extent[5] - extent[4] + 1]
            voxels = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(dims[2], dims[1], dims[0])
            # The layer lies on the volume's voxel grid (the reference geometry); clip its extent to the box.
            lo = [max(extent[2 * a], 0) for a in (2, 1, 0)]
            hi = [min(extent[2 * a + 1] + 1, n) for a, n in zip((2, 1, 0), out.shape)]
            if any(a >= b for a, b in zip(lo, hi)):
                continue
            part = voxels[tuple(slice(a - extent[2 * axis], b - extent[2 * axis])
                                for a, b, axis in zip(lo, hi, (2, 1, 0)))]
            into = out[tuple(slice(a, b) for a, b in zip(lo, hi))]
            for segment_id in self._layer_segments(segmentation, layer):
                segment = segmentation.GetSegment(segment_id)
                into[part == segment.GetLabelValue()] = self._value(segment_id, segment)
        return out

    @staticmethod
    def _layer_segments(segmentation, layer):
        ids = [segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())]
        return [segment_id for segment_id in ids if segmentation.GetLayerIndex(segment_id) == layer]

    def _value(self, segment_id, segment):
        """The pyramid's value of an ROI segment (a segment added in the ROI joins the bound segmentation)."""
        bound = self.binding.node.GetSegmentation()
        if bound.GetSegment(segment_id) is None:
            bound.AddEmptySegment(segment_id, segment.GetName(), list(segment.GetColor()))
        return self.binding.value_of(segment_id)

    def write_back(self):
        """Submit what changed as one operation; returns its sequence number, or None if nothing changed.
        The ROI's nodes are removed."""
        new = self.labels()
        changed = np.argwhere(new != self.original)
        seq = None
        if len(changed):
            lo, hi = changed.min(axis=0), changed.max(axis=0) + 1
            box = tuple((int(o + a), int(o + b)) for (o, _), a, b in zip(self.plan.box, lo, hi))
            patch = new[tuple(slice(a, b) for a, b in zip(lo, hi))]
            seq = self.binding.editor.submit(Replace.from_labels(self.binding.store.levels[self.level], box, patch))
        self.discard()
        return seq

    def discard(self):
        """Remove the ROI's volume and segmentation without writing anything."""
        scene = self.binding.scene
        for node in (self.segmentation, self.volume):
            if node is not None and node.GetScene() is not None:
                scene.RemoveNode(node)
        self.segmentation = self.volume = None
