"""Before-images for undo: the stored bytes of the level-0 chunks an operation touches, kept on disk.

One file per operation, complete (renamed into place) before the operation
changes any chunk: the chunks' encoded bytes, then a JSON list of each
chunk's coordinates and where its bytes are (or that it was absent), then
that list's length; the bytes are as the chunk files held
them (already compressed: nothing is decoded or held in RAM). Restoring
writes them back. The store keeps at most `max_steps` files and `max_bytes`
bytes; the oldest go first.
"""

import json
import os
import struct

from ..writing.atomic import remove_stale_temporaries, temporary_name


_LENGTH = struct.Struct("<Q")


class _TooLarge(Exception):
    pass


class BeforeImages:
    def __init__(self, folder, max_steps=100, max_bytes=2 * 1024**3, durable=True):
        self.folder = os.fspath(folder)
        self.max_steps, self.max_bytes, self.durable = int(max_steps), int(max_bytes), durable
        os.makedirs(self.folder, exist_ok=True)
        remove_stale_temporaries(self.folder)  # a save a killed process did not finish

    def path(self, seq):
        return os.path.join(self.folder, f"{int(seq)}.before")

    def has(self, seq):
        return os.path.exists(self.path(seq))

    def save(self, seq, chunks):
        """`chunks`: an iterable of (coords, encoded bytes or None), streamed to a file (never held together).
        Returns the bytes kept, or None when they exceed `max_bytes` (nothing is kept: the operation cannot be
        undone)."""
        temporary = temporary_name(self.path(seq))
        header, offset = [], 0
        try:
            with open(temporary, "wb") as handle:
                for coords, encoded in chunks:
                    if encoded is None:
                        header.append([list(coords), -1, 0])
                        continue
                    header.append([list(coords), offset, len(encoded)])
                    handle.write(encoded)
                    offset += len(encoded)
                    if offset > self.max_bytes:
                        raise _TooLarge
                footer = json.dumps(header, separators=(",", ":")).encode()
                handle.write(footer)
                handle.write(_LENGTH.pack(len(footer)))
                if self.durable:
                    handle.flush()
                    os.fdatasync(handle.fileno())
            os.replace(temporary, self.path(seq))
        except _TooLarge:
            os.remove(temporary)
            return None
        except BaseException:
            if os.path.exists(temporary):
                os.remove(temporary)
            raise
        return offset

    def load(self, seq):
        """[(coords, encoded bytes or None)] as saved."""
        with open(self.path(seq), "rb") as handle:
            data = handle.read()
        (length,) = _LENGTH.unpack(data[-_LENGTH.size:])
        header = json.loads(data[-_LENGTH.size - length:-_LENGTH.size])
        return [(tuple(c), None if offset < 0 else data[offset:offset + size]) for c, offset, size in header]

    def discard(self, seq):
        try:
            os.remove(self.path(seq))
        except FileNotFoundError:
            pass

    def nbytes(self, seq):
        try:
            return os.path.getsize(self.path(seq))
        except FileNotFoundError:
            return 0
