"""Compose a slice plan's proxy from whatever chunks are in the cache: coarse first, finer on top.

Cheap by design (it runs on the main thread): chunk data is copied, or for
coarser fill gathered with per-axis index maps; no decoding happens here.
A `Composition` paints only the chunks that arrived since its last update, so
a view that fills chunk by chunk costs the main thread each chunk once, not
the whole view at every arrival.
"""

import numpy as np


def _fill_value(image):
    array = image.levels[0].array
    return array.fill_value if array.fill_value is not None else 0


class Composition:
    """The proxy voxels of one plan, painted chunk by chunk as chunks reach the cache.

    Painting goes coarse to fine. A coarser chunk arriving after finer ones were
    painted would cover them, so then the whole view is painted again (rare:
    the fetch engine serves coarse levels first).
    """

    def __init__(self, source, plan, out=None):
        self.source, self.image, self.plan = source, source.image, plan
        dtype = self.image.levels[0].dtype
        if out is None or out.shape != plan.shape or out.dtype != dtype:
            out = np.empty(plan.shape, dtype=dtype)
        self.out = out
        self._painted = set()  # (level, chunk coordinates) painted
        self._finest = None  # finest level painted so far
        self._looked = False
        self._reset()
        self.complete = plan.empty

    def _reset(self):
        self.out.fill(_fill_value(self.image))
        self._painted.clear()
        self._counts = dict.fromkeys(self.plan.chunks, 0)  # chunks painted, per level
        self._finest = None

    def _arrived(self, cache):
        """{level: [(coords, data), ...]} of the plan's chunks in the cache and not painted yet.

        Levels are scanned finest first and the scan stops at the first level
        that is there whole: coarser ones would only be painted over. The first
        scan of a plan counts cache hits and misses (what the view found when it
        moved); later ones only peek for arrivals.
        """
        look = cache.peek if self._looked else cache.get
        self._looked = True
        arrived = {}
        for level in sorted(self.plan.chunks):
            wanted = self.plan.chunks[level]
            new = [(coords, look(self.source.key(level, coords))) for coords in wanted if (level, coords) not in self._painted]
            new = [(coords, data) for coords, data in new if data is not None]
            if new:
                arrived[level] = new
            if self._counts[level] + len(new) == len(wanted):
                break
        return arrived

    def forget(self, keys):
        """Chunks whose content changed: painted again when they arrive anew (until then the old pixels stay,
        so an edited region never shows a hole). `keys` None: every chunk. Chunks of levels coarser than the
        finest painted are left alone: finer ones cover them (repainting them would repaint the whole view)."""
        if keys is None:
            stale = set(self._painted)
        else:
            stale = {(level, coords) for source_id, level, coords in keys
                     if source_id == self.source.id and (level, coords) in self._painted and level <= self._finest}
        for level, coords in stale:
            self._painted.discard((level, coords))
            self._counts[level] -= 1
        if stale:
            self.complete = False
        return bool(stale)

    def update(self, cache):
        """Paint what arrived since the last update; True if anything was painted."""
        if self.plan.empty:
            return False
        arrived = self._arrived(cache)
        if not arrived:
            return False
        if self._finest is not None and max(arrived) > self._finest:
            self._reset()
            arrived = self._arrived(cache)
        fill = _paint_aligned if self.plan.kind == "aligned" else _paint_oblique
        for level in sorted(arrived, reverse=True):
            fill(self.image, self.plan, level, arrived[level], self.out)
            self._painted.update((level, coords) for coords, _ in arrived[level])
            self._counts[level] += len(arrived[level])
            self._finest = level if self._finest is None else min(self._finest, level)
        level = self.plan.level
        self.complete = self._counts.get(level, 0) == len(self.plan.chunks.get(level, ()))
        return True


def _axis_pieces(start, stop, chunk):
    """For one axis of a box: (chunk index, slice into the box, slice into that chunk) of every chunk it crosses."""
    pieces = []
    for c in range(start // chunk, (stop - 1) // chunk + 1):
        a, b = max(start, c * chunk), min(stop, (c + 1) * chunk)
        pieces.append((c, slice(a - start, b - start), slice(a - c * chunk, b - c * chunk)))
    return pieces


def _paint_aligned(image, plan, level_index, chunks, out):
    level = image.levels[level_index]
    if level_index == plan.level:  # same grid: plain copies, sliced per axis once
        pieces = [{c: (into_out, into_chunk) for c, into_out, into_chunk in _axis_pieces(a, b, size)}
                  for (a, b), size in zip(plan.box, level.chunk_shape)]
        for coords, data in chunks:
            try:
                (oz, dz), (oy, dy), (ox, dx) = [axis[c] for axis, c in zip(pieces, coords)]
            except KeyError:  # outside the proxy box
                continue
            out[oz, oy, ox] = data[dz, dy, dx]
        return
    # Coarser level: the proxy voxel centres, mapped exactly into this level, rounded to the nearest voxel.
    target = image.levels[plan.level]
    mapping = level.ras_to_ijk @ target.ijk_to_ras
    maps = []  # per z, y, x axis: this level's index of each proxy voxel
    for axis_zyx, (a, b) in enumerate(plan.box):
        axis = 2 - axis_zyx
        positions = np.arange(a, b, dtype=float)
        maps.append(np.floor(mapping[axis, axis] * positions + mapping[axis, 3] + 0.5).astype(np.int64))
    for coords, data in chunks:
        spans, local = [], []
        for indices, (c0, c1) in zip(maps, level.chunk_box(coords)):
            hit = np.nonzero((indices >= c0) & (indices < c1))[0]
            if not len(hit):
                break
            spans.append(slice(hit[0], hit[-1] + 1))
            local.append(indices[hit[0]: hit[-1] + 1] - c0)
        else:
            # One axis at a time, the axis that shrinks the block most first: a plane of a coarse chunk is
            # picked before it is stretched to the view, instead of gathering every voxel through three indices.
            # The last step writes straight into the proxy: no temporary as large as the view.
            order = sorted(range(3), key=lambda a: len(local[a]) / data.shape[a])
            block = data
            for axis in order[:-1]:
                block = np.take(block, local[axis], axis=axis)
            np.take(block, local[order[-1]], axis=order[-1], out=out[tuple(spans)], mode="clip")


def nearest_voxels(level, xy_to_ras, xs, ys):
    """The voxel indices (i, j, k) of `level` nearest to slice pixels (xs, ys): what an oblique proxy shows there."""
    xy_to_ijk = level.ras_to_ijk @ xy_to_ras
    return [np.floor(xy_to_ijk[a, 0] * xs + xy_to_ijk[a, 1] * ys + xy_to_ijk[a, 3] + 0.5).astype(np.int64)
            for a in range(3)]


def pixels_of_box(level, xy_to_ras, box, width, height):
    """The slice pixels (ys, xs grids) whose nearest voxel of `level` may lie in voxel `box`, or None: the pixel
    rectangle around the box's corners, within the view."""
    (z0, z1), (y0, y1), (x0, x1) = box
    start, stop = np.array([x0, y0, z0]) - 0.5, np.array([x1, y1, z1]) - 0.5
    offsets = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], dtype=float)
    corners = start + offsets * (stop - start)
    ijk_to_xy = np.linalg.inv(level.ras_to_ijk @ xy_to_ras)
    xy = (ijk_to_xy[:3, :3] @ corners.T).T + ijk_to_xy[:3, 3]
    xa, xb = max(0, int(np.ceil(xy[:, 0].min() - 0.5))), min(width, int(np.floor(xy[:, 0].max() + 0.5)) + 1)
    ya, yb = max(0, int(np.ceil(xy[:, 1].min() - 0.5))), min(height, int(np.floor(xy[:, 1].max() + 0.5)) + 1)
    if xa >= xb or ya >= yb:
        return None
    return np.mgrid[ya:yb, xa:xb]


def in_box(ijk, box):
    """Which of the voxels `ijk` ((i, j, k) arrays) lie in voxel `box` ((z0, z1), (y0, y1), (x0, x1))."""
    (z0, z1), (y0, y1), (x0, x1) = box
    return (ijk[0] >= x0) & (ijk[0] < x1) & (ijk[1] >= y0) & (ijk[1] < y1) & (ijk[2] >= z0) & (ijk[2] < z1)


def _paint_oblique(image, plan, level_index, chunks, out):
    level = image.levels[level_index]
    height, width = out.shape[1:]
    for coords, data in chunks:
        box = level.chunk_box(coords)
        pixels = pixels_of_box(level, plan.xy_to_ras, box, width, height)
        if pixels is None:
            continue
        ys, xs = pixels
        ijk = nearest_voxels(level, plan.xy_to_ras, xs, ys)
        inside = in_box(ijk, box)
        if level_index != plan.level:
            # A coarser voxel reaches past the edge of the finer volume: fill only where the plan's level has a voxel.
            plan_level = image.levels[plan.level]
            inside &= in_box(nearest_voxels(plan_level, plan.xy_to_ras, xs, ys),
                             tuple((0, n) for n in plan_level.volume_shape))
        if inside.any():
            (z0, _), (y0, _), (x0, _) = box
            out[0, ys[inside], xs[inside]] = data[ijk[2][inside] - z0, ijk[1][inside] - y0, ijk[0][inside] - x0]
