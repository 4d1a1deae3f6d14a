"""Shared test set-up: module folders on sys.path, as Slicer puts them."""

import os
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for module_dir in ("BigVolume", "BigVolumeSegment"):
    path = os.path.join(ROOT, module_dir)
    if path not in sys.path:
        sys.path.insert(0, path)


def ramp_volume(shape, coefficients=(3.0, 2.0, 1.0), offset=100.0, dtype=np.float32):
    """A linear ramp offset + cz*z + cy*y + cx*x: the filter preserves it, so coarse voxels reveal their centres."""
    z, y, x = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij")
    cz, cy, cx = coefficients
    return (offset + cz * z + cy * y + cx * x).astype(dtype)


@pytest.fixture
def ramp():
    return ramp_volume


@pytest.fixture
def small_chunks(monkeypatch):
    """Label pyramids of 8^3 chunks: many chunks (and chunk borders) in a small test volume."""
    from bigvolume.labels import label_store

    monkeypatch.setattr(label_store, "LABEL_CHUNKS", (8, 8, 8))
