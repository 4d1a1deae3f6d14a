"""Editing a label pyramid: operations acknowledged at once, written to every level in the background.

`LabelEditor(store)` is the one object that edits a label store.

- `apply(op, level)` journals the operation (fsynced: from then on it is
  never lost), queues it for the writer and returns the labels of the
  operation's box at `level` with it applied: what the view that made the
  edit must show now.
- A writer thread takes queued operations in order. For each it saves the
  before-images of the level-0 chunks it touches (on disk, compressed), then
  rasterises it anew at level 0 chunk by chunk (read, modify, write
  atomically), then rebuilds the touched chunks of every coarser level by
  mode downsampling, then journals it done and tells the listeners which
  chunks of which levels changed (the streaming engine refreshes them).
- `read_chunk` / `read_box` return the stored labels with every pending
  operation applied at that level. The pending list is taken before the
  chunk is read: an operation finishing in between is then applied twice
  (the same result), never missed, so a view never shows an edit appear,
  vanish and reappear.
- The queue is bounded (`max_pending`): `submit` waits, or with
  `block=False` raises `WriterBehind` saying how far behind the writer is.
- `undo` / `redo`: undoing an operation still queued drops it; otherwise
  its before-images are written back (and the coarser levels rebuilt).
  Redo applies it again. Both are journaled, so undo works after a restart
  for the steps whose before-images were kept.
- Opening replays what the journal holds unfinished: an operation whose
  before-images exist is first rolled back to them, then applied whole.

After write-back the displayed level holds the mode downsampling of the
full-resolution result, which can differ from the displayed-level preview
only in voxels the operation's boundary passes through at that level (a
coarse voxel whose centre is inside the shape need not be mostly inside it).
"""

import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from ..errors import BigVolumeError
from .apply import Rasteriser, local, rebuild_coarser
from .before_images import BeforeImages
from .edit_journal import EditJournal
from .operations import operation_from_json

EDITS_FOLDER = "bigvolume-edits"  # beside the level arrays; NGFF readers ignore it
COMPACT_BYTES = 64 * 2**20


class WriterBehind(BigVolumeError):
    """The background writer is too far behind to accept another edit now."""


class _Stopped(Exception):
    """close(wait=False) stopped the writer inside an operation; the journal still holds it."""


@dataclass
class _Task:
    tid: int
    kind: str  # "apply" or "restore"
    seq: int
    op: object
    voxels: int = 0
    replayed: bool = False
    state: str = "queued"
    touched: dict = field(default_factory=dict)


class LabelEditor:
    def __init__(self, store, *, max_pending=64, undo_steps=100, undo_bytes=2 * 1024**3, durable=True,
                 chunk_threads=2, start=True):
        self.store, self.image = store, store.image
        folder = os.path.join(store.path, EDITS_FOLDER)
        if not os.path.isdir(folder):  # a Zarr group of its own, so listing the label group's members finds no stranger
            import zarr

            zarr.open_group(folder, mode="a", zarr_format=self.image.zarr_format).attrs.put(
                {"bigvolume": {"edits": "journal of label edits and before-images for undo; not image data"}})
        self.journal = EditJournal(os.path.join(folder, "journal"), durable=durable)
        self.before = BeforeImages(os.path.join(folder, "undo"), undo_steps, undo_bytes, durable=durable)
        self.max_pending, self.durable, self.chunk_threads = int(max_pending), durable, int(chunk_threads)
        self._cond = threading.Condition(threading.RLock())
        self._write_lock = threading.Lock()  # chunk writes: the writer thread, or an undo
        self._queue = deque()
        self._ops, self._undo, self._redo = {}, [], []
        self._listeners = []
        self._rasteriser = Rasteriser(self.store.read_box, self._read_image)
        self._closing = False
        self._stop_now = threading.Event()
        self.progress = (0, 0)  # level-0 chunks done and total of the operation being written
        self.error = None
        self.written_voxels, self.written_seconds = 0, 0.0
        self._next = 1
        unfinished = self._load_journal()
        self.replayed = len(unfinished)
        while unfinished and any(t.kind == "restore" for t in unfinished):  # restores first, here: reads need them
            task = unfinished.pop(0)
            self._execute(task)
            self._mark_done(task)
        self._queue.extend(unfinished)
        self._thread = threading.Thread(target=self._run, name=f"bigvolume-labels-{store.name}", daemon=True)
        if start:
            self._thread.start()

    # -- journal state ------------------------------------------------------------------------------------
    def _load_journal(self):
        tasks = {}
        for record in self.journal.records:
            if "snapshot" in record:
                snap = record["snapshot"]
                self._ops = {int(k): operation_from_json(v) for k, v in snap["ops"].items()}
                self._undo, self._redo, self._next = list(snap["undo"]), list(snap["redo"]), int(snap["next"])
            elif "apply" in record:
                seq = int(record["apply"])
                if "operation" in record:
                    self._ops[seq] = operation_from_json(record["operation"])
                    self._redo.clear()
                elif seq in self._redo:
                    self._redo.remove(seq)
                self._undo.append(seq)
                tasks[record["t"]] = _Task(record["t"], "apply", seq, self._ops[seq], replayed=True)
            elif "restore" in record:
                seq = int(record["restore"])
                self._move(self._undo, self._redo, seq)
                tasks[record["t"]] = _Task(record["t"], "restore", seq, self._ops.get(seq), replayed=True)
            elif "cancel" in record:
                tasks.pop(record["cancel"], None)
                self._move(self._undo, self._redo, int(record["undo"]))
            elif "done" in record:
                tasks.pop(record["done"], None)
            elif "no_undo" in record:
                self._forget_undo_through(int(record["no_undo"]))
            self._next = max(self._next, int(record.get("t", 0)) + 1)
        unfinished = [tasks[t] for t in sorted(tasks)]
        pending = {t.seq for t in unfinished}
        self._undo = [s for s in self._undo if s in pending or self.before.has(s)]
        for task in unfinished:
            task.voxels = self._voxels(task.op)
        return unfinished

    def _forget_undo_through(self, seq):
        if seq in self._undo:
            for dropped in self._undo[:self._undo.index(seq) + 1]:
                self.before.discard(dropped)
            self._undo = self._undo[self._undo.index(seq) + 1:]

    @staticmethod
    def _move(source, target, seq):
        if seq in source:
            source.remove(seq)
        target.append(seq)

    def _voxels(self, op):
        box = op.voxel_box(self.store.levels[0]) if op is not None else None
        return 0 if box is None else int(np.prod([b - a for a, b in box]))

    # -- editing --------------------------------------------------------------------------------------------
    def submit(self, op, block=True, timeout=None):
        """Journal `op` (on disk when this returns) and queue it; returns its sequence number."""
        with self._cond:
            deadline = None if timeout is None else time.monotonic() + timeout
            while len(self._queue) >= self.max_pending:
                if not block or (deadline is not None and time.monotonic() >= deadline):
                    raise WriterBehind(f"{self.store.name}: the writer is {self.describe_backlog()}; "
                                       f"wait for it or make smaller edits")
                self._cond.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
            tid = seq = self._next
            self._next += 1
            self.journal.append({"t": tid, "apply": seq, "operation": op.to_json()})
            self._ops[seq] = op
            for dropped in self._redo:
                self.before.discard(dropped)
            self._redo.clear()
            self._undo.append(seq)
            self._queue.append(_Task(tid, "apply", seq, op, self._voxels(op)))
            self._cond.notify_all()
        self._notify(self._boxes(op))
        return seq

    def apply(self, op, level=0, **submit_options):
        """Submit `op`; returns (seq, box, labels): the labels of its box at `level`, with it applied."""
        seq = self.submit(op, **submit_options)
        box = op.voxel_box(self.store.levels[level])
        return seq, box, (None if box is None else self.read_box(level, box))

    def preview(self, op, level):
        """(box, labels) of `op` applied at `level` over what is stored and pending, without submitting it."""
        lvl = self.store.levels[level]
        box = op.voxel_box(lvl)
        if box is None:
            return None, None
        return box, self._rasteriser.apply(op, lvl, box, self.read_box(level, box))

    def undo(self):
        """Undo the latest operation; returns its sequence number, or None when there is nothing to undo."""
        with self._cond:
            if not self._undo:
                return None
            seq = self._undo[-1]
            queued = next((t for t in self._queue if t.seq == seq and t.kind == "apply" and t.state == "queued"), None)
            if queued is not None:
                self._queue.remove(queued)
                self.journal.append({"cancel": queued.tid, "undo": seq})
                self._move(self._undo, self._redo, seq)
                self._cond.notify_all()
                self._notify(self._boxes(queued.op))
                return seq
            while any(t.seq == seq for t in self._queue):
                self._raise_error()
                self._cond.wait(0.05)
            tid = self._next
            self._next += 1
            self.journal.append({"t": tid, "restore": seq})
            self._move(self._undo, self._redo, seq)
        task = _Task(tid, "restore", seq, self._ops[seq])
        self._execute(task)
        self._mark_done(task)
        return seq

    def redo(self):
        """Apply again the latest undone operation; returns its sequence number, or None."""
        with self._cond:
            if not self._redo:
                return None
            seq = self._redo.pop()
            tid = self._next
            self._next += 1
            self.journal.append({"t": tid, "apply": seq})
            self._undo.append(seq)
            op = self._ops[seq]
            self._queue.append(_Task(tid, "apply", seq, op, self._voxels(op)))
            self._cond.notify_all()
        self._notify(self._boxes(op))
        return seq

    @property
    def can_undo(self):
        return bool(self._undo)

    @property
    def can_redo(self):
        return bool(self._redo)

    # -- reading ----------------------------------------------------------------------------------------------
    def _pending(self):
        with self._cond:
            return [t for t in self._queue if t.kind == "apply"]

    def read_chunk(self, level, coords):
        """Chunk `coords` of `level`: stored labels with every pending operation applied."""
        pending = self._pending()  # before the read: see the module's docstring
        lvl = self.store.levels[level]
        data = self.store.read_chunk(level, coords)
        box = lvl.chunk_box(coords)
        for task in pending:
            data = self._rasteriser.apply(task.op, lvl, box, data, key=task.tid)
        return data

    def read_box(self, level, box):
        """A voxel box of `level` (inside the volume) with every pending operation applied."""
        pending = self._pending()
        lvl = self.store.levels[level]
        data = self.store.read_box(level, box)
        for task in pending:
            data = self._rasteriser.apply(task.op, lvl, box, data, key=task.tid)
        return data

    def _read_image(self, level, box):
        return self.image.read(level, box)

    # -- listeners ---------------------------------------------------------------------------------------------
    def add_listener(self, callback):
        """`callback({level: [chunk coords]})` after chunks changed: when an edit is queued (its preview) and
        when it is written. Called from the writer's thread."""
        self._listeners.append(callback)

    def remove_listener(self, callback):
        self._listeners.remove(callback)

    def _notify(self, touched):
        for callback in list(self._listeners):
            callback(touched)

    def _boxes(self, op):
        out = {}
        for lvl in self.store.levels:
            box = op.voxel_box(lvl)
            out[lvl.index] = lvl.chunks_in_box(box) if box is not None else []
        return out

    # -- the writer -------------------------------------------------------------------------------------------
    def _run(self):
        while True:
            with self._cond:
                while not self._queue or self.error is not None:
                    if self._closing and (not self._queue or self.error is not None):
                        return
                    self._cond.wait()
                task = self._queue[0]
                task.state = "started"
            try:
                self._execute(task)
            except _Stopped:
                return
            except BaseException as error:  # kept for status and wait(); the task stays journaled
                with self._cond:
                    task.state = "queued"
                    self.error = error
                    self._cond.notify_all()
                continue
            self._mark_done(task)

    def _mark_done(self, task):
        with self._cond:
            self.journal.append({"done": task.tid})
            if self._queue and self._queue[0] is task:
                self._queue.popleft()
            task.state = "done"
            self._rasteriser.forget(task.tid)
            self._cond.notify_all()
        self._notify(task.touched)

    def _execute(self, task):
        t0 = time.perf_counter()
        with self._write_lock:
            if task.kind == "restore":
                changed = self._restore(task.seq)
            else:
                changed = self._apply_level0(task)
            task.touched = rebuild_coarser(self.store, changed, self._write) if changed else {}
            for level, coords in task.touched.items():
                self.store.sync_folders(level, coords)
        with self._cond:
            self.written_voxels += task.voxels
            self.written_seconds += time.perf_counter() - t0

    def _write(self, level, coords, data):
        self.store.write_chunk(level, coords, data, durable=self.durable)

    def _restore(self, seq):
        chunks = self.before.load(seq)
        for coords, encoded in chunks:
            self.store.write_encoded(0, coords, encoded, durable=self.durable)
        return [c for c, _ in chunks]

    def _apply_level0(self, task):
        lvl = self.store.levels[0]
        box = task.op.voxel_box(lvl)
        if box is None:
            return []
        coords_list = lvl.chunks_in_box(box)
        if task.replayed and self.before.has(task.seq):
            self._restore(task.seq)  # back to before the operation, which may have been partly written
        else:
            kept = self.before.save(task.seq, ((c, self.store.encoded_chunk(0, c)) for c in coords_list))
            if kept is None:  # too large to undo: neither it nor anything before it can be undone
                with self._cond:
                    self.journal.append({"no_undo": task.seq})
                    self._forget_undo_through(task.seq)
            else:
                self._trim_undo()
        changed = []

        self.progress = (0, len(coords_list))

        def one(coords):
            if self._stop_now.is_set():
                raise _Stopped
            self.progress = (self.progress[0] + 1, len(coords_list))
            cbox = lvl.chunk_box(coords)
            old = self.store.read_chunk(0, coords)
            new = self._rasteriser.apply(task.op, lvl, cbox, old, key=("write", task.tid))
            if new is not old and not np.array_equal(new, old):
                self.store.write_chunk(0, coords, new, durable=self.durable)
                return coords
            return None

        if self.chunk_threads > 1 and len(coords_list) > 1 and not task.op.needs_labels_around:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(self.chunk_threads) as pool:
                changed = [c for c in pool.map(one, coords_list) if c is not None]
        else:
            changed = [c for c in map(one, coords_list) if c is not None]
        self._rasteriser.forget(("write", task.tid))
        return changed

    def _trim_undo(self):
        with self._cond:
            done = [s for s in self._undo if self.before.has(s)]
            total = sum(self.before.nbytes(s) for s in done)
            while done and (len(done) > self.before.max_steps or total > self.before.max_bytes):
                oldest = done.pop(0)
                total -= self.before.nbytes(oldest)
                self.before.discard(oldest)
                self._undo.remove(oldest)

    # -- status and life ---------------------------------------------------------------------------------------
    def _raise_error(self):
        if self.error is not None:
            raise BigVolumeError(f"{self.store.name}: the background writer stopped: {self.error}; "
                                 f"every acknowledged edit is in the journal; retry() after fixing the cause "
                                 f"(or reopen the labels) to write them") from self.error

    def retry(self):
        """Resume writing after an error (a full disk that was freed)."""
        with self._cond:
            self.error = None
            self._cond.notify_all()

    def wait(self, timeout=None):
        """Block until every queued operation is written; raises the writer's error if it stopped."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._queue:
                self._raise_error()
                if not self._thread.is_alive():
                    raise BigVolumeError(f"{self.store.name}: the writer is not running (not started, or closed)")
                if deadline is not None and time.monotonic() >= deadline:
                    return False
                self._cond.wait(0.05 if deadline is None else min(0.05, max(0.0, deadline - time.monotonic())))
            self._raise_error()
        return True

    def status(self):
        with self._cond:
            pending_voxels = sum(t.voxels for t in self._queue)
            rate = self.written_voxels / self.written_seconds if self.written_seconds > 0 else None
            return {"pending": len(self._queue), "pending_voxels": pending_voxels,
                    "voxels_per_second": rate, "behind_seconds": pending_voxels / rate if rate else None,
                    "undo_steps": len(self._undo), "redo_steps": len(self._redo),
                    "error": None if self.error is None else str(self.error), "replayed": self.replayed,
                    "chunks_done": self.progress[0], "chunks_total": self.progress[1]}

    def describe_backlog(self):
        s = self.status()
        behind = f", about {s['behind_seconds']:.1f} s of writing" if s["behind_seconds"] is not None else ""
        return f"{s['pending']} operations ({s['pending_voxels']:,} full-resolution voxels) behind{behind}"

    def close(self, wait=True):
        """Stop the writer: with `wait`, after writing everything queued (then the journal is compacted);
        without, at the next chunk (what is unfinished stays journaled and is completed on the next open)."""
        with self._cond:
            self._closing = True
            if not wait:
                self._stop_now.set()
                self._queue = deque(t for t in self._queue if t.state == "started")
            self._cond.notify_all()
        if self._thread.ident is not None:
            self._thread.join()
        with self._cond:
            if not self._queue and self.error is None:
                self._compact()
        self.journal.close()

    def _compact(self):
        keep = set(self._undo) | set(self._redo)
        self.journal.compact({"next": self._next, "undo": self._undo, "redo": self._redo,
                              "ops": {str(s): self._ops[s].to_json() for s in sorted(keep)}})
        for name in os.listdir(self.before.folder):
            stem = name.split(".")[0]
            if stem.isdigit() and int(stem) not in keep:
                self.before.discard(int(stem))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close(wait=exc[0] is None)
