"""Benchmark: the streaming engine's own costs, and its reads while the main thread holds the GIL.

a. Scheduling (no I/O): with 10,000 and 100,000 outstanding chunks spread
   over 4 requesters (keys of a made-up source), the time of
   - one requester replacing its wants after a move (a quarter of the
     outstanding chunks, half of them new, every rank changed): the ordering
     policy (`priorities`), the queue's `replace`, and the two together
     (`FetchEngine.submit`, what a view pays);
   - popping the next 64 best keys from the `RequestQueue`;
   - one `FetchEngine.step()` with nothing finished and the concurrency full
     (its own bookkeeping; the reads in flight are tensorstore futures that
     never complete), and one step that collects the engine's concurrency of finished reads and
     starts 64 new ones (the main thread's cost per step at full speed,
     reading and decoding excluded).
   Medians of repeats.

b. Slicer's main thread holds the GIL while Qt idles. Simulated here by
   `ctypes.PyDLL(None).usleep(14000)` between short update ticks (a PyDLL
   call keeps the GIL: 14 ms of every ~15 ms), against an idle main thread
   (`time.sleep(0.001)` between ticks). On a store this benchmark writes once
   (the synthetic rock core, default 640 x 512 x 512 uint16 = 335 MB, 64^3
   chunks, as `bigvolume demo` writes it), page cache warm:
   - every level-0 chunk fetched through `FetchEngine` (loop: `step()`, then
     the pause): chunks/s with the default reader (tensorstore: reads started
     and collected on the main thread, no Python thread in the path) and with
     `DirectChunkReader` (the Python-thread path, a `ThreadedReader` pool);
   - open -> first complete frame of three 1024 x 1024 slice views
     (`OffscreenScene` + `StreamingScene`; loop: `update()`, then the pause),
     with the same two readers.
   Each with its ratio to idle; the goal is the tensorstore path within 10 %
   of idle. The old design's figures are kept in the report for comparison.

    python bench/engine.py [--shape 640 512 512] [--repeats 3] [--sizes 10000 100000] [--view 1024]
                           [--only scheduling|gil] [--output bench/results/engine.json]
"""

import argparse
import ctypes
import os
import statistics
import sys
import time
import types

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from common import peak_rss_mb, write_report  # noqa: E402

REQUESTERS = 4
POPS = 64
WORKERS = 2
GIL_HOLD_US = 14000  # of every ~15 ms tick
CHUNK = (64, 64, 64)

# Measured before the streaming redesign (two Python fetch threads feeding the cache), on the demo store
# (640 x 512 x 512 uint16, 64^3 chunks), fetching every level-0 chunk, on this 2-core machine.
PREVIOUS = {
    "design": "before the streaming redesign: two Python fetch threads read chunks and fed the cache",
    "store": "bigvolume demo store, 640 x 512 x 512 uint16, 64^3 chunks (640 level-0 chunks)",
    "fetch_all_level0_chunks_per_s": {"idle_main_thread": [727, 1049], "gil_held_14_of_15_ms": [351, 416]},
    "fraction_of_idle": [round(351 / 1049, 2), round(416 / 727, 2)],
}


def _median(values):
    return float(statistics.median(values))


def _hold_gil_pause():
    """Slicer's main thread idling in Qt: 14 ms in C with the GIL held (a PyDLL call does not release it)."""
    libc = ctypes.PyDLL(None)
    return lambda: libc.usleep(GIL_HOLD_US)


def _idle_pause():
    return lambda: time.sleep(0.001)


PAUSES = {"idle": _idle_pause, "gil_held": _hold_gil_pause}


# -- a. scheduling ---------------------------------------------------------------------------------------


class _StalledRead:
    """A read in flight: a tensorstore future (a promise nobody keeps until the benchmark does)."""

    shares_memory = False

    def cancel(self):
        self._future.cancel()

    def __init__(self, coords, future):
        self.coords, self._future = [coords], future

    def done(self):
        return self._future.done()

    def results(self):
        return {self.coords[0]: self._future.result()}


class _StalledReader:
    """A reader whose reads finish only when the benchmark says so (`finish`): no I/O, no threads."""

    name = "stalled"

    def __init__(self):
        self.promises = []

    def set_threads(self, threads):
        pass

    def start(self, level, coords):
        import tensorstore as ts

        reads = []
        for c in coords:
            promise, future = ts.Promise.new()
            self.promises.append(promise)
            reads.append(_StalledRead(c, future))
        return reads

    def finish(self, data):
        for promise in self.promises:
            promise.set_result(data)
        self.promises = []

    def read_chunks(self, level, coords):
        raise NotImplementedError

    def close(self, wait=True):
        pass


def _fake_image(levels=4):
    nbytes = int(np.prod(CHUNK)) * 2
    return types.SimpleNamespace(levels=[types.SimpleNamespace(chunk_nbytes=nbytes) for _ in range(levels)],
                                 location="scheduling-benchmark")


def _key_of(source_id, i):
    """Distinct keys from an integer: levels 0-3 in turn, coordinates on a 64^3 chunk grid."""
    level, rest = i % 4, i // 4
    return (source_id, level, (rest // 4096, (rest // 64) % 64, rest % 64))


def _needs(source_id, numbers, rng):
    """Needs [(tier, level, distance, key)]: the nearer half VISIBLE, the rest PREFETCH, random distances."""
    from bigvolume.streaming.ordering import PREFETCH, VISIBLE

    distances = rng.random(len(numbers))
    cut = np.median(distances)
    out = []
    for n, d in zip(numbers, distances):
        key = _key_of(source_id, int(n))
        out.append((VISIBLE if d <= cut else PREFETCH, key[1], float(d), key))
    return out


def measure_scheduling(total, moves=21, pop_repeats=51, step_repeats=201, cycle_repeats=51):
    from bigvolume.streaming.cache import ChunkCache
    from bigvolume.streaming.engine import FetchEngine
    from bigvolume.streaming.ordering import priorities
    from bigvolume.streaming.sources import ChunkSource

    rng = np.random.default_rng(0)
    per = total // REQUESTERS
    reader = _StalledReader()
    engine = FetchEngine(ChunkCache(1 << 50), workers=WORKERS)  # the budget only counts bytes here
    source = engine.add_source(ChunkSource(_fake_image(), reader=reader, label="bench"))
    queue = engine.queue
    wants = {}  # requester -> its full {key: priority}, to put popped keys back
    for r in range(REQUESTERS):
        needs = _needs(source.id, range(r * per, (r + 1) * per), rng)
        engine.submit(f"view{r}", needs)
        wants[f"view{r}"] = priorities(needs)
    assert len(queue) == REQUESTERS * per

    # (i) a move: view0's wants go from A to B (half of A kept, half new, new distances) and back, in turn.
    a_numbers = np.arange(0, per)
    b_numbers = np.concatenate([a_numbers[: per // 2], np.arange(10 * total, 10 * total + per - per // 2)])
    sets = [_needs(source.id, b_numbers, rng), _needs(source.id, a_numbers, rng)]
    priority_s, replace_s, submit_s = [], [], []
    for i in range(moves):
        needs = sets[i % 2]
        t0 = time.perf_counter()
        wanted = priorities(needs)
        t1 = time.perf_counter()
        queue.replace("view0", wanted)
        t2 = time.perf_counter()
        priority_s.append(t1 - t0)
        replace_s.append(t2 - t1)
    for i in range(moves, 2 * moves):  # going on from where the first moves left (every move changes half)
        needs = sets[i % 2]
        t0 = time.perf_counter()
        engine.submit("view0", needs)
        submit_s.append(time.perf_counter() - t0)
    wants["view0"] = priorities(sets[1])  # the last move went back to A
    assert len(queue) == REQUESTERS * per

    # (ii) the next 64 best keys, then put back (untimed).
    pop_s = []
    for _ in range(pop_repeats):
        t0 = time.perf_counter()
        popped = [queue.pop() for _ in range(POPS)]
        pop_s.append(time.perf_counter() - t0)
        assert all(k is not None for k in popped)
        for requester, wanted in wants.items():
            queue.replace(requester, wanted)

    # (iii) a step with the concurrency full and nothing finished: the step's own bookkeeping.
    engine.step()
    assert engine.in_flight == engine.concurrency, (engine.in_flight, engine.concurrency)
    step_s = []
    for _ in range(step_repeats):
        t0 = time.perf_counter()
        engine.step()
        step_s.append(time.perf_counter() - t0)
    assert engine.in_flight == engine.concurrency and engine.chunks_read == 0

    # (iv) a step that collects the finished reads (the whole concurrency) into the cache and starts as many.
    data = np.zeros(CHUNK, dtype=np.uint16)
    cycle_s = []
    cycle_repeats = min(cycle_repeats, len(queue) // engine.concurrency - 1)  # keys left to start
    for _ in range(cycle_repeats):
        reader.finish(data)
        t0 = time.perf_counter()
        engine.step()
        cycle_s.append(time.perf_counter() - t0)
    assert engine.chunks_read == cycle_repeats * engine.concurrency and engine.error_count == 0
    reader.finish(data)
    engine.close()
    return {
        "outstanding_chunks": total,
        "requesters": REQUESTERS,
        "move": {"keys": per, "new_keys": per - per // 2,
                 "priorities_ms_median": _median(priority_s) * 1e3,
                 "queue_replace_ms_median": _median(replace_s) * 1e3,
                 "engine_submit_ms_median": _median(submit_s) * 1e3,
                 "engine_submit_ms_max": max(submit_s) * 1e3},
        "pop_64": {"us_median": _median(pop_s) * 1e6, "us_per_key_median": _median(pop_s) * 1e6 / POPS},
        "step_nothing_finished_concurrency_full": {"us_median": _median(step_s) * 1e6,
                                                   "reads_in_flight": engine.concurrency},
        "step_collect_and_start_concurrency": {"us_median": _median(cycle_s) * 1e6,
                                     "us_per_chunk_median": _median(cycle_s) * 1e6 / engine.concurrency},
        "repeats": {"moves": moves, "pops": pop_repeats, "steps": step_repeats, "collect_start_steps": cycle_repeats},
    }


# -- b. the main thread holding the GIL -------------------------------------------------------------------


def _ensure_store(path, shape):
    import bigvolume
    from bigvolume.tools.synthetic import SyntheticRockCore

    if os.path.exists(os.path.join(path, "zarr.json")):
        try:
            image = bigvolume.open_image(path)
            if tuple(image.levels[0].volume_shape) == tuple(shape):
                return
        except bigvolume.BigVolumeError:
            pass
    print(f"writing {path} ({np.prod(shape) * 2 / 1e6:.0f} MB) once ...", flush=True)
    start = time.perf_counter()
    bigvolume.write_pyramid(SyntheticRockCore(tuple(shape), seed=0), path, chunks=CHUNK, overwrite=True)
    print(f"  written in {time.perf_counter() - start:.0f} s", flush=True)


def _warm_page_cache(path):
    for folder, _, files in os.walk(path):
        for name in files:
            with open(os.path.join(folder, name), "rb") as f:
                while f.read(1 << 22):
                    pass


def _reader(kind, image):
    from bigvolume.streaming.readers import DirectChunkReader, default_reader

    if kind == "default":
        return default_reader(image, threads=WORKERS)
    return DirectChunkReader(image, threads=WORKERS)


def fetch_level0(path, kind, pause_name, budget):
    """Every level-0 chunk through a FetchEngine driven by this (main) thread: step, pause, until all arrived."""
    import bigvolume
    from bigvolume.streaming.cache import ChunkCache
    from bigvolume.streaming.engine import FetchEngine
    from bigvolume.streaming.ordering import VISIBLE
    from bigvolume.streaming.sources import ChunkSource

    image = bigvolume.open_image(path)
    reader = _reader(kind, image)
    engine = FetchEngine(ChunkCache(budget), workers=WORKERS)
    source = engine.add_source(ChunkSource(image, reader=reader))
    level = image.levels[0]
    coords = level.all_chunks()
    reader.read_chunks(0, coords[:1])  # the level is opened (tensorstore) before the clock starts
    centre = np.array(level.grid_shape) / 2.0
    needs = [(VISIBLE, 0, float(np.linalg.norm(np.array(c) + 0.5 - centre)), source.key(0, c)) for c in coords]
    pause = PAUSES[pause_name]()
    steps = 0
    start = time.perf_counter()
    engine.submit("bench", needs)
    while engine.outstanding or engine.in_flight:
        engine.step()
        steps += 1
        if engine.outstanding or engine.in_flight:
            pause()
    seconds = time.perf_counter() - start
    result = {"reader": reader.name, "chunks": engine.chunks_read, "errors": engine.error_count,
              "seconds": seconds, "chunks_per_s": engine.chunks_read / seconds,
              "mb_per_s": engine.bytes_read / 1e6 / seconds, "steps": steps}
    engine.close()
    if result["chunks"] != len(coords) or result["errors"]:
        raise RuntimeError(f"fetched {result['chunks']} of {len(coords)} chunks, {result['errors']} errors")
    return result


def first_frame(slice_scene, path, kind, pause_name, budget, timeout=300.0):
    """open_image -> every view complete (composed into its proxy), the scene updated then paused in turn."""
    import bigvolume
    from BigVolumeLib.streaming.streaming_scene import StreamingScene

    pause = PAUSES[pause_name]()
    updates, preview = 0, None
    start = time.perf_counter()
    image = bigvolume.open_image(path)
    streaming = StreamingScene(slice_scene.scene, cache_bytes=budget, workers=WORKERS)
    try:
        streamed = streaming.add_image(image, reader=None if kind == "default" else _reader(kind, image))
        streamers = list(streamed.streamers.values())
        while True:
            streaming.update()
            updates += 1
            now = time.perf_counter() - start
            if preview is None and all(s.showing for s in streamers):
                preview = now
            if all(s.complete for s in streamers):
                break
            if now > timeout:
                raise TimeoutError("the views did not complete")
            pause()
        return {"reader": streamed.source.reader.name, "open_to_first_complete_frame_s": now,
                "open_to_coarse_preview_s": preview, "updates": updates,
                "chunks_read": streaming.engine.chunks_read, "levels_shown": streaming.levels(streamed)}
    finally:
        streaming.close()


def tensorstore_gil_probe(path, hold_s=0.1):
    """Why a GIL-holding main thread slows the tensorstore path: reads finished while the GIL was held for `hold_s`,
    one tensorstore future per chunk (how the reader reads) against one future for the same number of chunks."""
    import tensorstore as ts

    import bigvolume
    from bigvolume.streaming.readers import TensorstoreReader

    image = bigvolume.open_image(path)
    level = image.levels[0]
    reader = TensorstoreReader(image, threads=WORKERS)
    layer = [c for c in level.all_chunks() if c[0] == 0]  # the first layer of chunks along z
    reader.read_chunks(0, layer[:1])
    libc = ctypes.PyDLL(None)
    reads = reader.start(0, layer)
    libc.usleep(int(hold_s * 1e6))
    per_chunk_done = sum(read.done() for read in reads)
    for read in reads:
        read.results()
    reader.close()
    z1 = min(2 * level.chunk_shape[0], level.volume_shape[0])
    z0 = z1 - min(level.chunk_shape[0], z1)  # the second layer if there is one
    array = ts.open({"driver": "zarr3" if level.array.metadata.zarr_format == 3 else "zarr",
                     "kvstore": {"driver": "file", "path": os.path.join(path, level.path)}}, read=True).result()
    future = array[image.selection(level, ((z0, z1), (0, level.volume_shape[1]), (0, level.volume_shape[2])))].read()
    libc.usleep(int(hold_s * 1e6))
    one_read_done = future.done()
    future.result()
    return {"gil_held_s": hold_s, "chunks": len(layer),
            "one_future_per_chunk_done": f"{per_chunk_done} of {len(layer)}",
            "one_future_for_all_chunks_done": bool(one_read_done),
            "note": "tensorstore's threads need the GIL at points of a read (at least as a Python future completes): "
                    "with one future per chunk, a main thread holding the GIL lets few reads finish per tick, so "
                    "the reader reads boxes of chunks and tensorstore gets spare decoding threads"}


def _compare(runs, key, higher_is_better):
    idle = _median([r[key] for r in runs["idle"]])
    held = _median([r[key] for r in runs["gil_held"]])
    out = {"idle_median": idle, "gil_held_median": held,
           "idle_runs": [r[key] for r in runs["idle"]], "gil_held_runs": [r[key] for r in runs["gil_held"]]}
    if higher_is_better:
        out["fraction_of_idle"] = held / idle
        out["within_10_percent_of_idle"] = held >= 0.9 * idle
    else:
        out["slowdown_vs_idle"] = held / idle
        out["within_10_percent_of_idle"] = held <= 1.1 * idle
    return out


def measure_gil(path, repeats, view):
    from BigVolumeLib.offscreen.views import OffscreenScene

    import bigvolume

    image = bigvolume.open_image(path)
    level0 = image.levels[0]
    level0_bytes = len(level0.all_chunks()) * level0.chunk_nbytes
    budget = max(1024**3, int(1.25 * level0_bytes))  # every level-0 chunk stays cached: nothing is evicted
    _warm_page_cache(path)
    results = {"store": {"path": path, "shape_zyx": list(level0.volume_shape), "chunk_shape": list(level0.chunk_shape),
                         "level0_chunks": len(level0.all_chunks()), "level0_mb": level0_bytes / 1e6,
                         "levels": len(image.levels), "page_cache": "warm"},
               "cache_budget_mb": budget / 1024**2}

    fetch = {}
    for kind in ("default", "direct"):
        fetch_level0(path, kind, "idle", budget)  # warm-up: libraries loaded, code paths taken
        runs = {"idle": [], "gil_held": []}
        for _ in range(repeats):
            for pause_name in ("idle", "gil_held"):
                runs[pause_name].append(fetch_level0(path, kind, pause_name, budget))
                print(f"fetch level 0, {kind}, {pause_name}: {runs[pause_name][-1]['chunks_per_s']:.0f} chunks/s",
                      flush=True)
        fetch[runs["idle"][0]["reader"]] = {**_compare(runs, "chunks_per_s", True), "runs": runs}
    results["fetch_all_level0_chunks_per_s"] = fetch

    scene = OffscreenScene()  # the views exist, and have been drawn, before a store is opened
    for name, orientation in {"Red": "Axial", "Yellow": "Sagittal", "Green": "Coronal"}.items():
        scene.add_view(name, orientation, (view, view))
    frames = {}
    for kind in ("default", "direct"):
        first_frame(scene, path, kind, "idle", budget)  # warm-up
        runs = {"idle": [], "gil_held": []}
        for _ in range(repeats):
            for pause_name in ("idle", "gil_held"):
                runs[pause_name].append(first_frame(scene, path, kind, pause_name, budget))
                print(f"first complete frame, {kind}, {pause_name}: "
                      f"{runs[pause_name][-1]['open_to_first_complete_frame_s']:.3f} s", flush=True)
        frames[runs["idle"][0]["reader"]] = {**_compare(runs, "open_to_first_complete_frame_s", False),
                                             "preview": _compare(runs, "open_to_coarse_preview_s", False),
                                             "runs": runs}
    results["first_complete_frame_s"] = {"views": ["Axial", "Sagittal", "Coronal"], "view_pixels": [view, view],
                                         **frames}
    try:
        results["tensorstore_gil_probe"] = tensorstore_gil_probe(path)
    except Exception as error:  # a diagnosis, not a figure: never fatal
        results["tensorstore_gil_probe"] = {"error": f"{type(error).__name__}: {error}"}
    print("tensorstore GIL probe:", results["tensorstore_gil_probe"], flush=True)
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(640, 512, 512), help="z y x of the store written once")
    parser.add_argument("--workdir", default=os.path.join(HERE, "work", "engine"))
    parser.add_argument("--repeats", type=int, default=3, help="runs of each GIL measurement (idle and held in turn)")
    parser.add_argument("--sizes", type=int, nargs="+", default=(10_000, 100_000), help="outstanding chunks")
    parser.add_argument("--view", type=int, default=1024, help="slice view width and height in pixels")
    parser.add_argument("--only", choices=["scheduling", "gil"])
    parser.add_argument("--output", default=os.path.join(HERE, "results", "engine.json"))
    args = parser.parse_args()

    report = {}
    if args.only in (None, "scheduling"):
        scheduling = []
        for total in args.sizes:
            scheduling.append(measure_scheduling(total))
            s = scheduling[-1]
            print(f"{total} outstanding: move of {s['move']['keys']} keys {s['move']['engine_submit_ms_median']:.1f} ms, "
                  f"pop 64 {s['pop_64']['us_median']:.0f} us, "
                  f"idle step {s['step_nothing_finished_concurrency_full']['us_median']:.0f} us, "
                  f"collect + start {s['step_nothing_finished_concurrency_full']['reads_in_flight']} {s['step_collect_and_start_concurrency']['us_median']:.0f} us", flush=True)
        report["scheduling"] = scheduling
    if args.only in (None, "gil"):
        z, y, x = args.shape
        path = os.path.join(args.workdir, f"rock-core-{z}x{y}x{x}.ome.zarr")
        os.makedirs(args.workdir, exist_ok=True)
        _ensure_store(path, args.shape)
        report["main_thread_holding_gil"] = measure_gil(path, args.repeats, args.view)
        report["main_thread_holding_gil"]["previous_design"] = PREVIOUS
    notes = [
        "scheduling: keys of a made-up source (no I/O); each requester wants a quarter of the outstanding chunks, "
        "levels 0-3, half VISIBLE and half PREFETCH; a move replaces one requester's wants by as many keys, half of "
        "them new, with new distances (every rank changes). priorities = the ordering policy turning needs into "
        "priorities; engine_submit = priorities + queue.replace. The steps' reads in flight are tensorstore futures "
        f"({WORKERS} workers x 128 = the engine's concurrency); step_collect_and_start_concurrency excludes reading and decoding.",
        f"main_thread_holding_gil: idle = engine.step() / streaming.update(), then time.sleep(0.001); gil_held = the "
        f"same, then ctypes.PyDLL(None).usleep({GIL_HOLD_US}), which keeps the GIL (Slicer's main thread idling in "
        f"Qt). {WORKERS} workers; the page cache is warm; idle and gil_held runs alternate; medians of the runs.",
        "Goal: the tensorstore path within 10 % of idle (fraction_of_idle >= 0.9 for chunks/s; slowdown_vs_idle "
        "<= 1.1 for the first complete frame). previous_design: the figures before the streaming redesign.",
    ]
    write_report(args.output, "engine", switch_interval_s=sys.getswitchinterval(), notes=notes,
                 peak_rss_mb=peak_rss_mb(), **report)


if __name__ == "__main__":
    main()
