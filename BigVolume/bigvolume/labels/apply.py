"""What an operation does to a box of labels, and how the coarser levels follow level 0.

`apply_to_box` edits labels of any level: the preview at the displayed level,
the pending-edit overlay of a read, and the background writer at level 0 use
it alike. `rebuild_coarser` recomputes, on every level above 0, the part of each
chunk that reads a changed voxel, by the project's mode downsampling
(`writing.downsample.mode_halve`, the same as `write_pyramid(labels=True)`),
each level from the one below.
"""

import numpy as np

from ..writing.downsample import mode_halve
from .operations import intersect


def edit(op, old, region, intensities=None, domain=None, values=None):
    """New labels of a block from its old labels and the operation's region there (Slicer's masking applied);
    for mode "set", `domain` is where the segment is replaced (op.domain); for mode "replace", `values` are
    the new labels over the block (op.values)."""
    if op.mode == "replace":
        return np.where(region, values, old).astype(old.dtype, copy=False)
    allowed = region & op.masking.editable(old, intensities)
    if op.mode == "erase":
        return np.where(allowed & (old == op.value), 0, old).astype(old.dtype, copy=False)
    new = np.where(allowed & op.masking.overwritable(old, op.value), op.value, old).astype(old.dtype, copy=False)
    if op.mode == "set":
        outside = ~region & domain & op.masking.editable(old, intensities) & (old == op.value)
        new[outside] = 0
    return new


def local(box, within):
    """Slices of `box` inside the array of `within` (both voxel boxes, box inside within)."""
    return tuple(slice(a - o, b - o) for (a, b), (o, _) in zip(box, within))


class Rasteriser:
    """Regions of operations at one level, computed once per operation for those whose region depends on
    labels around the voxel (Fill: the whole fill box at once)."""

    def __init__(self, read_labels, read_image):
        self.read_labels, self.read_image = read_labels, read_image  # (level, box) -> array
        self._whole = {}

    def apply(self, op, level, box, labels, key=None):
        """`labels` (of `box` at `level`) with `op` applied; unchanged where the op does not reach."""
        op_box = op.voxel_box(level)
        inter = intersect(op_box, box) if op_box is not None else None
        if inter is None:
            return labels
        old = labels[local(inter, box)]
        intensities = self.read_image(level.index, inter) if op.needs_image else None
        if op.needs_labels_around:
            cache_key = (key if key is not None else id(op), level.index)
            if cache_key not in self._whole:
                self._whole[cache_key] = op.region(level, op_box, self.read_image(level.index, op_box) if op.needs_image
                                                   else None, self.read_labels(level.index, op_box))
            region = self._whole[cache_key][local(inter, op_box)]
        else:
            region = op.region(level, inter, intensities)
        out = labels.copy()
        domain = op.domain(level, inter) if op.mode == "set" else None
        values = op.values(level, inter) if op.mode == "replace" else None
        out[local(inter, box)] = edit(op, old, region, intensities, domain, values)
        return out

    def forget(self, key):
        for k in [k for k in self._whole if k[0] == key]:
            del self._whole[k]


def level_factors(levels):
    """Downsampling factor (z, y, x) of each level from the one below; (1, 1, 1) for level 0."""
    factors = [(1, 1, 1)]
    for below, above in zip(levels[:-1], levels[1:]):
        ratio = np.asarray(above.voxel_size_mm[::-1]) / np.asarray(below.voxel_size_mm[::-1])
        factors.append(tuple(int(round(r)) for r in ratio))
    return factors


def _coarser_box(box, factors):
    """The voxels of the level above whose mode downsampling reads any voxel of `box`."""
    return tuple((a // k, -(-b // k)) for (a, b), k in zip(box, factors))


def _union(a, b):
    return b if a is None else tuple((min(p, r), max(q, s)) for (p, q), (r, s) in zip(a, b))


def downsampled_box(read_box, levels, factors, level, box):
    """Voxel `box` of `level` (>= 1) computed by mode downsampling of the level below."""
    f = factors[level]
    below = levels[level - 1].volume_shape
    source = tuple((a * k, min(b * k, n)) for (a, b), k, n in zip(box, f, below))
    result = mode_halve(read_box(level - 1, source), f)
    return result[tuple(slice(0, b - a) for a, b in box)]


def rebuild_coarser(store, changed0, write_chunk, boxes0=None, map_chunks=map):
    """Recompute every coarser level where level-0 chunks `changed0` changed; returns {level: [coords]}.

    `boxes0` are level-0 voxel boxes holding every changed voxel (None: the changed chunks whole): each coarser
    chunk is recomputed only over the part that reads them, the rest kept as stored. `map_chunks` (a thread
    pool's map) spreads a level's chunks over threads."""
    levels = store.levels
    factors = level_factors(levels)
    dirty = {}
    for coords in set(map(tuple, changed0)):
        cbox = levels[0].chunk_box(coords)
        if boxes0 is None:
            dirty[coords] = cbox
        else:
            for box in boxes0:
                part = intersect(cbox, box)
                if part is not None:
                    dirty[coords] = _union(dirty.get(coords), part)
    touched = {0: sorted(dirty)}
    for level in range(1, len(levels)):
        lvl, above = levels[level], {}
        for sub in dirty.values():
            coarse = _coarser_box(sub, factors[level])
            for coords in lvl.chunks_in_box(coarse):
                above[coords] = _union(above.get(coords), intersect(coarse, lvl.chunk_box(coords)))

        def rebuild(item, level=level, lvl=lvl):
            coords, sub = item
            cbox = lvl.chunk_box(coords)
            fresh = downsampled_box(store.read_box, levels, factors, level, sub)
            if sub == cbox:
                data = fresh
            else:
                data = store.read_chunk(level, coords).copy()  # stored bytes are read-only
                data[local(sub, cbox)] = fresh
            write_chunk(level, coords, data)

        list(map_chunks(rebuild, sorted(above.items())))
        dirty = above
        touched[level] = sorted(above)
    return touched
