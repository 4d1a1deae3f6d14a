"""One streamer per slice view: what the view shows of a BigVolume image.

It observes its slice node, plans which level and chunks the view needs
(bigvolume.streaming.slice_planner), asks the shared fetch engine for them, and composes
whatever has arrived into a small proxy volume node shown in one layer of
that view only (the background by default; `layer` chooses another, so the
user keeps the layers they need). Slicer then displays the proxy like any
volume: window/level, data probe, crosshair and markups work on it.

`update()` is cheap and runs on the main thread (a timer calls it inside
Slicer; tests and scripts call it directly).
"""

import numpy as np
import vtk
from vtk.util import numpy_support

from bigvolume.streaming.slice_composition import Composition
from bigvolume.streaming.slice_planner import plan_slice

from ..volume_nodes import set_ijk_to_ras

LAYERS = ("background", "foreground", "label")


def _matrix(vtk_matrix):
    return np.array([[vtk_matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def composite_node_of(scene, slice_node):
    """The slice composite node of a slice view (same layout name)."""
    nodes = scene.GetNodesByClass("vtkMRMLSliceCompositeNode")
    for i in range(nodes.GetNumberOfItems()):
        node = nodes.GetItemAsObject(i)
        if node.GetLayoutName() == slice_node.GetLayoutName():
            return node
    return None


class SliceStreamer:
    def __init__(self, scene, slice_node, image, engine, window_level=None, layer="background", name=None):
        if layer not in LAYERS:
            raise ValueError(f"layer must be one of {LAYERS}, not {layer!r}")
        self.scene, self.slice_node, self.image, self.engine = scene, slice_node, image, engine
        self.layer = layer
        self.view_id = f"slice:{slice_node.GetID()}"
        self.proxy = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name or f"BigVolume {slice_node.GetName()}")
        self.proxy.SetHideFromEditors(True)
        # A scene saves a reference to the store (scene_state.py), never a copy of what a view shows.
        self.proxy.SetSaveWithScene(False)
        self.proxy.CreateDefaultDisplayNodes()
        self.proxy.GetDisplayNode().SetSaveWithScene(False)
        if window_level is not None:
            self.set_window_level(*window_level)
        self._image_data = vtk.vtkImageData()
        self.proxy.SetAndObserveImageData(self._image_data)
        self._buffer = None
        self._composition = None  # what the current plan has painted so far
        self._shared = None  # the buffer VTK's scalars point into
        self._plan = None
        self._view_key = None
        self._unsent = False  # the plan's requests are not with the fetch engine yet
        self._composed = None  # (view key, engine generation) last composed
        self._last_centre = None
        self.complete = False
        self.level = None
        self._observer = slice_node.AddObserver(vtk.vtkCommand.ModifiedEvent, self._on_slice_modified)
        self._dirty = True
        self._composite = composite_node_of(scene, slice_node)
        if self._composite is None:
            raise RuntimeError(f"slice view {slice_node.GetName()} has no slice composite node")
        self._show_in_layer()
        self._composite_observer = self._composite.AddObserver(vtk.vtkCommand.ModifiedEvent, self._on_slice_modified)

    def _show_in_layer(self):
        setter = {"background": self._composite.SetBackgroundVolumeID,
                  "foreground": self._composite.SetForegroundVolumeID,
                  "label": self._composite.SetLabelVolumeID}[self.layer]
        setter(self.proxy.GetID())

    @property
    def shown(self):
        """False while the user shows another volume in the streamer's layer of this view: it then fetches nothing."""
        getter = {"background": self._composite.GetBackgroundVolumeID,
                  "foreground": self._composite.GetForegroundVolumeID,
                  "label": self._composite.GetLabelVolumeID}[self.layer]
        return getter() == self.proxy.GetID()

    def _on_slice_modified(self, caller, event):
        self._dirty = True

    def _view_state(self):
        xy_to_ras = _matrix(self.slice_node.GetXYToRAS())
        dims = self.slice_node.GetDimensions()
        return xy_to_ras, (int(dims[0]), int(dims[1]))

    def update(self):
        """Re-plan if the view moved, then re-compose if anything new arrived. Returns True if the proxy changed."""
        self.plan()
        return self.compose()

    def plan(self, submit=True):
        """Re-plan if the slice node changed since the last plan; `submit` sends new requests to the fetch engine."""
        if self._plan is not None and not self.shown:  # hidden by the user: withdraw the view's requests
            if not self._unsent:
                self.engine.cancel(self.view_id)
                self._unsent = True  # sent again when the proxy is shown again
            self._dirty = True
            return self._plan
        if not (self._dirty or self._plan is None):
            if submit:
                self.submit()
            return self._plan
        xy_to_ras, dims = self._view_state()
        key = (xy_to_ras.round(9).tobytes(), dims)
        if key != self._view_key:
            centre = xy_to_ras @ np.array([(dims[0] - 1) / 2.0, (dims[1] - 1) / 2.0, 0.0, 1.0])
            motion = None if self._last_centre is None else (centre - self._last_centre)[:3]
            self._plan = plan_slice(self.image, xy_to_ras, dims, motion_ras=motion)
            self._last_centre = centre
            self._view_key = key
            self.level = self._plan.level
            self._unsent = True
        self._dirty = False
        if submit:
            self.submit()
        return self._plan

    def submit(self):
        """Send the current plan's requests to the fetch engine, unless they were sent already."""
        if self._unsent:
            self.engine.submit(self.view_id, self._plan.requests)
            self._unsent = False

    def set_window_level(self, window, level):
        display = self.proxy.GetScalarVolumeDisplayNode()
        display.SetAutoWindowLevel(False)
        display.SetWindowLevel(window, level)

    def compose(self):
        """Compose what has arrived into the proxy, if the view or the cache changed since last time."""
        state = (self._view_key, self.engine.generation)
        if state == self._composed or not self.shown:
            return False
        fresh = self._composition is None or self._composition.plan is not self._plan
        if fresh:
            self._composition = Composition(self.image, self._plan, self._buffer)
        painted = self._composition.update(self.engine.cache)
        self._composed = state
        if not (painted or fresh):
            return False
        self._buffer, self.complete = self._composition.out, self._composition.complete
        self._push()
        return True

    def _push(self):
        data = self._buffer
        image_data = self._image_data
        if tuple(image_data.GetDimensions()) != (data.shape[2], data.shape[1], data.shape[0]) or \
                image_data.GetPointData().GetScalars() is None:
            image_data.SetDimensions(data.shape[2], data.shape[1], data.shape[0])
        current = image_data.GetPointData().GetScalars()
        if current is not None and self._shared is data:
            current.Modified()  # composed in place into the array VTK already shows
        else:
            # VTK reads the composition buffer directly (no copy); self._shared keeps it alive.
            scalars = numpy_support.numpy_to_vtk(data.reshape(-1), deep=False)
            scalars.SetName("ImageScalars")
            image_data.GetPointData().SetScalars(scalars)
            self._shared = data
        image_data.Modified()
        set_ijk_to_ras(self.proxy, self._plan.proxy_ijk_to_ras)
        self.proxy.Modified()

    def close(self):
        self.engine.cancel(self.view_id)
        self.slice_node.RemoveObserver(self._observer)
        self._composite.RemoveObserver(self._composite_observer)
        if self.proxy.GetScene() is not None:
            self.scene.RemoveNode(self.proxy)
