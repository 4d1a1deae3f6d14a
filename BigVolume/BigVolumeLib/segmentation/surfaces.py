"""Closed surfaces of a bound label pyramid's segments in the 3D views: the whole volume at a coarse level,
rebuilt in the background after edits are written, so painting never waits for them.

Level: the finest whose whole volume has at most `max_voxels` voxels (16 M by default, a 256³ volume, meshed
in about a second here by bigvolume.labels.meshes, block by block). Meshes are built on a thread from the
stored labels (what the writer has written); the main thread (`update`, on the session's timer) swaps the
finished meshes into model nodes, one per segment, hidden from editors and not saved with the scene (it keeps
the binding; the surfaces are made again). An edit, queued or written, marks the surfaces stale; a rebuild
starts once the previous one has finished and no edit came for `settle_seconds`. The models follow the bound
segmentation's 3D display: visibility, segment visibility and colour, 3D opacity.
"""

import threading
import time

import numpy as np

from bigvolume.labels.meshes import segment_meshes

from .results import mesh_polydata

DEFAULT_MAX_VOXELS = 16 * 1024**2


def surface_level(store, max_voxels=DEFAULT_MAX_VOXELS):
    """The finest level whose whole volume has at most `max_voxels` voxels (the coarsest if none has)."""
    for level in store.levels:
        if int(np.prod(level.volume_shape)) <= max_voxels:
            return level.index
    return len(store.levels) - 1


class SegmentSurfaces:
    def __init__(self, scene, binding, max_voxels=DEFAULT_MAX_VOXELS, smoothing=0.5, settle_seconds=0.5):
        self.scene, self.binding, self.store = scene, binding, binding.store
        self.level = surface_level(self.store, max_voxels)
        self.smoothing, self.settle_seconds = float(smoothing), float(settle_seconds)
        self.models = {}  # label value -> model node
        self.error = None  # the last rebuild's failure, for the status
        self.builds = 0  # rebuilds shown so far
        self._lock = threading.Lock()
        self._stale, self._last_change = True, 0.0
        self._thread, self._result = None, None
        self._display_changed = True
        binding.editor.add_listener(self._on_edited)
        self._display_observer = binding.node.AddObserver(
            binding.node.DisplayModifiedEvent, lambda caller, event: setattr(self, "_display_changed", True))
        segmentation = binding.node.GetSegmentation()
        self._segment_observer = segmentation.AddObserver(segmentation.SegmentModified, self._on_segments_modified)

    def _on_edited(self, touched):  # the writer's thread, or the main thread at submit
        with self._lock:
            self._stale, self._last_change = True, time.monotonic()

    def _on_segments_modified(self, caller, event):
        self._display_changed = True

    @property
    def building(self):
        return self._thread is not None

    # -- the main thread's part -------------------------------------------------------------------------
    def update(self):
        """Show meshes that finished, start a rebuild when due, follow display changes; True if a model changed."""
        changed = False
        with self._lock:
            result, self._result = self._result, None
        if result is not None:
            self._thread = None
            if isinstance(result, Exception):
                self.error = str(result)
            else:
                self.error = None
                self._show(result)
                changed = True
        with self._lock:
            due = self._stale and time.monotonic() - self._last_change >= self.settle_seconds
            if due and self._thread is None:
                self._stale = False
                self._thread = threading.Thread(target=self._build, name=f"bigvolume-surfaces-{self.store.name}",
                                                daemon=True)
                self._thread.start()
        if self._display_changed:
            self._display_changed = False
            self._apply_display()
            changed = True
        return changed

    def _build(self):
        try:
            result = segment_meshes(self.store, level=self.level, smoothing=self.smoothing)
        except Exception as error:  # shown in the status; the next edit tries again
            result = error
        with self._lock:
            self._result = result

    def _show(self, meshes):
        seen = set()
        for mesh in meshes:
            seen.add(mesh.value)
            model = self.models.get(mesh.value)
            if model is None:
                model = self.scene.AddNewNodeByClass("vtkMRMLModelNode", f"{self.store.name} {mesh.name} surface")
                model.SetHideFromEditors(True)
                model.SetSaveWithScene(False)
                model.CreateDefaultDisplayNodes()
                model.GetDisplayNode().SetSaveWithScene(False)
                self.models[mesh.value] = model
            model.SetAndObservePolyData(mesh_polydata(mesh))
        for value in [v for v in self.models if v not in seen]:
            self.scene.RemoveNode(self.models.pop(value))
        self.builds += 1
        self._apply_display()

    def _apply_display(self):
        display = self.binding.node.GetDisplayNode()
        segmentation = self.binding.node.GetSegmentation()
        for value, model in self.models.items():
            segment_id = next((s.id for s in self.store.segments if s.value == value), None)
            segment = segmentation.GetSegment(segment_id) if segment_id else None
            shown = bool(display is not None and segment is not None and display.GetVisibility()
                         and display.GetVisibility3D() and display.GetSegmentVisibility(segment_id)
                         and display.GetSegmentVisibility3D(segment_id))
            model_display = model.GetDisplayNode()
            model_display.SetVisibility(shown)
            if segment is not None:
                model_display.SetColor(*segment.GetColor())
            if display is not None and segment is not None:
                model_display.SetOpacity(display.GetOpacity3D() * display.GetSegmentOpacity3D(segment_id))

    def status_line(self):
        if self.error:
            return f"3D surfaces of {self.store.name}: failed: {self.error}"
        state = "rebuilding" if self.building or self._stale else "up to date"
        return f"3D surfaces of {self.store.name}: level {self.level}, {state}"

    def close(self):
        self.binding.editor.remove_listener(self._on_edited)
        self.binding.node.RemoveObserver(self._display_observer)
        self.binding.node.GetSegmentation().RemoveObserver(self._segment_observer)
        if self._thread is not None:
            self._thread.join()
        for model in self.models.values():
            if model.GetScene() is not None:
                self.scene.RemoveNode(model)
        self.models.clear()
