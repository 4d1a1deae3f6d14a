"""A read-only Zarr v3 store of any size whose chunks are computed when read.

It holds an OME-NGFF 0.5 multiscale image (uint16, 64^3 chunks, no
compression, levels down to BigVolume's default top level) of a smooth pattern with hashed noise, consistent across levels
(each level samples the same function at its voxel centres), so a petabyte
of logical data costs nothing on disk. Generating a chunk takes about as long
as decoding a compressed one, which keeps the benchmark honest.
"""

import json

import numpy as np
from zarr.abc.store import Store
from zarr.core.buffer import default_buffer_prototype

from bigvolume.writing.downsample import plan_levels
from bigvolume.store.ngff import multiscales_attrs
from bigvolume.writing.pyramid import DEFAULT_COARSEST


def _array_metadata(shape, chunks):
    return {
        "zarr_format": 3, "node_type": "array", "shape": list(shape), "data_type": "uint16",
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": list(chunks)}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": 0, "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}],
        "dimension_names": ["z", "y", "x"], "attributes": {},
    }


class GeneratedStore(Store):
    supports_writes = False
    supports_deletes = False
    supports_listing = True
    supports_partial_writes = False

    def __init__(self, shape, chunks=(64, 64, 64), coarsest=DEFAULT_COARSEST, voxel_size_mm=0.01):
        super().__init__(read_only=True)
        self.chunks = tuple(chunks)
        self.docs = {}
        self.factors = []  # cumulative z, y, x factor of each level
        datasets, level_shape, factor = [], tuple(shape), np.ones(3, dtype=np.int64)
        for i, step in enumerate(plan_levels(shape, (voxel_size_mm,) * 3, coarsest=coarsest)):
            factor = factor * np.array(step)
            level_shape = tuple(-(-n // s) for n, s in zip(level_shape, step))
            scale = (factor * voxel_size_mm).tolist()
            translation = ((factor - 1) * voxel_size_mm / 2.0).tolist()
            datasets.append((str(i), scale, translation))
            self.factors.append(factor.copy())
            self.docs[f"{i}/zarr.json"] = json.dumps(_array_metadata(level_shape, self.chunks)).encode()
        root = {"zarr_format": 3, "node_type": "group",
                "attributes": multiscales_attrs("0.5", "millimeter", datasets, name="generated")}
        self.docs["zarr.json"] = json.dumps(root).encode()
        self.chunks_generated = 0
        self._noise = np.random.default_rng(0).uniform(0, 1024, self.chunks).astype(np.float32)

    def __eq__(self, other):
        return self is other

    def chunk(self, level, index):
        """The uint16 voxels of chunk `index` (z, y, x) of `level`: a smooth pattern plus noise.

        Sums of per-axis profiles and a fixed noise block keep generation near
        the cost of decoding a compressed chunk (a few hundred microseconds).
        """
        factor = self.factors[level]
        z, y, x = [((np.arange(c) + i * c + 0.5) * f - 0.5).astype(np.float32) for i, c, f in zip(index, self.chunks, factor)]
        value = (np.float32(5000) * np.sin(z * np.float32(0.011)))[:, None, None] \
            + (np.float32(6000) * np.cos(y * np.float32(0.007)))[None, :, None] \
            + (np.float32(20000) + np.float32(6000) * np.sin(x * np.float32(0.009)))[None, None, :]
        value += self._noise
        self.chunks_generated += 1
        return value.astype(np.uint16)

    async def get(self, key, prototype=None, byte_range=None):
        prototype = prototype or default_buffer_prototype()
        if key in self.docs:
            data = self.docs[key]
        else:
            parts = key.split("/")
            if len(parts) != 5 or parts[1] != "c":
                return None
            data = self.chunk(int(parts[0]), tuple(int(p) for p in parts[2:])).tobytes()
        if byte_range is not None:
            raise NotImplementedError("byte ranges are not needed for unsharded chunks")
        return prototype.buffer.from_bytes(data)

    async def get_partial_values(self, prototype, key_ranges):
        return [await self.get(key, prototype, byte_range) for key, byte_range in key_ranges]

    async def exists(self, key):
        return key in self.docs or (key.count("/") == 4 and "/c/" in key)

    async def set(self, key, value):
        raise PermissionError("GeneratedStore is read-only")

    async def delete(self, key):
        raise PermissionError("GeneratedStore is read-only")

    async def list(self):
        for key in self.docs:
            yield key

    async def list_prefix(self, prefix):
        for key in self.docs:
            if key.startswith(prefix):
                yield key

    async def list_dir(self, prefix):
        prefix = prefix.rstrip("/")
        seen = set()
        for key in self.docs:
            if prefix and not key.startswith(prefix + "/"):
                continue
            rest = key[len(prefix) + 1:] if prefix else key
            head = rest.split("/")[0]
            if head not in seen:
                seen.add(head)
                yield head
