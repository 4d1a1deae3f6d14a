"""The one place where multiscale OME-Zarr pyramids are made.

`write_pyramid(source, path, ...)` reads `source` in z-slabs and writes every
level of the pyramid. The work is cut into stages and z-blocks:

- A stage reads one level (stage 0: the source, writing it as level 0) and
  computes the levels below it up to and including the second halving of z
  (the first only, when that would leave fewer than two blocks per worker,
  or on a Dask cluster, where more blocks mean more parallelism). Later
  stages read the level the previous stage wrote (1/64 of the data, or 1/8),
  so blocks stay small however many levels there are. The choice is kept in
  the journal, so a resumed write cuts blocks exactly as the first run did.
- A stage's input is cut into blocks whose share of every level starts on
  that level's storage grid (block depth = shard depth x 2 per z-halving:
  256 slices by default), so blocks never share a file. Each block streams through `cascade.py`
  with the few halo planes its filters need, and gives bit-identical results
  whatever process runs it and in whatever order.
- Blocks run in this process, in a local process pool (all cores by
  default; the pool is kept for the next write), or on a Dask cluster
  (`scheduler=ADDRESS`): see `execution.py`.
- Chunks are Blosc-encoded and written shard by shard by `shardio.py`,
  outside zarr-python's per-chunk machinery (measured 1.4x faster).

Chunk and shard shape: chunks 64^3 in shards of 1 x 8 x 8 chunks
(64 x 512 x 512). A shard one chunk deep is what one input slab fills, so
level 0 is written without holding more than a slab; 8 x 8 chunks keep the
number of files low (a 4 GB level 0 is 128 shards) while a viewer still
fetches single 64^3 chunks (0.5 MB of uint16). Measured on 512 x 1024 x 1024
uint16 CT slices (2 cores, other jobs running; median of 6 reads of level 0):

    chunks   write MB/s   xy slice   xz slice   yz slice   64^3 box
    32^3        114        227 ms     146 ms     148 ms     10 ms
    64^3        125        176 ms      88 ms      86 ms      6 ms
    128^3       135        286 ms      99 ms      98 ms     12 ms

64^3 reads every slice orientation fastest for 8% less write speed than
128^3 (which decodes 4 MB to show one 128 x 128 tile).

Memory. Let S be one slab of level 0: storage depth (64) x one input plane x
the item size. A process running blocks holds the slab it processes and the
few halo planes before it, level 1's pending planes (<= S/4 when x and y are
halved), the coarser levels' (a quarter of the level above each), float32
tiles of 4 planes x 66 rows (< 2 MB) and the encoded chunks of one shard.
This process also reads a quarter slab ahead. The bound is about 2 S per
process plus the interpreter, independent of the number of slices (for
1024 x 1024 uint16 slices S = 128 MB; 2 workers hold about 4 S). Testing/
test_convert_writer.py measures it at two depths 8x apart: tracemalloc in
this process (1.7 S and 1.9 S for 128 and 1024 slices) and the peak RSS of
the worker processes. Measured for 512 x 512 slices (S = 32 MB), 2 workers:
peak RSS per worker 114 MB for 64 slices and 123 MB for 512 slices, of which
50 MB is the interpreter with numpy and zarr; the few MB more are freed
blocks the C allocator keeps for each extra pyramid level (with glibc's
MALLOC_MMAP_THRESHOLD_=131072 the RSS is flat, at a cost in speed).

A store is never mistaken for a complete one: until every block of every
level is written, the root group says ``"bigvolume": {"write": {"state":
"in-progress"}}`` and has no multiscales metadata, and `bigvolume-journal.json`
beside the arrays records the finished blocks. `resume=True` continues such a
store where it stopped (after Ctrl-C, kill -9, a full disk); only when all is
written is the root metadata replaced by the final one and the journal
deleted. Cancelling (`cancel`) stops at the next slab and removes what this
call created, and nothing that existed before it.
"""

import datetime
import json
import math
import os
import pickle
import shutil
import time
from concurrent.futures.process import BrokenProcessPool

import numpy as np
import zarr

from .cascade import StageSpec
from .downsample import plan_levels
from ..errors import IncompleteStoreError, StoreError, WriteCancelled
from .execution import DaskRunner, InProcessRunner, ProcessRunner
from ..store.geometry import VolumeGeometry
from .write_journal import JOURNAL_NAME, Journal
from ..store.ngff import NAMESPACE, multiscales_attrs
from .shardio import is_disk_full

DEFAULT_CHUNKS = (64, 64, 64)
DEFAULT_SHARD_CHUNKS = (1, 8, 8)  # shard = this many chunks: one chunk deep, so a slab writes whole shards
# Levels stop at one chunk (64^3): opening a store, every view's first preview needs that one chunk,
# and its histogram gives the display window (bench/slice_browse.py measured the preview with it).
DEFAULT_COARSEST = 64
# z-halvings per stage: 2 (blocks of 256 slices) keeps re-reading to 1/64 of the data; 1 (blocks of 128)
# when that would leave fewer than two blocks per worker, or on a cluster, where parallelism matters more.
Z_HALVINGS_PER_STAGE = (2, 1)
POOL_MIN_BYTES = 128 * 2**20  # below this, starting worker processes costs more than it saves

__all__ = ["DEFAULT_CHUNKS", "DEFAULT_COARSEST", "DEFAULT_SHARD_CHUNKS", "WriteCancelled", "default_compressor", "write_pyramid"]


def default_compressor(zarr_format):
    """Blosc-zstd with shuffle: fast to decode (GIL released) and ~2x on CT noise."""
    if zarr_format == 3:
        from zarr.codecs import BloscCodec

        return BloscCodec(cname="zstd", clevel=3, shuffle="bitshuffle")
    from numcodecs import Blosc

    return Blosc(cname="zstd", clevel=3, shuffle=Blosc.BITSHUFFLE)


def _codec_config(compressor):
    if hasattr(compressor, "to_dict"):
        return compressor.to_dict()
    return compressor.get_config()


def _level_chunks(shape, chunks, shard_chunks, zarr_format):
    inner = tuple(min(c, n) for c, n in zip(chunks, shape))
    if zarr_format == 2 or shard_chunks is None:
        return inner, None
    shard = tuple(min(c * k, -(-n // c) * c) for c, k, n in zip(inner, shard_chunks, shape))
    return inner, shard


def _level_plan(shape0, geometry, coarsest):
    steps = plan_levels(shape0, geometry.spacing[::-1], coarsest=coarsest)
    shapes, scales, translations = [], [], []
    shape, scale = shape0, np.asarray(geometry.spacing[::-1], dtype=float)
    # Level 0's translation is the ITK origin whatever the direction: the
    # direction rotates about that voxel (see geometry.py).
    translation = np.asarray(geometry.origin[::-1], dtype=float)
    for step in steps:
        step = np.asarray(step)
        shape = tuple(-(-n // f) for n, f in zip(shape, step))
        translation = translation + (step - 1) * scale / 2.0
        scale = scale * step
        shapes.append(tuple(int(n) for n in shape))
        scales.append(scale.copy())
        translations.append(translation.copy())
    return [tuple(int(f) for f in s) for s in steps], shapes, scales, translations


def _stages(store, steps, shapes, nominal_depth, unit_depths, labels, dtype, per_stage):
    """Group levels into stages of at most `per_stage` z-halvings; size their blocks."""
    stages, level = [], 0
    while level < len(shapes) - 1 or not stages:
        members, halvings = [], 0
        for j in range(level + 1, len(shapes)):
            if halvings + (steps[j][0] == 2) > per_stage:
                break
            halvings += steps[j][0] == 2
            members.append(j)
        positions = ([level] if level == 0 else []) + members
        z = {level: 1}
        for j in members:
            z[j] = z[j - 1] * steps[j][0]
        block = math.lcm(*(nominal_depth * z[j] for j in positions)) if positions else nominal_depth
        stages.append(StageSpec(
            store=store, index=len(stages), input_level=level, input_shape=shapes[level], write_input=(level == 0),
            level_indices=tuple(members), level_shapes=tuple(shapes[j] for j in members),
            level_factors=tuple(steps[j] for j in members), block_depth=block, labels=labels, dtype=str(dtype),
            unit_depths=tuple(unit_depths[j] for j in [level] + members)))
        if not members:
            break
        level = members[-1]
    return stages


class _Limited:
    """A file-like sink that refuses more than `limit` bytes (to test cheaply whether a source pickles small)."""

    def __init__(self, limit):
        self.size, self.limit = 0, limit

    def write(self, data):
        self.size += len(data)
        if self.size > self.limit:
            raise OverflowError


def can_ship(source, limit=4 * 2**20):
    """True if `source` can be sent to another process cheaply (it re-opens its files rather than carrying data)."""
    if isinstance(source, np.ndarray):
        return False
    try:
        pickle.Pickler(_Limited(limit), protocol=pickle.HIGHEST_PROTOCOL).dump(source)
    except Exception:
        return False
    return True


def _choose_runner(source, nbytes, workers, scheduler):
    if scheduler:
        if not can_ship(source):
            raise ValueError("running on a Dask cluster needs a source that can be sent to its workers "
                             "(an ingest reader or a zarr array, not an in-memory array)")
        return DaskRunner(scheduler)
    cores = os.cpu_count() or 1
    if workers is None:
        workers = cores if nbytes >= POOL_MIN_BYTES else 1
    if workers > 1 and can_ship(source):
        return ProcessRunner.shared(workers)
    return InProcessRunner()


def _should_stop(cancel):
    if cancel is None:
        return lambda: False
    if hasattr(cancel, "is_set"):
        return cancel.is_set
    if callable(cancel):
        return cancel
    raise TypeError(f"cancel must be a threading.Event or a callable returning True to stop, not {cancel!r}")


def _read_attrs(path):
    try:
        return zarr.open_group(path, mode="r").attrs.asdict()
    except Exception:
        return None


def _set_aside(path):
    """Move an output the user asked to replace out of the way; it is deleted only when the new one is complete."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    aside = f"{path}.replaced-{stamp}-{os.getpid()}"
    os.rename(path, aside)
    return aside


def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.remove(path)


def _differences(old, new, prefix=""):
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new)):
            out += _differences(old.get(key), new.get(key), f"{prefix}{key}.")
        return out
    return [] if old == new else [f"{prefix[:-1]}: {old!r} in the store, {new!r} now"]


def write_pyramid(source, path, geometry=None, *, labels=False, ngff_version="0.5", chunks=DEFAULT_CHUNKS,
                  shard_chunks=DEFAULT_SHARD_CHUNKS, compressor=None, coarsest=None, name=None,
                  overwrite=False, progress=None, attributes=None, resume=False, cancel=None, workers=None,
                  scheduler=None, stats=None):
    """Write `source` as a multiscale OME-Zarr image at `path` and return the level shapes.

    source: anything with `shape` (z, y, x), `dtype` and `source[z0:z1]`
      (a numpy array, a memory map, a zarr array, a lazy reader). Each voxel is
      read once in this process; worker processes also read the few planes
      around their block. If `geometry` is None, `source.geometry` is used when present.
    geometry: a VolumeGeometry (ITK spacing/origin/direction, LPS).
    labels: mode (winner-takes-all) downsampling instead of the anti-aliasing filter.
    ngff_version: "0.5" (Zarr v3, sharded) or "0.4" (Zarr v2).
    shard_chunks: chunks per shard along z, y, x (0.5 only); None for no sharding.
    coarsest: levels are added until every axis has at most this many voxels (DEFAULT_COARSEST: one chunk).
    progress: called as progress(planes_done, planes_total) after each slab (planes of level 0;
      the coarser levels' work is counted in level-0 planes of the same number of voxels).
    attributes: extra JSON-able entries stored under our namespaced attribute.
    resume: continue an in-progress store at `path` written with the same settings
      (a complete one is left as it is); start afresh if there is none.
    cancel: a threading.Event (or a callable returning True) that stops the write at the next slab;
      what this call created is then removed and WriteCancelled raised.
    workers: processes to run blocks on (default: all cores for inputs of 128 MB or more whose
      source can be sent to another process; 1 = this process only).
    scheduler: address of a Dask distributed scheduler to run the blocks on instead.
    stats: a dict to fill with how the write ran (runner, blocks, blocks skipped, peak worker RSS).
    """
    if len(source.shape) != 3:
        raise ValueError(f"source must be 3D (z, y, x), got shape {tuple(source.shape)}")
    if ngff_version not in ("0.4", "0.5"):
        raise ValueError(f"ngff_version must be '0.4' or '0.5', not {ngff_version!r}")
    should_stop = _should_stop(cancel)
    geometry = geometry or getattr(source, "geometry", None) or VolumeGeometry()
    dtype = np.dtype(source.dtype).newbyteorder("=")
    if dtype == np.bool_:
        dtype, labels = np.dtype(np.uint8), True
    zarr_format = 3 if ngff_version == "0.5" else 2
    compressor = compressor or default_compressor(zarr_format)
    path = os.fspath(path)
    shape0 = tuple(int(n) for n in source.shape)
    steps, shapes, scales, translations = _level_plan(shape0, geometry, coarsest or DEFAULT_COARSEST)
    plan = json.loads(json.dumps({
        "shape": shape0, "dtype": dtype.str, "labels": bool(labels), "ngff_version": ngff_version,
        "chunks": list(chunks), "shard_chunks": list(shard_chunks) if shard_chunks and zarr_format == 3 else None,
        "compressor": _codec_config(compressor), "levels": shapes, "attributes": attributes or {}}))

    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise StoreError(f"{path}: the folder {parent} does not exist")
    journal, created, aside = None, False, None
    if os.path.lexists(path) and resume:
        attrs = _read_attrs(path)
        state = ((attrs or {}).get(NAMESPACE) or {}).get("write", {}).get("state")
        if state == "complete":
            if stats is not None:
                stats.update(runner=None, blocks=0, blocks_skipped=0, already_complete=True)
            return shapes
        journal = Journal.load(path) if state == "in-progress" else None
        if journal is None:
            raise StoreError(f"{path}: exists but is not an unfinished BigVolume write that can be resumed; "
                             f"choose another output, or replace it with overwrite=True (--overwrite)")
        differences = _differences(journal.plan, plan)
        if differences:
            raise IncompleteStoreError(f"{path}: cannot resume: this unfinished store was started with other settings "
                                       f"({'; '.join(differences)}); use the same settings, or replace it with overwrite=True (--overwrite)")
    elif os.path.lexists(path):
        if not overwrite:
            state = ((_read_attrs(path) or {}).get(NAMESPACE) or {}).get("write", {}).get("state")
            if state == "in-progress":
                raise StoreError(f"{path}: already exists, an unfinished write; continue it with resume=True "
                                 f"(--resume) or replace it with overwrite=True (--overwrite)")
            raise StoreError(f"{path}: already exists; choose another output or pass overwrite=True (--overwrite) to replace it")
        aside = _set_aside(path)

    try:
        runner = _choose_runner(source, int(np.prod(shape0)) * dtype.itemsize, workers, scheduler)
    except BaseException:
        if aside:
            os.rename(aside, path)
        raise
    unit_depths = [(shard or inner)[0] for inner, shard in
                   (_level_chunks(shape, chunks, shard_chunks, zarr_format) for shape in shapes)]
    nominal = chunks[0] * (shard_chunks[0] if zarr_format == 3 and shard_chunks else 1)
    if journal is not None:  # the block plan the journal's block numbers refer to
        per_stage = journal.extra.get("halvings_per_stage", Z_HALVINGS_PER_STAGE[1])
    else:
        per_stage = Z_HALVINGS_PER_STAGE[0]
        blocks = _stages(path, steps, shapes, nominal, unit_depths, labels, dtype, per_stage)[0].block_count
        if isinstance(runner, DaskRunner) or blocks < 2 * getattr(runner, "workers", 1):
            per_stage = Z_HALVINGS_PER_STAGE[1]
    stages = _stages(path, steps, shapes, nominal, unit_depths, labels, dtype, per_stage)

    if journal is None:
        created = True
        try:
            journal = _create_store(path, plan, shapes, dtype, chunks, shard_chunks, zarr_format, compressor, aside,
                                    per_stage)
        except BaseException:
            runner.close()
            _remove(path)
            if aside:
                os.rename(aside, path)
            raise
    started = journal.extra.get("started")

    plane0 = shape0[1] * shape0[2]
    stage_voxels = [stage.input_shape[1] * stage.input_shape[2] for stage in stages]
    total = sum(stage.input_shape[0] * v for stage, v in zip(stages, stage_voxels))
    done = [sum(s.block_planes(b) * v for s, v in zip(stages, stage_voxels) for b in journal.done.get(s.index, ()))]
    skipped = journal.blocks_done()
    t0 = time.perf_counter()
    try:
        for stage, voxels in zip(stages, stage_voxels):
            todo = [b for b in range(stage.block_count) if not journal.is_done(stage.index, b)]
            if not todo:
                continue

            def planes_done(n, voxels=voxels):
                done[0] += n * voxels
                if progress is not None:
                    progress(done[0] // plane0, total // plane0)

            runner.run_stage(stage, source if stage.index == 0 else None, todo,
                             block_done=lambda b, s=stage.index: journal.mark_done(s, b),
                             planes_done=planes_done, should_stop=should_stop)
        _finish(path, plan, ngff_version, geometry, name, attributes, scales, translations, started, t0)
    except WriteCancelled:
        runner.close()
        if created:
            _remove(path)
            if aside:
                os.rename(aside, path)
            raise WriteCancelled(f"{path}: cancelled; the partial store this run started was removed"
                                 + (" and the previous one put back" if aside else "")) from None
        raise WriteCancelled(f"{path}: cancelled; the store is still unfinished and can be resumed") from None
    except OSError as error:
        runner.close()
        if is_disk_full(error):
            blocks = sum(s.block_count for s in stages)
            raise StoreError(f"{path}: the disk is full ({error.strerror}) after {journal.blocks_done()} of {blocks} blocks; "
                             f"the store is marked unfinished; free some space and run again with resume "
                             f"(--resume) to continue where it stopped") from error
        raise
    except BrokenProcessPool as error:
        runner.close()
        raise StoreError(f"{path}: a worker process died ({error}); was it out of memory? The store is marked "
                         f"unfinished; run again with resume (--resume) to continue, with fewer workers") from error
    except BaseException:
        runner.close()
        raise
    runner.close()
    journal.remove()
    if aside or journal.extra.get("replacing"):
        _remove(aside or journal.extra["replacing"])
    if stats is not None:
        stats.update(runner=runner.name, blocks=sum(s.block_count for s in stages), blocks_skipped=skipped,
                     peak_worker_rss_mb=runner.peak_worker_rss_mb, already_complete=False,
                     seconds=time.perf_counter() - t0)
    return shapes


def _create_store(path, plan, shapes, dtype, chunks, shard_chunks, zarr_format, compressor, aside, per_stage):
    root = zarr.open_group(path, mode="w-", zarr_format=zarr_format)
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    root.attrs.update({NAMESPACE: {"write": {"state": "in-progress", "started": started, "journal": JOURNAL_NAME}}})
    for index, level_shape in enumerate(shapes):
        inner, shard = _level_chunks(level_shape, chunks, shard_chunks, zarr_format)
        kwargs = {"dimension_names": ["z", "y", "x"]} if zarr_format == 3 else {"chunk_key_encoding": {"name": "v2", "separator": "/"}}
        root.create_array(str(index), shape=level_shape, chunks=inner, shards=shard, dtype=dtype,
                          compressors=[compressor], fill_value=0, **kwargs)
    journal = Journal(path, plan, extra={"started": started, "halvings_per_stage": per_stage,
                                         **({"replacing": aside} if aside else {})})
    journal.save()
    return journal


def _finish(path, plan, ngff_version, geometry, name, attributes, scales, translations, started, t0):
    attrs = multiscales_attrs(ngff_version, geometry.unit,
                              [(str(i), s.tolist(), t.tolist()) for i, (s, t) in enumerate(zip(scales, translations))],
                              name=name, orientation=(ngff_version == "0.5"))
    namespace = {**(attributes or {}), "write": {"state": "complete", "started": started,
                                                 "seconds": round(time.perf_counter() - t0, 3)}}
    if not geometry.has_identity_direction:
        namespace["direction"] = [list(row) for row in geometry.direction]
    attrs[NAMESPACE] = namespace
    zarr.open_group(path, mode="r+").attrs.put(attrs)  # replaces the in-progress marker in one metadata write
