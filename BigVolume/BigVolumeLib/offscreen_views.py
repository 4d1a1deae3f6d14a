"""Slice views without the Slicer application: the scene, application logic and slice logics of slicer-core.

The blended image a vtkMRMLSliceLogic produces is exactly what Slicer draws in
that slice view, so comparing it is comparing Slicer's rendering, pixel by pixel.
"""

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support


class SliceScene:
    def __init__(self):
        self.scene = slicer.vtkMRMLScene()
        self.app_logic = slicer.vtkSlicerApplicationLogic()
        self.app_logic.SetMRMLScene(self.scene)
        self.app_logic.GetColorLogic().SetMRMLScene(self.scene)
        self.app_logic.GetColorLogic().AddDefaultColorNodes()
        self.app_logic.SetSliceLogics(vtk.vtkCollection())
        slicer.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(self.scene, True)
        self.logics = {}

    def add_view(self, name, orientation="Axial", size=(256, 256)):
        node = slicer.vtkMRMLSliceNode()
        node.SetName(name)
        node.SetLayoutName(name)
        node.SetSingletonTag(name)
        self.scene.AddNode(node)
        node.SetOrientation(orientation)
        node.SetDimensions(size[0], size[1], 1)
        logic = slicer.vtkMRMLSliceLogic()
        logic.SetMRMLApplicationLogic(self.app_logic)
        logic.SetMRMLScene(self.scene)
        logic.SetSliceNode(node)
        self.app_logic.GetSliceLogics().AddItem(logic)
        self.logics[name] = logic
        return node

    def composite(self, name):
        return self.logics[name].GetSliceCompositeNode()

    def render(self, name):
        """The RGBA image Slicer shows in that view, as a (height, width, 4) uint8 array."""
        blend = self.logics[name].GetBlend()
        blend.Update()
        output = blend.GetOutput()
        width, height, _ = output.GetDimensions()
        return numpy_support.vtk_to_numpy(output.GetPointData().GetScalars()).reshape(height, width, -1).copy()

    def add_volume(self, voxels, ijk_to_ras, window_level, name="reference"):
        node = self.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
        image = vtk.vtkImageData()
        image.SetDimensions(voxels.shape[2], voxels.shape[1], voxels.shape[0])
        image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(np.ascontiguousarray(voxels).reshape(-1), deep=True))
        node.SetAndObserveImageData(image)
        matrix = vtk.vtkMatrix4x4()
        for r in range(4):
            for c in range(4):
                matrix.SetElement(r, c, float(ijk_to_ras[r][c]))
        node.SetIJKToRASMatrix(matrix)
        node.CreateDefaultDisplayNodes()
        display = node.GetScalarVolumeDisplayNode()
        display.SetAutoWindowLevel(False)
        display.SetWindowLevel(*window_level)
        return node
