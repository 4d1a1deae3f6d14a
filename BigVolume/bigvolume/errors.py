"""Exceptions raised by BigVolume.

Every message names what is wrong and where (the store, the level, the chunk),
so that a user reading it in the Slicer console or a shell knows what to fix.
"""


class BigVolumeError(Exception):
    """Base class of all BigVolume errors."""


class StoreError(BigVolumeError):
    """The store is missing, unreadable, or not a multiscale OME-Zarr image."""


class MetadataError(StoreError):
    """The OME-NGFF metadata is missing, malformed, or contradicts the arrays."""


class IncompleteStoreError(StoreError):
    """The store was being written and that write did not finish."""


class CorruptChunkError(StoreError):
    """A chunk exists but cannot be decoded."""

    def __init__(self, message, *, level=None, chunk_key=None):
        super().__init__(message)
        self.level = level
        self.chunk_key = chunk_key


class InputError(BigVolumeError):
    """A file or folder to convert is missing, truncated, inconsistent, or in a form its reader does not support."""


class WriteCancelled(BigVolumeError):
    """The write was cancelled (from code, the GUI or the command line) before it finished."""
