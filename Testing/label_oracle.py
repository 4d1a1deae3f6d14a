"""An independent brute-force model of label editing, for the label pyramid tests.

Every voxel centre of level 0 is placed in RAS with the full 4x4 matrix and
each operation's shape is tested on it directly (no boxes, no chunks), then
Slicer's masking rules are applied voxel by voxel. Coarser levels are the
mode downsampling of the level below, as the pyramid writer makes them.
"""

import numpy as np

from bigvolume.labels.operations import Brush, Clear, Fill, Mask, Polygon, Replace, Threshold
from bigvolume.writing.downsample import mode_halve


def centres(shape, ijk_to_ras):
    k, j, i = np.indices(shape).reshape(3, -1)
    homogeneous = np.stack([i, j, k, np.ones_like(i)]).astype(float)
    return (ijk_to_ras @ homogeneous)[:3].T.reshape(*shape, 3)


def _segment_distance(p, a, b):
    ab = b - a
    denominator = ab @ ab
    t = np.zeros(p.shape[:-1]) if denominator == 0 else np.clip((p - a) @ ab / denominator, 0, 1)
    return np.linalg.norm(p - (a + t[..., None] * ab), axis=-1)


def region(op, shape, ijk_to_ras, image, labels):
    p = centres(shape, ijk_to_ras)
    if isinstance(op, Brush):
        pts = np.asarray(op.points)
        if op.normal is None:
            d = np.min([_segment_distance(p, a, b) for a, b in zip(pts, pts[1:] if len(pts) > 1 else pts)], axis=0)
            return d <= op.radius_mm
        n = np.asarray(op.normal) / np.linalg.norm(op.normal)
        off = (p - pts[0]) @ n
        flat = p - off[..., None] * n
        fpts = pts - ((pts - pts[0]) @ n)[:, None] * n
        d = np.min([_segment_distance(flat, a, b) for a, b in zip(fpts, fpts[1:] if len(fpts) > 1 else fpts)], axis=0)
        return (d <= op.radius_mm) & (np.abs(off) <= op.thickness_mm / 2)
    if isinstance(op, Polygon):
        n = np.asarray(op.normal)
        v = np.asarray(op.vertices)
        helper = np.array([1.0, 0, 0]) if abs(n[0]) < 0.9 else np.array([0, 1.0, 0])
        u = np.cross(n, helper)
        u /= np.linalg.norm(u)
        w = np.cross(n, u)
        rel = p - v[0]
        x, y = rel @ u, rel @ w
        poly = np.stack([(v - v[0]) @ u, (v - v[0]) @ w], axis=1)
        inside = np.zeros(shape, dtype=bool)
        for k in range(len(poly)):  # crossing number, written out edge by edge
            (x1, y1), (x2, y2) = poly[k], poly[(k + 1) % len(poly)]
            if y1 == y2:
                continue
            straddles = (y1 > y) != (y2 > y)
            inside ^= straddles & (x < x1 + (y - y1) / (y2 - y1) * (x2 - x1))
        return inside & (np.abs(rel @ n) <= op.thickness_mm / 2)
    if isinstance(op, Threshold):
        inside = (image >= op.low) & (image <= op.high)
        if op.box_ras is not None:
            lo, hi = np.minimum(*op.box_ras), np.maximum(*op.box_ras)
            inside &= np.all((p >= lo) & (p <= hi), axis=-1)
        return inside
    if isinstance(op, Mask):
        inverse = np.linalg.inv(np.asarray(op.ijk_to_ras))
        ijk = p @ inverse[:3, :3].T + inverse[:3, 3]
        index = np.floor(ijk[..., ::-1] + 0.5).astype(int) - [a for a, _ in op.box]
        size = [b - a for a, b in op.box]
        ok = np.all((index >= 0) & (index < size), axis=-1)
        out = np.zeros(shape, dtype=bool)
        out[ok] = op.array()[tuple(index[ok].T)]
        return out
    if isinstance(op, Fill):
        raise NotImplementedError("Fill is checked against scipy-free flood filling in its own test")
    raise TypeError(op)


def _patch_values(op, shape, ijk_to_ras):
    """For a Replace: each voxel's patch value, and whether its centre falls in the patch's box."""
    p = centres(shape, ijk_to_ras)
    inverse = np.linalg.inv(np.asarray(op.ijk_to_ras))
    index = np.floor((p @ inverse[:3, :3].T + inverse[:3, 3])[..., ::-1] + 0.5).astype(int) - [a for a, _ in op.box]
    inside = np.all((index >= 0) & (index < [b - a for a, b in op.box]), axis=-1)
    values = np.zeros(shape, dtype=op.dtype)
    values[inside] = op.array()[tuple(index[inside].T)]
    return values, inside


def apply(op, labels, image, ijk_to_ras):
    """Level-0 labels after `op`, voxel by voxel."""
    if isinstance(op, Replace):  # every voxel in the patch takes its value; no masking
        values, inside = _patch_values(op, labels.shape, ijk_to_ras)
        return np.where(inside, values, labels).astype(labels.dtype)
    if isinstance(op, Clear):
        return np.where(labels == op.value, 0, labels).astype(labels.dtype)
    r = region(op, labels.shape, ijk_to_ras, image, labels)
    if isinstance(op, Threshold) and op.box_ras is not None:
        p = centres(labels.shape, ijk_to_ras)
        lo, hi = np.minimum(*op.box_ras), np.maximum(*op.box_ras)
        in_box = np.all((p >= lo) & (p <= hi), axis=-1)
    elif isinstance(op, Mask):
        p = centres(labels.shape, ijk_to_ras)
        inverse = np.linalg.inv(np.asarray(op.ijk_to_ras))
        index = np.floor((p @ inverse[:3, :3].T + inverse[:3, 3])[..., ::-1] + 0.5).astype(int)
        in_box = np.all((index >= [a for a, _ in op.box]) & (index < [b for _, b in op.box]), axis=-1)
    else:
        in_box = np.ones(labels.shape, dtype=bool)
    m = op.masking
    area = {"everywhere": np.ones(labels.shape, dtype=bool), "inside_all": labels != 0, "outside_all": labels == 0,
            "inside_segments": np.isin(labels, m.area_values),
            "outside_segments": ~np.isin(labels, m.area_values)}[m.area]
    if m.intensity_range is not None:
        area = area & (image >= m.intensity_range[0]) & (image <= m.intensity_range[1])
    may_replace = {"all": np.ones(labels.shape, dtype=bool),
                   "none": (labels == 0) | (labels == op.value),
                   "listed": (labels == 0) | (labels == op.value) | np.isin(labels, m.overwrite_values)}[m.overwrite]
    out = labels.copy()
    if op.mode == "erase":
        out[r & area & (labels == op.value)] = 0
        return out
    out[r & area & may_replace] = op.value
    if op.mode == "set":
        out[~r & in_box & area & (labels == op.value)] = 0
    return out


def pyramid_of(level0, factors):
    """Level 0 and the mode downsampling of each level from the one below."""
    levels = [level0]
    for f in factors[1:]:
        below = levels[-1]
        levels.append(mode_halve(below, f))
    return levels
