"""Slice and 3D views without the Slicer application or a screen: scene, application logic, views.

The blended image a vtkMRMLSliceLogic produces is exactly what Slicer draws in
that slice view, so tests compare it pixel by pixel, and the demo and the
benchmarks save or time it. A 3D view is a view node with Slicer's own
displayable managers (camera, view, volume rendering) on an offscreen render
window (EGL where VTK has it, so no X server is needed), assembled as
Slicer's qMRMLThreeDView does. Needs only the MRML classes (slicer-core wheel).
"""

import functools
import os
import subprocess
import sys

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support

from ..volume_nodes import set_ijk_to_ras


class OffscreenScene:
    def __init__(self):
        self.scene = slicer.vtkMRMLScene()
        self.app_logic = slicer.vtkSlicerApplicationLogic()
        self.app_logic.SetMRMLScene(self.scene)
        self.app_logic.GetColorLogic().SetMRMLScene(self.scene)
        self.app_logic.GetColorLogic().AddDefaultColorNodes()
        self.app_logic.SetSliceLogics(vtk.vtkCollection())
        self.app_logic.SetViewLogics(vtk.vtkCollection())
        slicer.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(self.scene, True)
        self.logics = {}
        self.views_3d = {}
        self.overlays = {}  # slice view name -> SliceOverlayView
        self._volume_rendering = None

    @property
    def volume_rendering(self):
        """The scene's vtkSlicerVolumeRenderingLogic (Slicer's Volume Rendering module logic), made on first use."""
        if self._volume_rendering is None:
            logic = slicer.vtkSlicerVolumeRenderingLogic()
            logic.SetMRMLApplicationLogic(self.app_logic)
            logic.SetMRMLScene(self.scene)
            self._volume_rendering = logic
        return self._volume_rendering

    def add_3d_view(self, name, size=(240, 180)):
        """A 3D view (its vtkMRMLViewNode); render it with `render_3d(name)`."""
        view = ThreeDView(self.scene, self.app_logic, name, size)
        self.views_3d[name] = view
        return view.view_node

    def render_3d(self, name):
        return self.views_3d[name].render()

    def view_size(self, view_node):
        """A 3D view's size in pixels (what StreamingScene's `view_size` asks)."""
        for view in self.views_3d.values():
            if view.view_node.GetID() == view_node.GetID():
                return view.size
        raise KeyError(f"no 3D view for {view_node.GetID()}")

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

    def render_overlays(self, name):
        """What the slice view's displayable managers draw over the slice image (segmentations), on black:
        (height, width, 4) uint8, top row first. The view's renderer is assembled on first use."""
        if name not in self.overlays:
            self.overlays[name] = SliceOverlayView(self.app_logic, self.logics[name].GetSliceNode())
        return self.overlays[name].render()

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
        set_ijk_to_ras(node, ijk_to_ras)
        node.CreateDefaultDisplayNodes()
        display = node.GetScalarVolumeDisplayNode()
        display.SetAutoWindowLevel(False)
        display.SetWindowLevel(*window_level)
        return node


THREE_D_MANAGERS = ("vtkMRMLCameraDisplayableManager", "vtkMRMLViewDisplayableManager",
                    "vtkMRMLVolumeRenderingDisplayableManager")


def offscreen_render_window():
    """A render window that needs no screen: EGL when VTK was built with it, else VTK's default (OSMesa builds)."""
    from vtkmodules import vtkRenderingOpenGL2

    window_class = getattr(vtkRenderingOpenGL2, "vtkEGLRenderWindow", None) or vtk.vtkRenderWindow
    window = window_class()
    window.SetOffScreenRendering(1)
    window.SetMultiSamples(0)
    return window


@functools.lru_cache(maxsize=None)
def offscreen_3d_works():
    """Whether this machine renders offscreen OpenGL (EGL or OSMesa): tried once in a child process, since a
    missing driver can crash the process that tries."""
    code = ("from BigVolumeLib.offscreen.views import offscreen_render_window; "
            "w = offscreen_render_window(); w.SetSize(8, 8); w.Render(); print('ok')")
    folder = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {**os.environ, "PYTHONPATH": folder + os.pathsep + os.environ.get("PYTHONPATH", "")}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    return run.returncode == 0 and "ok" in run.stdout


SLICE_MANAGERS = ("vtkMRMLSegmentationsDisplayableManager2D",)


def _grab(render_window):
    """The RGBA image of a render window, (height, width, 4) uint8, top row first."""
    render_window.Render()
    grab = vtk.vtkWindowToImageFilter()
    grab.SetInput(render_window)
    grab.SetInputBufferTypeToRGBA()
    grab.ReadFrontBufferOff()
    grab.Update()
    output = grab.GetOutput()
    width, height, _ = output.GetDimensions()
    rows = numpy_support.vtk_to_numpy(output.GetPointData().GetScalars()).reshape(height, width, -1)
    return rows[::-1].copy()


class SliceOverlayView:
    """A slice view's renderer with Slicer's 2D displayable managers (as qMRMLSliceView registers them), offscreen.

    The slice image itself comes from the slice logic (`OffscreenScene.render`); this draws what the managers
    add over it, such as segmentations with their fill and outline.
    """

    def __init__(self, app_logic, slice_node):
        factory = slicer.vtkMRMLSliceViewDisplayableManagerFactory.GetInstance()
        factory.SetMRMLApplicationLogic(app_logic)
        for manager in SLICE_MANAGERS:
            if not factory.IsDisplayableManagerRegistered(manager):
                factory.RegisterDisplayableManager(manager)
        self.slice_node = slice_node
        self.render_window = offscreen_render_window()
        self.renderer = vtk.vtkRenderer()
        self.render_window.AddRenderer(self.renderer)
        self.interactor = vtk.vtkGenericRenderWindowInteractor()
        self.interactor.SetRenderWindow(self.render_window)
        self.interactor.Initialize()
        self.managers = slicer.vtkMRMLDisplayableManagerGroup()
        self.managers.Initialize(factory, self.renderer)
        self.managers.SetMRMLDisplayableNode(slice_node)

    def render(self):
        width, height = self.slice_node.GetDimensions()[:2]
        if tuple(self.render_window.GetSize()) != (width, height):
            self.render_window.SetSize(width, height)
        return _grab(self.render_window)


class ThreeDView:
    """One 3D view: view node (through vtkMRMLViewLogic), renderer and displayable managers, rendered offscreen."""

    def __init__(self, scene, app_logic, name, size):
        factory = slicer.vtkMRMLThreeDViewDisplayableManagerFactory.GetInstance()
        factory.SetMRMLApplicationLogic(app_logic)
        for manager in THREE_D_MANAGERS:
            if not factory.IsDisplayableManagerRegistered(manager):
                factory.RegisterDisplayableManager(manager)
        self.render_window = offscreen_render_window()
        self.render_window.SetSize(*size)
        self.renderer = vtk.vtkRenderer()
        self.render_window.AddRenderer(self.renderer)
        self.interactor = vtk.vtkGenericRenderWindowInteractor()  # the displayable managers observe one
        self.interactor.SetRenderWindow(self.render_window)
        self.interactor.Initialize()
        self.managers = slicer.vtkMRMLDisplayableManagerGroup()
        self.managers.Initialize(factory, self.renderer)
        self.logic = slicer.vtkMRMLViewLogic()
        self.logic.SetMRMLApplicationLogic(app_logic)
        self.logic.SetMRMLScene(scene)
        app_logic.GetViewLogics().AddItem(self.logic)
        self.view_node = self.logic.AddViewNode(name)
        self.managers.SetMRMLDisplayableNode(self.view_node)

    @property
    def size(self):
        return tuple(self.render_window.GetSize())

    @property
    def camera_node(self):
        return self.managers.GetDisplayableManagerByClassName("vtkMRMLCameraDisplayableManager").GetCameraNode()

    def render(self):
        """The RGBA image of the view, (height, width, 4) uint8, top row first."""
        return _grab(self.render_window)


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
