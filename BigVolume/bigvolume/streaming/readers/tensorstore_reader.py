"""tensorstore: reads and decodes in its own C++ threads, without the GIL."""

import os
import threading

from .base import local_root


class _TensorstoreRead:
    """One chunk being read by tensorstore; finished without any Python thread."""

    def __init__(self, reader, level, coords, future):
        self.coords = [coords]
        self._reader, self._level, self._future = reader, level, future

    def done(self):
        return self._future.done()

    def results(self):
        coords = self.coords[0]
        try:
            return {coords: self._reader._shaped(self._level, coords, self._future.result())}
        except ValueError as error:  # tensorstore reports decoding and I/O failures as ValueError
            return {coords: self._reader.chunk_error(self._level, coords, error)}


class TensorstoreReader:
    """The engine of choice (bench/chunk_io_engines.py): fastest on its own, and the least slowed when
    another thread holds the GIL, as Slicer's main thread does while Qt idles.

    `start` issues one tensorstore read per chunk and returns at once; tensorstore's
    threads (`threads` of them decoding) do all the work, and the main thread collects
    finished futures. Local stores only (file kvstore); others use zarr-python.
    """

    name = "tensorstore"

    def __init__(self, image, threads=None):
        self.image = image
        self._threads = int(threads or os.cpu_count() or 2)
        self._specs = [self._spec(level) for level in image.levels]
        self._lock = threading.Lock()
        self._reset()

    def _reset(self):
        import tensorstore as ts

        with self._lock:
            self._context = ts.Context({"cache_pool": {"total_bytes_limit": 0},  # our own LRU cache is the only cache
                                        "data_copy_concurrency": {"limit": self._threads}})
            self._arrays = {}  # opened on first read, not when a store is opened

    @staticmethod
    def _spec(level):
        root = local_root(level.array.store_path.store)
        if root is None:
            raise ValueError("tensorstore reads local stores here; other stores use zarr-python")
        driver = "zarr3" if level.array.metadata.zarr_format == 3 else "zarr"
        return {"driver": driver, "kvstore": {"driver": "file", "path": os.path.join(root, level.array.store_path.path)}}

    @staticmethod
    def supports(image):
        import importlib.util

        if importlib.util.find_spec("tensorstore") is None:
            return False
        return all(local_root(level.array.store_path.store) is not None for level in image.levels)

    def set_threads(self, threads):
        """Decoding threads; reads already started finish in the old context, new ones use the new one."""
        self._threads = int(threads)
        self._reset()

    def _array(self, level_index):
        import tensorstore as ts

        with self._lock:
            array, context = self._arrays.get(level_index), self._context
        if array is None:
            array = ts.open(self._specs[level_index], read=True, context=context).result()
            with self._lock:
                array = self._arrays.setdefault(level_index, array)
        return array

    def _future(self, level, coords):
        return self._array(level.index)[self.image.selection(level, level.chunk_box(coords))].read()

    @staticmethod
    def _shaped(level, coords, data):
        return data.reshape([b - a for a, b in level.chunk_box(coords)])

    def chunk_error(self, level, coords, error):
        return self.image.chunk_error(level, level.chunk_box(coords), error)

    def start(self, level_index, coords):
        level = self.image.levels[level_index]
        return [_TensorstoreRead(self, level, c, self._future(level, c)) for c in coords]

    def read_chunks(self, level_index, coords):
        out = {}
        for read in self.start(level_index, coords):
            for c, result in read.results().items():
                if isinstance(result, BaseException):
                    raise result
                out[c] = result
        return out

    def close(self):
        with self._lock:
            self._arrays = {}
