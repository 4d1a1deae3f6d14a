"""Benchmark: chunk I/O engines reading the same chunks of an on-disk BigVolume store.

Engines: zarr-python's default codec pipeline (BigVolume's ZarrChunkReader),
zarr-python with the zarrs (Rust) codec pipeline, tensorstore, and
BigVolume's DirectChunkReader. Each reads every 64^3 chunk of a region of
level 0 in batches of 32 from two fetch threads, as the fetch engine does,
with a cold page cache where the machine allows (else warm, said in the
output), and again while another thread holds the GIL in 10 ms sleeps,
standing in for Slicer's main thread (which holds the GIL while Qt idles):
an engine that needs the GIL to read or decode starves there.

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


class TensorstoreReader:
    name = "tensorstore"

    def __init__(self, image):
        import tensorstore as ts

        from bigvolume.streaming.chunk_io import chunk_box

        self._box = chunk_box
        self.image = image
        root = image.location
        self.arrays = [ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": os.path.join(root, lvl.path)}},
                               read=True).result() for lvl in image.levels]

    def read_chunks(self, level_index, indices):
        level = self.image.levels[level_index]
        array = self.arrays[level_index]
        futures = []
        for index in indices:
            (z0, z1), (y0, y1), (x0, x1) = self._box(level, index)
            futures.append((index, array[z0:z1, y0:y1, x0:x1].read()))
        return {index: future.result() for index, future in futures}


def _zarrs_reader(image_path):
    import zarr

    import bigvolume
    from bigvolume.streaming.chunk_io import ZarrChunkReader

    zarr.config.set({"codec_pipeline.path": "zarrs.ZarrsCodecPipeline"})
    reader = ZarrChunkReader(bigvolume.open_image(image_path))
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default=os.path.join(HERE, "work", "disk-2048.ome.zarr"))
    parser.add_argument("--chunks", type=int, default=1024, help="chunks of level 0 to read per run")
    parser.add_argument("--output", default=os.path.join(HERE, "results", "chunk_io_engines.json"))
    args = parser.parse_args()

    import bigvolume
    from bigvolume.streaming.chunk_io import DirectChunkReader, ZarrChunkReader, chunk_grid_shape

    image = bigvolume.open_image(args.store)
    grid = chunk_grid_shape(image.levels[0])
    indices = [(z, y, x) for z in range(grid[0]) for y in range(grid[1]) for x in range(grid[2])][: args.chunks]
    chunk_mb = np.prod(image.levels[0].chunks) * image.levels[0].dtype.itemsize / 1e6
    makers = [("zarr-python", lambda: ZarrChunkReader(bigvolume.open_image(args.store))),
              ("direct", lambda: DirectChunkReader(bigvolume.open_image(args.store))),
              ("tensorstore", lambda: TensorstoreReader(bigvolume.open_image(args.store))),
              ("zarr-python + zarrs", lambda: _zarrs_reader(args.store))]
    results = {}
    for name, make in makers:
        try:
            reader = make()
        except Exception as error:  # an engine that is not installed is reported, not fatal
            results[name] = {"error": f"{type(error).__name__}: {error}"}
            continue
        entry = {}
        for label, spin in (("free", False), ("gil_busy_main_thread", True)):
            cold = _drop_page_cache(args.store)
            rate = _run(reader, indices, spin=spin)
            entry[label] = {"chunks_per_s": rate, "mb_per_s": rate * chunk_mb, "page_cache": "cold" if cold else "warm"}
        results[name] = entry
        print(name, json.dumps(entry), flush=True)
    write_report(args.output, "chunk_io_engines", store=args.store, chunk_shape=list(image.levels[0].chunks),
                 chunks_read=len(indices), results=results)


if __name__ == "__main__":
    main()
