"""One stage of the pyramid writer, run over a range of z-blocks: the streaming cascade.

A stage reads one level (the source itself for stage 0) and computes the
next few levels. Its input is cut into z-blocks of `block_depth` planes, so
that every level's share of a block starts on that level's storage grid
(block depth = storage depth x 2^(z-halvings in the stage)); a block can
therefore be written by any process without touching another block's files.

A run of consecutive blocks streams its input in slabs one storage unit deep.
Each level keeps only the planes it has not written yet and those the next
level's filter still needs, and computes the planes of the next level as soon
as their inputs are there. Around the run the filters need a few planes of
the neighbouring blocks (the [1, 3, 3, 1] filter reads one plane before and
two after at each level, mirrored at the volume's ends); those are read and
computed but not written, so every plane written is computed from exactly
the same inputs as in a single sequential pass: blocks give bit-identical
results in any order, in any process.
"""

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from .downsample import halve_planes, mirrored, mode_halve
from ..errors import StoreError, WriteCancelled


@dataclass(frozen=True)
class StageSpec:
    """What one stage reads and writes (plain data: sent to worker processes)."""

    store: str
    index: int
    input_level: int
    input_shape: tuple
    write_input: bool  # stage 0 writes level 0 from the source
    level_indices: tuple  # levels computed here, finest first
    level_shapes: tuple
    level_factors: tuple  # z, y, x factor of each level relative to the one before
    block_depth: int  # input planes per block
    labels: bool
    dtype: str
    unit_depths: tuple  # storage depth (planes of one shard or chunk) of the input and of each level

    @property
    def block_count(self):
        return -(-self.input_shape[0] // self.block_depth)

    def block_planes(self, block):
        """Input planes that belong to `block` (the last block may be shorter)."""
        return min(self.block_depth, self.input_shape[0] - block * self.block_depth)

    def z_scales(self):
        """Input planes per plane of each level (1 for the input)."""
        scales, z = [1], 1
        for factors in self.level_factors:
            z *= factors[0]
            scales.append(z)
        return scales

    def depths(self):
        return [self.input_shape[0]] + [shape[0] for shape in self.level_shapes]

    def write_range(self, position, b0, b1):
        """Planes of cascade position (0 = input) written by blocks b0..b1-1."""
        scale, depth = self.z_scales()[position], self.depths()[position]
        return (min(b0 * self.block_depth // scale, depth), min(b1 * self.block_depth // scale, depth))

    def needed_ranges(self, b0, b1):
        """Planes of each cascade position a run of blocks must hold: its writes plus the filters' halo."""
        depths = self.depths()
        n = len(depths) - 1
        needed = [None] * (n + 1)
        needed[n] = self.write_range(n, b0, b1)
        for j in range(n, 0, -1):
            a, b = needed[j]
            fz = self.level_factors[j - 1][0]
            if fz == 1:
                lo, hi = a, b
            elif self.labels:
                lo, hi = 2 * a, min(2 * b, depths[j - 1])
            else:
                wanted = mirrored(np.arange(2 * a - 1, 2 * b + 1), depths[j - 1])
                lo, hi = int(wanted.min()), int(wanted.max()) + 1
            if j - 1 > 0 or self.write_input:
                wa, wb = self.write_range(j - 1, b0, b1)
                if wb > wa:
                    lo, hi = min(lo, wa), max(hi, wb)
            needed[j - 1] = (lo, hi)
        return needed


class _Planes:
    """The planes a cascade position currently holds, as pieces (start, array) that are sliced, not joined."""

    def __init__(self):
        self.pieces = []

    @property
    def end(self):
        return self.pieces[-1][0] + len(self.pieces[-1][1]) if self.pieces else None

    def add(self, start, data):
        self.pieces.append((start, data))

    def plane(self, i):
        for start, data in self.pieces:
            if start <= i < start + len(data):
                return data[i - start]
        raise AssertionError(f"plane {i} is not held (pieces {[(s, s + len(d)) for s, d in self.pieces]})")

    def parts(self, a, b):
        """Planes a..b-1 as a list of views, one per piece they fall in."""
        parts = []
        for start, data in self.pieces:
            lo, hi = max(a, start), min(b, start + len(data))
            if lo < hi:
                parts.append(data[lo - start:hi - start])
        if sum(len(p) for p in parts) != b - a:
            raise AssertionError(f"planes {a}:{b} are not all held")
        return parts

    def get(self, a, b):
        parts = self.parts(a, b)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def drop_before(self, keep_from):
        kept = []
        for start, data in self.pieces:
            if start + len(data) <= keep_from:
                continue
            if start < keep_from:
                tail = data[keep_from - start:]
                # A view would keep the whole piece alive: copy when most of it is no longer needed.
                data = tail.copy() if 2 * len(tail) <= len(data) else tail
                start = keep_from
            kept.append((start, data))
        self.pieces = kept


def _reader(source, shape, dtype):
    def read(a, b):
        data = np.asarray(source[a:b])
        expected = (b - a,) + tuple(shape[1:])
        if data.shape != expected:
            raise StoreError(f"source returned shape {data.shape} for planes {a}:{b}, expected {expected}")
        return data.astype(dtype, copy=False)

    return read


class _ReadAhead:
    """Reads the next quarter slab on a thread while this one is processed (I/O overlaps compute).

    A quarter, not a whole slab, is read ahead: memory grows by S/4 instead of S.
    """

    def __init__(self, read, slabs, step):
        self.read = read
        self.ranges = [(s, min(s + step, b)) for a, b in slabs for s in range(a, b, step)]
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bigvolume-read")
        self.next = 0
        self.pending = self._submit()

    def _submit(self):
        if self.next >= len(self.ranges):
            return None
        future = self.pool.submit(self.read, *self.ranges[self.next])
        self.next += 1
        return future

    def slab(self, a, b):
        out = None
        while True:
            future, self.pending = self.pending, None
            data = future.result()
            lo, hi = self.ranges[self.next - 1]
            self.pending = self._submit()
            if lo == a and hi == b:
                return data
            if out is None:
                out = np.empty((b - a,) + data.shape[1:], data.dtype)
            out[lo - a:hi - a] = data
            del data
            if hi == b:
                return out

    def close(self):
        self.pool.shutdown(wait=True, cancel_futures=True)


def run_blocks(stage, source, b0, b1, writers, *, block_done=None, planes_done=None, should_stop=None,
               encode_pool=None, read_ahead=False):
    """Process blocks b0..b1-1 of `stage` reading `source` (the stage's input) and writing through `writers`.

    writers: {cascade position: LevelWriter}; position 0 is the input (written in stage 0 only).
    block_done(b) is called when every plane of block b is written; planes_done(n) after each input slab.
    """
    dtype = np.dtype(stage.dtype)
    depths = stage.depths()
    n = len(depths) - 1
    needed = stage.needed_ranges(b0, b1)
    writes = [stage.write_range(j, b0, b1) if (j > 0 or stage.write_input) else (0, 0) for j in range(n + 1)]
    held = [_Planes() for _ in range(n + 1)]
    written = [w[0] for w in writes]
    next_out = [needed[j][0] for j in range(n + 1)]  # next plane of position j to compute (j >= 1)
    unit = stage.unit_depths[0]
    read = _reader(source, stage.input_shape, dtype)
    state = {"next_block": b0}

    def block_end(j, b):
        return stage.write_range(j, b, b + 1)[1]

    def report_blocks():
        while state["next_block"] < b1:
            b = state["next_block"]
            if any(writes[j][1] > writes[j][0] and written[j] < block_end(j, b) for j in range(n + 1)):
                return
            state["next_block"] += 1
            if block_done is not None:
                block_done(b)

    def computable(j):
        """Planes of position j + 1 whose inputs position j now holds."""
        end, depth = held[j].end, depths[j]
        if end is None:
            return next_out[j + 1]
        fz = stage.level_factors[j][0]
        if end >= depth:
            return depths[j + 1]
        if fz == 1:
            return end
        return end // 2 if stage.labels else (end - 1) // 2

    def keep_from(j):
        keep = written[j] if written[j] < writes[j][1] else None
        if j < n and next_out[j + 1] < needed[j + 1][1]:
            k, fz = next_out[j + 1], stage.level_factors[j][0]
            if fz == 1:
                need = k
            elif stage.labels:
                need = 2 * k
            else:
                need = int(mirrored(np.arange(2 * k - 1, 2 * needed[j + 1][1] + 1), depths[j]).min())
            keep = need if keep is None else min(keep, need)
        return depths[j] if keep is None else keep

    def advance(j):
        end = held[j].end
        while written[j] < writes[j][1] and end is not None:
            stop = min(written[j] + stage.unit_depths[j], depths[j])
            if end < stop:
                break
            writers[j].write(written[j], held[j].parts(written[j], stop), pool=encode_pool)
            written[j] = stop
        if j < n:
            stop = min(computable(j), needed[j + 1][1])
            start = next_out[j + 1]
            if stop > start:
                factors = stage.level_factors[j]
                if stage.labels:
                    lo, hi = start * factors[0], min(stop * factors[0], depths[j])
                    out = mode_halve(held[j].get(lo, hi), factors)
                else:
                    out = halve_planes(held[j].plane, start, stop, depths[j], factors, dtype)
                next_out[j + 1] = stop
                held[j + 1].add(start, out)
                advance(j + 1)
        held[j].drop_before(keep_from(j))

    first, last = needed[0]
    own_start, own_stop = b0 * stage.block_depth, min(b1 * stage.block_depth, depths[0])
    edges = [first] + list(range((first // unit + 1) * unit, last, unit)) + [last]
    slabs = [(a, b) for a, b in zip(edges, edges[1:]) if b > a]
    reads = _ReadAhead(read, slabs, max(1, unit // 4)) if read_ahead else None
    try:
        for a, b in slabs:
            if should_stop is not None and should_stop():
                raise WriteCancelled()
            held[0].add(a, reads.slab(a, b) if reads else read(a, b))
            advance(0)
            if planes_done is not None:  # the run's own planes only: halo planes are another block's work
                own = min(b, own_stop) - max(a, own_start)
                if own > 0:
                    planes_done(own)
            report_blocks()
    finally:
        if reads:
            reads.close()
    report_blocks()
    if state["next_block"] != b1:
        raise AssertionError(f"stage {stage.index}: blocks {state['next_block']}..{b1 - 1} were not completed")
