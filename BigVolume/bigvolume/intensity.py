"""Window/level from the data's histogram, computed once from the coarsest level.

Computed once per image and kept, so the display does not change when views
switch levels.
"""

import numpy as np


def display_window(image, low_percentile=0.5, high_percentile=99.5):
    """(window, level) spanning the given percentiles of the coarsest level's voxels."""
    coarsest = image.levels[-1]
    voxels = image.read(coarsest.index, [(0, n) for n in coarsest.volume_shape])
    low, high = np.percentile(voxels, [low_percentile, high_percentile])
    if high <= low:
        high = low + 1.0
    return float(high - low), float((high + low) / 2.0)
