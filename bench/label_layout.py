"""Benchmark: what one brush stroke costs to write, and what a view costs to read, per label chunk/shard layout.

A label array of realistic size (default 512 x 2048 x 2048 uint8 at level 0,
2.1 GB logical) is mostly background, with painted content (two smooth
segments) in a 256 x 1024 x 1024 region so the chunks and shards a stroke
touches are not empty. It is stored in five layouts, all Blosc-zstd-3
bitshuffle as BigVolume writes labels:

- unsharded 32^3, 64^3 (BigVolume's choice) and 128^3 chunks, one file each,
  written through the real `LabelStore.write_chunk` path (write a temporary
  file, fdatasync, rename), the chunk size set by patching
  `label_store.LABEL_CHUNKS` in this process before `create_labels`;
- 64^3 chunks in 1 x 8 x 8 shards (64 x 512 x 512: the image's layout) and
  in 8 x 8 x 8 shards (512^3). zarr-python creates these arrays (its
  sharding codec; the benchmark checks that zarr-python reads back what was
  written), but the stroke is written here as a durable edit of a shard
  must be: read the whole shard file, decode and re-encode the touched inner
  chunks, write the whole shard atomically (temporary file, fdatasync,
  rename: `writing.atomic.write_atomically`, as label chunks are written).

A stroke is a `Brush` sphere of radius 20 voxels moving 60 voxels (a
2-point path in a random direction), centred at random inside the painted
region; it is rasterised by BigVolume's own `Rasteriser` (the writer's
code) into each layout in turn, chunk by chunk or shard by shard, read,
modify, write, over a pool of 2 threads (the editor's `chunk_threads`), then
one fsync per folder written (the editor's `sync_folders`). The same strokes
go to every layout, interleaved stroke by stroke (a different layout first
each time), so the machine's noise falls on all alike. Measured per stroke:
files written, bytes rewritten, bytes read, and the time, with fdatasync
(a durable edit) and again without (durable=False, the same strokes with
another label value).

Reads, what the views do: one 64^3 box aligned to 64 and one 512 x 512 xy
slice (y, x aligned to 512) at random places in the painted region, each
with the files in the page cache (warm) and evicted (cold,
POSIX_FADV_DONTNEED on the files read). Unsharded layouts read through
`LabelStore.read_box`; sharded ones read the shard index (one pread at the
end of the file) and then each needed inner chunk (one pread each), as a
sharded reader does without an index cache.

    python bench/label_layout.py [--shape Z Y X] [--strokes 100] [--reads 30] [--workdir DIR] [--keep]
                                 [--output bench/results/label_layout.json]
"""

import argparse
import os
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from common import peak_rss_mb, write_report  # noqa: E402

from bigvolume.writing.shardio import EMPTY, crc32c, shard_parts  # noqa: E402

VOXEL_MM = 0.1
RADIUS = 20  # voxels
MOVE = 60  # voxels
THREADS = 2  # LabelEditor's default chunk_threads
UNSHARDED = {"unsharded 32^3": 32, "unsharded 64^3": 64, "unsharded 128^3": 128}
SHARDED = {"sharded 64^3 in 1x8x8": (1, 8, 8), "sharded 64^3 in 8x8x8": (8, 8, 8)}


# -- the stores -------------------------------------------------------------------------------------------------
def _make_image(path, shape):
    """An OME-Zarr 0.5 image of `shape` with metadata only (one level, no chunk written): the label store pairs
    with it by geometry, and nothing of it is read."""
    import zarr

    from bigvolume.store.ngff import multiscales_attrs

    group = zarr.open_group(path, mode="w", zarr_format=3)
    group.create_array("0", shape=shape, chunks=(64, 64, 64), dtype="uint16", fill_value=0,
                       dimension_names=["z", "y", "x"])
    group.attrs.put(multiscales_attrs("0.5", "millimeter", [("0", [VOXEL_MM] * 3, [0.0, 0.0, 0.0])], name="image"))


def _content(shape, origin, seed=1):
    """Existing labels of a box: segment 1 painted (smooth blobs, 50-150 voxels across) and segment 2 a threshold
    of a smooth field plus noise (ragged edges and specks, as thresholding a CT leaves), made 64 planes at a time
    (the noise is seeded per plane, so any box gives the same labels as the whole)."""
    rng = np.random.default_rng(seed)
    fa = [(rng.uniform(0.02, 0.035), rng.uniform(0, 6)) for _ in range(3)]
    ga = [(rng.uniform(0.012, 0.02), rng.uniform(0, 6)) for _ in range(3)]
    out = np.zeros(shape, dtype=np.uint8)
    for z0 in range(0, shape[0], 64):
        z1 = min(z0 + 64, shape[0])
        axes = [np.arange(origin[0] + z0, origin[0] + z1, dtype=np.float32),
                np.arange(origin[1], origin[1] + shape[1], dtype=np.float32),
                np.arange(origin[2], origin[2] + shape[2], dtype=np.float32)]
        f = np.ones((z1 - z0, shape[1], shape[2]), dtype=np.float32)
        g = np.ones_like(f)
        for i, a in enumerate(axes):
            sl = [None, None, None]
            sl[i] = slice(None)
            f = f * np.sin(a * np.float32(fa[i][0]) + np.float32(fa[i][1]))[tuple(sl)]
            g = g * np.cos(a * np.float32(ga[i][0]) + np.float32(ga[i][1]))[tuple(sl)]
        for k in range(z1 - z0):
            noise = np.random.default_rng((seed, origin[0] + z0 + k)).standard_normal(g.shape[1:], dtype=np.float32)
            g[k] += noise * np.float32(0.1)
        slab = out[z0:z1]
        slab[f > 0.25] = 1
        slab[g > 0.45] = 2
    return out


class Unsharded:
    """A label store of BigVolume (LabelStore), with `chunk`^3 chunks."""

    sharded = False

    def __init__(self, name, image, root, chunk):
        from bigvolume.labels import label_store

        saved = label_store.LABEL_CHUNKS
        label_store.LABEL_CHUNKS = (chunk,) * 3
        try:
            self.store = label_store.create_labels(image, "layout", store=root, overwrite=True)
        finally:
            label_store.LABEL_CHUNKS = saved
        self.name, self.level = name, self.store.levels[0]
        assert self.level.chunk_shape == (chunk,) * 3
        self.unit = (chunk,) * 3
        self.folder = os.path.join(self.store.path, "0")

    def fill(self, content, origin):
        lvl = self.level
        box = tuple((o, o + n) for o, n in zip(origin, content.shape))
        for coords in lvl.chunks_in_box(box):
            cbox = lvl.chunk_box(coords)
            inter = [(max(a, c), min(b, d)) for (a, b), (c, d) in zip(cbox, box)]
            block = np.zeros([b - a for a, b in cbox], dtype=np.uint8)
            block[tuple(slice(a - c, b - c) for (a, b), (c, _) in zip(inter, cbox))] = \
                content[tuple(slice(a - o, b - o) for (a, b), o in zip(inter, origin))]
            self.store.write_chunk(0, coords, block, durable=False)

    def stroke(self, op, rasteriser, pool, durable):
        lvl = self.level
        coords_list = lvl.chunks_in_box(op.voxel_box(lvl))

        def one(coords):
            t0 = time.perf_counter()
            path = self.store.chunk_path(0, coords)
            read = os.path.getsize(path) if os.path.exists(path) else 0
            old = self.store.read_chunk(0, coords)
            t1 = time.perf_counter()
            new = rasteriser.apply(op, lvl, lvl.chunk_box(coords), old)
            t2 = time.perf_counter()
            if new is old or np.array_equal(new, old):
                return None, read, t1 - t0, t2 - t1
            self.store.write_chunk(0, coords, new, durable=durable)
            return coords, read, t1 - t0 + time.perf_counter() - t2, t2 - t1

        results = list(pool.map(one, coords_list))
        written = [r[0] for r in results if r[0] is not None]
        t = time.perf_counter()
        if durable:
            self.store.sync_folders(0, written)
        folders = time.perf_counter() - t
        n_folders = len({os.path.dirname(self.store.chunk_path(0, c)) for c in written})
        nbytes = sum(os.path.getsize(self.store.chunk_path(0, c)) for c in written
                     if os.path.exists(self.store.chunk_path(0, c)))
        return {"files": len(written), "bytes_written": nbytes, "bytes_read": sum(r[1] for r in results),
                "units_touched": len(coords_list), "io_seconds": sum(r[2] for r in results) + folders,
                "folders_synced": n_folders if durable else 0, "folder_sync_seconds": folders,
                "raster_seconds": sum(r[3] for r in results)}

    def read(self, box):
        return self.store.read_box(0, box)

    def files_for(self, box):
        return [p for p in (self.store.chunk_path(0, c) for c in self.level.chunks_in_box(box)) if os.path.exists(p)]


class Sharded:
    """64^3 chunks in shards of `per_shard` chunks (z, y, x), an array zarr-python created with its sharding codec."""

    sharded = True

    def __init__(self, name, level, root, per_shard):
        import zarr

        from bigvolume.writing.pyramid import default_compressor
        from bigvolume.writing.shardio import LevelWriter

        self.name, self.level = name, level
        self.inner = (64, 64, 64)
        self.unit = tuple(c * k for c, k in zip(self.inner, per_shard))
        self.counts = tuple(per_shard)
        self.folder = os.path.join(root, "0")
        shutil.rmtree(root, ignore_errors=True)
        group = zarr.open_group(root, mode="w", zarr_format=3)
        self.array = group.create_array("0", shape=level.volume_shape, chunks=self.inner, shards=self.unit,
                                        dtype="uint8", compressors=[default_compressor(3)], fill_value=0,
                                        dimension_names=["z", "y", "x"])
        self.writer = LevelWriter(self.folder)  # parses the sharding codec: codec, inner chunk shape, file paths
        assert self.writer.inner == self.inner and tuple(self.writer.grid) == self.unit, "unexpected shard layout"
        self.codec = self.writer.codec
        self.n = int(np.prod(self.counts))
        self.index_nbytes = 16 * self.n + 4
        self.shape = tuple(level.volume_shape)

    def _shard_box(self, key):
        return tuple((k * u, min((k + 1) * u, n)) for k, u, n in zip(key, self.unit, self.shape))

    def _inner_box(self, key, position):
        return tuple((k * u + p * c, min(k * u + (p + 1) * c, n))
                     for k, u, p, c, n in zip(key, self.unit, position, self.inner, self.shape))

    def _encode(self, block):
        if not block.any():
            return None
        full = np.zeros(self.inner, dtype=np.uint8)
        full[tuple(slice(0, n) for n in block.shape)] = block
        return self.codec.encode(full)

    def _decode(self, encoded, box):
        if encoded is None:
            return np.zeros([b - a for a, b in box], dtype=np.uint8)
        full = np.frombuffer(self.codec.decode(encoded), dtype=np.uint8).reshape(self.inner)
        return full[tuple(slice(0, b - a) for a, b in box)]

    def _assemble(self, encoded):
        """Shard file parts from {position: encoded or None} over every inner position (C order)."""
        return shard_parts(self.counts, encoded)

    def _parse(self, data):
        """{position: encoded bytes} of a whole shard file's bytes (checks the index's CRC-32C)."""

        index_bytes = data[-self.index_nbytes:-4]
        if crc32c(index_bytes) != bytes(data[-4:]):
            raise ValueError("shard index checksum does not match")
        index = np.frombuffer(index_bytes, dtype="<u8").reshape(*self.counts, 2)
        view = memoryview(data)
        return {p: view[int(index[p][0]):int(index[p][0] + index[p][1])]
                for p in np.ndindex(*self.counts) if index[p][0] != EMPTY}

    def path(self, key):
        return self.writer.unit_path(key)

    def fill(self, content, origin):
        box = tuple((o, o + n) for o, n in zip(origin, content.shape))
        keys = [tuple(k) for k in np.ndindex(*[(-(-b // u)) - a // u for (a, b), u in zip(box, self.unit)])]
        first = [a // u for (a, _), u in zip(box, self.unit)]
        for rel in keys:
            key = tuple(f + r for f, r in zip(first, rel))
            encoded = {}
            for position in np.ndindex(*self.counts):
                ibox = self._inner_box(key, position)
                if any(b <= a for a, b in ibox):
                    continue
                inter = [(max(a, c), min(b, d)) for (a, b), (c, d) in zip(ibox, box)]
                if any(b <= a for a, b in inter):
                    continue
                block = np.zeros([b - a for a, b in ibox], dtype=np.uint8)
                block[tuple(slice(a - c, b - c) for (a, b), (c, _) in zip(inter, ibox))] = \
                    content[tuple(slice(a - o, b - o) for (a, b), o in zip(inter, origin))]
                encoded[position] = self._encode(block)
            parts = self._assemble(encoded)
            if parts is not None:
                os.makedirs(os.path.dirname(self.path(key)), exist_ok=True)
                with open(self.path(key), "wb") as handle:
                    handle.writelines(parts)

    def stroke(self, op, rasteriser, pool, durable):
        from bigvolume.writing.atomic import fsync_dir, write_atomically

        lvl = self.level
        box = op.voxel_box(lvl)
        chunk_keys = lvl.chunks_in_box(box)  # 64^3 chunks (the label level's grid)
        shards = {}
        for c in chunk_keys:
            key = tuple(i // k for i, k in zip(c, self.counts))
            shards.setdefault(key, []).append(tuple(i % k for i, k in zip(c, self.counts)))

        def one(item):
            key, positions = item
            path = self.path(key)
            t0 = time.perf_counter()
            raster = 0.0
            try:
                with open(path, "rb") as handle:
                    data = handle.read()
            except FileNotFoundError:
                data = b""
            encoded = self._parse(data) if data else {}
            changed = False
            for position in positions:
                ibox = self._inner_box(key, position)
                old = self._decode(encoded.get(position), ibox)
                t1 = time.perf_counter()
                new = rasteriser.apply(op, lvl, ibox, old)
                raster += time.perf_counter() - t1
                if new is not old and not np.array_equal(new, old):
                    encoded[position] = self._encode(new)
                    changed = True
            if not changed:
                return None, len(data), time.perf_counter() - t0 - raster, raster
            parts = self._assemble({p: bytes(e) if isinstance(e, memoryview) else e for p, e in encoded.items()})
            if parts is None:
                os.remove(path)
                return (path, 0), len(data), time.perf_counter() - t0 - raster, raster
            os.makedirs(os.path.dirname(path), exist_ok=True)
            write_atomically(path, parts, durable=durable)
            return (path, sum(len(p) for p in parts)), len(data), time.perf_counter() - t0 - raster, raster

        results = list(pool.map(one, shards.items()))
        written = [r[0] for r in results if r[0] is not None]
        t = time.perf_counter()
        if durable:
            for folder in {os.path.dirname(p) for p, _ in written}:
                fsync_dir(folder)
        folders = time.perf_counter() - t
        return {"files": len(written), "bytes_written": sum(n for _, n in written),
                "bytes_read": sum(r[1] for r in results), "units_touched": len(shards),
                "folders_synced": len({os.path.dirname(p) for p, _ in written}) if durable else 0,
                "folder_sync_seconds": folders,
                "io_seconds": sum(r[2] for r in results) + folders, "raster_seconds": sum(r[3] for r in results)}

    def read(self, box):
        """Read the index of each shard the box touches, then each inner chunk it needs (one pread each)."""
        out = np.zeros([b - a for a, b in box], dtype=np.uint8)
        lvl = self.level
        by_shard = {}
        for c in lvl.chunks_in_box(box):
            by_shard.setdefault(tuple(i // k for i, k in zip(c, self.counts)), []).append(c)
        for key, chunks in by_shard.items():
            try:
                fd = os.open(self.path(key), os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                size = os.fstat(fd).st_size
                index = np.frombuffer(os.pread(fd, self.index_nbytes, size - self.index_nbytes)[:-4],
                                      dtype="<u8").reshape(*self.counts, 2)
                for c in chunks:
                    position = tuple(i % k for i, k in zip(c, self.counts))
                    offset, length = index[position]
                    if offset == EMPTY:
                        continue
                    cbox = lvl.chunk_box(c)
                    block = self._decode(os.pread(fd, int(length), int(offset)), cbox)
                    inter = [(max(a, p), min(b, q)) for (a, b), (p, q) in zip(box, cbox)]
                    out[tuple(slice(a - o, b - o) for (a, b), (o, _) in zip(inter, box))] = \
                        block[tuple(slice(a - p, b - p) for (a, b), (p, _) in zip(inter, cbox))]
            finally:
                os.close(fd)
        return out

    def files_for(self, box):
        keys = {tuple(i // k for i, k in zip(c, self.counts)) for c in self.level.chunks_in_box(box)}
        return [p for p in (self.path(k) for k in keys) if os.path.exists(p)]


# -- measuring --------------------------------------------------------------------------------------------------
def _evict(paths):
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def _strokes(rng, region, n, level, value):
    from bigvolume.labels.operations import Brush

    strokes = []
    for _ in range(n):
        margin = [min(RADIUS + MOVE / 2, (b - a) / 2) for a, b in region]
        centre = np.array([rng.uniform(a + m, b - m) for (a, b), m in zip(region, margin)])
        d = rng.normal(size=3)
        d /= np.linalg.norm(d)
        ends = [centre - d * MOVE / 2, centre + d * MOVE / 2]  # z, y, x voxel indices
        points = [tuple((level.ijk_to_ras @ np.array([e[2], e[1], e[0], 1.0]))[:3]) for e in ends]
        strokes.append(Brush(value, points=points, radius_mm=RADIUS * VOXEL_MM))
    return strokes


def _summary(values, scale=1e3):
    a = np.asarray(values, dtype=float) * scale
    return {"median": float(np.median(a)), "p90": float(np.percentile(a, 90)), "mean": float(a.mean())}


def _dir_stats(folder):
    files, nbytes = 0, 0
    for root, _, names in os.walk(folder):
        for name in names:
            if name.endswith(".json") or name.startswith("."):
                continue
            files += 1
            nbytes += os.path.getsize(os.path.join(root, name))
    return files, nbytes


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(512, 2048, 2048), metavar=("Z", "Y", "X"))
    parser.add_argument("--strokes", type=int, default=100, help="strokes per layout, durable and again not durable")
    parser.add_argument("--reads", type=int, default=30, help="boxes and slices read per layout, warm and cold")
    parser.add_argument("--workdir", default="/work/bench-work/label_layout")
    parser.add_argument("--keep", action="store_true", help="keep the stores in --workdir")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=os.path.join(HERE, "results", "label_layout.json"))
    args = parser.parse_args()

    import bigvolume
    from bigvolume.labels.apply import Rasteriser

    shape = tuple(args.shape)
    # The painted region: the middle half in z and in y and x (256 x 1024 x 1024 for the default shape).
    region = tuple((n // 4, n // 4 + n // 2) for n in shape)
    shutil.rmtree(args.workdir, ignore_errors=True)
    os.makedirs(args.workdir)
    try:
        image_path = os.path.join(args.workdir, "image.ome.zarr")
        _make_image(image_path, shape)
        image = bigvolume.open_image(image_path)
        layouts = [Unsharded(name, image, os.path.join(args.workdir, name.replace(" ", "_").replace("^", "")), c)
                   for name, c in UNSHARDED.items()]
        level = layouts[1].level
        layouts += [Sharded(name, level, os.path.join(args.workdir, name.replace(" ", "_").replace("^", "")), k)
                    for name, k in SHARDED.items()]
        t0 = time.perf_counter()
        origin = tuple(a for a, _ in region)
        content = _content(tuple(b - a for a, b in region), origin)
        print(f"painted content {content.shape}: {np.count_nonzero(content) / content.size:.0%} of its voxels labelled "
              f"({time.perf_counter() - t0:.1f} s)", flush=True)
        setup = {}
        for layout in layouts:
            t0 = time.perf_counter()
            layout.fill(content, origin)
            os.sync()
            files, nbytes = _dir_stats(layout.folder)
            setup[layout.name] = {"seconds": time.perf_counter() - t0, "files": files, "mb": nbytes / 1e6,
                                  "mean_file_kb": nbytes / max(files, 1) / 1e3}
            print(f"  {layout.name}: {files} files, {nbytes / 1e6:.1f} MB "
                  f"(mean file {nbytes / max(files, 1) / 1e3:.1f} KB), "
                  f"written in {setup[layout.name]['seconds']:.1f} s", flush=True)
        del content

        rng = np.random.default_rng(args.seed)
        passes = {"durable": _strokes(rng, region, args.strokes, level, 3)}
        passes["not_durable"] = [type(s)(4, points=s.points, radius_mm=s.radius_mm) for s in passes["durable"]]
        strokes = {name: {p: [] for p in passes} for name in (lay.name for lay in layouts)}
        rasteriser = Rasteriser(None, None)
        with ThreadPoolExecutor(THREADS) as pool:
            for pass_name, ops in passes.items():
                durable = pass_name == "durable"
                for i, op in enumerate(ops):
                    order = layouts[i % len(layouts):] + layouts[:i % len(layouts)]
                    for layout in order:
                        t = time.perf_counter()
                        info = layout.stroke(op, rasteriser, pool, durable)
                        info["seconds"] = time.perf_counter() - t
                        strokes[layout.name][pass_name].append(info)
                print(f"  {pass_name}: {len(ops)} strokes on every layout", flush=True)

        # The layouts must hold the same labels (and zarr-python must read the sharded ones as written).
        check_boxes = []
        for op in passes["durable"][:5]:
            ijk = np.mean([(level.ras_to_ijk @ np.array([*q, 1.0]))[:3] for q in op.points], axis=0)
            check_boxes.append(tuple((max(0, int(c) - 48), min(n, int(c) + 48)) for c, n in zip(ijk[::-1], shape)))
        consistent = True
        for box in check_boxes:
            reference = layouts[1].read(box)
            for layout in layouts:
                same = np.array_equal(layout.read(box), reference)
                if layout.sharded:
                    same &= np.array_equal(np.asarray(layout.array[tuple(slice(a, b) for a, b in box)]), reference)
                if not same:
                    print(f"  {layout.name} differs from {layouts[1].name} in {box}", flush=True)
                consistent &= bool(same)
        print(f"  all layouts hold the same labels: {consistent}", flush=True)

        # Reads: 64^3 boxes and 512 x 512 xy slices in the painted region.
        boxes = []
        for _ in range(args.reads):
            corner = [int(rng.integers(a // 64, (b - 64) // 64 + 1)) * 64 for a, b in region]
            boxes.append(tuple((c, c + 64) for c in corner))
        slices = []
        for _ in range(args.reads):
            z = int(rng.integers(*region[0]))
            y, x = [int(rng.integers(a // 512, max(a // 512 + 1, (b - 512) // 512 + 1))) * 512 for a, b in region[1:]]
            slices.append(((z, z + 1), (y, min(y + 512, shape[1])), (x, min(x + 512, shape[2]))))
        reads = {name: {"box_64_warm": [], "box_64_cold": [], "slice_512_warm": [], "slice_512_cold": [],
                        "box_64_files": [], "slice_512_files": []} for name in (lay.name for lay in layouts)}
        for kind, items in (("box_64", boxes), ("slice_512", slices)):
            for i, box in enumerate(items):
                order = layouts[i % len(layouts):] + layouts[:i % len(layouts)]
                for layout in order:
                    files = layout.files_for(box)
                    layout.read(box)  # into the page cache
                    t = time.perf_counter()
                    layout.read(box)
                    reads[layout.name][f"{kind}_warm"].append(time.perf_counter() - t)
                    _evict(files)
                    t = time.perf_counter()
                    layout.read(box)
                    reads[layout.name][f"{kind}_cold"].append(time.perf_counter() - t)
                    reads[layout.name][f"{kind}_files"].append(len(files))

        results = {}
        for layout in layouts:
            entry = {"storage_unit_zyx": list(layout.unit),
                     "inner_chunk_zyx": list(getattr(layout, "inner", layout.unit)),
                     "sharded": layout.sharded, "stored": setup[layout.name]}
            for pass_name in passes:
                rows = strokes[layout.name][pass_name]
                entry[f"stroke_{pass_name}"] = {
                    "ms": _summary([r["seconds"] for r in rows]),
                    "io_thread_ms": _summary([r["io_seconds"] for r in rows]),
                    "rasterise_thread_ms": _summary([r["raster_seconds"] for r in rows]),
                    "folders_synced": _summary([r["folders_synced"] for r in rows], 1),
                    "folder_sync_ms": _summary([r["folder_sync_seconds"] for r in rows]),
                    "files_written": _summary([r["files"] for r in rows], 1),
                    "kb_rewritten": _summary([r["bytes_written"] for r in rows], 1e-3),
                    "kb_read": _summary([r["bytes_read"] for r in rows], 1e-3),
                    "units_touched": _summary([r["units_touched"] for r in rows], 1),
                }
            r = reads[layout.name]
            entry["read_ms"] = {k: _summary(v) for k, v in r.items() if not k.endswith("_files")}
            entry["read_files"] = {k: _summary(v, 1) for k, v in r.items() if k.endswith("_files")}
            results[layout.name] = entry

        print()
        head = (f"{'layout':<24}{'files/stroke':>13}{'KB rewritten':>14}{'KB read':>10}{'ms median':>11}{'ms p90':>9}"
                f"{'I/O ms':>8}{'dir fsync ms':>13}{'no-fsync ms':>13}{'64^3 warm':>11}{'64^3 cold':>11}"
                f"{'slice warm':>12}{'slice cold':>12}")
        print(head)
        print("-" * len(head))
        for name, e in results.items():
            d, n, rd = e["stroke_durable"], e["stroke_not_durable"], e["read_ms"]
            print(f"{name:<24}{d['files_written']['median']:>13.0f}{d['kb_rewritten']['median']:>14.1f}"
                  f"{d['kb_read']['median']:>10.1f}{d['ms']['median']:>11.1f}{d['ms']['p90']:>9.1f}"
                  f"{d['io_thread_ms']['median']:>8.1f}{d['folder_sync_ms']['median']:>13.1f}{n['ms']['median']:>13.1f}"
                  f"{rd['box_64_warm']['median']:>11.2f}{rd['box_64_cold']['median']:>11.2f}"
                  f"{rd['slice_512_warm']['median']:>12.1f}{rd['slice_512_cold']['median']:>12.1f}")
        print("(per stroke: medians; I/O ms: thread time reading, decoding, encoding and writing files, fdatasync and "
              "folder fsync included; dir fsync ms: the folder fsyncs after the writes, wall time; "
              "read columns: median ms)")

        write_report(args.output, "label_layout",
                     label_array={"shape_zyx": list(shape), "dtype": "uint8", "logical_gb": float(np.prod(shape)) / 1e9,
                                  "voxel_mm": VOXEL_MM, "painted_region_zyx": [list(r) for r in region],
                                  "codec": "blosc zstd clevel 3 bitshuffle"},
                     strokes={"count": args.strokes, "radius_voxels": RADIUS, "moves_voxels": MOVE,
                              "threads": THREADS, "seed": args.seed},
                     consistent=consistent, peak_rss_mb=peak_rss_mb(), results=results,
                     notes=["Unsharded layouts: LabelStore.write_chunk / read_box (LABEL_CHUNKS patched before "
                            "create_labels). Sharded layouts: arrays created by zarr-python (sharding codec) and read "
                            "back by it for the consistency check; strokes rewritten here as a durable shard edit must "
                            "be: whole shard read, touched inner chunks re-encoded, whole shard written atomically.",
                            "Each stroke: read-modify-write of every storage unit the stroke's box touches, 2 threads, "
                            "then one fsync per folder written (durable pass). The not_durable pass repeats the same "
                            "strokes with another label value, without fdatasync and folder fsync.",
                            "Level 0 only: the editor also rebuilds the touched chunks of every coarser level "
                            "(a few more, smaller writes) and saves before-images; neither depends on this choice "
                            "beyond the same ratios.",
                            "Cold reads: the files read evicted with POSIX_FADV_DONTNEED just before."])
    finally:
        if not args.keep:
            shutil.rmtree(args.workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
