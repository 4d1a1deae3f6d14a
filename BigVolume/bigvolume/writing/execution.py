"""Where the blocks of a pyramid stage run: in this process, in a local process pool, or on a Dask cluster.

All three run the same `cascade.run_blocks` and report the same events to the
writer: planes consumed (for progress), blocks finished (for the journal).

- In this process: consecutive blocks stream as one run (each source plane
  is read once), slabs are read ahead on a thread and shards are encoded on a
  thread pool (Blosc releases the GIL). Used for sources that cannot be sent
  to another process (numpy arrays, arbitrary objects) and for small inputs.
- Process pool: one task per block on `workers` processes (spawned, so no
  thread or zarr event loop is forked). numpy's small-array arithmetic holds
  the GIL, so threads do not scale the filter; processes do (measured 2.0x on
  2 cores). Workers ignore Ctrl-C; the parent stops them at their next slab.
  The pool is kept for the next write, so a batch starts its processes once
  (`prestart` starts them while the input is being opened; `shutdown_pools`
  ends them).
- Dask: one task per block on a `distributed` cluster whose workers see the
  same file system; stopping goes through a distributed Event.
"""

import multiprocessing
import os
import queue
import signal
import time
import uuid
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from .cascade import run_blocks
from ..errors import BigVolumeError, WriteCancelled
from .shardio import LevelWriter


def peak_rss_mb():
    """This process's peak resident memory (VmHWM), or None where /proc is not available."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def stage_io(stage, source):
    """The stage's input (the source, or the store's input level) and a writer per written cascade position."""
    import zarr

    if stage.index > 0 or source is None:
        source = zarr.open_array(os.path.join(stage.store, str(stage.input_level)), mode="r")
    writers = {}
    if stage.write_input:
        writers[0] = LevelWriter(os.path.join(stage.store, str(stage.input_level)))
    for position, level in enumerate(stage.level_indices, start=1):
        writers[position] = LevelWriter(os.path.join(stage.store, str(level)))
    return source, writers


def consecutive_runs(blocks):
    runs = []
    for b in sorted(blocks):
        if runs and runs[-1][1] == b:
            runs[-1][1] = b + 1
        else:
            runs.append([b, b + 1])
    return runs


class InProcessRunner:
    name = "this process"

    def __init__(self, threads=None):
        self.threads = threads or os.cpu_count() or 1
        self.peak_worker_rss_mb = None

    def run_stage(self, stage, source, blocks, *, block_done, planes_done, should_stop):
        source, writers = stage_io(stage, source)
        with ThreadPoolExecutor(self.threads, thread_name_prefix="bigvolume-encode") as pool:
            for b0, b1 in consecutive_runs(blocks):
                run_blocks(stage, source, b0, b1, writers, block_done=block_done, planes_done=planes_done,
                           should_stop=should_stop, encode_pool=pool, read_ahead=True)

    def close(self):
        pass


# -- process pool -------------------------------------------------------------
_worker = {}


def _init_worker(events, stop):
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides what Ctrl-C means
    import numcodecs.blosc

    numcodecs.blosc.use_threads = False  # one process per core already
    _worker.update(events=events, stop=stop)


def _warm_up():
    import numcodecs  # noqa: F401  (the imports a block needs, done before the first block arrives)
    import zarr  # noqa: F401


def _reset_peak_rss():
    try:  # Linux: "5" resets VmHWM, so each block reports its own peak, not an earlier write's
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        pass


def _pool_block(stage, source, block):
    _reset_peak_rss()
    events, stop = _worker["events"], _worker["stop"]
    source, writers = stage_io(stage, source)
    run_blocks(stage, source, block, block + 1, writers, planes_done=lambda n: events.put((stage.index, block, n)),
               should_stop=stop.is_set)
    return peak_rss_mb()


class ProcessRunner:
    """A pool of `workers` spawned processes, kept for the next write (a batch pays the start-up once)."""

    _shared = {}

    @classmethod
    def shared(cls, workers):
        runner = cls._shared.get(workers)
        if runner is None or runner.broken:
            runner = cls._shared[workers] = cls(workers)
        runner.peak_worker_rss_mb = None
        return runner

    def __init__(self, workers):
        from concurrent.futures import ProcessPoolExecutor

        self.workers = workers
        self.name = f"{workers} processes"
        context = multiprocessing.get_context("spawn")
        self.events = context.Queue()
        self.stop = context.Event()
        self.pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                                        initargs=(self.events, self.stop))
        self.peak_worker_rss_mb = None
        self.broken = False

    def warm_up(self):
        """Start the processes and their imports now (they overlap with whatever the caller does next)."""
        for _ in range(self.workers):
            self.pool.submit(_warm_up)

    def _drain(self, planes_done, reported):
        while True:
            try:
                _, block, n = self.events.get_nowait()
            except queue.Empty:
                return
            if block in reported:  # a late message of a block already counted in full is dropped
                reported[block] += n
                planes_done(n)

    def run_stage(self, stage, source, blocks, *, block_done, planes_done, should_stop):
        ship = source if stage.index == 0 else None
        futures = {self.pool.submit(_pool_block, stage, ship, b): b for b in blocks}
        pending = set(futures)
        reported = {b: 0 for b in blocks}  # progress messages can arrive after their block's result
        error = None
        try:
            while pending:
                finished, pending = wait(pending, timeout=0.1, return_when=FIRST_COMPLETED)
                self._drain(planes_done, reported)
                for future in finished:
                    if future.exception() is not None:
                        error = error or future.exception()
                        self.broken = self.broken or isinstance(future.exception(), BrokenProcessPool)
                        continue
                    rss = future.result()
                    if rss is not None:
                        self.peak_worker_rss_mb = max(self.peak_worker_rss_mb or 0, rss)
                    b = futures[future]
                    rest = stage.block_planes(b) - reported.pop(b)
                    if rest > 0:
                        planes_done(rest)
                    block_done(b)
                if error is not None or should_stop():
                    self._stop(pending)
                    raise error if error is not None else WriteCancelled()
        except KeyboardInterrupt:
            self._stop(pending)
            raise

    def _stop(self, pending):
        self.stop.set()
        for future in pending:
            future.cancel()
        wait(pending)
        self.stop.clear()

    def close(self):
        """The pool stays for the next write unless it broke (a worker died)."""
        if self.broken:
            self.pool.shutdown(wait=True, cancel_futures=True)
            ProcessRunner._shared.pop(self.workers, None)


def prestart(workers=None):
    """Start the shared worker processes ahead of a write (e.g. while the input's headers are read)."""
    workers = workers or os.cpu_count() or 1
    if workers > 1:
        ProcessRunner.shared(workers).warm_up()


def shutdown_pools():
    """Stop the worker processes kept between writes."""
    for runner in list(ProcessRunner._shared.values()):
        runner.pool.shutdown(wait=True, cancel_futures=True)
    ProcessRunner._shared.clear()


# -- dask ---------------------------------------------------------------------
def _dask_block(stage, source, block, event_name):
    from distributed import Event

    stop = Event(event_name)
    source, writers = stage_io(stage, source)
    run_blocks(stage, source, block, block + 1, writers, should_stop=stop.is_set)
    return peak_rss_mb()


class DaskRunner:
    def __init__(self, address):
        try:
            from distributed import Client, Event
        except ImportError as error:
            raise BigVolumeError("running on a Dask cluster needs the 'distributed' package: "
                                 "pip install distributed (or bigvolume[distributed])") from error
        try:
            self.client = Client(address, timeout="20s")
        except (OSError, TimeoutError) as error:
            raise BigVolumeError(f"cannot reach the Dask scheduler at {address}: {error}") from error
        self.name = f"Dask cluster {address}"
        self.event_name = f"bigvolume-stop-{uuid.uuid4().hex}"
        self.stop = Event(self.event_name, client=self.client)
        self.peak_worker_rss_mb = None

    def run_stage(self, stage, source, blocks, *, block_done, planes_done, should_stop):
        ship = self.client.scatter(source, broadcast=True) if stage.index == 0 and source is not None else None
        futures = {self.client.submit(_dask_block, stage, ship, b, self.event_name, pure=False): b for b in blocks}
        pending = set(futures)
        try:
            while pending:
                time.sleep(0.1)
                for future in [f for f in pending if f.done()]:
                    pending.discard(future)
                    if future.status != "finished":
                        self._stop(pending)
                        raise future.exception()
                    rss = future.result()
                    if rss is not None:
                        self.peak_worker_rss_mb = max(self.peak_worker_rss_mb or 0, rss)
                    b = futures[future]
                    planes_done(stage.block_planes(b))
                    block_done(b)
                if should_stop():
                    self._stop(pending)
                    raise WriteCancelled()
        except KeyboardInterrupt:
            self._stop(pending)
            raise

    def _stop(self, pending):
        self.stop.set()
        for future in list(pending):
            try:
                future.result()
            except Exception:
                pass
        self.stop.clear()

    def close(self):
        self.client.close()
