"""Slice views without the Slicer application or a screen: scene, application logic and slice logics.

The blended image a vtkMRMLSliceLogic produces is exactly what Slicer draws in
that slice view, so tests compare it pixel by pixel, and the demo and the
benchmarks save or time it. Needs only the MRML classes (slicer-core wheel).
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
        node = self.scene.CreateNodeByClass("vtkMRMLSliceNode")  # carries the scene's orientation presets
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
        """The RGBA image Slicer shows in that view, as a (height, width, 4) uint8 array, top row first."""
        blend = self.logics[name].GetBlend()
        blend.Update()
        output = blend.GetOutput()
        width, height, _ = output.GetDimensions()
        rows = numpy_support.vtk_to_numpy(output.GetPointData().GetScalars()).reshape(height, width, -1)
        return rows[::-1].copy()  # VTK's first row is the bottom of the view

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


def save_png(rgba, path):
    """Write a (height, width, 3 or 4) uint8 image, top row first, as PNG with VTK."""
    from vtk import vtkPNGWriter

    height, width, components = rgba.shape
    image = vtk.vtkImageData()
    image.SetDimensions(width, height, 1)
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(np.ascontiguousarray(rgba[::-1]).reshape(-1, components), deep=True))
    writer = vtkPNGWriter()
    writer.SetFileName(str(path))
    writer.SetInputData(image)
    writer.Write()
