"""Slicer painting at full resolution, without Qt: the oracle for BigVolume's editing.

An ordinary volume and segmentation in a scene, edited through Slicer's own
vtkSlicerSegmentEditorLogic (slicer-core): each stroke's brush is made as
Slicer's Paint effect makes it (a sphere or a one-slice disc as polydata,
turned into a stencil in the segmentation's voxel grid by
vtkPolyDataToImageStencil, stamped at each stroke point's nearest voxel), then
ModifySegmentByLabelmap adds it to the segment with the editor node's
masking. Draw polygons are filled by the logic's own AppendPolyMask on a
slice node.
"""

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support

from BigVolumeLib.volume_nodes import set_ijk_to_ras


class SlicerPainter:
    def __init__(self, voxels, ijk_to_ras):
        self.scene = slicer.vtkMRMLScene()
        slicer.vtkSlicerSegmentationsModuleLogic().SetMRMLScene(self.scene)  # representation converters
        self.ijk_to_ras = np.asarray(ijk_to_ras, dtype=float)
        self.shape = voxels.shape
        self.volume = self.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "full resolution")
        image = vtk.vtkImageData()
        image.SetDimensions(voxels.shape[2], voxels.shape[1], voxels.shape[0])
        image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(np.ascontiguousarray(voxels).reshape(-1), deep=True))
        self.volume.SetAndObserveImageData(image)
        set_ijk_to_ras(self.volume, self.ijk_to_ras)
        self.segmentation = self.scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
        self.segmentation.CreateDefaultDisplayNodes()
        self.segmentation.SetReferenceImageGeometryParameterFromVolumeNode(self.volume)
        self.editor_node = self.scene.AddNewNodeByClass("vtkMRMLSegmentEditorNode")
        self.logic = slicer.vtkSlicerSegmentEditorLogic()
        self.logic.SetMRMLScene(self.scene)
        self.logic.SetSegmentEditorNode(self.editor_node)
        self.logic.SetSegmentationNode(self.segmentation)
        self.logic.SetSourceVolumeNode(self.volume)
        self.segment_ids = {}

    def add_segment(self, value):
        self.segment_ids[value] = self.segmentation.GetSegmentation().AddEmptySegment(f"segment {value}")
        return self.segment_ids[value]

    def _brush_stencil(self, radius_mm, normal=None, height_mm=None):
        """The brush as a 0/1 array in voxel index space around its centre voxel, and that centre's offset."""
        if normal is None:
            source = vtk.vtkSphereSource()
            source.SetRadius(radius_mm)
            source.SetPhiResolution(32)
            source.SetThetaResolution(32)
            brush_to_world = vtk.vtkTransform()
        else:
            source = vtk.vtkCylinderSource()  # its axis is y: turned onto the slice normal
            source.SetRadius(radius_mm)
            source.SetHeight(height_mm)
            source.SetResolution(32)
            y = np.array([0.0, 1.0, 0.0])
            n = np.asarray(normal, dtype=float) / np.linalg.norm(normal)
            axis = np.cross(y, n)
            angle = np.degrees(np.arccos(np.clip(y @ n, -1, 1)))
            brush_to_world = vtk.vtkTransform()
            if np.linalg.norm(axis) > 1e-9:
                brush_to_world.RotateWXYZ(angle, *axis)
            elif angle > 90:
                brush_to_world.RotateX(180)
        world_to_ijk = vtk.vtkTransform()
        rotation = np.linalg.inv(self.ijk_to_ras)
        matrix = vtk.vtkMatrix4x4()
        for r in range(3):
            for c in range(3):
                matrix.SetElement(r, c, rotation[r, c])
        world_to_ijk.SetMatrix(matrix)  # translation left out: the brush stays centred on the origin
        world_to_ijk.Concatenate(brush_to_world)
        transformed = vtk.vtkTransformPolyDataFilter()
        transformed.SetInputConnection(source.GetOutputPort())
        transformed.SetTransform(world_to_ijk)
        transformed.Update()
        bounds = transformed.GetOutput().GetBounds()
        extent = [int(np.floor(bounds[0])) - 1, int(np.ceil(bounds[1])) + 1, int(np.floor(bounds[2])) - 1,
                  int(np.ceil(bounds[3])) + 1, int(np.floor(bounds[4])) - 1, int(np.ceil(bounds[5])) + 1]
        stencil = vtk.vtkPolyDataToImageStencil()
        stencil.SetInputConnection(transformed.GetOutputPort())
        stencil.SetOutputSpacing(1, 1, 1)
        stencil.SetOutputOrigin(0, 0, 0)
        stencil.SetOutputWholeExtent(extent)
        to_image = vtk.vtkImageStencilToImage()
        to_image.SetInputConnection(stencil.GetOutputPort())
        to_image.SetInsideValue(1)
        to_image.SetOutsideValue(0)
        to_image.SetOutputScalarTypeToUnsignedChar()
        to_image.Update()
        out = to_image.GetOutput()
        dims = out.GetDimensions()
        array = numpy_support.vtk_to_numpy(out.GetPointData().GetScalars()).reshape(dims[2], dims[1], dims[0])
        return array.astype(bool), (extent[4], extent[2], extent[0])

    def _modifier(self):
        self.logic.ResetModifierLabelmapToDefault()
        modifier = self.logic.GetModifierLabelmap()
        extent = modifier.GetExtent()
        dims = [extent[1] - extent[0] + 1, extent[3] - extent[2] + 1, extent[5] - extent[4] + 1]
        voxels = numpy_support.vtk_to_numpy(modifier.GetPointData().GetScalars()).reshape(dims[2], dims[1], dims[0])
        return modifier, voxels, (extent[4], extent[2], extent[0])

    def _modify(self, value, modifier, mode):
        self.logic.ModifySegmentByLabelmap(self.segmentation, self.segment_ids[value], modifier, mode, True, False)

    def paint(self, value, points_ras, radius_mm, normal=None, height_mm=None, erase=False):
        """One stroke (points already interpolated, as the Paint effect does before stamping)."""
        brush, brush_origin = self._brush_stencil(radius_mm, normal, height_mm)
        modifier, voxels, origin = self._modifier()
        to_ijk = np.linalg.inv(self.ijk_to_ras)
        for point in points_ras:
            ijk = np.rint((to_ijk @ [*point, 1.0])[:3]).astype(int)  # the brush snaps to a voxel, as in Slicer
            start = np.array([ijk[2], ijk[1], ijk[0]]) + brush_origin - origin
            lo, hi = np.maximum(start, 0), np.minimum(start + brush.shape, voxels.shape)
            if np.any(lo >= hi):
                continue
            target = tuple(slice(a, b) for a, b in zip(lo, hi))
            source = tuple(slice(a - s, b - s) for a, b, s in zip(lo, hi, start))
            voxels[target] |= brush[source]
        modifier.Modified()
        mode = slicer.vtkSlicerSegmentEditorLogic.ModificationModeRemove if erase else \
            slicer.vtkSlicerSegmentEditorLogic.ModificationModeAdd
        self._modify(value, modifier, mode)

    def labels(self):
        """The segmentation as one label array over the whole volume (z, y, x), each segment its value."""
        out = np.zeros(self.shape, dtype=np.uint8)
        for value, segment_id in self.segment_ids.items():
            self.editor_node.SetSelectedSegmentID(segment_id)
            self.logic.UpdateSelectedSegmentLabelmap()
            labelmap = self.logic.GetSelectedSegmentLabelmap()
            extent = labelmap.GetExtent()
            if extent[1] < extent[0]:
                continue
            dims = [extent[1] - extent[0] + 1, extent[3] - extent[2] + 1, extent[5] - extent[4] + 1]
            voxels = numpy_support.vtk_to_numpy(labelmap.GetPointData().GetScalars()).reshape(dims[2], dims[1], dims[0])
            region = tuple(slice(extent[2 * a], extent[2 * a + 1] + 1) for a in (2, 1, 0))
            out[region][voxels > 0] = value
        return out
