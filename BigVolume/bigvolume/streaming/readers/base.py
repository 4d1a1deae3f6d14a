"""The reader protocol, and the Python-thread path for readers whose library has no asynchronous API."""

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol


class PendingRead(Protocol):
    coords: list  # the chunks this read covers

    def done(self) -> bool: ...

    def results(self) -> dict: ...  # {coords: array or exception}; blocks until done


class ChunkReader(Protocol):
    name: str

    def read_chunks(self, level: int, coords: list) -> dict: ...

    def start(self, level: int, coords: list) -> list: ...

    def set_threads(self, threads: int) -> None: ...

    def close(self) -> None: ...


def local_root(store):
    """The folder of a local zarr store, or None for any other store (fsspec, memory, wrapped stores)."""
    from zarr.storage import LocalStore

    return str(store.root) if isinstance(store, LocalStore) else None


class _FutureRead:
    """A batch read running on a thread pool."""

    def __init__(self, coords, future):
        self.coords, self._future = coords, future

    def done(self):
        return self._future.done()

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

    def set_threads(self, threads):
        """Reads already started finish on the old pool; new ones use a pool of `threads`."""
        self._threads = int(threads)
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None

    def start(self, level, coords):
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix=f"bigvolume-{self.name}")
        return [_FutureRead(list(coords), self._pool.submit(self._read_each, level, list(coords)))]

    def _read_each(self, level, coords):
        try:
            return self.read_chunks(level, coords)
        except Exception as error:
            if len(coords) == 1:
                return {coords[0]: error}
            results = {}
            for one in coords:
                try:
                    results.update(self.read_chunks(level, [one]))
                except Exception as error:  # the engine records it; the other chunks still arrive
                    results[one] = error
            return results

    def close(self):
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
