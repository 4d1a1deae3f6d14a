"""Editing a label pyramid: operations acknowledged at once, written to every level in the background.

`LabelEditor(store)` is the one object that edits a label store.

- `apply(op, level)` journals the operation (fsynced: from then on it is
  never lost), queues it for the writer and returns the labels of the
  operation's box at `level` with it applied: what the view that made the
  edit must show now.
- A writer thread takes queued operations in order. For each it saves the
  before-images of the level-0 chunks it touches (on disk, compressed), then
  rasterises it anew at level 0 chunk by chunk (read, modify, write
  atomically), then rebuilds the touched part of every coarser level by
  mode downsampling, then journals it done and tells the listeners which
  chunks of which levels changed (the streaming engine refreshes them).
  When it is behind, it takes the queued strokes together (`_next_batch`):
  each chunk is then read, written and downsampled once for all of them.
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
from ..writing.atomic import fsync_file, remove_stale_temporaries
from .apply import Rasteriser, edit, local, rebuild_coarser
from .before_images import BeforeImages
from .edit_journal import EditJournal
from .operations import operation_from_json

EDITS_FOLDER = "bigvolume-edits"  # beside the level arrays; NGFF readers ignore it
BATCH_OPS = 32
BATCH_BYTES = 64 * 2**20
COMPACT_BYTES = 64 * 2**20


class WriterBehind(BigVolumeError):
    """The background writer is too far behind to accept another edit now."""


class _Stopped(Exception):
    """close(wait=False) stopped the writer inside an operation; the journal still holds it."""


class _Cancelled(Exception):
    """cancel() stopped the writer inside the operation it takes back."""


@dataclass
class _Task:
    tid: int
    kind: str  # "apply" or "restore"
    seq: int
    op: object
    voxels: int = 0
    partial: bool = False  # may be partly written (replayed from the journal, or retried after an error)
    state: str = "queued"
    touched: dict = field(default_factory=dict)
    chunks: list = None  # level-0 chunks it may change, when known


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
        self._pool = None  # chunk threads of the writer, made on first use
        self._image_reader = None  # the image's fastest chunk reader, made on first use
        self._unsynced = []  # chunk files written by the operation being written, to fsync before its done mark
        self._closing = False
        self._stop_now = threading.Event()
        self._cancelling = None  # sequence number cancel() asks the writer to stop writing and take back
        self.progress = (0, 0)  # level-0 chunks done and total of the operation being written
        self.error = None
        self.written_voxels, self.written_seconds = 0, 0.0
        self.written_operations, self.written_batches = 0, 0
        self._next = 1
        unfinished = self._load_journal()
        self.replayed = len(unfinished)
        self.stale_temporaries = self._remove_stale_temporaries(unfinished)
        while unfinished and any(t.kind == "restore" for t in unfinished):  # restores first, here: reads need them
            batch = [unfinished.pop(0)]
            self._execute(batch)
            self._mark_done(batch)
        self._queue.extend(unfinished)
        self._thread = threading.Thread(target=self._run, name=f"bigvolume-labels-{store.name}", daemon=True)
        if start:
            self.start()

    def start(self):
        """Start the background writer (made with start=False: operations queue until then)."""
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
                tasks[record["t"]] = _Task(record["t"], "apply", seq, self._ops[seq], partial=True)
            elif "restore" in record:
                seq = int(record["restore"])
                self._move(self._undo, self._redo, seq)
                tasks[record["t"]] = _Task(record["t"], "restore", seq, self._ops.get(seq), partial=True)
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

    def _remove_stale_temporaries(self, unfinished):
        """Temporaries a killed writer left beside the chunks of the operations it did not finish."""
        folders = set()
        for task in unfinished:
            if task.op is None:
                continue
            for lvl in self.store.levels:
                box = task.op.voxel_box(lvl)
                if box is not None:
                    folders.update(os.path.dirname(self.store.chunk_path(lvl.index, c)) for c in lvl.chunks_in_box(box))
        return sum(remove_stale_temporaries(folder) for folder in sorted(folders))

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

    def rasterise(self, op, level, box, labels):
        """`labels` of `box` at `level` with `op` applied, exactly as the overlay of reads and the writer apply it:
        what a view that shows those labels paints at once (Fill, whose region depends on labels around, is
        left to the overlay: returns None)."""
        if op.needs_labels_around:
            return None
        return self._rasteriser.apply(op, self.store.levels[level], box, labels)

    def rasterise_voxels(self, op, level, box, index, old, max_voxels=16 * 1024**2):
        """New labels of scattered voxels of `level` (`index`: (n, 3) z, y, x indices into voxel `box`, whose
        labels are `old`) with `op` applied as `rasterise` applies it: what an oblique view, whose pixels are such
        voxels, paints at once. None for Fill, or when `box` holds more than `max_voxels` (left to the overlay)."""
        shape = tuple(b - a for a, b in box)
        if op.needs_labels_around or int(np.prod(shape)) > max_voxels:
            return None
        lvl = self.store.levels[level]
        take = tuple(np.asarray(index).T)
        intensities = self._read_image(level, box) if op.needs_image else None
        region = np.broadcast_to(op.region(lvl, box, intensities), shape)[take]
        domain = np.broadcast_to(op.domain(lvl, box), shape)[take] if op.mode == "set" else None
        values = op.values(lvl, box)[take] if op.mode == "replace" else None
        return edit(op, np.asarray(old), region, None if intensities is None else intensities[take], domain, values)

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
        batch = [_Task(tid, "restore", seq, self._ops[seq])]
        self._execute(batch)
        self._mark_done(batch)
        return seq

    def cancel(self, seq):
        """Take back operation `seq` if it is the latest (a long threshold, say): dropped if still queued; if the
        writer is writing it alone, it stops at its next chunk and puts back the before-images of everything the
        operation may have changed; if it is written (or being written with others), undone. Returns True if it
        was taken back (redo() applies it again)."""
        with self._cond:
            if not self._undo or self._undo[-1] != seq:
                return False
            started = any(t.seq == seq and t.kind == "apply" and t.state == "started" for t in self._queue)
            if started:
                self._cancelling = seq
                while any(t.seq == seq and t.kind == "apply" for t in self._queue) and self._cancelling == seq:
                    self._raise_error()
                    self._cond.wait(0.05)
                if seq in self._redo:  # the writer took it back
                    return True
                self._cancelling = None  # written (with others in one batch) before it looked: undone below
        return self.undo() == seq

    def _take_back(self, task):
        """The writer's side of cancel(): a restore of the operation's before-images (all saved before its first
        chunk was written) is journaled, then written, then both are marked done. A crash in between replays the
        operation, then the restore: the labels end as before it either way."""
        with self._cond:
            tid = self._next
            self._next += 1
            self.journal.append({"t": tid, "restore": task.seq})
            self._move(self._undo, self._redo, task.seq)
        restore = _Task(tid, "restore", task.seq, task.op)
        self._execute([restore])
        with self._cond:
            self.journal.append({"done": task.tid}, sync=False)
            self.journal.append({"done": tid}, sync=self.durable)
            if task in self._queue:
                self._queue.remove(task)
            task.state = "done"
            self._rasteriser.forget(("write", task.tid))
            self._rasteriser.forget(task.tid)
            self._cancelling = None
            self.progress = (0, 0)
            self._cond.notify_all()
        self._notify(restore.touched)

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
        """Image voxels of a box inside the volume (intensity masking, Threshold), through the fastest reader."""
        if self._image_reader is None:
            from ..streaming.readers import default_reader

            self._image_reader = default_reader(self.image, threads=self.chunk_threads)
        lvl = self.image.levels[level]
        out = np.empty([b - a for a, b in box], dtype=lvl.dtype)
        for coords, data in self._image_reader.read_chunks(level, lvl.chunks_in_box(box)).items():
            cbox = lvl.chunk_box(coords)
            inter = tuple((max(a, c), min(b, d)) for (a, b), (c, d) in zip(box, cbox))
            out[local(inter, box)] = data[local(inter, cbox)]
        return out

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
    def _chunks(self, task):
        if task.chunks is None:
            box = task.op.voxel_box(self.store.levels[0]) if task.op is not None else None
            task.chunks = [] if box is None else self.store.levels[0].chunks_in_box(box)
        return task.chunks

    def _next_batch(self):
        """The queued operations written together next (under the lock): the head, and while the writer is
        behind, the strokes queued after it, so each chunk is read, written and downsampled once for all of them.
        A batch holds the new states of its chunks, compressed, until its before-images are saved: it is capped
        at BATCH_OPS operations and BATCH_BYTES of those chunks decoded. Operations that may be partly written,
        Fill (its region reads labels around it) and restores go alone."""
        head = self._queue[0]
        batch = [head]
        if not self._batchable(head):
            return batch
        chunk_bytes = int(np.prod(self.store.levels[0].chunk_shape)) * self.store.dtype.itemsize
        chunks = set(self._chunks(head))
        for task in list(self._queue)[1:BATCH_OPS]:
            more = chunks.union(self._chunks(task)) if self._batchable(task) else None
            if more is None or len(more) * chunk_bytes > BATCH_BYTES:
                break
            chunks = more
            batch.append(task)
        return batch if len(chunks) * chunk_bytes <= BATCH_BYTES else [head]

    @staticmethod
    def _batchable(task):
        return task.kind == "apply" and task.state == "queued" and not task.partial and not task.op.needs_labels_around

    def _run(self):
        while True:
            with self._cond:
                while not self._queue or self.error is not None:
                    if self._closing and (not self._queue or self.error is not None):
                        return
                    self._cond.wait()
                batch = self._next_batch()
                for task in batch:
                    task.state = "started"
            try:
                self._execute(batch)
            except _Stopped:
                return
            except _Cancelled:
                self._take_back(batch[0])
                continue
            except BaseException as error:  # kept for status and wait(); the tasks stay journaled
                with self._cond:
                    for task in batch:
                        task.state, task.partial = "queued", True
                    self.error = error
                    self._cond.notify_all()
                continue
            self._mark_done(batch)

    def _mark_done(self, batch):
        with self._cond:
            for i, task in enumerate(batch):
                self.journal.append({"done": task.tid}, sync=self.durable and i == len(batch) - 1)
                if self._queue and self._queue[0] is task:
                    self._queue.popleft()
                task.state = "done"
                self._rasteriser.forget(task.tid)
            self._cond.notify_all()
        self._notify(batch[-1].touched)

    def _execute(self, batch):
        t0 = time.perf_counter()
        with self._write_lock:
            if batch[0].kind == "restore":
                changed = self._restore(batch[0].seq)
            else:
                changed = self._apply_level0(batch)
            boxes0 = [t.op.voxel_box(self.store.levels[0]) for t in batch if t.op is not None]
            touched = rebuild_coarser(self.store, changed, self._write, [b for b in boxes0 if b is not None],
                                      self._map) if changed else {}
            if self.durable:  # the chunks are written without fsync, then made durable together here
                self._map(fsync_file, sorted(set(self._unsynced)))
                for level, coords in touched.items():
                    self.store.sync_folders(level, coords)
            self._unsynced.clear()
            for task in batch:
                task.touched = touched
        with self._cond:
            self.written_voxels += sum(t.voxels for t in batch)
            self.written_operations += len(batch)
            self.written_batches += 1
            self.written_seconds += time.perf_counter() - t0

    def _map(self, function, items):
        """`map` over the writer's chunk threads."""
        items = list(items)
        if self.chunk_threads < 2 or len(items) < 2:
            return list(map(function, items))
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(self.chunk_threads, thread_name_prefix=f"bigvolume-labels-{self.store.name}")
        return list(self._pool.map(function, items))

    def _write(self, level, coords, data):
        self._put(level, coords, self.store.encode_chunk(level, data))

    def _put(self, level, coords, encoded):
        """Replace a chunk (atomically); its fsync waits for the end of the operation (`_execute`): before the
        done mark nothing needs it, as a replay restores the before-images and writes the operation again."""
        self.store.write_encoded(level, coords, encoded, durable=False)
        if encoded is not None:
            self._unsynced.append(self.store.chunk_path(level, coords))

    def _restore(self, seq):
        chunks = self.before.load(seq)
        for coords, encoded in chunks:
            self._put(0, coords, encoded)
        return [c for c, _ in chunks]

    def _save_before(self, task, chunks):
        """Keep the before-images of `task` (coords, encoded bytes); an operation too large to undo makes every
        step up to it impossible to undo."""
        if self.before.save(task.seq, chunks) is None:
            with self._cond:
                self.journal.append({"no_undo": task.seq})
                self._forget_undo_through(task.seq)

    def _apply_level0(self, batch):
        """Rasterise the batch's operations at level 0 chunk by chunk, in order; returns the chunks changed.

        Before-images are on disk before any chunk is replaced. One operation: its chunks' stored bytes are
        saved first, then each chunk is written as soon as it is computed (a box of any size streams through).
        Several: each chunk is read once and the operations applied in turn, each one's before-image taken
        from the state the previous ones left; the new chunks are written once all before-images are saved."""
        lvl = self.store.levels[0]
        store = self.store
        head = batch[0]
        write_now = len(batch) == 1
        if write_now:
            if head.partial and self.before.has(head.seq):
                self._restore(head.seq)  # back to before the operation, which may have been partly written
            else:
                self._save_before(head, ((c, store.encoded_chunk(0, c)) for c in self._chunks(head)))
        touching = {}
        for task in batch:
            for coords in self._chunks(task):
                touching.setdefault(coords, []).append(task)
        order = sorted(touching)
        with self._cond:
            self.progress = (0, len(order))

        def one(coords):
            if self._stop_now.is_set():
                raise _Stopped
            if write_now and self._cancelling == head.seq and self.before.has(head.seq):
                raise _Cancelled  # (without before-images it cannot be put back: it is written whole)
            with self._cond:
                self.progress = (self.progress[0] + 1, len(order))
            box = lvl.chunk_box(coords)
            encoded = store.encoded_chunk(0, coords)
            original = state = store.decode_chunk(0, coords, encoded)
            befores = {}
            for task in touching[coords]:
                if not write_now:
                    befores[task.tid] = encoded if state is original else store.encode_chunk(0, state)
                new = self._rasteriser.apply(task.op, lvl, box, state, key=("write", task.tid))
                if new is not state and not np.array_equal(new, state):
                    state = new
            final = None if state is original else store.encode_chunk(0, state)
            if write_now and state is not original:
                self._put(0, coords, final)
            return coords, befores, state is not original, final

        # Fill's region is computed once for its whole box: the first chunk does it, the rest reuse it.
        results = (map if head.op.needs_labels_around else self._map)(one, order)
        changed = [c for c, _, was_changed, _ in results if was_changed]
        if not write_now:
            befores = {c: b for c, b, _, _ in results}
            for task in batch:
                self._save_before(task, ((c, befores[c][task.tid]) for c in self._chunks(task)))
            finals = {c: f for c, _, was_changed, f in results if was_changed}
            self._map(lambda c: self._put(0, c, finals[c]), changed)
        for task in batch:
            self._rasteriser.forget(("write", task.tid))
        self._trim_undo()
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
                    "chunks_done": self.progress[0], "chunks_total": self.progress[1],
                    "written_operations": self.written_operations, "written_batches": self.written_batches}

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
        if self._pool is not None:
            self._pool.shutdown()
        if self._image_reader is not None:
            self._image_reader.close()
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
