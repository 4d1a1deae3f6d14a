"""The fetch engine: one per scene, serving every source and every view through one cache.

Requesters (a view and source pair, or a source's own coarse prefetch) say
what they need; the ordering policy (ordering.py, README.md) decides the
order. The engine is driven by its owner's update, on the main thread
inside Slicer: each `step()` collects the reads that finished into the cache
and starts the best outstanding chunks, up to `concurrency` chunks in flight.
Readers with an asynchronous API (tensorstore) read and decode in their own
C++ threads meanwhile, so no Python thread is in the path; others run on a
reader's own pool of Python threads.

A submission is served once: each requester's list is walked once, and a
chunk another requester already had read (in flight or cached) is skipped,
so a cache smaller than the views' working set cannot make the engine re-read
the same chunks forever (a view asks again when it moves). `generation(source)`
counts the steps in which chunks of a source arrived, so a view composes again
only when its own source brought something.

Memory: a read's bytes (decoded and encoded, RESERVED_PER_DECODED_BYTE) are
reserved in the cache before it starts, at most a quarter of the budget, so
cached and in-flight chunks together keep to the budget; chunks read as one
box are cached as one group; and the memory of evicted chunks is handed back
to the system as it accumulates (glibc would keep it).
"""

import time
from collections import OrderedDict, deque

from .cache import ChunkCache, release_freed_memory
from .ordering import NOW, RequestQueue, priorities

_TRIM_EVERY_BYTES = 16 * 1024**2  # give freed chunks back to the system after this much was evicted
CHUNKS_IN_FLIGHT_PER_WORKER = 128  # a deep enough pipeline that the reader's threads never wait for the next update (bench/engine.py)
# A read in flight holds its chunks' encoded bytes as well as the decoded ones (as much again for data that does
# not compress): reserved in the budget, so resident memory keeps to it while many chunks are in flight.
RESERVED_PER_DECODED_BYTE = 2
_ERRORS_KEPT = 64
_EDITS_KEPT = 1024  # content changes remembered per source, for views that repaint what changed
_FAILED_KEYS_KEPT = 100_000  # failed chunks are not asked for again (bounded: a store may be wholly corrupt)


class FetchEngine:
    def __init__(self, cache=None, workers=2):
        self.cache = cache if cache is not None else ChunkCache()
        self.sources = {}  # id -> ChunkSource
        self.queue = RequestQueue()
        self.workers = int(workers)
        self._reads = []  # [(PendingRead, source, level, reserved bytes)]
        self._in_flight = set()  # keys being read
        self._failed = OrderedDict()  # keys that could not be read
        self.errors = deque(maxlen=_ERRORS_KEPT)  # (key, exception), the latest
        self.error_count = 0
        self.error_counts = {}  # source id -> chunks of it that could not be read
        self._generations = {}  # source id -> steps in which its chunks arrived
        self._changed = deque()  # (source id, {level: [coords]}) from any thread: chunks whose content changed
        self._stale = set()  # keys whose read started before their content changed: its result is dropped
        self._edits = {}  # source id -> deque of (change number, keys), the latest last: what views repaint
        self.chunks_read = 0
        self.bytes_read = 0
        self.seconds_reading = 0.0  # wall time with reads in flight
        self._busy_since = None
        self._trimmed_at = 0  # cache.evicted_bytes at the last release_freed_memory()

    # -- sources and settings ----------------------------------------------------------------
    def add_source(self, source):
        source.reader.set_threads(self.workers)
        self.sources[source.id] = source
        return source

    def generation(self, source_id):
        """Changes whenever chunks of the source arrive (a view composes again only then)."""
        return self._generations.get(source_id, 0)

    def failed(self, key):
        """True if the chunk could not be read (it is not asked for again)."""
        return key in self._failed

    def remove_source(self, source_id, wait=False):
        """Forget a source: its requests leave the queue, its cached chunks the cache, its reader closes
        (without waiting for its threads unless `wait`: a channel switch must not block the main thread)."""
        source = self.sources.pop(source_id, None)
        for requester in self.queue.requesters():
            wants = self.queue.wants(requester)
            if any(key[0] == source_id for key in wants):
                self.queue.replace(requester, [(p, k) for k, p in wants.items() if k[0] != source_id])
        kept = []
        for entry in self._reads:  # reads in flight for it: cancelled and dropped, not reported as failures
            read, of, level, reserved = entry
            if of.id != source_id:
                kept.append(entry)
                continue
            read.cancel()
            self.cache.release(reserved)
            self._in_flight.difference_update(of.key(level, c) for c in read.coords)
        self._reads = kept
        self.cache.discard(lambda key: key[0] == source_id)
        self._generations.pop(source_id, None)
        self._edits.pop(source_id, None)
        if source is not None:
            source.close(wait=wait)

    def set_workers(self, workers):
        """Reader threads and chunks in flight; applies in place (nothing cached or requested is lost)."""
        self.workers = max(1, int(workers))
        for source in self.sources.values():
            source.reader.set_threads(self.workers)

    @property
    def concurrency(self):
        return self.workers * CHUNKS_IN_FLIGHT_PER_WORKER

    def chunks_changed(self, source_id, touched):
        """The content of chunks changed (a label edit): `touched` is {level: [coords]}. Safe from any thread;
        the next step drops them from the cache and the views that show them compose and ask again."""
        self._changed.append((source_id, touched))

    def _apply_changes(self):
        while self._changed:
            source_id, touched = self._changed.popleft()
            keys = {(source_id, level, tuple(c)) for level, coords in touched.items() for c in coords}
            if not keys:
                continue
            self._stale.update(keys & self._in_flight)
            self.cache.discard(lambda key: key in keys)
            for key in keys:
                self._failed.pop(key, None)
            self._generations[source_id] = self._generations.get(source_id, 0) + 1
            log = self._edits.setdefault(source_id, deque(maxlen=_EDITS_KEPT))
            log.append((self.edit_count(source_id) + 1, keys))

    def edit_count(self, source_id):
        """How many content changes of the source were applied (a view remembers the count it has shown)."""
        log = self._edits.get(source_id)
        return log[-1][0] if log else 0

    def edited_since(self, source_id, count):
        """The keys whose content changed after change number `count`; None if the log no longer reaches back
        that far (the view then repaints everything)."""
        if count >= self.edit_count(source_id):
            return set()
        log = self._edits[source_id]
        if log[0][0] > count + 1:
            return None
        return set().union(*(keys for number, keys in log if number > count))

    # -- requests ------------------------------------------------------------------------------
    def submit(self, requester, needs):
        """Replace what `requester` wants: needs [(tier, level, distance, key), ...], key from ChunkSource.key."""
        self.queue.replace(requester, priorities(needs))

    def cancel(self, requester):
        self.queue.withdraw(requester)

    def wants(self, requester):
        """{key: priority} of a requester's chunks still in the queue (not yet taken to be read)."""
        return self.queue.wants(requester)

    @property
    def outstanding(self):
        return len(self.queue)

    @property
    def in_flight(self):
        return len(self._in_flight)

    # -- the work ------------------------------------------------------------------------------
    def step(self):
        """Collect finished reads, read NOW requests here, start the best others; returns the chunks that arrived."""
        self._apply_changes()
        arrived = self._collect()
        now = self._take(lambda priority: priority[0] == NOW)
        if now:
            # The first frame of a view: read here, and start nothing else in this step, so that composing and
            # drawing that frame have the cores instead of the reader's threads (the next update starts the rest:
            # the disk store's coarse preview was drawn in 0.09 s this way, 0.23 s when the rest started at once).
            self._start(now, wait=True)
            arrived += self._collect()
            return arrived
        room = self.concurrency - len(self._in_flight)
        # Reads in flight take at most a quarter of the budget, so what views show is not evicted to make room.
        room_bytes = self.cache.budget_bytes // 4 - self.cache.reserved_bytes
        if room > 0 and (room_bytes > 0 or not self._in_flight):
            self._start(self._take(None, room, max(room_bytes, 1)))
        return arrived

    def wait_idle(self, timeout=30.0):
        """Step until nothing is outstanding or in flight (scripts, tests, benchmarks); False on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            self.step()
            if not self._in_flight and not len(self.queue):
                return True
            if time.monotonic() > deadline:
                return False
            if self._reads:
                self._reads[0][0].wait()  # block on the oldest read instead of spinning

    def close(self):
        """Withdraw every request and remove every source (reads in flight are dropped; readers close)."""
        for requester in self.queue.requesters():
            self.queue.withdraw(requester)
        for source_id in list(self.sources):
            self.remove_source(source_id, wait=True)

    # -- internals -----------------------------------------------------------------------------
    def _take(self, accept, limit=None, max_bytes=None):
        """Pop the best outstanding keys that need reading ({(source id, level): [coords]}, in order), while their
        priority is `accept`ed, up to `limit` chunks and `max_bytes` (the first key taken may exceed it)."""
        groups, taken, nbytes, seen = {}, 0, 0, set()
        while (limit is None or taken < limit) and (max_bytes is None or nbytes < max_bytes):
            if accept is not None:
                best = self.queue.peek_priority()
                if best is None or not accept(best):
                    break
            key = self.queue.pop()
            if key is None:
                break
            if key in seen or key in self._in_flight or key in self._failed or key[0] not in self.sources \
                    or key in self.cache:  # another requester's meeting of it came first, or it needs no reading
                continue
            seen.add(key)
            groups.setdefault(key[:2], []).append(key[2])
            taken += 1
            nbytes += self.sources[key[0]].chunk_nbytes(key[1]) * RESERVED_PER_DECODED_BYTE
        return groups

    def _start(self, groups, wait=False):
        if self._busy_since is None and groups:
            self._busy_since = time.perf_counter()
        started = len(self._reads)
        for (source_id, level), coords in groups.items():
            source = self.sources[source_id]
            chunk = source.chunk_nbytes(level) * RESERVED_PER_DECODED_BYTE
            reserved = len(coords) * chunk
            self.cache.reserve(reserved)
            try:
                reads = source.reader.start(level, coords)
            except Exception as error:  # e.g. a level that cannot be opened: every chunk of the group failed
                self.cache.release(reserved)
                for c in coords:
                    self._fail(source.key(level, c), error)
                continue
            self._in_flight.update(source.key(level, c) for c in coords)
            self._reads.extend((read, source, level, len(read.coords) * chunk) for read in reads)
        if wait:
            for read, *_ in self._reads[started:]:
                read.wait()

    def _collect(self):
        arrived, arrived_from = 0, set()
        pending = []
        for entry in self._reads:
            read, source, level, reserved = entry
            if not read.done():
                pending.append(entry)
                continue
            try:
                results = read.results()
            except Exception as error:  # the whole read failed
                results = {c: error for c in read.coords}
            self.cache.release(reserved)
            good = {}
            for c in read.coords:
                key = source.key(level, c)
                self._in_flight.discard(key)
                data = results.get(c)
                if key in self._stale:  # read before its content changed: asked for again by the views
                    self._stale.discard(key)
                    continue
                if isinstance(data, BaseException) or data is None:
                    self._fail(key, data if data is not None else KeyError(f"chunk {c} missing from the read"))
                    continue
                good[key] = data
                self.bytes_read += data.nbytes
            if read.shares_memory:  # views of one buffer: cached and evicted together, counted once
                self.cache.put_group(good)
            else:
                for key, data in good.items():
                    self.cache.put(key, data)
            self.chunks_read += len(good)
            arrived += len(good)
            if good:
                arrived_from.add(source.id)
        self._reads = pending
        now = time.perf_counter()
        if self._busy_since is not None:
            self.seconds_reading += now - self._busy_since
            self._busy_since = now if pending else None
        for source_id in arrived_from:
            self._generations[source_id] = self._generations.get(source_id, 0) + 1
        if arrived:
            if self.cache.evicted_bytes - self._trimmed_at >= _TRIM_EVERY_BYTES:
                self._trimmed_at = self.cache.evicted_bytes
                release_freed_memory()
        return arrived

    def _fail(self, key, error):
        """A chunk that cannot be read: reported once, never asked for again; the other chunks go on."""
        self._in_flight.discard(key)
        self._failed[key] = True
        if len(self._failed) > _FAILED_KEYS_KEPT:
            self._failed.popitem(last=False)
        self.errors.append((key, error))
        self.error_count += 1
        self.error_counts[key[0]] = self.error_counts.get(key[0], 0) + 1
