"""One image streamed into a scene's views, as the streaming tests drive it."""

from BigVolumeLib.streaming.streaming_scene import StreamingScene


class StreamedImage:
    """A StreamingScene with one image: its engine, streamers (by slice node ID), reader and chunk keys at hand."""

    def __init__(self, scene, image, reader=None, layer="background", cache_bytes=None, workers=2, fit=True,
                 window_level=None):
        self.streaming = StreamingScene(scene, cache_bytes=cache_bytes, workers=workers)
        try:
            self.streamed = self.streaming.add_image(image, layer=layer, reader=reader, fit=fit,
                                                     window_level=window_level)
        except Exception:
            self.streaming.close()
            raise
        self.engine = self.streaming.engine
        self.streamers = self.streamed.streamers
        self.source = self.streamed.source
        self.reader = self.source.reader

    def key(self, level, coords):
        return self.source.key(level, coords)

    @property
    def window_level(self):
        return self.streamed.window_level

    def update(self):
        return self.streaming.update()

    def settle(self, timeout=30):
        self.update()
        assert self.engine.wait_idle(timeout)
        self.update()

    def levels(self):
        return self.streaming.levels(self.streamed)

    def fit_views(self):
        self.streaming.fit_views(self.streamed)

    def close(self):
        self.streaming.close()
