"""Which voxels of a level a physical (RAS) box covers, and whether loading them fits in memory.

Used to export a region (a Slicer ROI, or a whole level) into an ordinary
volume: the size is known before anything is read, and a region that would
not fit is refused with the reason and the finest level that would.
"""

import os
from dataclasses import dataclass

import numpy as np

# A region may take at most this share of the memory available when it is loaded:
# Slicer copies a volume for display and most processing, so half is already generous.
MEMORY_SHARE = 0.5


def available_memory_bytes():
    """Memory the system can give without swapping (MemAvailable), or None where it cannot be told."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def default_limit_bytes():
    available = available_memory_bytes()
    return int(available * MEMORY_SHARE) if available else 2 * 1024**3


def ras_box_corners(ras_min, ras_max):
    """The 8 corners of an axis-aligned RAS box, as an (8, 3) array."""
    lo, hi = np.asarray(ras_min, dtype=float), np.asarray(ras_max, dtype=float)
    return np.array([[(lo, hi)[i >> k & 1][k] for k in range(3)] for i in range(8)])


def box_from_ras(level, ras_min, ras_max):
    """((z0, z1), (y0, y1), (x0, x1)) of the voxels of `level` whose centres lie in the RAS box, clipped
    to the volume; None when no voxel centre does. A box not aligned with the voxel axes gets the voxels
    of its bounding box in the level's grid."""
    ras_to_ijk = level.ras_to_ijk
    corners = ras_box_corners(ras_min, ras_max)
    ijk = (ras_to_ijk @ np.c_[corners, np.ones(len(corners))].T)[:3].T
    eps = 1e-6  # a face exactly on a voxel centre includes that voxel
    start = np.ceil(ijk.min(axis=0) - eps).astype(int)
    stop = np.floor(ijk.max(axis=0) + eps).astype(int) + 1
    shape_xyz = np.asarray(level.volume_shape[::-1])
    start, stop = np.clip(start, 0, shape_xyz), np.clip(stop, 0, shape_xyz)
    if np.any(stop <= start):
        return None
    return tuple((int(a), int(b)) for a, b in zip(start[::-1], stop[::-1]))


@dataclass(frozen=True)
class RegionPlan:
    level: int
    box: tuple  # ((z0, z1), (y0, y1), (x0, x1)) or None when the box misses the volume
    nbytes: int
    limit_bytes: int
    finest_fitting_level: int  # the finest level whose region fits, or None

    @property
    def shape(self):
        return tuple(b - a for a, b in self.box) if self.box else (0, 0, 0)

    @property
    def fits(self):
        return self.box is not None and self.nbytes <= self.limit_bytes

    @property
    def reason(self):
        """Why the region cannot be loaded, or None if it can."""
        if self.box is None:
            return "the region lies outside the volume"
        if self.fits:
            return None
        x, y, z = self.shape[::-1]
        text = (f"level {self.level} region of {x} x {y} x {z} voxels needs {self.nbytes / 1024**3:.2f} GB, "
                f"more than the {self.limit_bytes / 1024**3:.2f} GB allowed")
        if self.finest_fitting_level is not None:
            return text + f"; level {self.finest_fitting_level} or coarser fits"
        return text + "; make the region smaller"

    def describe(self):
        if self.box is None:
            return self.reason
        x, y, z = self.shape[::-1]
        return f"level {self.level}: {x} x {y} x {z} voxels, {self.nbytes / 1024**2:,.1f} MB"


def plan_region(image, level, ras_min, ras_max, limit_bytes=None):
    """The voxels of `level` inside the RAS box, their size, and whether they fit in `limit_bytes`
    (default: half the memory available now)."""
    if not 0 <= level < len(image.levels):  # a negative level would index from the coarsest end
        raise ValueError(f"level {level} does not exist: the image has levels 0..{len(image.levels) - 1}")
    limit = int(limit_bytes if limit_bytes is not None else default_limit_bytes())
    sizes = []
    for lvl in image.levels:
        box = box_from_ras(lvl, ras_min, ras_max)
        sizes.append((box, int(np.prod([b - a for a, b in box])) * lvl.dtype.itemsize if box else 0))
    fitting = [i for i, (box, nbytes) in enumerate(sizes) if box is not None and nbytes <= limit]
    box, nbytes = sizes[level]
    return RegionPlan(level=level, box=box, nbytes=nbytes, limit_bytes=limit,
                      finest_fitting_level=min(fitting) if fitting else None)

