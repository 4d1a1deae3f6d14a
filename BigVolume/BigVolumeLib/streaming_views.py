"""All slice views of a scene streaming one BigVolume image through one fetch engine and cache."""

from bigvolume.cache import ChunkCache
from bigvolume.fetch import FetchEngine
from bigvolume.intensity import display_window
from bigvolume.slice_plan import coarsest_level_requests

from .slice_streamer import SliceStreamer


class StreamingViews:
    def __init__(self, scene, image, cache_bytes=None, workers=2, reader=None, layer="background"):
        self.scene = scene
        self.image = image
        self.engine = FetchEngine(image, cache=ChunkCache(cache_bytes), reader=reader, workers=workers)
        # The whole coarsest level first: every view has something to show at once.
        self.engine.submit("open", coarsest_level_requests(image))
        self.window_level = display_window(image)
        self.layer = layer
        self.streamers = {}
        self.add_slice_views()

    def add_slice_views(self):
        """Stream into every slice view of the scene not streamed yet (views may be added later)."""
        nodes = self.scene.GetNodesByClass("vtkMRMLSliceNode")
        for i in range(nodes.GetNumberOfItems()):
            node = nodes.GetItemAsObject(i)
            if node.GetID() not in self.streamers:
                self.streamers[node.GetID()] = SliceStreamer(self.scene, node, self.image, self.engine,
                                                             window_level=self.window_level, layer=self.layer)

    def update(self):
        """Let every view catch up with its slice node and the chunks that arrived; True if any changed."""
        changed = False
        for streamer in self.streamers.values():
            changed |= streamer.update()
        return changed

    def levels(self):
        """The level each view shows, by slice view name."""
        return {s.slice_node.GetName(): s.level for s in self.streamers.values()}

    def close(self):
        for streamer in self.streamers.values():
            streamer.close()
        self.streamers.clear()
        self.engine.close()
        self.engine.cache.clear()
