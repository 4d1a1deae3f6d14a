"""Compose a slice plan's proxy from whatever chunks are in the cache: coarse first, finer on top.

Cheap by design (it runs on the main thread): chunk data is copied, or for
coarser fill gathered with per-axis index maps; no decoding happens here.
"""

import numpy as np

from .chunk_io import chunk_box, chunk_shape


def _fill_value(image):
    array = image.levels[0].array
    return array.fill_value if array.fill_value is not None else 0


def compose(image, cache, plan, out=None):
    """Return (array of plan.shape, complete): complete when every chunk of the plan's level was there."""
    dtype = image.levels[0].dtype
    if out is None or out.shape != plan.shape or out.dtype != dtype:
        out = np.empty(plan.shape, dtype=dtype)
    out.fill(_fill_value(image))
    if plan.empty:
        return out, True
    fill = _compose_aligned_level if plan.kind == "aligned" else _compose_oblique_level
    levels = sorted(plan.chunks)  # finest (the plan's level) first
    whole = [index for index in levels if all(cache.peek((index, c)) is not None for c in plan.chunks[index])]
    complete = plan.level in whole
    # Coarse first, finer on top, starting at the finest level that covers the whole view: what is
    # coarser than that would be painted over entirely.
    start = whole[0] if whole else levels[-1]
    for index in reversed([index for index in levels if index <= start]):
        fill(image, cache, plan, index, out)
    return out, complete


def _axis_pieces(start, stop, chunk):
    """For one axis of a box: (chunk index, slice into the box, slice into that chunk) of every chunk it crosses."""
    pieces = []
    for c in range(start // chunk, (stop - 1) // chunk + 1):
        a, b = max(start, c * chunk), min(stop, (c + 1) * chunk)
        pieces.append((c, slice(a - start, b - start), slice(a - c * chunk, b - c * chunk)))
    return pieces


def _compose_aligned_level(image, cache, plan, index, out):
    level = image.levels[index]
    found = 0
    if index == plan.level:  # same grid: plain copies, sliced per axis once
        pz, py, px = [_axis_pieces(a, b, c) for (a, b), c in zip(plan.box, chunk_shape(level))]
        for cz, oz, dz in pz:
            for cy, oy, dy in py:
                for cx, ox, dx in px:
                    data = cache.get((index, (cz, cy, cx)))
                    if data is not None:
                        found += 1
                        out[oz, oy, ox] = data[dz, dy, dx]
        return found
    # Coarser level: the proxy voxel centres, mapped exactly into this level, rounded to the nearest voxel.
    target = image.levels[plan.level]
    mapping = np.linalg.inv(level.ijk_to_ras) @ target.ijk_to_ras
    maps = []  # per z, y, x axis: this level's index of each proxy voxel
    for axis_zyx, (a, b) in enumerate(plan.box):
        axis = 2 - axis_zyx
        positions = np.arange(a, b, dtype=float)
        maps.append(np.floor(mapping[axis, axis] * positions + mapping[axis, 3] + 0.5).astype(np.int64))
    for idx in plan.chunks[index]:
        data = cache.get((index, idx))
        if data is None:
            continue
        found += 1
        cbox = chunk_box(level, idx)
        spans, local = [], []
        for indices, (c0, c1) in zip(maps, cbox):
            hit = np.nonzero((indices >= c0) & (indices < c1))[0]
            if not len(hit):
                break
            spans.append(slice(hit[0], hit[-1] + 1))
            local.append(indices[hit[0]: hit[-1] + 1] - c0)
        else:
            out[tuple(spans)] = data[np.ix_(*local)]
    return found


def _compose_oblique_level(image, cache, plan, index, out):
    level = image.levels[index]
    xy_to_ijk = np.linalg.inv(level.ijk_to_ras) @ plan.xy_to_ras
    ijk_to_xy = np.linalg.inv(xy_to_ijk)
    height, width = out.shape[1:]
    found = 0
    offsets = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], dtype=float)
    for idx in plan.chunks[index]:
        data = cache.get((index, idx))
        if data is None:
            continue
        found += 1
        (z0, z1), (y0, y1), (x0, x1) = chunk_box(level, idx)
        start, stop = np.array([x0, y0, z0]) - 0.5, np.array([x1, y1, z1]) - 0.5
        corners = start + offsets * (stop - start)
        xy = (ijk_to_xy[:3, :3] @ corners.T).T + ijk_to_xy[:3, 3]
        xa, xb = max(0, int(np.ceil(xy[:, 0].min() - 0.5))), min(width, int(np.floor(xy[:, 0].max() + 0.5)) + 1)
        ya, yb = max(0, int(np.ceil(xy[:, 1].min() - 0.5))), min(height, int(np.floor(xy[:, 1].max() + 0.5)) + 1)
        if xa >= xb or ya >= yb:
            continue
        ys, xs = np.mgrid[ya:yb, xa:xb]
        ijk = [np.floor(xy_to_ijk[a, 0] * xs + xy_to_ijk[a, 1] * ys + xy_to_ijk[a, 3] + 0.5).astype(np.int64) for a in range(3)]
        inside = ((ijk[0] >= x0) & (ijk[0] < x1) & (ijk[1] >= y0) & (ijk[1] < y1) & (ijk[2] >= z0) & (ijk[2] < z1))
        if inside.any():
            out[0, ys[inside], xs[inside]] = data[ijk[2][inside] - z0, ijk[1][inside] - y0, ijk[0][inside] - x0]
    return found
