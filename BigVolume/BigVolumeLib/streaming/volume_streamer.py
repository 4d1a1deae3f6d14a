"""One streamer per 3D view: Slicer volume-renders the part of a BigVolume image the camera sees.

It observes the view's camera node, the view node and its own volume
rendering display node (cropping ROI). When the camera has settled, it plans
the visible region at the finest level that fits the view's limits
(bigvolume.streaming.volume_planner), asks the shared engine for it below
the slice views' priority (BACKGROUND), and when every chunk has arrived
swaps the region in as a new vtkImageData of its proxy volume node. Resizing
the displayed image in place would make the displayable manager upload a
half-built texture; a new image is uploaded whole, and until then the
previous rendering stays.

Never empty: the first rendering is the whole volume at the coarsest level;
later, when the camera moves so far that what it sees is no longer inside the
region shown (a zoom out, a large pan), the coarse whole volume is swapped
in at once (its chunks are in the cache: every source keeps the coarsest
level requested) and the new region follows. Small moves stay inside the
region, which carries a margin.

The proxy is an ordinary scalar volume node, hidden from editors and not
saved with the scene, with a GPU ray-cast volume rendering display node shown
in this view only; presets, opacity, shift and the cropping ROI of Slicer's
Volume Rendering module apply to it as to any volume and survive the swaps.
"""

import time
from dataclasses import dataclass

import numpy as np
import vtk
from vtk.util import numpy_support

from bigvolume.streaming.ordering import BACKGROUND, PREFETCH
from bigvolume.streaming.slice_composition import Composition
from bigvolume.streaming.volume_planner import Camera, Limits, plan_volume, whole_volume_plan

from ..volume_nodes import set_ijk_to_ras

DEFAULT_GPU_MEMORY_MB = 256  # Slicer's default when the view node leaves it at 0
GPU_FRACTION = 0.75  # of the GPU memory for the texture (the rest: framebuffers, other volumes)
CACHE_FRACTION = 0.25  # of the chunk cache one 3D view's region may take (two views and the slices share it)
SETTLE_SECONDS = 0.3  # camera still this long before a new region is planned
# A CT-like transfer function over the source's window (low .. high): (fraction, opacity, r, g, b).
CT_LIKE = ((0.0, 0.0, 0.0, 0.0, 0.0), (0.35, 0.0, 0.55, 0.25, 0.15), (0.55, 0.15, 0.88, 0.6, 0.3),
           (0.8, 0.6, 1.0, 0.94, 0.8), (1.0, 0.85, 1.0, 1.0, 1.0))


@dataclass
class VolumeOptions:
    """Settings of every 3D view's streaming (the module panel's 3D controls)."""

    enabled: bool = True
    gpu_voxel_budget: int = None  # None: from the view node's GPU memory size
    quality: int = 0  # level offset from the screen-matched one: -1 finer, +1 coarser
    settle_seconds: float = SETTLE_SECONDS


def max_texture_side():
    """The 3D texture side Slicer's volume rendering allows (4096; 2048 on macOS), from its displayable manager."""
    import slicer

    manager = getattr(slicer, "vtkMRMLVolumeRenderingDisplayableManager", None)
    getter = getattr(manager, "GetMaximum3DTextureSize", None)
    return int(getter()) if getter is not None else 4096


def camera_of(scene, view_node):
    """The camera node of a 3D view (the one with the view's layout name), or None before the view made one."""
    nodes = scene.GetNodesByClass("vtkMRMLCameraNode")
    for i in range(nodes.GetNumberOfItems()):
        node = nodes.GetItemAsObject(i)
        if node.GetLayoutName() == view_node.GetLayoutName():
            return node
    return None


def camera_state(camera_node, size):
    camera = camera_node.GetCamera()
    return Camera(position=tuple(camera.GetPosition()), focal_point=tuple(camera.GetFocalPoint()),
                  view_up=tuple(camera.GetViewUp()), view_angle_deg=float(camera.GetViewAngle()),
                  parallel=bool(camera.GetParallelProjection()), parallel_scale=float(camera.GetParallelScale()),
                  size=tuple(int(v) for v in size))


def apply_ct_like(volume_property, window_level):
    """Scalar opacity and colour of a CT-like preset spread over the window (not the dtype's whole range)."""
    window, level = window_level
    low = level - window / 2.0
    opacity, color = vtk.vtkPiecewiseFunction(), vtk.vtkColorTransferFunction()
    for fraction, alpha, r, g, b in CT_LIKE:
        value = low + fraction * window
        opacity.AddPoint(value, alpha)
        color.AddRGBPoint(value, r, g, b)
    volume_property.SetScalarOpacity(opacity)
    volume_property.SetColor(color)
    volume_property.ShadeOn()
    volume_property.SetInterpolationTypeToLinear()


class VolumeStreamer:
    """Streams one source into one 3D view (`view_node` is its vtkMRMLViewNode)."""

    def __init__(self, scene, view_node, source, engine, display, volume_rendering, options, view_size, name=None):
        self.scene, self.view_node, self.source, self.engine = scene, view_node, source, engine
        self.image = source.image
        self.display = display
        self.options = options or VolumeOptions()
        self.view_size = view_size  # view node -> (width, height) pixels
        self.requester = f"volume:{view_node.GetID()}:{source.id}"
        self.proxy = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name or f"BigVolume {view_node.GetName()}")
        self.proxy.SetHideFromEditors(True)
        self.proxy.SetSaveWithScene(False)
        self.proxy.CreateDefaultDisplayNodes()
        self.proxy.GetDisplayNode().SetSaveWithScene(False)
        self.volume_rendering = volume_rendering
        self.render_node = self.property_node = None  # made with the first image (the logic needs one)
        self._styled = None  # the window the transfer function was spread over
        self.shown_plan = None  # what the proxy holds
        self.pending_plan = None  # what is loading
        self._composition = None
        self._coarse = None  # the whole volume at the coarsest level, composed once
        self._camera_key = None
        self._moved_at = None
        self._dirty = True
        self.complete = False
        self._observed = []
        self._observe(view_node)
        self._camera = None

    # -- what the scene asks of every streamer ---------------------------------------------------------------
    @property
    def shown(self):
        return self.options.enabled

    @property
    def showing(self):
        return self.shown_plan is not None

    @property
    def level(self):
        """The level the view shows (None before the first image)."""
        return None if self.shown_plan is None else self.shown_plan.level

    @property
    def plan_chunks(self):
        """{level: [chunk coordinates]} of the coarse whole volume: what the first rendering needs."""
        return whole_volume_plan(self.image, self._limits()).chunks

    @property
    def voxels(self):
        scalars = self.proxy.GetImageData().GetPointData().GetScalars() if self.proxy.GetImageData() else None
        return None if scalars is None else numpy_support.vtk_to_numpy(scalars)

    def status(self):
        """Level, region and texture size shown, and whether a finer region is loading."""
        plan = self.shown_plan
        shown = None if plan is None else {"level": plan.level, "region_voxels": list(plan.shape),
                                           "texture_mb": plan.voxels * self.image.levels[0].dtype.itemsize / 1e6}
        return {"view": self.view_node.GetName(), "shown": shown,
                "refining": self.pending_plan is not None and self.pending_plan is not plan,
                "loading_level": None if self.pending_plan is None else self.pending_plan.level}

    def describe(self):
        s = self.status()
        if s["shown"] is None:
            return f"{s['view']}: loading"
        z, y, x = s["shown"]["region_voxels"]
        text = f"{s['view']}: level {s['shown']['level']}, {x}x{y}x{z} voxels, {s['shown']['texture_mb']:.0f} MB"
        return text + (f", refining to level {s['loading_level']}" if s["refining"] else "")

    # -- observing -------------------------------------------------------------------------------------------------
    def _observe(self, node):
        if node is not None:
            self._observed.append((node, node.AddObserver(vtk.vtkCommand.ModifiedEvent, self._on_modified)))

    def _on_modified(self, caller, event):
        self._dirty = True
        self._moved_at = time.monotonic()

    def invalidate(self):
        """Plan again at the next update (a setting changed)."""
        self._dirty = True
        self._camera_key = None

    def _camera_node(self):
        if self._camera is None:
            self._camera = camera_of(self.scene, self.view_node)
            self._observe(self._camera)
        return self._camera

    def _roi(self):
        """The cropping ROI's RAS bounds when cropping is on, else None."""
        if self.render_node is None or not self.render_node.GetCroppingEnabled():
            return None
        roi = self.render_node.GetROINode()
        if roi is None:
            return None
        if roi not in [n for n, _ in self._observed]:
            self._observe(roi)
        bounds = [0.0] * 6
        roi.GetRASBounds(bounds)
        return (bounds[0], bounds[2], bounds[4]), (bounds[1], bounds[3], bounds[5])

    def _limits(self):
        itemsize = self.image.levels[0].dtype.itemsize
        budget = self.options.gpu_voxel_budget
        if budget is None:
            megabytes = self.view_node.GetGPUMemorySize() or DEFAULT_GPU_MEMORY_MB
            budget = int(megabytes * 2**20 * GPU_FRACTION / itemsize)
        return Limits(texture_side=max_texture_side(), voxel_budget=int(budget),
                      memory_bytes=int(self.engine.cache.budget_bytes * CACHE_FRACTION), quality=int(self.options.quality))

    # -- planning and composing -------------------------------------------------------------------------------------
    def plan(self):
        """Plan the coarse whole volume first, then (camera settled) the visible region; send the needs."""
        if not self.shown:
            self.engine.cancel(self.requester)
            return None
        if self._coarse is None:
            coarse = whole_volume_plan(self.image, self._limits(), tier=PREFETCH)
            self._coarse = Composition(self.source, coarse)
            self.engine.submit(self.requester, self._keyed(coarse))
            return coarse
        camera_node = self._camera_node()
        if camera_node is None or not self._dirty:
            return self.pending_plan
        if self._moved_at is not None and time.monotonic() - self._moved_at < self.options.settle_seconds:
            return self.pending_plan  # still moving: the current rendering stays
        self._dirty = False
        camera = camera_state(camera_node, self.view_size(self.view_node))
        limits = self._limits()
        roi = self._roi()
        key = (camera, limits, roi)
        if key == self._camera_key:
            return self.pending_plan
        self._camera_key = key
        plan = plan_volume(self.image, camera, roi, limits, tier=BACKGROUND)
        if plan is None:  # nothing of the volume in view: nothing to refine
            self.engine.submit(self.requester, self._coarse_needs())
            self.pending_plan = None
            self.complete = True
            return None
        if self.shown_plan is not None and not self.shown_plan.covers(plan) and self.shown_plan is not self._coarse.plan:
            self._show(self._coarse.plan, self._coarse.out)  # never empty while the new region loads
        self.pending_plan = plan
        self._composition = Composition(self.source, plan)
        self.engine.submit(self.requester, self._keyed(plan) + self._coarse_needs())  # replaces what it wanted
        return plan

    def _coarse_needs(self):
        """The coarse whole volume's needs until it is composed (then it is kept composed, not re-read)."""
        return [] if self._coarse.complete else self._keyed(self._coarse.plan)

    def _keyed(self, plan):
        key = self.source.key
        return [(tier, level, distance, key(level, coords)) for tier, level, distance, coords in plan.needs]

    def _ready(self, composition):
        """Every chunk painted, or failed to read (then shown without it rather than never)."""
        composition.update(self.engine.cache)
        if composition.complete:
            return True
        plan = composition.plan
        return all(self.source.key(plan.level, c) in self.engine.cache or self.engine.failed(self.source.key(plan.level, c))
                   for c in plan.chunks.get(plan.level, ()))

    def compose(self):
        """Swap in the coarse whole volume on open, then each planned region once it is complete."""
        if not self.shown or self._coarse is None:
            return False
        if self.display.window_level is None:
            return False
        changed = self._style()
        if self.shown_plan is None:
            if self._ready(self._coarse):
                self._show(self._coarse.plan, self._coarse.out)
                return True
            return changed
        if self.pending_plan is not None and self.pending_plan is not self.shown_plan and self._ready(self._composition):
            self._show(self.pending_plan, self._composition.out)
            self.complete = True
            return True
        return changed

    def _style(self):
        """Spread the CT-like transfer function over the source's window (once it is known, and when it changes)."""
        if self.property_node is None or self._styled == self.display.window_level:
            return False
        apply_ct_like(self.property_node.GetVolumeProperty(), self.display.window_level)
        self._styled = self.display.window_level
        return True

    def _show(self, plan, voxels):
        image = vtk.vtkImageData()  # a new image: the texture is uploaded whole, never half-built
        image.SetDimensions(voxels.shape[2], voxels.shape[1], voxels.shape[0])
        scalars = numpy_support.numpy_to_vtk(voxels.reshape(-1), deep=False)  # VTK reads the composed voxels
        scalars.SetName("ImageScalars")
        image.GetPointData().SetScalars(scalars)
        self._shown_voxels = voxels  # kept alive as long as VTK shows them
        self.proxy.SetAndObserveImageData(image)
        set_ijk_to_ras(self.proxy, plan.proxy_ijk_to_ras)
        self.shown_plan = plan
        self.complete = plan is self.pending_plan
        if self.render_node is None:
            self._make_render_node()

    def _make_render_node(self):
        """GPU ray casting in this view only, with the CT-like transfer function; not saved with the scene."""
        node = self.volume_rendering.CreateDefaultVolumeRenderingNodes(self.proxy)
        node.SetSaveWithScene(False)
        node.SetViewNodeIDs([self.view_node.GetID()])
        self.property_node = node.GetVolumePropertyNode()
        self.property_node.SetSaveWithScene(False)
        self.render_node = node
        self._observe(node)
        self._styled = None
        self._style()
        node.SetVisibility(True)

    def fit(self):
        """Point the camera at the whole volume, keeping its direction (what a user sees on open)."""
        camera_node = self._camera_node()
        if camera_node is None:
            return
        lo, hi = self.image.bounds_ras(0, edges=True)
        centre, radius = (lo + hi) / 2.0, float(np.linalg.norm(hi - lo)) / 2.0
        camera = camera_node.GetCamera()
        direction = np.asarray(camera.GetDirectionOfProjection(), float)
        distance = radius / np.sin(np.radians(camera.GetViewAngle()) / 2.0)
        camera_node.SetFocalPoint(*centre)
        camera_node.SetPosition(*(centre - direction * distance))
        camera.SetParallelScale(radius)
        camera_node.ResetClippingRange()

    def close(self):
        self.engine.cancel(self.requester)
        for node, tag in self._observed:
            node.RemoveObserver(tag)
        self._observed = []
        for node in (self.render_node, self.property_node, self.proxy.GetDisplayNode(), self.proxy):
            if node is not None and node.GetScene() is not None:
                self.scene.RemoveNode(node)
