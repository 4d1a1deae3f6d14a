"""tensorstore: reads and decodes in its own C++ threads, without the GIL."""

import os

from .base import chunk_blocks, local_root, read_one_by_one

MAX_CHUNKS_PER_READ = 32  # 16 MB of 64^3 uint16: large enough that few futures finish, small enough to pipeline


class _TensorstoreRead:
    """A box of whole chunks being read by tensorstore in its own threads.

    Its chunks come back as views of the box's one buffer (`shares_memory`): the
    cache keeps and evicts them together and counts the buffer once. Copying them
    apart cost the main thread about 0.4 ms a chunk, mostly faulting in fresh pages.
    """

    def __init__(self, reader, level, block, future):
        self.coords = [(z, y, x) for z in range(*block[0]) for y in range(*block[1]) for x in range(*block[2])]
        self.shares_memory = len(self.coords) > 1
        self._reader, self._level, self._future = reader, level, future
        self._results = None
        start = level.chunk_box((block[0][0], block[1][0], block[2][0]))
        stop = level.chunk_box((block[0][1] - 1, block[1][1] - 1, block[2][1] - 1))
        self.box = tuple((a[0], b[1]) for a, b in zip(start, stop))

    def done(self):
        return self._future.done()

    def wait(self):
        self._future.exception()

    def cancel(self):
        self._future.cancel()  # tensorstore stops the read and frees what it had allocated for it

    def results(self):
        if self._results is None:  # once, however often asked
            self._results = self._split()
        return self._results

    def _split(self):
        try:
            data = self._future.result().reshape([b - a for a, b in self.box])
        except Exception:  # a decoding or I/O failure: find the chunk(s), read alone (rare, so not asynchronous)
            self.shares_memory = False
            return self._reader.read_each(self._level, self.coords)
        out = {}
        for coords in self.coords:
            box = self._level.chunk_box(coords)
            out[coords] = data[tuple(slice(a - o, b - o) for (a, b), (o, _) in zip(box, self.box))]
        return out


class TensorstoreReader:
    """The engine of choice (bench/chunk_io_engines.py): fastest on its own, and the least slowed when
    another thread holds the GIL, as Slicer's main thread does while Qt idles.

    `start` issues one tensorstore read per box of neighbouring chunks and returns at
    once; tensorstore's threads do all the work (reading, decoding, filling the box's
    buffer), and the main thread collects finished futures. A future takes the GIL once as it finishes,
    so reads are few and large (MAX_CHUNKS_PER_READ): one per chunk finished at a
    fifth of the idle rate while the main thread held the GIL (bench/engine.py).
    Local stores only (file kvstore); `default_reader` picks another reader for others.
    """

    name = "tensorstore"

    def __init__(self, image, threads=None):
        self.image = image
        self._threads = int(threads or os.cpu_count() or 2)
        self._specs = [self._spec(level) for level in image.levels]
        self._reset()

    def _reset(self):
        import tensorstore as ts

        # Our own LRU cache is the only cache. Eight decoding threads for each one asked for: tensorstore's
        # threads wait for the GIL at times (a future completing, an array handed to Python), and while the
        # main thread holds it the spare ones keep the cores busy (bench/engine.py, the GIL held 14 ms of
        # 15: 2x gave 0.6 of the idle fetch rate, 8x 0.8-0.9). Only as many run as there is work.
        self._context = ts.Context({"cache_pool": {"total_bytes_limit": 0},
                                    "data_copy_concurrency": {"limit": 8 * self._threads}})
        # Every level is opened now, in tensorstore's threads: by the first read its metadata is there, and the
        # main thread never waits for a level to open (about 4 ms each, more from a cold disk).
        self._arrays = [ts.open(spec, read=True, context=self._context) for spec in self._specs]

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
        # Local stores with all three spatial axes (a 2D image is left to zarr-python, which reshapes).
        return all(local_root(level.array.store_path.store) is not None and {"z", "y", "x"} <= set(level.axis_names)
                   for level in image.levels)

    def set_threads(self, threads):
        """Decoding threads; reads already started finish in the old context, new ones use the new one."""
        if int(threads) != self._threads:
            self._threads = int(threads)
            self._reset()

    def _array(self, level_index):
        return self._arrays[level_index].result()

    def start(self, level_index, coords):
        level = self.image.levels[level_index]
        array = self._array(level_index)
        reads = []
        for block in chunk_blocks(coords, MAX_CHUNKS_PER_READ):
            read = _TensorstoreRead(self, level, block, None)
            read._future = array[self.image.selection(level, read.box)].read()
            reads.append(read)
        return reads

    def read_each(self, level, coords):
        """{coords: array or the error naming the chunk}, chunk by chunk (after a box read failed)."""
        array = self._array(level.index)

        def read_one(c):
            box = level.chunk_box(c)
            try:
                return array[self.image.selection(level, box)].read().result().reshape([b - a for a, b in box])
            except ValueError as error:
                raise self.image.chunk_error(level, box, error) from error

        return read_one_by_one(read_one, coords)

    def read_chunks(self, level_index, coords):
        out = {}
        for read in self.start(level_index, coords):
            for c, result in read.results().items():
                if isinstance(result, BaseException):
                    raise result
                out[c] = result
        return out

    def close(self, wait=True):
        self._arrays = []  # reads in flight finish in tensorstore's threads; nothing waits for them
