"""What the BigVolume module does for one scene, Qt-free: the module panel and the Python console drive it.

A session opens one multiscale image (one channel, one time point) and
streams it into every slice view and volume-renders it in every 3D view of
the scene, records a reference to it in
the scene (scene_state.py), reports its status, switches channel or time
point, applies memory settings, reads regions as numpy arrays and exports
regions into ordinary volume nodes. Closing it frees the chunk cache and
removes every node it added.
"""

import time

from bigvolume.streaming.cache import default_budget_bytes
from bigvolume.store.multiscale import open_image

from . import region_export, scene_state
from .segmentation.bound_labels import BoundLabels, bound_segmentation_nodes
from .streaming.streaming_scene import StreamingScene


def axis_sizes(image):
    """(channels, time points) of an image: 1 where it has no such axis."""
    sizes = {"channel": 1, "time": 1}
    for axis, size in zip(image.meta.axes, image.levels[0].shape):
        if axis.type in sizes:
            sizes[axis.type] = int(size)
    return sizes["channel"], sizes["time"]


class BigVolumeSession:
    def __init__(self, scene, cache_bytes=None, workers=2, layer="background", view_size=None, volume_options=None):
        """`view_size(view_node)`: a 3D view's size in pixels (from its widget inside Slicer); `volume_options`:
        3D streaming settings (enabled, gpu_voxel_budget, quality), as set_volume_options takes them."""
        from .streaming.volume_streamer import VolumeOptions

        self.scene = scene
        self.view_size = view_size
        self.volume_options = VolumeOptions(**(volume_options or {}))
        self.cache_bytes = int(cache_bytes) if cache_bytes else default_budget_bytes()
        self.workers = int(workers)
        self.layer = layer
        self.image = None
        self.streaming = None  # the scene's StreamingScene, from the first open until close
        self.streamed = None  # the open image as the streaming scene shows it
        self.channel = 0
        self.time_point = 0
        self._opened_at = None
        self._saved_window = None  # the display window last written to the scene's store reference
        self.labels = {}  # label pyramid name -> BoundLabels, while the image is open

    # -- opening and closing ------------------------------------------------
    def open(self, location, channel=0, time_point=0, fit=True, window_level=None):
        """Open a store (folder or URL) and stream it into every slice view; returns the image.

        The current store is closed only once the new one has opened, so a wrong path leaves it streaming.
        """
        image = open_image(location, t=time_point, c=channel)
        self._stop()
        self.image, self.channel, self.time_point = image, int(channel), int(time_point)
        if self.streaming is None:
            self.streaming = StreamingScene(self.scene, cache_bytes=self.cache_bytes, workers=self.workers,
                                            view_size=self.view_size, volume_options=self.volume_options)
        self.streamed = self.streaming.add_image(image, layer=self.layer, window_level=window_level, fit=fit)
        self._opened_at = time.monotonic()
        # The engine and cache outlive a store (another store, channel or time point reuses them): the status
        # counts from here.
        engine, cache = self.streaming.engine, self.streaming.cache
        self._counts_at_open = (engine.chunks_read, engine.bytes_read, engine.seconds_reading, cache.hits, cache.misses)
        self._saved_window = window_level
        self._save_reference()
        return image

    @property
    def window_level(self):
        """The display window every view of the image shows (chosen from the data, or dragged by the user)."""
        return self.streamed.window_level if self.streamed is not None else None

    def _save_reference(self):
        scene_state.save_reference(self.scene, self.image.location, self.channel, self.time_point,
                                   self.window_level, self.layer)

    def _stop(self):
        """Stop streaming the current image (its proxies and cached chunks go); the streaming scene stays.
        Its label pyramids close without waiting for their writers: what is queued stays journaled and is
        written when they are opened again."""
        for labels in self.labels.values():
            labels.close(wait=False)
        self.labels.clear()
        if self.streamed is not None:
            self.streaming.remove_source(self.streamed)
            self.streamed = None

    def close(self):
        """Stop streaming, remove the proxy volumes and the scene's store reference, free the cache."""
        self._stop()
        if self.streaming is not None:
            self.streaming.close()
            self.streaming = None
        if self.image is not None:
            scene_state.remove_reference(self.scene)
        self.image = None

    @property
    def is_open(self):
        return self.image is not None

    def update(self):
        """Let the views catch up (call on a timer); True if any view changed."""
        if self.streaming is None:
            return False
        changed = self.streaming.update()
        for labels in self.labels.values():
            changed |= labels.update()
        if self.window_level != self._saved_window:  # chosen from the first coarse chunks, or dragged: remember it
            self._saved_window = self.window_level
            self._save_reference()
        return changed

    def restore(self):
        """Reopen the store a loaded scene refers to, keeping its views where they were; False if none."""
        reference = scene_state.load_reference(self.scene)
        if reference is None:
            return False
        self.layer = reference["layer"]
        self.open(reference["location"], reference["channel"], reference["timePoint"], fit=False,
                  window_level=reference["window_level"])
        for node, root, name in bound_segmentation_nodes(self.scene):
            self.open_labels(name, store=None if root == str(self.image.location) else root, segmentation_node=node)
        return True

    # -- label pyramids ---------------------------------------------------------
    def open_labels(self, name, *, create=False, segments=(), store=None, segmentation_node=None):
        """Edit and show a label pyramid of the open image (with `create`, a new one): a segmentation node bound
        to it (given, or new), streamed into every slice view. Returns its BoundLabels (the same one if open)."""
        self._require_open()
        if name not in self.labels:
            self.labels[name] = BoundLabels(self.scene, self.streaming, self.image, name, store=store, create=create,
                                            segments=segments, segmentation_node=segmentation_node)
        return self.labels[name]

    def close_labels(self, name, wait=True):
        """Stop editing and showing a label pyramid (the bound segmentation node stays)."""
        labels = self.labels.pop(name, None)
        if labels is not None:
            labels.close(wait=wait)

    # -- channel and time point -----------------------------------------------
    def select(self, channel=None, time_point=None):
        """Show another channel and/or time point in the same views (they keep their position and zoom).

        A new channel gets its own display window; another time point of the same channel keeps the window,
        so intensities compare across time.
        """
        self._require_open()
        channel = self.channel if channel is None else int(channel)
        time_point = self.time_point if time_point is None else int(time_point)
        if (channel, time_point) == (self.channel, self.time_point):
            return self.image
        window = self.window_level if channel == self.channel else None
        return self.open(self.image.location, channel, time_point, fit=False, window_level=window)

    def axis_sizes(self):
        self._require_open()
        return axis_sizes(self.image)

    # -- settings ---------------------------------------------------------------
    def set_budget(self, nbytes):
        """Chunk cache budget in bytes; applies at once (least recently used chunks are dropped)."""
        self.cache_bytes = int(nbytes)
        if self.streaming is not None:
            self.streaming.set_budget(self.cache_bytes)

    def set_workers(self, workers):
        """Reader threads; applies in place: the views, their proxies and the cached chunks stay."""
        self.workers = int(workers)
        if self.streaming is not None:
            self.streaming.set_workers(self.workers)

    def set_volume_options(self, **options):
        """3D streaming: enabled (volume-render in 3D views), gpu_voxel_budget (voxels per view; None: from the
        view's GPU memory), quality (levels finer or coarser than the screen asks for); applies at once."""
        if self.streaming is not None:
            self.streaming.set_volume_options(**options)  # the same options object: checked and set there
        else:
            for name, value in options.items():
                if not hasattr(self.volume_options, name):
                    raise ValueError(f"no 3D streaming setting {name!r}")
                setattr(self.volume_options, name, value)

    # -- data -------------------------------------------------------------------
    def levels(self):
        """The pyramid level each view shows (slice views, and 3D views as they refine), by view name."""
        return self.streaming.levels(self.streamed) if self.streamed is not None else {}

    def read(self, level, box):
        """Voxels of `level` inside ((z0, z1), (y0, y1), (x0, x1)) as a numpy array (outside filled)."""
        self._require_open()
        return self.image.read(level, box)

    def plan_roi(self, roi_node, level, limit_bytes=None):
        self._require_open()
        return region_export.plan_roi(self.image, roi_node, level, limit_bytes)

    def plan_level(self, level, limit_bytes=None):
        self._require_open()
        return region_export.plan_whole_level(self.image, level, limit_bytes)

    def export_roi(self, roi_node, level, name=None, limit_bytes=None):
        """The voxels of `level` inside a Markups ROI as a new volume node (RegionTooLarge if they would not fit)."""
        return self.export_plan(self.plan_roi(roi_node, level, limit_bytes), name)

    def export_level(self, level, name=None, limit_bytes=None):
        """A whole level as a new volume node (RegionTooLarge if it would not fit)."""
        return self.export_plan(self.plan_level(level, limit_bytes), name)

    def export_plan(self, plan, name=None):
        """Load a planned region (plan_roi, plan_level) as a new volume node shown like the streamed views."""
        node = region_export.export_plan(self.scene, self.image, plan, name=name)
        node.CreateDefaultDisplayNodes()
        window = self.window_level
        if window is not None:  # the same display as the streamed views
            display = node.GetScalarVolumeDisplayNode()
            display.SetAutoWindowLevel(False)
            display.SetWindowLevel(*window)
        return node

    # -- status -----------------------------------------------------------------
    def status(self):
        """What the status panel shows, as plain values."""
        if self.image is None:
            return {"open": False}
        level0 = self.image.levels[0]
        channels, time_points = axis_sizes(self.image)
        info = {
            "open": True,
            "location": self.image.location,
            "name": self.image.name,
            "levels": [{"index": lvl.index, "shape_xyz": list(lvl.volume_shape[::-1]),
                        "voxel_size_mm": list(lvl.voxel_size_mm)} for lvl in self.image.levels],
            "voxel_size_mm": list(level0.voxel_size_mm),
            "physical_size_mm": list(self.image.physical_size_mm()),
            "dtype": str(level0.dtype),
            "channel": self.channel, "channels": channels,
            "time_point": self.time_point, "time_points": time_points,
            "budget_bytes": self.cache_bytes, "workers": self.workers,
        }
        if self.streamed is not None:
            engine, cache = self.streaming.engine, self.streaming.cache
            seconds = max(time.monotonic() - self._opened_at, 1e-9)
            chunks0, bytes0, reading0, hits0, misses0 = self._counts_at_open
            chunks, nbytes, reading = engine.chunks_read - chunks0, engine.bytes_read - bytes0, \
                engine.seconds_reading - reading0
            hits, looks = cache.hits - hits0, cache.hits - hits0 + cache.misses - misses0
            source_id = self.streamed.source.id
            errors = [(key, error) for key, error in engine.errors if key[0] == source_id]
            info.update({
                "cache_bytes": cache.nbytes, "cache_chunks": len(cache), "cache_hit_rate": hits / looks if looks else 0.0,
                "chunks_read": chunks, "bytes_read": nbytes, "chunks_per_s": chunks / seconds,
                "mb_per_s_while_reading": nbytes / 1e6 / reading if reading > 0 else 0.0,
                "errors": [f"level {key[1]} chunk {key[2]}: {error}" for key, error in errors[-3:]],
                "error_count": engine.error_counts.get(source_id, 0),
                "view_levels": self.levels(),
                "volume_views": self.streaming.volume_status(),
                "window_level": list(self.window_level) if self.window_level else None,
                "labels": [labels.status_line() for labels in self.labels.values()],
            })
        return info

    def status_text(self):
        """The status as a few lines of text (the panel's status box, or print() in the console)."""
        s = self.status()
        if not s["open"]:
            return "No store open."
        voxel = " x ".join(f"{v * 1000:.4g}" for v in s["voxel_size_mm"])
        size = " x ".join(f"{v:.4g}" for v in s["physical_size_mm"])
        lines = [f"{s['name'] or s['location']}",
                 f"{len(s['levels'])} levels; level 0: {' x '.join(map(str, s['levels'][0]['shape_xyz']))} voxels, "
                 f"{s['dtype']}",
                 f"voxel size {voxel} um; physical size {size} mm"]
        if s["channels"] > 1 or s["time_points"] > 1:
            lines.append(f"channel {s['channel']} of {s['channels']}, time point {s['time_point']} of {s['time_points']}")
        if "cache_bytes" in s:
            lines.append(f"memory: {s['cache_bytes'] / 1024**2:,.0f} of {s['budget_bytes'] / 1024**2:,.0f} MB "
                         f"({s['cache_chunks']} chunks), hit rate {100 * s['cache_hit_rate']:.0f}%")
            lines.append(f"fetched {s['chunks_read']} chunks ({s['bytes_read'] / 1e6:,.0f} MB), "
                         f"{s['chunks_per_s']:.0f} chunks/s since open, {s['mb_per_s_while_reading']:.0f} MB/s while "
                         f"reading, {self.workers} decoding cores")
            views = ", ".join(f"{name}: {level}" for name, level in sorted(s["view_levels"].items()))
            lines.append(f"level shown: {views or 'no view'}")
            lines += [f"3D {line}" for line in s["volume_views"]]
            lines += s["labels"]
            if s["error_count"]:
                lines.append(f"{s['error_count']} chunks could not be read; last: {s['errors'][-1]}")
        return "\n".join(lines)

    def _require_open(self):
        if self.image is None:
            raise RuntimeError("No store is open; open one first.")


def remember_recent(recent, location, limit=10):
    """The recent-stores list with `location` first, without duplicates, at most `limit` long."""
    location = str(location)
    return [location] + [item for item in recent if item != location][: max(0, limit - 1)]


def describe_conversion(state):
    """One line for the panel: progress, rate and ETA while running; the outcome when finished."""
    from bigvolume.tools.progress import clock

    if state.status == "starting":
        return "Starting..."
    if state.status == "running":
        text = f"{100 * state.fraction:.0f}%"
        if state.mb_per_s:
            text += f", {state.mb_per_s:,.0f} MB/s"
        text += f", {clock(state.elapsed_seconds)} elapsed"
        return text + (f", ETA {clock(state.eta_seconds)}" if state.eta_seconds is not None else "")
    if state.status in ("converted", "already complete"):
        verb = "Converted" if state.status == "converted" else "Already complete"
        return f"{verb}: {state.output} ({state.output_bytes / 1e6:,.0f} MB) in {clock(state.elapsed_seconds)}"
    if state.status == "cancelled":
        return "Cancelled" + (f": {state.error}" if state.error else "; nothing was left behind.")
    return f"Failed: {state.error}"
