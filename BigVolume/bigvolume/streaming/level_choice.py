"""Which pyramid level a view should show.

The rule of neuroglancer and BigDataViewer: the coarsest level whose voxels
are still no larger than the screen's pixels (so no detail the screen could
show is lost), i.e. the level whose voxel size is closest to, and not
coarser than, the pixel size. Zoomed in beyond level 0, level 0.
"""

import numpy as np


def voxel_size_along(level, axes_xyz):
    """Largest voxel size (mm) of `level` along the given x/y/z axes (0, 1, 2)."""
    return max(level.voxel_size_mm[a] for a in axes_xyz)


def choose_level(image, pixel_size_mm, axes_xyz=(0, 1, 2), tolerance=1e-6):
    """Index of the level to show for screen pixels of `pixel_size_mm` (mm)."""
    best = 0
    for level in image.levels:
        if voxel_size_along(level, axes_xyz) <= pixel_size_mm * (1 + tolerance):
            best = level.index
    return best


def pixel_size_mm(xy_to_ras):
    """Screen pixel size of a slice view (mm): the length of XYToRAS's x column."""
    return float(np.linalg.norm(np.asarray(xy_to_ras)[:3, 0]))
