"""BigVolume core: multiscale OME-Zarr images far larger than memory.

Plain Python (numpy, zarr): no vtk, no MRML, no Qt. Usable from scripts, the
Slicer Python console, notebooks and the `bigvolume` command line.

Subpackages, by what the code does:
  store/      the OME-Zarr model: NGFF metadata, multiscale image, levels and chunk grids, geometry, validation
  streaming/  sources, readers, the fetch engine, ordering policy and cache; slice planning and composition
  writing/    the pyramid writer: downsampling, cascade, shard writer, write journal, execution
  ingest/     readers of what users have (TIFF, raw, NRRD, MetaImage, NIfTI, DICOM, OME-Zarr)
  labels/     label pyramids: segments, operations, the edit journal, the background writer, undo
  tools/      command line, conversion, background conversion, demo and sample
"""

from .errors import (BigVolumeError, CorruptChunkError, IncompleteStoreError, InputError, MetadataError, StoreError,
                     WriteCancelled)
from .store.geometry import VolumeGeometry

__version__ = "0.1.0"

# Imported on first use: they need zarr, which a Slicer module must be able to do without until the user
# agrees to install it (the module's file reader, settings and naming use zarr-free parts of the package).
_LAZY = {"Level": ".store.multiscale", "MultiscaleImage": ".store.multiscale", "open_image": ".store.multiscale",
         "write_pyramid": ".writing.pyramid"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

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
