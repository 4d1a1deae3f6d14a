"""One streamer per slice view: what the view shows of a BigVolume image.

It observes its slice node, plans which level and chunks the view needs
(bigvolume.streaming.slice_planner), asks the shared fetch engine for them, and composes
whatever has arrived into a small proxy volume node shown in one layer of
that view only (the background by default; `layer` chooses another, so the
user keeps the layers they need). Slicer then displays the proxy like any
volume: window/level, data probe, crosshair and markups work on it.

`plan()` and `compose()` are cheap and run on the main thread; the streaming
scene calls them on every update (a timer inside Slicer).
"""

import numpy as np
import vtk
from vtk.util import numpy_support

from bigvolume.streaming.ordering import NOW, VISIBLE
from bigvolume.streaming.slice_composition import Composition
from bigvolume.streaming.slice_planner import plan_slice

from ..volume_nodes import numpy_matrix, set_ijk_to_ras

LAYERS = ("background", "foreground", "label")


def composite_node_of(scene, slice_node):
    """The slice composite node of a slice view (same layout name)."""
    nodes = scene.GetNodesByClass("vtkMRMLSliceCompositeNode")
    for i in range(nodes.GetNumberOfItems()):
        node = nodes.GetItemAsObject(i)
        if node.GetLayoutName() == slice_node.GetLayoutName():
            return node
    return None


def fit_slice_to_image(slice_node, image):
    """Centre a slice view on the image and fit its field of view to the whole volume (keeping the orientation)."""
    level = image.levels[0]
    lo, hi = image.bounds_ras(0, edges=True)  # voxel faces, as Slicer fits
    voxel = np.asarray(level.voxel_size_mm)
    centre = (lo + hi) / 2.0
    slice_to_ras = slice_node.GetSliceToRAS()
    rotation = np.array([[slice_to_ras.GetElement(r, c) for c in range(3)] for r in range(3)])
    extent = np.abs(rotation.T) @ (hi - lo)  # the volume's extent along the view's x, y, normal
    # Like Slicer, put the slice on a voxel centre when the view looks along a voxel axis.
    normal_ijk = level.ras_to_ijk[:3, :3] @ rotation[:, 2]
    axis = int(np.argmax(np.abs(normal_ijk)))
    if np.abs(normal_ijk).max() > 0.999999 * np.linalg.norm(normal_ijk):
        centre_ijk = level.ras_to_ijk @ np.append(centre, 1.0)
        shift = np.ceil(centre_ijk[axis] - 0.5) - centre_ijk[axis]
        centre = centre + level.ijk_to_ras[:3, axis] * shift
    width, height = slice_node.GetDimensions()[:2]
    fov_x = max(extent[0], extent[1] * width / height)
    for r in range(3):
        slice_to_ras.SetElement(r, 3, float(centre[r]))
    slice_node.SetXYZOrigin(0, 0, 0)
    slice_node.SetFieldOfView(fov_x, fov_x * height / width, float(voxel.min()))
    slice_node.UpdateMatrices()


class SliceStreamer:
    """Streams one source into one slice view (`view_node` is its vtkMRMLSliceNode)."""

    def __init__(self, scene, slice_node, source, engine, display, layer="background", name=None):
        if layer not in LAYERS:
            raise ValueError(f"layer must be one of {LAYERS}, not {layer!r}")
        self.scene, self.slice_node, self.source, self.engine = scene, slice_node, source, engine
        self.image = source.image
        self.layer = layer
        self.requester = f"slice:{slice_node.GetID()}:{source.id}"
        self.display = display
        self._composition = None  # what the current plan has painted so far
        self._shared = None  # the buffer VTK's scalars point into
        self._plan = None
        self._view_key = None
        self._sent = False  # the plan's needs are with the engine
        self._composed = None  # (view key, the source's generation) last composed
        self._edits_shown = 0  # the engine's count of the source's content changes, as composed
        self._last_centre = None
        self.complete = False
        self.level = None
        self._observer = slice_node.AddObserver(vtk.vtkCommand.ModifiedEvent, self._on_view_modified)
        self._dirty = True
        self._make_proxy(name or f"BigVolume {slice_node.GetName()}")

    # -- the proxy: a scalar volume node in one layer of the view (LabelSliceStreamer shows segments instead) --
    def _make_proxy(self, name):
        self.proxy = self.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
        self.proxy.SetHideFromEditors(True)
        # A scene saves a reference to the store (scene_state.py), never a copy of what a view shows.
        self.proxy.SetSaveWithScene(False)
        self.proxy.CreateDefaultDisplayNodes()
        self.proxy.GetDisplayNode().SetSaveWithScene(False)
        self.display.attach(self.proxy.GetScalarVolumeDisplayNode())
        self._image_data = vtk.vtkImageData()
        self.proxy.SetAndObserveImageData(self._image_data)
        self._composite = composite_node_of(self.scene, self.slice_node)
        if self._composite is None:
            raise RuntimeError(f"slice view {self.slice_node.GetName()} has no slice composite node")
        self._show_in_layer()
        self._composite_observer = self._composite.AddObserver(vtk.vtkCommand.ModifiedEvent, self._on_view_modified)

    @property
    def view_node(self):
        return self.slice_node

    @property
    def showing(self):
        """True once the proxy holds composed voxels (a coarse preview at least)."""
        return self._composition is not None and self._composed is not None and self._shared is not None

    @property
    def voxels(self):
        """The proxy's voxels as composed so far (z, y, x numpy array), or None before the first frame."""
        return self._shared

    @property
    def current_plan(self):
        """The current SlicePlan (level, kind, box), or None before the first."""
        return self._plan

    @property
    def plan_chunks(self):
        """{level: [chunk coordinates]} the current plan shows (coarser levels fill until its own arrives)."""
        return self._plan.chunks if self._plan is not None else {}

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

    def _on_view_modified(self, caller, event):
        self._dirty = True

    def _view_state(self):
        xy_to_ras = numpy_matrix(self.slice_node.GetXYToRAS())
        dims = self.slice_node.GetDimensions()
        return xy_to_ras, (int(dims[0]), int(dims[1]))

    def plan(self):
        """Re-plan if the slice node changed since the last plan and tell the engine what the view needs now."""
        if not self.shown:  # hidden by the user: withdraw the view's requests
            if self._sent:
                self.engine.cancel(self.requester)
                self._sent = False  # sent again when the proxy is shown again
            self._dirty = True
            return self._plan
        if self._dirty or self._plan is None:
            xy_to_ras, dims = self._view_state()
            key = (xy_to_ras.round(9).tobytes(), dims)
            if key != self._view_key:
                centre = xy_to_ras @ np.array([(dims[0] - 1) / 2.0, (dims[1] - 1) / 2.0, 0.0, 1.0])
                motion = None if self._last_centre is None else (centre - self._last_centre)[:3]
                self._plan = plan_slice(self.image, xy_to_ras, dims, motion_ras=motion,
                                        first_frame=not self.showing)
                self._last_centre = centre
                self._view_key = key
                self.level = self._plan.level
                self._sent = False
            self._dirty = False
        if not self._sent:
            self._submit()
        return self._plan

    def _submit(self, refresh=False):
        """Send the plan's needs; `refresh` (chunks edited under a view that shows them): nothing is read on the
        main thread (NOW is for a view's first frame only), the edited chunks come as any visible chunk."""
        key = self.source.key
        self.engine.submit(self.requester, [(VISIBLE if refresh and tier == NOW else tier, level, distance,
                                             key(level, coords)) for tier, level, distance, coords in self._plan.needs])
        self._sent = True

    def compose(self):
        """Compose what has arrived into the proxy, if the view or the cache changed since last time."""
        state = (self._view_key, self.engine.generation(self.source.id))
        if self._plan is None or state == self._composed or not self.shown:
            return False
        fresh = self._composition is None or self._composition.plan is not self._plan
        edits = self.engine.edit_count(self.source.id)
        if not fresh and edits != self._edits_shown:  # chunks it painted were edited: paint them again
            if self._composition.forget(self.engine.edited_since(self.source.id, self._edits_shown)):
                self.complete = False
                self._submit(refresh=True)  # they left the cache: ask for them again
        self._edits_shown = edits
        if fresh:
            buffer = self._composition.out if self._composition is not None else None
            self._composition = Composition(self.source, self._plan, buffer)
        painted = self._composition.update(self.engine.cache)
        self._composed = state
        if not (painted or fresh):
            return False
        self.complete = self._composition.complete
        self._push(self._composition.out)
        return True

    def _push(self, data):
        self._set_scalars(self._image_data, data)
        set_ijk_to_ras(self.proxy, self._plan.proxy_ijk_to_ras)
        self.proxy.Modified()

    def _set_scalars(self, image_data, data):
        """Let `image_data` show the composition buffer `data` (z, y, x), without a copy when it can."""
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

    def close(self):
        self.engine.cancel(self.requester)
        self.slice_node.RemoveObserver(self._observer)
        self._close_proxy()

    def _close_proxy(self):
        self._composite.RemoveObserver(self._composite_observer)
        self.display.detach(self.proxy.GetScalarVolumeDisplayNode())
        if self.proxy.GetScene() is not None:
            self.scene.RemoveNode(self.proxy)
