"""A byte-budgeted LRU cache of decoded chunks, shared by every source and every view.

Keys are (source id, level, chunk coordinates (z, y, x)); values are numpy
arrays. Resident memory for chunk data stays at or below the budget whatever
the volume's size; the least recently used chunks go first. The engine fills
it on the main thread; it is locked all the same, so that a status panel or
another thread may read it.
"""

import ctypes
import threading
from collections import OrderedDict

DEFAULT_BUDGET_BYTES = 4 * 1024**3  # an eighth of a 32 GB workstation


def default_budget_bytes():
    """4 GB, or a quarter of physical memory on smaller machines."""
    try:
        import os

        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        return min(DEFAULT_BUDGET_BYTES, physical // 4)
    except (ValueError, OSError, AttributeError):
        return DEFAULT_BUDGET_BYTES


def _malloc_trim():
    try:
        return ctypes.CDLL(None).malloc_trim  # glibc
    except (OSError, AttributeError):
        return None


_MALLOC_TRIM = _malloc_trim()


def release_freed_memory():
    """Give memory freed by evicted chunks back to the system, where the C library keeps it otherwise.

    glibc keeps freed chunk-sized blocks in its heaps (one per thread that
    allocated them) for reuse, so resident memory would stay at its high-water
    mark above the budget. A no-op elsewhere, and about a millisecond when
    there is little to give back (ctypes releases the GIL meanwhile).
    """
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


class ChunkCache:
    def __init__(self, budget_bytes=None):
        self.budget_bytes = int(budget_bytes if budget_bytes is not None else default_budget_bytes())
        self._items = OrderedDict()
        self._bytes = 0
        self._reserved = 0  # bytes of chunks being read, counted against the budget before they arrive
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        self.evicted_bytes = 0

    def get(self, key):
        with self._lock:
            value = self._items.get(key)
            if value is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return value

    def peek(self, key):
        """Like get, without counting or refreshing recency (for scheduling decisions)."""
        with self._lock:
            return self._items.get(key)

    def __contains__(self, key):
        with self._lock:
            return key in self._items

    def put(self, key, value):
        size = value.nbytes
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old.nbytes
            if size > self.budget_bytes:
                return
            self._items[key] = value
            self._bytes += size
            self._evict(0)

    def _evict(self, room):
        """Drop least recently used chunks until `room` more bytes (and what is reserved) fit (lock held)."""
        while self._items and self._bytes + self._reserved + room > self.budget_bytes:
            _, evicted = self._items.popitem(last=False)
            self._bytes -= evicted.nbytes
            self.evictions += 1
            self.evicted_bytes += evicted.nbytes

    def reserve(self, nbytes):
        """Make room for chunks about to be read, so that cached and in-flight chunks together keep to the budget."""
        with self._lock:
            self._evict(nbytes)
            self._reserved += nbytes

    def release(self, nbytes):
        """The reserved chunks arrived (or failed); call before putting them."""
        with self._lock:
            self._reserved = max(0, self._reserved - nbytes)

    def discard(self, predicate):
        """Drop every chunk whose key satisfies `predicate` (a source that was closed)."""
        with self._lock:
            for key in [key for key in self._items if predicate(key)]:
                self._bytes -= self._items.pop(key).nbytes
        release_freed_memory()

    def set_budget(self, budget_bytes):
        with self._lock:
            shrinking = int(budget_bytes) < self.budget_bytes
            self.budget_bytes = int(budget_bytes)
            self._evict(0)
        if shrinking:
            release_freed_memory()

    def clear(self):
        with self._lock:
            self._items.clear()
            self._bytes = 0
        release_freed_memory()

    @property
    def nbytes(self):
        return self._bytes

    @property
    def reserved_bytes(self):
        """Bytes of chunks being read (counted against the budget before they arrive)."""
        return self._reserved

    def __len__(self):
        return len(self._items)

    @property
    def hit_rate(self):
        total = self.hits + self.misses
        return self.hits / total if total else 0.0
