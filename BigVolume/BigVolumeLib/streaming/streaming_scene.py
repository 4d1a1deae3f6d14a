"""One streaming scene per MRML scene: one fetch engine and one chunk cache for every view and every source.

Sources (images, label pyramids) are added with the layer they are shown
in; the scene gives every view of a kind it streams a streamer for every
source (slice views: every source, label pyramids as segmentations; 3D
views: images in the background layer, volume-rendered), adds streamers for
views created later and removes those of deleted views. `update()`, called on a
timer inside Slicer, lets every streamer plan, steps the engine once and
composes what arrived. The session and the module's logic use only this.
"""

import time

try:  # the chunk I/O engine loads with this module (about 15 ms), not between opening a store and its first frame
    import tensorstore  # noqa: F401
except ImportError:
    pass

from bigvolume.labels.label_source import label_source
from bigvolume.streaming.cache import ChunkCache
from bigvolume.streaming.engine import FetchEngine
from bigvolume.streaming.slice_planner import coarsest_level_needs
from bigvolume.streaming.sources import ChunkSource
from bigvolume.streaming.window import window_from_chunks, window_of_dtype

from .display import SharedDisplay
from .label_streamer import LabelSliceStreamer
from .segment_display import SegmentDisplay
from .slice_streamer import SliceStreamer, fit_slice_to_image
from .volume_streamer import VolumeOptions, VolumeStreamer

SEGMENTATION_LAYER = "segmentation"  # a label pyramid's layer: drawn by Slicer's segmentation displayable managers
DEFAULT_VIEW_SIZE = (512, 512)  # a 3D view's pixels when nobody says (no widget: scripts)


class StreamedSource:
    """A source as the scene shows it: its layer, its shared display, its streamers by view node ID."""

    def __init__(self, source, layer, display):
        self.source, self.layer, self.display = source, layer, display
        self.streamers = {}
        self.follow = None  # a label pyramid's (editor, listener) while its edits reach the engine

    @property
    def window_level(self):
        return self.display.window_level


class StreamingScene:
    def __init__(self, scene, cache_bytes=None, workers=2, volume_rendering=None, view_size=None,
                 volume_options=None):
        """`volume_rendering`: the scene's vtkSlicerVolumeRenderingLogic (inside Slicer, the module's; made here
        otherwise); `view_size(view_node)`: a 3D view's size in pixels (inside Slicer, from its widget)."""
        self.scene = scene
        self.engine = FetchEngine(ChunkCache(cache_bytes), workers=workers)
        self._volume_rendering = volume_rendering
        self.view_size = view_size
        self.volume_options = volume_options or VolumeOptions()
        self.sources = {}  # source id -> StreamedSource
        self._views_changed = False
        self._scene_observers = [scene.AddObserver(event, self._on_nodes_changed)
                                 for event in (scene.NodeAddedEvent, scene.NodeRemovedEvent)]

    @property
    def cache(self):
        return self.engine.cache

    # -- sources -------------------------------------------------------------------------------
    def add_image(self, image, layer="background", window_level=None, fit=True, reader=None):
        """Stream an image (one channel and time point) into every view; returns its StreamedSource."""
        source = self.engine.add_source(ChunkSource(image, reader=reader, threads=self.engine.workers))
        streamed = StreamedSource(source, layer, SharedDisplay(window_level))
        self.sources[source.id] = streamed
        self._add_streamers(streamed)
        if fit:
            self.fit_views(streamed)
        # After the views' own needs: zooming and scrolling never show a hole.
        self.engine.submit(f"coarsest:{source.id}", [(tier, level, d, source.key(level, c))
                                                     for tier, level, d, c in coarsest_level_needs(image)])
        return streamed

    def add_labels(self, binding):
        """Stream a label pyramid into every slice view, drawn as the bound segmentation node's segments
        (`binding`: a SegmentationBinding); edits show as their chunks are rewritten. Returns its StreamedSource."""
        source = label_source(binding.editor, self.engine, threads=self.engine.workers)
        streamed = StreamedSource(source, SEGMENTATION_LAYER, SegmentDisplay(binding.node))
        streamed.follow = (binding.editor, source.follow)
        self.sources[source.id] = streamed
        self._add_streamers(streamed)
        self.engine.submit(f"coarsest:{source.id}", [(tier, level, d, source.key(level, c))
                                                     for tier, level, d, c in coarsest_level_needs(source.image)])
        return streamed

    def remove_source(self, streamed):
        """Stop streaming a source: its proxies, requests and cached chunks go."""
        for streamer in streamed.streamers.values():
            streamer.close()
        streamed.streamers.clear()
        streamed.display.close()
        if streamed.follow is not None:
            editor, follow = streamed.follow
            editor.remove_listener(follow)
        self.engine.cancel(f"coarsest:{streamed.source.id}")
        self.engine.remove_source(streamed.source.id)
        self.sources.pop(streamed.source.id, None)

    # -- views ---------------------------------------------------------------------------------
    @property
    def volume_rendering(self):
        if self._volume_rendering is None:
            import slicer

            modules = getattr(slicer, "modules", None)  # inside Slicer: the Volume Rendering module's logic
            if modules is not None and hasattr(modules, "volumerendering"):
                self._volume_rendering = modules.volumerendering.logic()
            else:
                logic = slicer.vtkSlicerVolumeRenderingLogic()
                logic.SetMRMLScene(self.scene)
                self._volume_rendering = logic
        return self._volume_rendering

    def _view_size(self, view_node):
        """A 3D view's size in pixels, asked when a view plans (so `view_size` may be set after the views)."""
        return self.view_size(view_node) if self.view_size is not None else DEFAULT_VIEW_SIZE

    def _view_nodes(self, streamed):
        """The views a source is streamed into: every slice view; 3D views for an image in the background."""
        classes = ["vtkMRMLSliceNode"]  # 3D surfaces of label pyramids are not streamed yet
        if streamed.layer == "background" and self.volume_options.enabled:
            classes.append("vtkMRMLViewNode")
        nodes = []
        for class_name in classes:
            collection = self.scene.GetNodesByClass(class_name)
            nodes += [collection.GetItemAsObject(i) for i in range(collection.GetNumberOfItems())]
        return nodes

    def _add_streamers(self, streamed):
        for node in self._view_nodes(streamed):
            if node.GetID() in streamed.streamers:
                continue
            # Named by view, and by layer beside the background, so that two sources in a view tell apart.
            name = f"BigVolume {node.GetName()}" + ("" if streamed.layer == "background" else f" {streamed.layer}")
            if streamed.layer == SEGMENTATION_LAYER:
                streamer = LabelSliceStreamer(self.scene, node, streamed.source, self.engine, streamed.display,
                                              name=f"BigVolume {node.GetName()} {streamed.source.image.name}")
            elif node.GetClassName() == "vtkMRMLSliceNode":
                streamer = SliceStreamer(self.scene, node, streamed.source, self.engine, streamed.display,
                                         layer=streamed.layer, name=name)
            else:
                streamer = VolumeStreamer(self.scene, node, streamed.source, self.engine, streamed.display,
                                          self.volume_rendering, self.volume_options, self._view_size, name=f"{name} 3D")
            streamed.streamers[node.GetID()] = streamer

    def _on_nodes_changed(self, caller, event):
        self._views_changed = True

    def _reconcile_views(self):
        """Streamers for views added since the last update; none for views that were deleted."""
        self._views_changed = False
        for streamed in self.sources.values():
            present = {node.GetID() for node in self._view_nodes(streamed)}
            for view_id in [v for v in streamed.streamers if v not in present]:
                streamer = streamed.streamers.pop(view_id)
                streamer.close()
            self._add_streamers(streamed)

    def fit_views(self, streamed):
        """Show the whole of a source in every slice view (what a user sees on open)."""
        for streamer in streamed.streamers.values():
            if isinstance(streamer, LabelSliceStreamer):
                continue
            if isinstance(streamer, SliceStreamer):
                fit_slice_to_image(streamer.slice_node, streamed.source.image)
            else:
                streamer.fit()

    # -- the work ------------------------------------------------------------------------------
    def update(self):
        """Let every view catch up with its node and the chunks that arrived; True if any proxy changed."""
        if self._views_changed:
            self._reconcile_views()
        for streamed in self.sources.values():
            for streamer in streamed.streamers.values():
                streamer.plan()
        self.engine.step()
        changed = False
        for streamed in self.sources.values():
            if not streamed.display.ready and not self._choose_window(streamed):
                continue  # composing before the window is known would flash the default ramp
            for streamer in streamed.streamers.values():
                changed |= streamer.compose()
        return changed

    def _choose_window(self, streamed):
        """Window/level from the histogram of the coarsest-level chunks the views show first; then kept.

        Chunks that could not be read are left out (a corrupt chunk must not keep a source from ever being
        shown); if none could, the data type's whole range.
        """
        source = streamed.source
        coarsest = len(source.levels) - 1
        keys = sorted({source.key(coarsest, c) for s in streamed.streamers.values()
                       for c in s.plan_chunks.get(coarsest, [])})
        chunks = [self.cache.peek(key) for key in keys]
        if not keys or any(chunk is None and not self.engine.failed(key) for key, chunk in zip(keys, chunks)):
            return False
        arrived = [chunk for chunk in chunks if chunk is not None]
        window = window_from_chunks(arrived) if arrived else window_of_dtype(source.levels[0].dtype)
        streamed.display.set_window_level(*window)
        return True

    def wait_complete(self, timeout=30.0):
        """Update until every view of every source is complete (scripts, tests, benchmarks); False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.update()
            streamers = [s for streamed in self.sources.values() for s in streamed.streamers.values() if s.shown]
            if all(s.complete for s in streamers):
                return True
            if not self.engine.in_flight and not self.engine.outstanding:
                self.update()
                return all(s.complete for s in streamers)
            time.sleep(0.001)
        return False

    # -- settings ------------------------------------------------------------------------------
    def set_budget(self, nbytes):
        """Chunk cache budget in bytes; applies at once (least recently used chunks are dropped)."""
        self.cache.set_budget(nbytes)

    def set_workers(self, workers):
        """Reader threads and reads in flight; applies in place: every proxy and cached chunk stays."""
        self.engine.set_workers(workers)

    def set_volume_options(self, **changes):
        """Change 3D streaming settings (enabled, gpu_voxel_budget, quality, settle_seconds); applies at the next
        update: turning it off removes the 3D proxies, any other change re-plans every 3D view."""
        for name, value in changes.items():
            if not hasattr(self.volume_options, name):
                raise ValueError(f"no 3D streaming setting {name!r}")
            setattr(self.volume_options, name, value)
        self._views_changed = True
        for streamed in self.sources.values():
            for streamer in streamed.streamers.values():
                if isinstance(streamer, VolumeStreamer):
                    streamer.invalidate()

    def volume_status(self):
        """One line per 3D view and source: level, region, texture size, whether a finer region is loading."""
        return [streamer.describe() for streamed in self.sources.values() for streamer in streamed.streamers.values()
                if isinstance(streamer, VolumeStreamer)]

    def levels(self, streamed):
        """The level each view shows of a source, by view name."""
        return {s.view_node.GetName(): s.level for s in streamed.streamers.values()}

    def close(self):
        for streamed in list(self.sources.values()):
            self.remove_source(streamed)
        for tag in self._scene_observers:
            self.scene.RemoveObserver(tag)
        self._scene_observers = []
        self.engine.close()
        self.cache.clear()
