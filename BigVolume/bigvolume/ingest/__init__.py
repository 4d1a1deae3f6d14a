"""Readers that turn what users have into lazy z-slab sources for `write_pyramid`."""

from .base import SourceInfo, VolumeSource, with_overrides

__all__ = ["SourceInfo", "VolumeSource", "with_overrides"]
