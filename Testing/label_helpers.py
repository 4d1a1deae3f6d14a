"""What the label pyramid tests share: a small oblique image, label blobs, and whole levels written and read."""

import math

import numpy as np

import bigvolume
from bigvolume.labels.apply import rebuild_coarser

SHAPE = (22, 37, 41)
ANGLE = math.radians(30)
DIRECTION = ((math.cos(ANGLE), -math.sin(ANGLE), 0.0), (math.sin(ANGLE), math.cos(ANGLE), 0.0), (0.0, 0.0, 1.0))
GEOMETRY = bigvolume.VolumeGeometry(spacing=(0.4, 0.5, 0.7), origin=(3.0, -2.0, 1.0), direction=DIRECTION)


def make_image(path, shape=SHAPE, seed=0, geometry=GEOMETRY):
    """A random uint16 image pyramid (levels down to 8 voxels, 16^3 chunks); returns (image, level-0 array)."""
    volume = (np.random.default_rng(seed).random(shape) * 1000).astype(np.uint16)
    bigvolume.write_pyramid(volume, path, geometry, coarsest=8, chunks=(16, 16, 16))
    return bigvolume.open_image(path), volume


def stored_levels(store):
    """Every level of a label store, whole."""
    return [store.read_box(lvl.index, tuple((0, n) for n in lvl.volume_shape)) for lvl in store.levels]


def blobs(shape, seed=1, values=(1, 2, 3)):
    """Deterministic label blobs: balls of several values, some overlapping chunk borders."""
    rng = np.random.default_rng(seed)
    z, y, x = np.indices(shape)
    out = np.zeros(shape, dtype=np.uint8)
    for n in range(9):
        c = rng.random(3) * shape
        r = rng.uniform(2, 6)
        out[(z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2 <= r * r] = values[n % len(values)]
    return out


def fill(store, level0):
    """Write a whole level-0 array chunk by chunk and rebuild the coarser levels."""
    lvl = store.levels[0]
    written = []
    for coords in lvl.all_chunks():
        data = level0[tuple(slice(a, b) for a, b in lvl.chunk_box(coords))]
        if data.any():
            store.write_chunk(0, coords, data)
            written.append(coords)
    rebuild_coarser(store, written, store.write_chunk)
