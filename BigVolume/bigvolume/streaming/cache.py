"""A byte-budgeted LRU cache of decoded chunks, shared by every source and every view.

Keys are (source id, level, chunk coordinates (z, y, x)); values are numpy
arrays. Resident memory for chunk data stays at or below the budget whatever
the volume's size; the least recently used chunks go first. Chunks read as one
block are views of one buffer: they are cached and evicted as a group and
their buffer is counted once, so the budget counts memory, not views. The
engine fills it on the main thread; it is locked all the same, so that a
status panel or another thread may read it.
"""

import ctypes
import itertools
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


class _Group:
    """Chunks cached and evicted together: views of one buffer (a block read at once), counted once."""

    __slots__ = ("keys", "nbytes")

    def __init__(self, keys, nbytes):
        self.keys, self.nbytes = set(keys), nbytes


class ChunkCache:
    def __init__(self, budget_bytes=None):
        self.budget_bytes = int(budget_bytes if budget_bytes is not None else default_budget_bytes())
        self._groups = OrderedDict()  # group id -> _Group, least recently used first
        self._chunks = {}  # key -> (array, group id)
        self._group_ids = itertools.count()
        self._bytes = 0
        self._reserved = 0  # bytes of chunks being read, counted against the budget before they arrive
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        self.evicted_bytes = 0

    def get(self, key):
        with self._lock:
            entry = self._chunks.get(key)
            if entry is None:
                self.misses += 1
                return None
            self._groups.move_to_end(entry[1])
            self.hits += 1
            return entry[0]

    def peek(self, key):
        """Like get, without counting or refreshing recency (for scheduling decisions)."""
        with self._lock:
            entry = self._chunks.get(key)
            return None if entry is None else entry[0]

    def __contains__(self, key):
        with self._lock:
            return key in self._chunks

    def keys(self):
        with self._lock:
            return list(self._chunks)

    def put(self, key, value):
        self.put_group({key: value})

    def put_group(self, chunks, nbytes=None):
        """Chunks that share one buffer (views of one block read), cached and evicted together and counted once:
        `nbytes` is the buffer's size (by default the chunks' own sizes added up)."""
        size = int(nbytes if nbytes is not None else sum(value.nbytes for value in chunks.values()))
        with self._lock:
            for key in chunks:
                self._forget(key)
            if size > self.budget_bytes or not chunks:
                return
            group = next(self._group_ids)
            self._groups[group] = _Group(chunks, size)
            for key, value in chunks.items():
                self._chunks[key] = (value, group)
            self._bytes += size
            self._evict(0)

    def _forget(self, key):
        """A key put again: it leaves its old group, whose buffer is freed once no chunk of it is left (lock held)."""
        entry = self._chunks.pop(key, None)
        if entry is None:
            return
        group = self._groups[entry[1]]
        group.keys.discard(key)
        if not group.keys:
            del self._groups[entry[1]]
            self._bytes -= group.nbytes

    def _drop_group(self, group_id):
        group = self._groups.pop(group_id)
        for key in group.keys:
            del self._chunks[key]
        self._bytes -= group.nbytes
        return group

    def _evict(self, room):
        """Drop least recently used groups until `room` more bytes (and what is reserved) fit (lock held)."""
        while self._groups and self._bytes + self._reserved + room > self.budget_bytes:
            group = self._drop_group(next(iter(self._groups)))
            self.evictions += len(group.keys)
            self.evicted_bytes += group.nbytes

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
        """Drop every group holding a chunk whose key satisfies `predicate` (a source that was closed)."""
        with self._lock:
            for group_id in {group for key, (_, group) in self._chunks.items() if predicate(key)}:
                self._drop_group(group_id)
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
            self._groups.clear()
            self._chunks.clear()
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
        return len(self._chunks)

    @property
    def hit_rate(self):
        total = self.hits + self.misses
        return self.hits / total if total else 0.0
