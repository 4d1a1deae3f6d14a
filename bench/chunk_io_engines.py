"""Benchmark: chunk I/O engines reading the same chunks of an on-disk BigVolume store.

Engines: zarr-python's default codec pipeline (BigVolume's ZarrChunkReader),
zarr-python with the zarrs (Rust) codec pipeline, tensorstore
(BigVolume's TensorstoreReader) and BigVolume's DirectChunkReader. Each
reads every 64^3 chunk of a region of level 0 in batches of 32 from two
fetch threads (`read_chunks`, blocking), with a cold page cache where the
machine allows (else warm, said in the output), and again while another
thread holds the GIL in 10 ms sleeps, standing in for Slicer's main thread
(which holds the GIL while Qt idles): an engine that needs the GIL to read or
decode starves there.

tensorstore is also measured the way the fetch engine now drives it
("tensorstore, started and collected"): the calling thread starts every
chunk read at once (`start`) and collects the finished futures itself, so no
Python thread is in the path; tensorstore's own threads read and decode.

    python bench/chunk_io_engines.py --store bench/work/disk-2048.ome.zarr [--output bench/results/chunk_io_engines.json]
"""

import argparse
import json
import os
import sys
import threading
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from common import write_report  # noqa: E402


def _zarrs_reader(image_path):
    import zarr

    import bigvolume
    from bigvolume.streaming.readers import ZarrChunkReader

    import zarrs  # noqa: F401  (zarr's config accepts a pipeline it cannot import; fail here instead)

    zarr.config.set({"codec_pipeline.path": "zarrs.ZarrsCodecPipeline"})
    reader = ZarrChunkReader(bigvolume.open_image(image_path), threads=2)
    reader.name = "zarr-python + zarrs"
    return reader


def _drop_page_cache(path):
    """Evict the store's files from the page cache (POSIX_FADV_DONTNEED); True if it could."""
    try:
        for folder, _, files in os.walk(path):
            for name in files:
                fd = os.open(os.path.join(folder, name), os.O_RDONLY)
                try:
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                finally:
                    os.close(fd)
        return True
    except (AttributeError, OSError):
        return False


def _run(reader, indices, batch=32, threads=2, spin=False):
    """Chunks per second reading `indices` of level 0 from `threads` fetch threads."""
    batches = [indices[i:i + batch] for i in range(0, len(indices), batch)]
    lock = threading.Lock()
    stop = threading.Event()
    total = [0]

    def fetch():
        while True:
            with lock:
                if not batches:
                    return
                work = batches.pop(0)
            total[0] += len(reader.read_chunks(0, work))

    def spinner():
        # Slicer's main thread idles inside Qt while holding the GIL: sleep in C without releasing it
        # (a PyDLL call keeps the GIL), letting other threads in only between those sleeps.
        import ctypes

        libc = ctypes.PyDLL(None)
        while not stop.is_set():
            libc.usleep(10000)

    spinning = threading.Thread(target=spinner) if spin else None
    if spinning:
        spinning.start()
    start = time.perf_counter()
    workers = [threading.Thread(target=fetch) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    seconds = time.perf_counter() - start
    stop.set()
    if spinning:
        spinning.join()
    return total[0] / seconds


def _run_started(reader, indices, spin=False):
    """Chunks per second reading `indices` of level 0 the fetch engine's way: every read started at once
    (`reader.start`), the finished ones collected by the calling thread between pauses. With `spin`, the
    calling thread is Slicer's main thread: it holds the GIL in 10 ms sleeps and collects between them."""
    import ctypes

    libc = ctypes.PyDLL(None)
    pause = (lambda: libc.usleep(10000)) if spin else (lambda: time.sleep(0.001))
    start = time.perf_counter()
    pending, total = reader.start(0, indices), 0
    while pending:
        waiting = []
        for read in pending:
            if read.done():
                total += sum(not isinstance(r, BaseException) for r in read.results().values())
            else:
                waiting.append(read)
        pending = waiting
        if pending:
            pause()
    return total / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default=os.path.join(HERE, "work", "disk-2048.ome.zarr"))
    parser.add_argument("--chunks", type=int, default=1024, help="chunks of level 0 to read per run")
    parser.add_argument("--output", default=os.path.join(HERE, "results", "chunk_io_engines.json"))
    args = parser.parse_args()

    import bigvolume
    from bigvolume.streaming.readers import DirectChunkReader, TensorstoreReader, ZarrChunkReader

    image = bigvolume.open_image(args.store)
    level0 = image.levels[0]
    indices = level0.all_chunks()[: args.chunks]
    chunk_mb = level0.chunk_nbytes / 1e6
    # (name, reader, how it is driven): two fetch threads calling read_chunks, or started and collected
    makers = [("zarr-python", lambda: ZarrChunkReader(bigvolume.open_image(args.store), threads=2), _run),
              ("direct", lambda: DirectChunkReader(bigvolume.open_image(args.store), threads=2), _run),
              ("tensorstore", lambda: TensorstoreReader(bigvolume.open_image(args.store), threads=2), _run),
              ("tensorstore, started and collected",
               lambda: TensorstoreReader(bigvolume.open_image(args.store), threads=2), _run_started),
              ("zarr-python + zarrs", lambda: _zarrs_reader(args.store), _run)]
    results = {}
    for name, make, run in makers:
        try:
            reader = make()
        except Exception as error:  # an engine that is not installed is reported, not fatal
            results[name] = {"error": f"{type(error).__name__}: {error}"}
            print(name, json.dumps(results[name]), flush=True)
            continue
        entry = {}
        try:
            for label, spin in (("free", False), ("gil_busy_main_thread", True)):
                cold = _drop_page_cache(args.store)
                rate = run(reader, indices, spin=spin)
                entry[label] = {"chunks_per_s": rate, "mb_per_s": rate * chunk_mb,
                                "page_cache": "cold" if cold else "warm"}
        finally:
            reader.close()
        results[name] = entry
        print(name, json.dumps(entry), flush=True)
    notes = ["free / gil_busy_main_thread: as before, two fetch threads call read_chunks on batches of 32 chunks; "
             "gil_busy_main_thread adds a thread that holds the GIL in 10 ms sleeps (ctypes.PyDLL usleep).",
             "'tensorstore, started and collected': the fetch engine's way since the streaming redesign: the calling "
             "thread starts every chunk read at once (TensorstoreReader.start) and collects the finished futures; "
             "gil_busy_main_thread: that same thread holds the GIL in 10 ms sleeps between collections, as Slicer's "
             "main thread does while Qt idles (no other Python thread exists)."]
    write_report(args.output, "chunk_io_engines", store=args.store, chunk_shape=list(level0.chunk_shape),
                 chunks_read=len(indices), notes=notes, results=results)


if __name__ == "__main__":
    main()
