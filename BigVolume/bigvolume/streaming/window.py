"""Window/level from the data's histogram, computed once from coarse-level voxels.

Computed once per image and kept, so the display does not change when views
switch levels.
"""

import numpy as np

_MAX_SAMPLES = 1 << 18  # percentiles of a quarter million voxels are stable to a grey level and take milliseconds


def _percentiles(values, percentiles):
    """numpy.percentile's default (linear) estimate from one sort; np.percentile's first call costs
    an import of numpy.ma (about 15 ms) on the path from opening a store to its first frame."""
    last = len(values) - 1
    neighbours = []  # (rank below, rank above, fraction of the way) of each percentile
    for p in percentiles:
        position = p / 100.0 * last
        below = int(np.floor(position))
        neighbours.append((below, min(below + 1, last), position - below))
    ranks = sorted({r for below, above, _ in neighbours for r in (below, above)})
    ordered = np.partition(values, ranks)  # only the ranks needed are put in place
    return [float(ordered[below]) * (1.0 - fraction) + float(ordered[above]) * fraction
            for below, above, fraction in neighbours]


def window_from_samples(voxels, low_percentile=0.5, high_percentile=99.5):
    """(window, level) spanning the given percentiles of `voxels` (a subsample of them if there are many)."""
    voxels = np.asarray(voxels).reshape(-1)
    if voxels.size > _MAX_SAMPLES:
        voxels = voxels[:: -(-voxels.size // _MAX_SAMPLES)]
    low, high = _percentiles(voxels, (low_percentile, high_percentile))
    if high <= low:
        high = low + 1.0
    return float(high - low), float((high + low) / 2.0)


def window_from_chunks(chunks, low_percentile=0.5, high_percentile=99.5):
    """(window, level) from a list of chunk arrays, sampling each on a regular sub-grid (no concatenated copy)."""
    total = sum(chunk.size for chunk in chunks)
    step = max(1, round((total / _MAX_SAMPLES) ** (1.0 / 3.0)))
    samples = np.concatenate([chunk[::step, ::step, ::step].reshape(-1) for chunk in chunks])
    return window_from_samples(samples, low_percentile, high_percentile)


def window_of_dtype(dtype):
    """(window, level) spanning a data type's whole range (integers), or 0..1: when no voxel could be read."""
    dtype = np.dtype(dtype)
    low, high = (np.iinfo(dtype).min, np.iinfo(dtype).max) if dtype.kind in "iu" else (0.0, 1.0)
    return float(high) - float(low), (float(high) + float(low)) / 2.0


def display_window(image, low_percentile=0.5, high_percentile=99.5):
    """(window, level) of the whole coarsest level."""
    coarsest = image.levels[-1]
    return window_from_samples(image.read(coarsest.index, [(0, n) for n in coarsest.volume_shape]),
                               low_percentile, high_percentile)
