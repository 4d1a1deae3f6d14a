"""The edit journal: an append-only file of what was asked and what was written, fsynced before acknowledging.

Each record is a 4-byte little-endian length, the CRC-32C of the payload and
the payload (compact JSON). Records:

- ``{"t": T, "apply": S, "operation": {...}}``: task T applies a new operation S (S == T);
- ``{"t": T, "apply": S}``: task T applies operation S again (redo);
- ``{"t": T, "restore": S}``: task T restores operation S's before-images (undo);
- ``{"cancel": T}``: task T was dropped before it started (undo of a pending edit);
- ``{"done": T}``: every level of task T is written;
- ``{"snapshot": {...}}``: the first record after compaction: the undo and redo stacks and their operations.

A record whose bytes end early, or whose checksum fails, at the very end of the
file is a write that a crash cut short: it was never acknowledged, so it is
cut off. A bad record with good ones after it is not a crash's doing: the
journal is left untouched and opening fails with where and why, so no
acknowledged edit is dropped silently.
"""

import json
import os
import struct

from ..errors import StoreError
from ..writing.atomic import write_atomically
from ..writing.shardio import crc32c

MAGIC = b"BVEJ0001"
_HEADER = struct.Struct("<I4s")  # payload length, CRC-32C of the payload


class JournalError(StoreError):
    """The edit journal is damaged in a way a crash cannot explain."""


def _frame(record):
    payload = json.dumps(record, separators=(",", ":")).encode()
    return _HEADER.pack(len(payload), crc32c(payload)) + payload


class EditJournal:
    def __init__(self, path, durable=True):
        self.path = os.fspath(path)
        self.durable = durable
        self.records = []
        self.repaired = None  # what was cut off when opening, if anything
        if os.path.exists(self.path):
            self._load()
        else:
            write_atomically(self.path, MAGIC, durable=durable)
        self._handle = open(self.path, "ab")

    def _load(self):
        with open(self.path, "rb") as handle:
            data = handle.read()
        if data[:len(MAGIC)] != MAGIC:
            raise JournalError(f"{self.path}: not a BigVolume edit journal (it does not start with {MAGIC!r}); "
                               "it was left as it is")
        offset, end = len(MAGIC), len(data)
        while offset < end:
            complete_header = end - offset >= _HEADER.size
            length, crc = _HEADER.unpack_from(data, offset) if complete_header else (end, b"")
            start = offset + _HEADER.size
            problem = None
            if not complete_header:
                problem = "its header is cut short"
            elif start + length > end:
                problem = "it is cut short"
            elif crc32c(data[start:start + length]) != crc:
                problem = "its checksum does not match"
            else:
                try:
                    self.records.append(json.loads(data[start:start + length]))
                except ValueError as error:
                    problem = f"it is not JSON ({error})"
            if problem is None:
                offset = start + length
                continue
            if start + length >= end:  # nothing follows it: the write a crash cut short
                self.repaired = f"an unfinished record at byte {offset} ({problem}) was cut off: it was never acknowledged"
                with open(self.path, "r+b") as handle:
                    handle.truncate(offset)
                    os.fsync(handle.fileno())
                return
            raise JournalError(f"{self.path}: the record at byte {offset} is damaged ({problem}) and records follow it; "
                               "the journal was left as it is. Edits up to that record are on disk; move the journal "
                               "aside to open the labels without replaying what follows it")

    def append(self, record, sync=None):
        """Append one record; with durability it is on disk when this returns."""
        self._handle.write(_frame(record))
        self._handle.flush()
        if self.durable if sync is None else sync:
            os.fdatasync(self._handle.fileno())
        self.records.append(record)

    def compact(self, snapshot):
        """Replace the journal by one snapshot record (the undo state), atomically."""
        self._handle.close()
        write_atomically(self.path, MAGIC + _frame({"snapshot": snapshot}), durable=self.durable)
        self.records = [{"snapshot": snapshot}]
        self._handle = open(self.path, "ab")

    def size(self):
        return os.path.getsize(self.path)

    def close(self):
        self._handle.close()
