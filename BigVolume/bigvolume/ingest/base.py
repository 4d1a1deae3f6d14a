"""What every ingest reader provides: a lazy z-slab source with its geometry and a record of what it found.

A reader opens a file or folder and returns a `VolumeSource`:

- `shape` (z, y, x), `dtype` (numpy), `geometry` (a VolumeGeometry: ITK
  spacing/origin/direction in LPS, with its unit);
- `source[z0:z1]` returns planes z0..z1-1 as a (z, y, x) numpy array, reading
  only what those planes need (so `write_pyramid` reads each voxel once and
  memory stays bounded);
- `info`: a SourceInfo saying which format it is, what metadata was found in
  the file and what had to be assumed;
- `close()` releases files.

`with_overrides` replaces any part of the geometry a user knows better than
the file, and records that it did.
"""

import io
from dataclasses import dataclass, field, replace

import numpy as np

from ..errors import InputError
from ..store.geometry import VolumeGeometry


@dataclass
class SourceInfo:
    format: str  # e.g. "tiff-stack", "nrrd"
    path: str
    found: dict = field(default_factory=dict)  # metadata read from the input, by name
    assumed: list = field(default_factory=list)  # sentences: what was not in the input and was assumed
    overridden: list = field(default_factory=list)  # sentences: what the user's options replaced

    def describe(self):
        lines = [f"{self.format}: {self.path}"]
        lines += [f"  found {name}: {value}" for name, value in self.found.items()]
        lines += [f"  assumed: {text}" for text in self.assumed]
        lines += [f"  overridden: {text}" for text in self.overridden]
        return "\n".join(lines)


class VolumeSource:
    """Base class of ingest readers (subclasses set shape, dtype, geometry, info and implement _read)."""

    shape = None
    dtype = None
    geometry = None
    info = None

    def __getitem__(self, key):
        if not isinstance(key, slice) or key.step not in (None, 1):
            raise TypeError(f"{type(self).__name__} reads contiguous z ranges only, e.g. source[10:74]")
        z0, z1, _ = key.indices(self.shape[0])
        z1 = max(z0, z1)
        data = self._read(z0, z1)
        expected = (z1 - z0,) + tuple(self.shape[1:])
        if data.shape != expected:
            raise ValueError(f"{self.info.path}: planes {z0}:{z1} read as shape {data.shape}, expected {expected}")
        return data

    def _read(self, z0, z1):
        raise NotImplementedError

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def nbytes(self):
        return int(np.prod(self.shape)) * np.dtype(self.dtype).itemsize


def open_input(path):
    """Open an input file for reading, or raise InputError saying why it cannot be."""
    try:
        return io.open(path, "rb")
    except OSError as exc:
        raise InputError(f"{path}: cannot open ({exc.strerror})") from None


def leading_bytes(path, count):
    """The first `count` bytes of a file, or b"" if it cannot be read (for cheap format probes)."""
    try:
        with io.open(path, "rb") as f:
            return f.read(count)
    except OSError:
        return b""


def with_overrides(source, spacing=None, origin=None, direction=None, unit=None):
    """Replace parts of `source.geometry` (x, y, z order) and record each replacement in `source.info`."""
    changes = {}
    for name, value in (("spacing", spacing), ("origin", origin), ("direction", direction), ("unit", unit)):
        if value is not None:
            changes[name] = value
            source.info.overridden.append(f"{name} {getattr(source.geometry, name)} -> {value}")
    if changes:
        source.geometry = replace(source.geometry, **changes)
    return source


__all__ = ["SourceInfo", "VolumeGeometry", "VolumeSource", "leading_bytes", "open_input", "with_overrides"]
