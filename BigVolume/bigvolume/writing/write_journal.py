"""The write journal: which blocks of an in-progress store are finished, so a restart skips them.

A JSON file beside the level arrays, replaced atomically (written to a
temporary file, flushed, then renamed over the old one), so a crash or a full
disk leaves either the previous journal or the new one, never a torn one. A
block is recorded only after all of its files were written; a block that was
being written when the process died is simply written again. The journal also
holds the plan (shapes, chunking, codec, source) so a resume with different
settings is refused instead of mixing two conversions. It is deleted once the
store's final metadata is written.
"""

import json
import os

from ..errors import StoreError
from .atomic import write_atomically

JOURNAL_NAME = "bigvolume-journal.json"


class Journal:
    def __init__(self, store, plan, done=None, extra=None):
        self.path = os.path.join(os.fspath(store), JOURNAL_NAME)
        self.plan = plan
        self.done = {int(k): set(v) for k, v in (done or {}).items()}
        self.extra = dict(extra or {})

    @classmethod
    def load(cls, store):
        path = os.path.join(os.fspath(store), JOURNAL_NAME)
        try:
            with open(path) as handle:
                data = json.load(handle)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as error:
            raise StoreError(f"{path}: the write journal cannot be read ({error}); the store must be written again") from error
        return cls(store, data.get("plan"), data.get("done"), data.get("extra"))

    def is_done(self, stage, block):
        return block in self.done.get(stage, ())

    def mark_done(self, stage, block):
        self.done.setdefault(stage, set()).add(block)
        self.save()

    def save(self):
        data = {"plan": self.plan, "done": {str(k): sorted(v) for k, v in sorted(self.done.items())}, "extra": self.extra}
        write_atomically(self.path, json.dumps(data, indent=1).encode())

    def remove(self):
        try:
            os.remove(self.path)
        except FileNotFoundError:
            pass

    def blocks_done(self):
        return sum(len(v) for v in self.done.values())
