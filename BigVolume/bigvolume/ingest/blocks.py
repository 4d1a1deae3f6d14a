"""What the single-block readers (NRRD, MetaImage, NIfTI) share.

`BlockSource`: a volume stored as one run of planes in one file, read in
place when raw and streamed forward when compressed (zlib, gzip, bzip2), so
a slab costs only its own bytes and memory stays bounded. And
`orthonormal_direction`, for direction matrices printed with few decimals.
"""

import bz2
import io
import os
import threading
import zlib

import numpy as np

from ..errors import InputError
from .base import VolumeSource

_SKIP_PIECE = 8 << 20  # decompressed bytes discarded per step when a stream skips forward (bounds memory)
_INPUT_PIECE = 256 << 10  # compressed bytes read per step


def orthonormal_direction(columns, where):
    """The nearest rotation/flip to a direction matrix read from a file, and a note if it had to be adjusted.

    Headers print directions with a few decimals, so columns are orthogonal only
    to that precision; a grid that is really sheared is refused.
    """
    matrix = np.asarray(columns, dtype=float)
    error = np.abs(matrix.T @ matrix - np.eye(3)).max()
    if not np.all(np.isfinite(matrix)) or error > 1e-3:
        raise InputError(f"{where}: the axis directions {matrix.T.round(6).tolist()} are not orthogonal "
                         "(a sheared grid); only rotations and flips are supported")
    u, _, vt = np.linalg.svd(matrix)
    note = f"axis directions orthogonal only to {error:.1e}; the nearest rotation was used" if error > 1e-6 else None
    return u @ vt, note


def _inflate_error(label, exc):
    return InputError(f"{label}: the compressed voxel data is corrupt ({exc})")


class _ZlibStream(io.RawIOBase):
    """A zlib stream, or gzip members one after another, decompressed forward in bounded pieces."""

    def __init__(self, file):
        self._file = file
        self._decompressor = zlib.decompressobj(32 + zlib.MAX_WBITS)  # zlib or gzip header, detected
        self._pending = b""

    def readable(self):
        return True

    def readinto(self, buffer):
        view = memoryview(buffer).cast("B")
        while len(view):
            if self._decompressor.eof:  # a gzip member ended: another may follow
                self._pending = self._decompressor.unused_data or self._file.read(_INPUT_PIECE)
                if not self._pending:
                    return 0
                self._decompressor = zlib.decompressobj(32 + zlib.MAX_WBITS)
            if not self._pending:
                self._pending = self._file.read(_INPUT_PIECE)
                if not self._pending:
                    return 0  # input ended before the stream's end marker: truncated
            out = self._decompressor.decompress(self._pending, len(view))
            self._pending = self._decompressor.unconsumed_tail
            if out:
                view[:len(out)] = out
                return len(out)
        return 0


def _gzip_length(path):
    """Decompressed size of a gzip file modulo 2**32, from its last member's trailer."""
    with io.open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size < 4:
            return 0  # not even a trailer: the read will report the data missing
        f.seek(-4, os.SEEK_END)
        return int.from_bytes(f.read(4), "little")


class BlockSource(VolumeSource):
    """A (z, y, x) volume stored as one run of planes (x fastest) in one file.

    encoding "raw": read in place, `offset` bytes from the start of the file
    (-1: the block ends the file); truncation is found at open.
    encoding "gzip", "zlib" or "bzip2": the compressed stream starts at
    `offset`, the planes start `skip` decompressed bytes into it (-1: they end
    the stream, gzip only). The stream is read forward: a slab after the last
    one read costs only its own planes; going back restarts the stream.
    `label` names the file in messages ("scan.nhdr: data file scan.raw").
    """

    def __init__(self, path, shape, file_dtype, geometry, info, *, encoding="raw", offset=0, skip=0, label=None):
        self.path = os.fspath(path)
        self.shape = tuple(int(n) for n in shape)
        self.file_dtype = np.dtype(file_dtype)
        self.dtype = self.file_dtype.newbyteorder("=")
        self.geometry = geometry
        self.info = info
        self.encoding = encoding
        self.label = label or self.path
        self.plane_bytes = int(np.prod(self.shape[1:])) * self.file_dtype.itemsize
        self.block_bytes = self.plane_bytes * self.shape[0]
        self._lock = threading.Lock()
        self._stream = None
        self._placed_by_length = skip == -1
        if encoding not in ("raw", "gzip", "zlib", "bzip2"):
            raise ValueError(f"unknown encoding {encoding!r}")
        try:
            self._file = io.open(self.path, "rb")
        except OSError as exc:
            raise InputError(f"{self.label}: cannot open the voxel data ({exc.strerror})") from None
        size = os.fstat(self._file.fileno()).st_size
        if encoding == "raw":
            self.offset = size - self.block_bytes if offset == -1 else offset
            present = max(0, size - max(self.offset, 0))
            if self.offset < 0 or present < self.block_bytes:
                self._file.close()
                where = "at the end of the file" if offset == -1 else f"from byte {self.offset}"
                raise InputError(f"{self.label}: truncated: the header needs {self.block_bytes} bytes of voxel data "
                                 f"{where}, the file has {present} ({self.block_bytes - present} missing)")
            return
        self.offset = offset
        if skip == -1:
            if encoding != "gzip":
                self._file.close()
                raise InputError(f"{self.label}: a byte skip of -1 (data at the end) is supported for raw and gzip "
                                 f"data only, not {encoding}")
            total = _gzip_length(self.path)
            while total < self.block_bytes:
                total += 1 << 32
            skip = total - self.block_bytes
        self.skip = skip
        self._position = None  # decompressed bytes consumed from the stream

    def __getstate__(self):
        # Sent to worker processes without its open file, lock or stream; each process opens its own.
        state = self.__dict__.copy()
        state.update(_file=None, _lock=None, _stream=None)
        if "_position" in state:
            state["_position"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()
        try:
            self._file = io.open(self.path, "rb")
        except OSError as exc:
            raise InputError(f"{self.label}: cannot open the voxel data ({exc.strerror})") from None

    def _open_stream(self):
        self._file.seek(self.offset)
        self._stream = bz2.BZ2File(self._file) if self.encoding == "bzip2" else _ZlibStream(self._file)
        self._position = 0

    def _fill(self, view):
        """Fill `view` from the stream; return how many bytes it had."""
        filled = 0
        try:
            while filled < len(view):
                n = self._stream.readinto(view[filled:])
                if not n:
                    break
                filled += n
        except EOFError:  # bz2 reports a truncated stream this way
            pass
        except (zlib.error, OSError, ValueError) as exc:
            raise _inflate_error(self.label, exc) from None
        self._position += filled
        return filled

    def _truncated(self, available):
        return InputError(f"{self.label}: truncated: the compressed voxel data ends after {available} of the "
                          f"{self.block_bytes} bytes the header needs ({self.block_bytes - available} missing)")

    def _read_stream(self, start, view):
        target = self.skip + start
        if self._stream is None or self._position > target:
            self._open_stream()
        scratch = None
        while self._position < target:
            if scratch is None:
                scratch = memoryview(bytearray(min(_SKIP_PIECE, target - self._position)))
            if not self._fill(scratch[:min(len(scratch), target - self._position)]):
                raise self._truncated(max(0, self._position - self.skip))
        if self._fill(view) < len(view):
            raise self._truncated(self._position - self.skip)
        if start + len(view) == self.block_bytes and self._placed_by_length and self._more_data():
            # the data was placed by the stream's length (byte skip -1): what follows it means the length was wrong
            raise InputError(f"{self.label}: the decompressed data is longer than its trailer says; "
                             "cannot tell where the voxel data starts")

    def _more_data(self):
        try:
            return self._fill(memoryview(bytearray(1))) > 0
        except InputError:  # padding after the last member, not another member
            return False

    def _read(self, z0, z1):
        out = np.empty((z1 - z0,) + self.shape[1:], self.file_dtype)
        view = memoryview(out.reshape(-1).view(np.uint8))
        with self._lock:
            if self._file.closed:
                raise InputError(f"{self.label}: the source was closed")
            if self.encoding == "raw":
                self._file.seek(self.offset + z0 * self.plane_bytes)
                filled = 0
                while filled < len(view):
                    n = self._file.readinto(view[filled:])
                    if not n:
                        raise InputError(f"{self.label}: the file became shorter while being read")
                    filled += n
            elif len(view):
                self._read_stream(z0 * self.plane_bytes, view)
        if not self.file_dtype.isnative:
            out = out.byteswap(inplace=True).view(self.dtype)
        return out

    def close(self):
        with self._lock:
            self._stream = None
            self._file.close()
