"""Reading whole chunks of a multiscale image: the one interface between the fetch engine and an I/O engine.

`read_chunks(level, indices)` returns {index: array} for chunks of the
level's inner chunk grid (z, y, x). Edge chunks come back clipped to the
volume. The zarr-python reader issues all requested chunks at once on
zarr's event loop, so I/O and Blosc decoding (which releases the GIL) of a
batch overlap; the direct reader does the same without zarr-python's
per-chunk overhead for the local layouts BigVolume writes.
"""

import asyncio
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numcodecs import Blosc
from zarr.core.sync import sync

from ..errors import CorruptChunkError


def chunk_box(level, index):
    """((z0, z1), (y0, y1), (x0, x1)) of a chunk of `level`, clipped to the volume."""
    shape = chunk_shape(level)
    return tuple((i * c, min((i + 1) * c, n)) for i, c, n in zip(index, shape, level.volume_shape))


def chunk_shape(level):
    """Inner chunk shape (z, y, x) of a level (the unit of decoding and caching)."""
    spatial = dict(zip(("z", "y", "x"), (1, 1, 1)))
    for axis_name, size in zip(level.axis_names, level.chunks):
        if axis_name in spatial:
            spatial[axis_name] = size
    return (spatial["z"], spatial["y"], spatial["x"])


def chunk_grid_shape(level):
    return tuple(-(-n // c) for n, c in zip(level.volume_shape, chunk_shape(level)))


class ZarrChunkReader:
    """zarr-python's own codec pipeline; all chunks of a call are fetched concurrently."""

    name = "zarr-python"

    def __init__(self, image):
        self.image = image

    def read_chunks(self, level_index, indices):
        level = self.image.levels[level_index]
        selections = [self.image.selection(level, chunk_box(level, index)) for index in indices]

        async def read_all():
            array = level.array._async_array
            return await asyncio.gather(*(array.getitem(s) for s in selections), return_exceptions=True)

        results = sync(read_all())
        out = {}
        for index, result in zip(indices, results):
            if isinstance(result, BaseException):
                raise self.image.chunk_error(level, chunk_box(level, index), result) from result
            box = chunk_box(level, index)
            out[index] = np.asarray(result).reshape([b - a for a, b in box])
        return out


class DirectChunkReader:
    """Local stores in the layouts BigVolume writes, read without zarr-python's per-chunk machinery.

    zarr-python spends about 3 ms of Python per chunk around a 0.2 ms Blosc
    decode (measured in bench/chunk_io_engines.py), which caps a fetch worker
    at a few hundred chunks per second. Here a chunk is one positioned read
    (shards: the index is read once per shard and kept) and one Blosc decode,
    both outside the GIL, spread over a thread pool. Layouts: Zarr v3 with
    bytes + Blosc inside a sharding codec (index at the end, bytes + crc32c),
    or unsharded; Zarr v2 with a Blosc compressor. `supports()` says whether a
    level qualifies; StreamingViews falls back to ZarrChunkReader otherwise.
    """

    name = "direct"

    def __init__(self, image, threads=None):
        self.image = image
        self.layouts = {}
        for level in image.levels:
            layout = _local_layout(level)
            if layout is None:
                raise ValueError(f"level {level.index} is not a local Blosc layout this reader knows")
            self.layouts[level.index] = layout
        self._indexes = {}  # shard file -> (offsets, lengths) arrays
        self._pool = ThreadPoolExecutor(threads or os.cpu_count() or 2, thread_name_prefix="bigvolume-decode")

    @staticmethod
    def supports(image):
        return all(_local_layout(level) is not None for level in image.levels)

    def read_chunks(self, level_index, indices):
        level = self.image.levels[level_index]
        layout = self.layouts[level_index]
        results = self._pool.map(lambda index: (index, self._read_one(level, layout, index)), indices)
        return dict(results)

    def _read_one(self, level, layout, index):
        box = chunk_box(level, index)
        try:
            encoded = self._encoded(layout, index)
            if encoded is None:
                data = np.full(layout["chunk"], layout["fill"], dtype=layout["dtype"])
            else:
                raw = layout["codec"].decode(encoded)
                data = np.frombuffer(raw, dtype=layout["dtype"]).reshape(layout["chunk"])
        except FileNotFoundError:
            data = np.full(layout["chunk"], layout["fill"], dtype=layout["dtype"])
        except (OSError, ValueError, RuntimeError) as error:
            storage = index if layout["shard"] is None else tuple(i // k for i, k in zip(index, layout["per_shard"]))
            key = f"{level.path}/{level.array.metadata.encode_chunk_key(storage)}"
            raise CorruptChunkError(f"{self.image.location}: chunk {key} of level {level.index} cannot be read: "
                                    f"{type(error).__name__}: {error}", level=level.index, chunk_key=key) from error
        return data[tuple(slice(0, b - a) for a, b in box)]

    def _encoded(self, layout, index):
        """Encoded bytes of one chunk, or None when it is not stored (all fill value)."""
        spatial = tuple(index)
        if layout["shard"] is None:
            path = layout["path"](spatial)
            with open(path, "rb") as f:
                return f.read()
        shard = tuple(i // k for i, k in zip(spatial, layout["per_shard"]))
        path = layout["path"](shard)
        offsets, lengths = self._shard_index(path, layout)
        if offsets is None:
            return None
        inner = tuple(i % k for i, k in zip(spatial, layout["per_shard"]))
        offset, length = int(offsets[inner]), int(lengths[inner])
        if offset == 2**64 - 1:
            return None
        fd = os.open(path, os.O_RDONLY)
        try:
            data = os.pread(fd, length, offset)
        finally:
            os.close(fd)
        if len(data) != length:
            raise OSError(f"{path}: truncated shard (chunk at byte {offset} needs {length} bytes, {len(data)} present)")
        return data

    def _shard_index(self, path, layout):
        cached = self._indexes.get(path)
        if cached is not None:
            return cached
        count = int(np.prod(layout["per_shard"]))
        size = count * 16 + 4
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None, None
        try:
            total = os.fstat(fd).st_size
            if total < size:
                raise OSError(f"{path}: shard file of {total} bytes is shorter than its {size}-byte index")
            raw = os.pread(fd, size, total - size)
        finally:
            os.close(fd)
        table = np.frombuffer(raw[:-4], dtype="<u8").reshape(*layout["per_shard"], 2)
        entry = (table[..., 0], table[..., 1])
        self._indexes[path] = entry
        return entry


def _local_layout(level):
    """How to find and decode a level's chunks directly, or None if it is not a layout DirectChunkReader knows."""
    array = level.array
    store = array.store_path.store
    root = getattr(store, "root", None)
    if root is None or type(store).__name__ != "LocalStore":
        return None
    spatial_axes = [i for i, name in enumerate(level.axis_names) if name in ("z", "y", "x")]
    if len(spatial_axes) != len(level.axis_names):  # t/c axes: leave them to zarr-python
        return None
    base = os.path.join(str(root), array.store_path.path)
    meta = array.metadata
    shuffles = {"noshuffle": Blosc.NOSHUFFLE, "shuffle": Blosc.SHUFFLE, "bitshuffle": Blosc.BITSHUFFLE}
    layout = {"dtype": level.dtype.newbyteorder("<"), "fill": meta.fill_value, "shard": None}
    if meta.zarr_format == 2:
        compressor = meta.compressor
        if meta.filters or compressor is None or compressor.codec_id != "blosc" or meta.order != "C":
            return None
        layout.update(codec=compressor, chunk=tuple(meta.chunks), dtype=level.dtype,
                      path=lambda idx: os.path.join(base, meta.encode_chunk_key(idx)))
        return layout
    codecs = list(meta.codecs)
    if len(codecs) == 1 and type(codecs[0]).__name__ == "ShardingCodec":
        sharding = codecs[0]
        index_names = [type(c).__name__ for c in sharding.index_codecs]
        if str(getattr(sharding.index_location, "value", sharding.index_location)) != "end" or \
                index_names != ["BytesCodec", "Crc32cCodec"]:
            return None
        inner = list(sharding.codecs)
        shard_shape = tuple(meta.chunk_grid.chunk_shape)
        layout["chunk"] = tuple(sharding.chunk_shape)
        layout["shard"] = shard_shape
        layout["per_shard"] = tuple(s // c for s, c in zip(shard_shape, sharding.chunk_shape))
    else:
        inner = codecs
        layout["chunk"] = tuple(meta.chunk_grid.chunk_shape)
    names = [type(c).__name__ for c in inner]
    if names != ["BytesCodec", "BloscCodec"] or str(getattr(inner[0].endian, "value", inner[0].endian)) != "little":
        return None
    blosc = inner[1]
    layout["codec"] = Blosc(cname=str(getattr(blosc.cname, "value", blosc.cname)), clevel=int(blosc.clevel),
                            shuffle=shuffles[str(getattr(blosc.shuffle, "value", blosc.shuffle))])
    layout["path"] = lambda idx: os.path.join(base, meta.encode_chunk_key(idx))
    return layout


class TensorstoreReader:
    """tensorstore reads and decodes in its own C++ threads, without the GIL.

    The engine of choice (bench/chunk_io_engines.py): fastest on its own, and
    the least starved when another thread holds the GIL, as Slicer's main
    thread does while Qt idles. A batch of chunks that fills its bounding box
    is one read, so the fetch thread needs the GIL only to start it and to
    split the result.
    """

    name = "tensorstore"

    def __init__(self, image):
        import tensorstore as ts

        self.image = image
        self._context = ts.Context({"cache_pool": {"total_bytes_limit": 0},  # our own LRU cache is the only cache
                                    "data_copy_concurrency": {"limit": os.cpu_count() or 2}})
        self._specs = [self._spec(level) for level in image.levels]
        self._arrays = {}  # opened on first read, in the fetch thread that needs it, not when a store is opened
        self._lock = threading.Lock()

    def _array(self, level_index):
        import tensorstore as ts

        with self._lock:
            array = self._arrays.get(level_index)
        if array is None:
            array = ts.open(self._specs[level_index], read=True, context=self._context).result()
            with self._lock:
                array = self._arrays.setdefault(level_index, array)
        return array

    def _spec(self, level):
        store = level.array.store_path.store
        root = getattr(store, "root", None)
        if root is None or type(store).__name__ != "LocalStore":
            raise ValueError("tensorstore reads local stores here; other stores use zarr-python")
        driver = "zarr3" if level.array.metadata.zarr_format == 3 else "zarr"
        return {"driver": driver, "kvstore": {"driver": "file", "path": os.path.join(str(root), level.array.store_path.path)}}

    @staticmethod
    def supports(image):
        import importlib.util

        if importlib.util.find_spec("tensorstore") is None:
            return False
        return all(type(level.array.store_path.store).__name__ == "LocalStore" for level in image.levels)

    def read_chunks(self, level_index, indices):
        level = self.image.levels[level_index]
        array = self._array(level_index)
        boxes = {index: chunk_box(level, index) for index in indices}
        outer = tuple((min(b[a][0] for b in boxes.values()), max(b[a][1] for b in boxes.values())) for a in range(3))
        cells = np.prod([-(-(hi - lo) // c) for (lo, hi), c in zip(outer, chunk_shape(level))])
        try:
            if cells <= 1.5 * len(indices):  # one read of the bounding box, then split
                block = array[self.image.selection(level, outer)].read().result().reshape([b - a for a, b in outer])
                # Copies, not views: a cached view would keep the whole block alive beyond the cache's budget.
                return {index: block[tuple(slice(a - o, b - o) for (a, b), (o, _) in zip(box, outer))].copy()
                        for index, box in boxes.items()}
            futures = {index: array[self.image.selection(level, box)].read() for index, box in boxes.items()}
            return {index: future.result().reshape([b - a for a, b in boxes[index]]) for index, future in futures.items()}
        except ValueError as error:
            bad = next(iter(boxes.values())) if len(boxes) == 1 else outer
            raise self.image.chunk_error(level, bad, error) from error


def default_reader(image):
    """The fastest reader for the image's store: tensorstore, else the direct reader, else zarr-python."""
    if TensorstoreReader.supports(image):
        return TensorstoreReader(image)
    return DirectChunkReader(image) if DirectChunkReader.supports(image) else ZarrChunkReader(image)
