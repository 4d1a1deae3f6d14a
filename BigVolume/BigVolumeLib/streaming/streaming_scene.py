"""All slice views of a scene streaming one BigVolume image through one fetch engine and cache."""

import numpy as np

try:  # the chunk I/O engine loads with this module (about 15 ms), not between opening a store and its first frame
    import tensorstore  # noqa: F401
except ImportError:
    pass

from bigvolume.streaming.cache import ChunkCache
from bigvolume.streaming.engine import FetchEngine
from bigvolume.streaming.window import window_from_chunks
from bigvolume.streaming.slice_planner import coarsest_level_requests

from .slice_streamer import SliceStreamer

_READ_NOW_MAX_CHUNKS = 8  # more than that is left to the fetch workers (a store written with a large top level)


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
    ras_to_ijk = np.linalg.inv(level.ijk_to_ras)
    normal_ijk = ras_to_ijk[:3, :3] @ rotation[:, 2]
    axis = int(np.argmax(np.abs(normal_ijk)))
    if np.abs(normal_ijk).max() > 0.999999 * np.linalg.norm(normal_ijk):
        centre_ijk = ras_to_ijk @ np.append(centre, 1.0)
        shift = np.ceil(centre_ijk[axis] - 0.5) - centre_ijk[axis]
        centre = centre + level.ijk_to_ras[:3, axis] * shift
    width, height = slice_node.GetDimensions()[:2]
    fov_x = max(extent[0], extent[1] * width / height)
    for r in range(3):
        slice_to_ras.SetElement(r, 3, float(centre[r]))
    slice_node.SetXYZOrigin(0, 0, 0)
    slice_node.SetFieldOfView(fov_x, fov_x * height / width, float(voxel.min()))
    slice_node.UpdateMatrices()


class StreamingViews:
    def __init__(self, scene, image, cache_bytes=None, workers=2, reader=None, layer="background", fit=True,
                 window_level=None):
        self.scene = scene
        self.image = image
        self.engine = FetchEngine(image, cache=ChunkCache(cache_bytes), reader=reader, workers=workers)
        self._prefetch_coarsest = True
        self.window_level = window_level
        self.layer = layer
        self.streamers = {}
        self.add_slice_views()
        if fit:
            self.fit_views()

    def add_slice_views(self):
        """Stream into every slice view of the scene not streamed yet (views may be added later)."""
        nodes = self.scene.GetNodesByClass("vtkMRMLSliceNode")
        for i in range(nodes.GetNumberOfItems()):
            node = nodes.GetItemAsObject(i)
            if node.GetID() not in self.streamers:
                self.streamers[node.GetID()] = SliceStreamer(self.scene, node, self.image, self.engine,
                                                             window_level=self.window_level, layer=self.layer)

    def fit_views(self):
        """Show the whole volume in every streamed view (what a user sees on open)."""
        for streamer in self.streamers.values():
            fit_slice_to_image(streamer.slice_node, self.image)

    def update(self):
        """Let every view catch up with its slice node and the chunks that arrived; True if any changed."""
        opening = self._prefetch_coarsest
        # On open, the first frame is composed from the coarsest chunks before any request reaches the
        # fetch workers: they would otherwise take the two cores from that frame for chunks it cannot use.
        plans = [streamer.plan(submit=not opening) for streamer in self.streamers.values()]
        if opening:
            self._read_coarsest_now(plans)
        changed = False
        if self.window_level is not None or self._choose_window(plans):
            for streamer in self.streamers.values():
                changed |= streamer.compose()
        if opening:
            for streamer in self.streamers.values():
                streamer.submit()
            # After the views' own requests: zooming and scrolling never show a hole.
            self.engine.submit("open", coarsest_level_requests(self.image))
            self._prefetch_coarsest = False
        return changed

    def _read_coarsest_now(self, plans):
        """Read the few coarsest-level chunks the views show here and now: the first frame and the window need them.

        The default pyramid's top level is one chunk, so this is one read of a few
        milliseconds, instead of a worker's wake-up, batch and hand-back.
        """
        coarsest = len(self.image.levels) - 1
        indices = sorted({index for plan in plans for index in plan.chunks.get(coarsest, [])})
        if 0 < len(indices) <= _READ_NOW_MAX_CHUNKS:
            self.engine.fetch_now(coarsest, indices)

    def _choose_window(self, plans):
        """Window/level from the histogram of the coarsest-level chunks the views show first; then kept."""
        coarsest = len(self.image.levels) - 1
        keys = sorted({(coarsest, index) for plan in plans for index in plan.chunks.get(coarsest, [])})
        chunks = [self.engine.cache.peek(key) for key in keys]
        if not keys or any(chunk is None for chunk in chunks):
            return False
        self.window_level = window_from_chunks(chunks)
        for streamer in self.streamers.values():
            streamer.set_window_level(*self.window_level)
        return True

    def levels(self):
        """The level each view shows, by slice view name."""
        return {s.slice_node.GetName(): s.level for s in self.streamers.values()}

    def close(self):
        for streamer in self.streamers.values():
            streamer.close()
        self.streamers.clear()
        self.engine.close()
        self.engine.cache.clear()
