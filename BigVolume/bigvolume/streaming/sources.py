"""Chunk sources: the pyramids that can be streamed, each with the reader that serves it.

A source is one streamable pyramid: an image at one channel and time point
today, a label pyramid or a remote store later. The engine knows a source
only through this interface (an id, its levels' chunk grids, its reader), and
every cache and fetch key carries the source's id, so all sources share one
cache and one budget.
"""

import itertools

from .readers import default_reader

_serial = itertools.count(1)


class ChunkSource:
    """A multiscale image (any object with `levels`, each with a chunk grid) and the reader of its chunks.

    `id` is unique within the process: the same store opened twice (another
    channel, or reopened after it changed on disk) is two sources whose
    cached chunks never mix.
    """

    def __init__(self, image, reader=None, threads=2, label=None):
        self.image = image
        self.reader = reader or default_reader(image, threads=threads)
        self.label = label or str(getattr(image, "location", "source"))
        self.id = f"{self.label}#{next(_serial)}"

    @property
    def levels(self):
        return self.image.levels

    def key(self, level, coords):
        """The cache and fetch key of one chunk."""
        return (self.id, level, tuple(coords))

    def chunk_nbytes(self, level):
        return self.image.levels[level].chunk_nbytes

    def close(self, wait=True):
        self.reader.close(wait=wait)

    def __repr__(self):
        return f"ChunkSource({self.id!r}, reader={self.reader.name})"

