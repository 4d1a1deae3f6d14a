"""The built-in sample: a synthetic rock-core CT written as an OME-Zarr pyramid on first use (no download).

Written once into a cache folder and reused; an interrupted write is resumed
the next time, so a sample never opens half-written.
"""

import os

from ..errors import IncompleteStoreError, StoreError
from ..store.multiscale import open_image
from ..writing.pyramid import write_pyramid
from .synthetic import SyntheticRockCore

SAMPLE_NAME = "synthetic rock core"
SAMPLE_SHAPE = (640, 512, 512)  # z, y, x: 335 MB of uint16, 20 um voxels, five levels
SAMPLE_FOLDER = "BigVolumeSampleRockCore.ome.zarr"


def sample_store(folder, shape=SAMPLE_SHAPE, seed=0, progress=None, workers=1, cancel=None):
    """Path of the sample store in `folder`, written first if it is not there or not complete.

    workers=1 writes in this process: inside Slicer, worker processes cannot be
    spawned from the application (its sys.executable is a launcher).
    """
    path = os.path.join(os.fspath(folder), SAMPLE_FOLDER if tuple(shape) == SAMPLE_SHAPE else
                        f"BigVolumeSampleRockCore-{'x'.join(map(str, shape[::-1]))}.ome.zarr")
    try:
        open_image(path)
        return path
    except IncompleteStoreError:
        pass  # resumed below
    except StoreError:
        if os.path.exists(path):
            raise StoreError(f"{path}: exists but is not the BigVolume sample; remove it to regenerate the sample")
    os.makedirs(os.fspath(folder), exist_ok=True)
    write_pyramid(SyntheticRockCore(shape, seed=seed), path, name=SAMPLE_NAME, resume=True, workers=workers,
                  progress=progress, cancel=cancel, attributes={"sample": True})
    return path
