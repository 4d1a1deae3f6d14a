"""zarr-python's own codec pipeline: any store zarr can open (fsspec URLs, wrapped stores)."""

import asyncio

import numpy as np
from zarr.core.sync import sync

from .base import ThreadedReader


class ZarrChunkReader(ThreadedReader):
    """All chunks of a call are fetched concurrently on zarr's event loop."""

    name = "zarr-python"

    def __init__(self, image, threads=None):
        super().__init__(threads)
        self.image = image

    @staticmethod
    def supports(image):
        return True

    def read_chunks(self, level_index, coords):
        level = self.image.levels[level_index]
        boxes = [level.chunk_box(c) for c in coords]

        async def read_all():
            array = level.array._async_array
            return await asyncio.gather(*(array.getitem(self.image.selection(level, box)) for box in boxes),
                                        return_exceptions=True)

        out = {}
        for c, box, result in zip(coords, boxes, sync(read_all())):
            if isinstance(result, BaseException):
                raise self.image.chunk_error(level, box, result) from result
            out[c] = np.asarray(result).reshape([b - a for a, b in box])
        return out
