"""Per-segment statistics of a label pyramid, chunk by chunk: never the whole volume in memory.

Only the chunks stored at the level are visited (the rest are background).
Per chunk and label value: voxel count, index bounding box, and the image's
intensities there reduced to count, min, max, mean and M2 (sum of squared
deviations), merged across chunks with Chan et al.'s pairwise update, which
stays accurate where sum and sum of squares would cancel.

A LabelEditor is first waited for (`wait()`), so every acknowledged edit is
on disk and the statistics include it; then its store is read like any other.
"""

from dataclasses import asdict, dataclass

import numpy as np


@dataclass
class SegmentStatistics:
    value: int
    name: str
    voxel_count: int
    volume_mm3: float
    bbox_ijk: tuple = None  # ((i0, j0, k0), (i1, j1, k1)) inclusive, at the level; None when empty
    ras_min: tuple = None  # RAS corners of the index bounding box's voxel centres (None when empty)
    ras_max: tuple = None
    intensity_min: float = None  # of the image inside the segment (None when empty or without the image)
    intensity_max: float = None
    intensity_mean: float = None
    intensity_std: float = None  # population standard deviation (divided by the count)
    listed: bool = True  # False: a label value present in the labels that names no segment

    def as_dict(self):
        return asdict(self)


class _Accumulator:
    """One label value's running totals."""

    def __init__(self):
        self.count, self.low, self.high = 0, None, None
        self.n, self.mean, self.m2 = 0, 0.0, 0.0
        self.vmin, self.vmax = np.inf, -np.inf

    def add(self, mask, origin_zyx, intensities):
        count = int(np.count_nonzero(mask))
        self.count += count
        ks, js, is_ = (np.flatnonzero(mask.any(axis=axes)) for axes in ((1, 2), (0, 2), (0, 1)))
        low = np.array([is_[0], js[0], ks[0]]) + origin_zyx[::-1]
        high = np.array([is_[-1], js[-1], ks[-1]]) + origin_zyx[::-1]
        self.low = low if self.low is None else np.minimum(self.low, low)
        self.high = high if self.high is None else np.maximum(self.high, high)
        if intensities is not None:
            values = intensities[mask].astype(np.float64)
            mean = float(values.mean())
            m2 = float(np.square(values - mean).sum())
            self.vmin, self.vmax = min(self.vmin, float(values.min())), max(self.vmax, float(values.max()))
            # Chan et al.: merge (n, mean, M2) of two parts without forming large sums.
            total = self.n + count
            delta = mean - self.mean
            self.mean += delta * count / total
            self.m2 += m2 + delta * delta * self.n * count / total
            self.n = total


def segment_statistics(store_or_editor, level=0, with_image=True):
    """Statistics of every segment at `level` (0: full resolution), as a list of SegmentStatistics sorted by
    label value: the store's segments (count 0 when empty), then any label value present that names none.

    A LabelEditor is waited for first, so pending edits are written and counted.
    with_image: also the image's intensity min, max, mean and standard deviation inside each segment
    (read at the same level and box as each label chunk).
    """
    if hasattr(store_or_editor, "wait") and hasattr(store_or_editor, "store"):
        store_or_editor.wait()
        store = store_or_editor.store
    else:
        store = store_or_editor
    if not 0 <= level < len(store.levels):
        raise ValueError(f"{store.path}: level {level} does not exist (levels 0..{len(store.levels) - 1})")
    lvl = store.levels[level]
    totals = {}
    for coords in store.stored_chunks(level):
        labels = store.read_chunk(level, coords)
        if not labels.any():
            continue
        box = lvl.chunk_box(coords)
        intensities = store.image.read(level, box) if with_image else None
        origin = np.array([a for a, _ in box])
        for value in np.unique(labels):
            if value != 0:
                totals.setdefault(int(value), _Accumulator()).add(labels == value, origin, intensities)
    voxel_mm3 = float(np.prod(lvl.voxel_size_mm))
    names = {s.value: s.name for s in store.segments}
    out = []
    for value in sorted(set(names) | set(totals)):
        acc = totals.get(value)
        stats = SegmentStatistics(value=value, name=names.get(value, f"label {value}"), voxel_count=0,
                                  volume_mm3=0.0, listed=value in names)
        if acc is not None:
            corners = np.array([[i, j, k, 1.0] for k in (acc.low[2], acc.high[2]) for j in (acc.low[1], acc.high[1])
                                for i in (acc.low[0], acc.high[0])])
            ras = (lvl.ijk_to_ras @ corners.T).T[:, :3]
            stats.voxel_count, stats.volume_mm3 = acc.count, acc.count * voxel_mm3
            stats.bbox_ijk = (tuple(int(v) for v in acc.low), tuple(int(v) for v in acc.high))
            stats.ras_min, stats.ras_max = tuple(ras.min(axis=0).tolist()), tuple(ras.max(axis=0).tolist())
            if with_image:
                stats.intensity_min, stats.intensity_max = acc.vmin, acc.vmax
                stats.intensity_mean, stats.intensity_std = acc.mean, float(np.sqrt(acc.m2 / acc.n))
        out.append(stats)
    return out


def _number(value, digits=2):
    return "-" if value is None else f"{value:.{digits}f}"


def format_table(stats):
    """A plain-text table of `segment_statistics` results, one row per segment."""
    header = ["value", "segment", "voxels", "volume mm3", "RAS min", "RAS max", "min", "max", "mean", "std"]
    rows = []
    for s in stats:
        corner = lambda c: "-" if c is None else "(" + ", ".join(f"{v:.2f}" for v in c) + ")"  # noqa: E731
        rows.append([str(s.value), s.name if s.listed else f"{s.name} (no segment)", f"{s.voxel_count:,}",
                     _number(s.volume_mm3, 3), corner(s.ras_min), corner(s.ras_max), _number(s.intensity_min),
                     _number(s.intensity_max), _number(s.intensity_mean), _number(s.intensity_std)])
    widths = [max(len(r[c]) for r in [header] + rows) for c in range(len(header))]
    left = {1}  # names left-aligned, numbers right-aligned
    lines = ["  ".join(cell.ljust(w) if c in left else cell.rjust(w) for c, (cell, w) in enumerate(zip(r, widths)))
             for r in [header] + rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


__all__ = ["SegmentStatistics", "format_table", "segment_statistics"]
