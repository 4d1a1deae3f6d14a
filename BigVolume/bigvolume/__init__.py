"""BigVolume core: multiscale OME-Zarr images far larger than memory.

Plain Python (numpy, zarr): no vtk, no MRML, no Qt. Usable from scripts, the
Slicer Python console, notebooks and the `bigvolume` command line.
"""

from .errors import (BigVolumeError, CorruptChunkError, IncompleteStoreError, InputError, MetadataError, StoreError,
                     WriteCancelled)
from .geometry import VolumeGeometry
from .multiscale import Level, MultiscaleImage, open_image
from .pyramid import write_pyramid

__version__ = "0.1.0"

__all__ = [
    "BigVolumeError",
    "CorruptChunkError",
    "IncompleteStoreError",
    "InputError",
    "Level",
    "MetadataError",
    "MultiscaleImage",
    "StoreError",
    "VolumeGeometry",
    "open_image",
    "WriteCancelled",
    "write_pyramid",
]
