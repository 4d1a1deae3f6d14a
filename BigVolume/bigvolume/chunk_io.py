"""Reading whole chunks of a multiscale image: the one interface between the fetch engine and an I/O engine.

`read_chunks(level, indices)` returns {index: array} for chunks of the
level's inner chunk grid (z, y, x). Edge chunks come back clipped to the
volume. The zarr-python reader issues all requested chunks at once on
zarr's event loop, so I/O and Blosc decoding (which releases the GIL) of a
batch overlap.
"""

import asyncio

import numpy as np
from zarr.core.sync import sync


def chunk_box(level, index):
    """((z0, z1), (y0, y1), (x0, x1)) of a chunk of `level`, clipped to the volume."""
    shape = chunk_shape(level)
    return tuple((i * c, min((i + 1) * c, n)) for i, c, n in zip(index, shape, level.volume_shape))


def chunk_shape(level):
    """Inner chunk shape (z, y, x) of a level (the unit of decoding and caching)."""
    spatial = dict(zip(("z", "y", "x"), (1, 1, 1)))
    for axis_name, size in zip(level.axis_names, level.chunks):
        if axis_name in spatial:
            spatial[axis_name] = size
    return (spatial["z"], spatial["y"], spatial["x"])


def chunk_grid_shape(level):
    return tuple(-(-n // c) for n, c in zip(level.volume_shape, chunk_shape(level)))


class ZarrChunkReader:
    """zarr-python's own codec pipeline; all chunks of a call are fetched concurrently."""

    name = "zarr-python"

    def __init__(self, image):
        self.image = image

    def read_chunks(self, level_index, indices):
        level = self.image.levels[level_index]
        selections = [self.image.selection(level, chunk_box(level, index)) for index in indices]

        async def read_all():
            array = level.array._async_array
            return await asyncio.gather(*(array.getitem(s) for s in selections), return_exceptions=True)

        results = sync(read_all())
        out = {}
        for index, result in zip(indices, results):
            if isinstance(result, BaseException):
                raise self.image.chunk_error(level, chunk_box(level, index), result) from result
            box = chunk_box(level, index)
            out[index] = np.asarray(result).reshape([b - a for a, b in box])
        return out
