"""The reader protocol, and the Python-thread path for readers whose library has no asynchronous API."""

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol


class PendingRead(Protocol):
    coords: list  # the chunks this read covers
    shares_memory: bool  # its chunks are views of one buffer (cached and evicted together)

    def done(self) -> bool: ...

    def wait(self) -> None: ...  # block until done

    def cancel(self) -> None: ...  # not wanted any more: stop it if it has not finished

    def results(self) -> dict: ...  # {coords: array or exception}, computed once; blocks until done


class ChunkReader(Protocol):
    name: str

    def read_chunks(self, level: int, coords: list) -> dict: ...

    def start(self, level: int, coords: list) -> list: ...

    def set_threads(self, threads: int) -> None: ...

    def close(self, wait: bool = True) -> None: ...


def read_one_by_one(read_one, coords):
    """{coords: array or the exception that chunk raised}, each chunk read alone: after a read of many failed,
    so that only the corrupt chunk fails."""
    results = {}
    for c in coords:
        try:
            results[c] = read_one(c)
        except Exception as error:  # the engine records it; the other chunks still arrive
            results[c] = error
    return results


def chunk_blocks(coords, max_chunks):
    """Group chunk coordinates (z, y, x) into boxes of whole chunks that hold exactly them, each of at most
    `max_chunks`: runs along x, then runs of equal runs along y, then along z. Returns
    [((z0, z1), (y0, y1), (x0, x1)), ...] in chunk units, stop excluded.

    A slice view's chunks (a plane of them) become a few boxes, so a reader whose
    every finished read costs the main thread something (a tensorstore future
    takes the GIL once as it completes) finishes few reads, not one per chunk.
    """
    rows = []  # [z, y, x0, x1]
    for z, y, x in sorted(set(map(tuple, coords))):
        row = rows[-1] if rows else None
        if row and row[:2] == [z, y] and row[3] == x and row[3] - row[2] < max_chunks:
            row[3] = x + 1
        else:
            rows.append([z, y, x, x + 1])
    planes, open_planes = [], {}  # [z, y0, y1, x0, x1]; (z, x0, x1, next y) -> plane it may extend
    for z, y, x0, x1 in rows:
        plane = open_planes.pop((z, x0, x1, y), None)
        if plane is not None and (plane[2] - plane[1] + 1) * (x1 - x0) <= max_chunks:
            plane[2] = y + 1
        else:
            plane = [z, y, y + 1, x0, x1]
            planes.append(plane)
        open_planes[(z, x0, x1, y + 1)] = plane
    boxes, open_boxes = [], {}  # [z0, z1, y0, y1, x0, x1]; (y0, y1, x0, x1, next z) -> box it may extend
    for z, y0, y1, x0, x1 in sorted(planes):
        box = open_boxes.pop((y0, y1, x0, x1, z), None)
        if box is not None and (box[1] - box[0] + 1) * (y1 - y0) * (x1 - x0) <= max_chunks:
            box[1] = z + 1
        else:
            box = [z, z + 1, y0, y1, x0, x1]
            boxes.append(box)
        open_boxes[(y0, y1, x0, x1, z + 1)] = box
    return [((z0, z1), (y0, y1), (x0, x1)) for z0, z1, y0, y1, x0, x1 in boxes]


def local_root(store):
    """The folder of a local zarr store, or None for any other store (fsspec, memory, wrapped stores)."""
    from zarr.storage import LocalStore

    return str(store.root) if isinstance(store, LocalStore) else None


JOB_CHUNKS = 16


class _FutureRead:
    """A batch read running on a thread pool."""

    shares_memory = False

    def __init__(self, coords, future):
        self.coords, self._future = coords, future

    def done(self):
        return self._future.done()

    def wait(self):
        self._future.exception()

    def cancel(self):
        self._future.cancel()  # a job not started yet never runs

    def results(self):
        return self._future.result()


class ThreadedReader:
    """Base of readers whose reads block: `start` runs `read_chunks` on a pool of Python threads.

    Those threads need the GIL between the library's C calls, so inside Slicer
    (whose main thread holds the GIL while Qt idles) they run slowly; this path
    is for stores tensorstore cannot open. A batch that fails is retried chunk
    by chunk, so one corrupt chunk fails alone.
    """

    def __init__(self, threads=None):
        self._threads = int(threads or os.cpu_count() or 2)
        self._pool = None
        self._retired = []  # pools replaced by set_threads, still finishing their jobs

    def set_threads(self, threads):
        """Reads already started finish on the old pool; new ones use a pool of `threads`."""
        if int(threads) == self._threads:
            return
        self._threads = int(threads)
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._retired.append(self._pool)
            self._pool = None

    def start(self, level, coords):
        """Jobs spread over the pool's threads, of at most JOB_CHUNKS chunks: only running jobs hold decoded
        chunks and their scratch buffers, so many chunks can wait in flight without their memory."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix=f"bigvolume-{self.name}")
        coords = list(coords)
        size = max(1, min(JOB_CHUNKS, -(-len(coords) // self._threads)))
        return [_FutureRead(part, self._pool.submit(self._read_each, level, part))
                for part in (coords[i:i + size] for i in range(0, len(coords), size))]

    def _read_each(self, level, coords):
        try:
            return self.read_chunks(level, coords)
        except Exception as error:
            if len(coords) == 1:
                return {coords[0]: error}
            return read_one_by_one(lambda c: self.read_chunks(level, [c])[c], coords)

    def close(self, wait=True):
        """Queued jobs are cancelled; running ones finish (waited for only with `wait`)."""
        for pool in self._retired + ([self._pool] if self._pool is not None else []):
            pool.shutdown(wait=wait, cancel_futures=True)
        self._pool, self._retired = None, []
