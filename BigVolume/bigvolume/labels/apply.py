"""What an operation does to a box of labels, and how the coarser levels follow level 0.

`apply_to_box` edits labels of any level: the preview at the displayed level,
the pending-edit overlay of a read, and the background writer at level 0 use
it alike. `rebuild_coarser` recomputes the touched chunks of every level
above 0 by the project's mode downsampling (`writing.downsample.mode_halve`,
the same as `write_pyramid(labels=True)`), each from the level below.
"""

import numpy as np

from ..writing.downsample import mode_halve
from .operations import intersect


def edit(op, old, region, intensities=None, domain=None):
    """New labels of a block from its old labels and the operation's region there (Slicer's masking applied);
    for mode "set", `domain` is where the segment is replaced (op.domain)."""
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
        out[local(inter, box)] = edit(op, old, region, intensities, domain)
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


def chunks_above(levels, factors, level, coords_list):
    """Chunks of level+1 whose mode downsampling reads any of `coords_list` of `level`."""
    below, above = levels[level], levels[level + 1]
    f = factors[level + 1]
    found = set()
    for coords in coords_list:
        box = below.chunk_box(coords)
        found.update(above.chunks_in_box(tuple((a // k, -(-b // k)) for (a, b), k in zip(box, f))))
    return sorted(found)


def downsampled_chunk(read_box, levels, factors, level, coords):
    """Chunk `coords` of `level` (>= 1) computed by mode downsampling of the level below."""
    box = levels[level].chunk_box(coords)
    f = factors[level]
    below = levels[level - 1].volume_shape
    source = tuple((a * k, min(b * k, n)) for (a, b), k, n in zip(box, f, below))
    result = mode_halve(read_box(level - 1, source), f)
    return result[tuple(slice(0, b - a) for a, b in box)]


def rebuild_coarser(store, touched0, write_chunk, on_level=None):
    """Recompute every coarser level's chunks over the level-0 chunks `touched0`; returns {level: [coords]}."""
    factors = level_factors(store.levels)
    touched = {0: sorted(set(map(tuple, touched0)))}
    for level in range(1, len(store.levels)):
        coords_list = chunks_above(store.levels, factors, level - 1, touched[level - 1])
        for coords in coords_list:
            write_chunk(level, coords, downsampled_chunk(store.read_box, store.levels, factors, level, coords))
        touched[level] = coords_list
        if on_level is not None:
            on_level(level, coords_list)
    return touched
