"""Raw voxel files: no header, so shape, data type and byte order are given by the user.

`open(path, size=(x, y, z), dtype="uint16", byte_order="little", header_bytes=0)`
reads planes through a memory map of just the planes asked for. The file must
hold exactly header_bytes + x*y*z*itemsize bytes: a shorter file is
truncated, a longer one means the shape, type or header is wrong, and both
are refused with the numbers that do not add up. Geometry comes only from the
options (spacing, origin, direction, unit) and is otherwise assumed.
"""

import os

import numpy as np

from ..errors import InputError
from ..store.geometry import VolumeGeometry
from .base import SourceInfo, VolumeSource

EXTENSIONS = (".raw", ".bin", ".dat", ".vol")
BYTE_ORDERS = {"little": "<", "big": ">", "<": "<", ">": ">", "native": "="}


def probe(path):
    """True for files named like raw volumes (.raw, .bin, .dat, .vol); raw data has no signature to test."""
    path = os.fspath(path)
    return os.path.isfile(path) and path.lower().endswith(EXTENSIONS)


def open(path, size=None, dtype=None, byte_order="little", header_bytes=0):
    return RawVolume(path, size=size, dtype=dtype, byte_order=byte_order, header_bytes=header_bytes)


class RawVolume(VolumeSource):
    def __init__(self, path, size=None, dtype=None, byte_order="little", header_bytes=0):
        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise InputError(f"{self.path}: no such file")
        if size is None or dtype is None:
            raise InputError(f"{self.path}: a raw file has no header: give its size (x y z) and data type "
                             f"(--raw-size X Y Z --raw-dtype uint16)")
        size = tuple(int(n) for n in size)
        if len(size) != 3 or min(size) < 1:
            raise InputError(f"{self.path}: raw size must be three positive numbers x y z, got {size}")
        if byte_order not in BYTE_ORDERS:
            raise InputError(f"{self.path}: byte order must be 'little' or 'big', not {byte_order!r}")
        try:
            base = np.dtype(dtype)
        except TypeError:
            raise InputError(f"{self.path}: unknown data type {dtype!r} (e.g. uint8, uint16, int16, float32)") from None
        if base.kind not in "uif" or base.itemsize > 8:
            raise InputError(f"{self.path}: data type {base} is not an integer or floating-point scalar")
        self.file_dtype = base.newbyteorder(BYTE_ORDERS[byte_order])
        self.dtype = base.newbyteorder("=")
        self.shape = (size[2], size[1], size[0])
        self.header_bytes = int(header_bytes)
        expected = self.header_bytes + int(np.prod(self.shape)) * base.itemsize
        actual = os.path.getsize(self.path)
        if actual != expected:
            what = "truncated" if actual < expected else "larger than expected"
            raise InputError(f"{self.path}: {what}: {size[0]} x {size[1]} x {size[2]} {base} voxels"
                             f" after {self.header_bytes} header bytes need {expected} bytes, the file has {actual}")
        self.info = SourceInfo(format="raw", path=self.path,
                               found={"size (from options)": f"{size[0]} x {size[1]} x {size[2]}",
                                      "data type (from options)": f"{base} {byte_order}-endian"})
        self.info.assumed.append("voxel size 1 millimeter, origin 0, identity direction (raw files carry no geometry)")
        self.geometry = VolumeGeometry()

    def _read(self, z0, z1):
        if z1 <= z0:
            return np.empty((0,) + self.shape[1:], self.dtype)
        plane = self.shape[1] * self.shape[2] * self.file_dtype.itemsize
        mapped = np.memmap(self.path, dtype=self.file_dtype, mode="r", offset=self.header_bytes + z0 * plane,
                           shape=(z1 - z0,) + self.shape[1:])
        out = np.array(mapped, dtype=self.dtype)
        del mapped
        return out


__all__ = ["RawVolume", "open", "probe"]
