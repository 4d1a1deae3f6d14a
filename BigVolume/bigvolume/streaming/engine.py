"""The fetch engine: which chunks to read next, for every view at once.

Each view submits the chunks it wants with a priority; a new submission
replaces that view's previous one, so requests that left the view are
dropped before they are served (chunks already being read still land in the
cache). Priorities are tuples compared in order, as DESIGN.md puts it:

    (tier, -level, distance)   tier 0 = visible, 1 = prefetch;
                                coarse levels before fine; nearer the view centre first.

Worker threads take the best batch of chunks that are neither cached nor in
flight, read them through a chunk reader (zarr-python by default: I/O and
Blosc decoding run outside the GIL) and put them in the shared LRU cache.
A submission is served once: a chunk read for it leaves the wanted set, so a
cache smaller than the views' working set cannot make the engine re-read
the same chunks forever (the view asks again when it moves).
`generation` counts arrivals, so a view knows when to compose again.

Memory: a batch's room is reserved in the cache before it is read, so cached
and in-flight chunks together keep to the budget, and the memory of evicted
chunks is handed back to the system as it accumulates (glibc would keep it).
"""

import threading
import time

import numpy as np

from .cache import ChunkCache, release_freed_memory
from .chunk_io import chunk_shape, default_reader

VISIBLE, PREFETCH = 0, 1
_TRIM_EVERY_BYTES = 16 * 1024**2  # give freed chunks back to the system after this much was evicted


class FetchEngine:
    def __init__(self, image, cache=None, reader=None, workers=2, batch=32):
        self.image = image
        self.cache = cache if cache is not None else ChunkCache()
        self.reader = reader or default_reader(image)
        self.batch = batch
        self._wanted = {}  # view id -> {(level, index): priority}
        self._in_flight = set()
        self._condition = threading.Condition()
        self._closed = False
        self.generation = 0
        self.errors = []
        self.chunks_read = 0
        self.bytes_read = 0
        self.seconds_reading = 0.0
        self._trimmed_at = 0  # cache.evicted_bytes at the last release_freed_memory()
        self._threads = [threading.Thread(target=self._work, name=f"bigvolume-fetch-{i}", daemon=True)
                         for i in range(workers)]
        for thread in self._threads:
            thread.start()

    # -- views ------------------------------------------------------------
    def submit(self, view_id, requests):
        """Replace what `view_id` wants: an iterable of (priority, (level, chunk index))."""
        wanted = {}
        for priority, key in requests:
            if key not in wanted or priority < wanted[key]:
                wanted[key] = priority
        with self._condition:
            self._wanted[view_id] = wanted
            self._condition.notify_all()

    def fetch_now(self, level, indices, timeout=10.0):
        """Read chunks of `level` in the calling thread, ahead of every queue (the few chunks a view needs at once).

        Used on open for the coarsest level: one small read here beats waiting for
        a worker to wake, take a batch and hand the result back.
        """
        wanted = [(level, index) for index in indices]
        with self._condition:
            keys = [key for key in wanted if key not in self._in_flight and self.cache.peek(key) is None]
            self._in_flight.update(keys)
        if keys:
            self._serve(level, keys)
        with self._condition:  # a worker may have taken some of them first: wait for those too
            deadline = time.monotonic() + timeout
            while any(key in self._in_flight for key in wanted) and time.monotonic() < deadline:
                self._condition.wait(deadline - time.monotonic())

    def cancel(self, view_id):
        with self._condition:
            self._wanted.pop(view_id, None)

    def wait_idle(self, timeout=30.0):
        """Block until every submission is served or failed (for tests, benchmarks and scripts)."""
        deadline = time.monotonic() + timeout
        with self._condition:
            while True:
                if not self._outstanding() and not self._in_flight:
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._condition.wait(min(remaining, 0.05))

    def close(self):
        with self._condition:
            self._closed = True
            self._wanted.clear()
            self._condition.notify_all()
        for thread in self._threads:
            thread.join(timeout=5)

    # -- workers ----------------------------------------------------------
    def _all_wanted(self):
        merged = {}
        for wanted in self._wanted.values():
            for key, priority in wanted.items():
                if key not in merged or priority < merged[key]:
                    merged[key] = priority
        return merged

    def _outstanding(self):
        """{key: priority} of wanted chunks neither cached nor failed (called with the lock held)."""
        failed = {key for key, _ in self.errors}
        return {key: priority for key, priority in self._all_wanted().items()
                if key not in failed and self.cache.peek(key) is None}

    def _take_batch(self):
        """Best chunks of one level that nobody is reading yet (called with the lock held)."""
        candidates = sorted((priority, key) for key, priority in self._outstanding().items()
                            if key not in self._in_flight)
        if not candidates:
            return None, []
        level = candidates[0][1][0]
        keys = [key for _, key in candidates if key[0] == level][: self.batch]
        self._in_flight.update(keys)
        return level, keys

    def _work(self):
        while True:
            with self._condition:
                while not self._closed:
                    level, keys = self._take_batch()
                    if keys:
                        break
                    self._condition.wait()
                if self._closed:
                    return
            self._serve(level, keys)

    def serve_until_idle(self):
        """Serve every submission in the calling thread, best first (an engine made with workers=0)."""
        while True:
            with self._condition:
                level, keys = self._take_batch()
            if not keys:
                return
            self._serve(level, keys)

    def _serve(self, level, keys):
        start = time.perf_counter()
        lvl = self.image.levels[level]
        reserved = len(keys) * int(np.prod(chunk_shape(lvl))) * lvl.dtype.itemsize
        self.cache.reserve(reserved)
        try:
            chunks = self.reader.read_chunks(level, [index for _, index in keys])
        except Exception as error:  # a corrupt chunk must not stop the other views
            chunks = {}
            with self._condition:
                self.errors.extend((key, error) for key in keys)
        finally:
            self.cache.release(reserved)
        elapsed = time.perf_counter() - start
        count, nbytes = len(chunks), sum(data.nbytes for data in chunks.values())
        for index, data in chunks.items():
            self.cache.put((level, index), data)
        chunks = data = None  # the batch lives on in the cache only
        if self.cache.evicted_bytes - self._trimmed_at >= _TRIM_EVERY_BYTES:
            self._trimmed_at = self.cache.evicted_bytes
            release_freed_memory()
        with self._condition:
            self._in_flight.difference_update(keys)
            for wanted in self._wanted.values():
                for key in keys:
                    wanted.pop(key, None)
            self.chunks_read += count
            self.bytes_read += nbytes
            self.seconds_reading += elapsed
            self.generation += 1
            self._condition.notify_all()
