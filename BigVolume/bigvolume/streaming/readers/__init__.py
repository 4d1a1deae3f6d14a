"""Chunk readers: the one interface between the fetch engine and an I/O library.

Every reader implements the same protocol:

    name                          a short label for status lines and benchmarks
    supports(image)               whether it can read that image's store
    read_chunks(level, coords)    {coords: array} read in the calling thread (blocking)
    start(level, coords)          [PendingRead, ...] begun now, collected later without blocking
    set_threads(n)                how many threads it decodes with; applies to reads started later
    close(wait)                   release threads and open handles

`coords` are chunk coordinates (z, y, x) on the level's chunk grid; edge
chunks come back clipped to the volume. A `PendingRead` covers one or more
chunks: `done()` says whether it finished, `wait()` blocks until it has,
`cancel()` stops it when no view wants it any more,
`results()` gives {coords: array or the exception that chunk raised}, and
`shares_memory` says whether those arrays are views of one buffer.

`start` is what keeps Python threads out of the hot path: tensorstore reads
and decodes in its own C++ threads, and the main thread only starts requests
and collects finished ones. Readers of libraries with no such API run their
blocking reads on a small pool of Python threads (`ThreadedReader`).
"""

from .base import ChunkReader, PendingRead, ThreadedReader
from .direct_reader import DirectChunkReader
from .tensorstore_reader import TensorstoreReader
from .zarr_reader import ZarrChunkReader


def default_reader(image, threads=2):
    """The fastest reader for the image's store: tensorstore, else the direct Blosc reader, else zarr-python."""
    for reader_class in (TensorstoreReader, DirectChunkReader):
        if reader_class.supports(image):
            return reader_class(image, threads=threads)
    return ZarrChunkReader(image, threads=threads)


__all__ = ["ChunkReader", "DirectChunkReader", "PendingRead", "TensorstoreReader", "ThreadedReader",
           "ZarrChunkReader", "default_reader"]
