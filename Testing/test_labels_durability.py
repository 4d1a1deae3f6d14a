"""Nothing acknowledged is lost: SIGKILL during writing, torn reads, a damaged journal, a full disk."""

import errno
import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import label_oracle
from bigvolume.errors import BigVolumeError
from bigvolume.labels import label_store
from bigvolume.labels.apply import level_factors
from bigvolume.labels.edit_journal import EditJournal, JournalError
from bigvolume.labels.editor import EDITS_FOLDER, LabelEditor
from bigvolume.labels.label_store import create_labels, open_labels
from bigvolume.labels.operations import Mask, Threshold, operation_from_json
from bigvolume.labels.segments import Segment
from label_helpers import make_image, stored_levels

HERE = os.path.dirname(os.path.abspath(__file__))


def journal_operations(store):
    """Operations the journal holds, in order (the acknowledged ones and any that were journaled as the child
    died, before it could print them)."""
    editor = LabelEditor(store, start=False)
    ops = [editor._ops[s] for s in sorted(editor._ops)]
    editor._closing = True
    editor.journal.close()
    return ops


@pytest.mark.parametrize("seed", range(4))
def test_sigkill_while_writing_loses_no_acknowledged_edit(tmp_path, small_chunks, seed):
    image, volume = make_image(tmp_path / "img.ome.zarr", shape=(40, 48, 52), seed=seed)
    store = create_labels(image, "seg", segments=[Segment(1, "a"), Segment(2, "b")])
    child = subprocess.Popen([sys.executable, os.path.join(HERE, "label_edit_child.py"), str(image.location), str(seed)],
                             stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": HERE + os.pathsep +
                                                                     os.environ.get("PYTHONPATH", "")})
    acknowledged = []
    kill_after = 3 + seed * 5  # operations acknowledged before the kill: the writer is mid-way through the queue
    for line in child.stdout:
        record = json.loads(line)
        if "acknowledged" in record:
            acknowledged.append(operation_from_json(record["operation"]))
        if len(acknowledged) >= kill_after:
            time.sleep(0.01 * seed)
            child.send_signal(signal.SIGKILL)
            break
    child.wait()
    child.stdout.close()
    journaled = journal_operations(store)
    assert journaled[:len(acknowledged)] == acknowledged
    with LabelEditor(store) as editor:  # replays what was unfinished
        replayed = editor.replayed
    assert replayed >= 1 or len(journaled) == len(acknowledged)
    left = [os.path.join(folder, name) for folder, _, names in os.walk(store.path) for name in names
            if name.endswith(".tmp") and f".{child.pid}." in name]
    assert not left, f"temporaries of the killed writer were left: {left[:3]}"
    store = open_labels(image, "seg")
    expected = np.zeros(store.levels[0].volume_shape, dtype=store.dtype)
    for op in journaled:
        expected = label_oracle.apply(op, expected, volume, image.levels[0].ijk_to_ras)
    for level, (got, want) in enumerate(zip(stored_levels(store), label_oracle.pyramid_of(expected, level_factors(store.levels)))):
        assert np.array_equal(got, want), f"level {level}: {np.count_nonzero(got != want)} voxels differ"


def test_temporaries_of_a_dead_process_are_removed_and_a_live_ones_kept(tmp_path):
    from bigvolume.writing.atomic import remove_stale_temporaries, temporary_name

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f"0.0.0.{int(dead.stdout)}.1.2.tmp"
    stale.write_bytes(b"torn")
    live = tmp_path / os.path.basename(temporary_name(str(tmp_path / "0.0.1")))
    live.write_bytes(b"being written")
    (tmp_path / "0.0.0").write_bytes(b"a chunk")
    assert remove_stale_temporaries(tmp_path) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["0.0.0", live.name])


def test_concurrent_reads_never_see_a_torn_chunk(tmp_path, small_chunks):
    image, _ = make_image(tmp_path / "img.ome.zarr")
    store = create_labels(image, "seg", segments=[Segment(v, f"s{v}") for v in range(1, 9)])
    lvl = store.levels[0]
    whole = tuple((0, n) for n in lvl.volume_shape)
    stop, seen, errors = threading.Event(), set(), []

    def reader():
        while not stop.is_set():
            for coords in lvl.all_chunks():
                try:
                    values = np.unique(store.read_chunk(0, coords))
                except Exception as error:  # a torn file would fail to decode
                    errors.append(error)
                    continue
                if len(values) != 1:
                    errors.append(f"chunk {coords} holds {values}")
                seen.add(int(values[0]))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        with LabelEditor(store, durable=True) as editor:
            for value in range(1, 9):  # each operation sets the whole volume to one value
                editor.submit(Mask.from_array(value, lvl, whole, np.ones(lvl.volume_shape, dtype=bool)))
    finally:
        stop.set()
        thread.join()
    assert not errors, errors[:3]
    assert len(seen) > 2


def test_a_torn_last_record_is_cut_off_and_a_damaged_one_in_the_middle_is_refused(tmp_path, small_chunks):
    image, _ = make_image(tmp_path / "img.ome.zarr")
    store = create_labels(image, "seg", segments=[Segment(1, "a")])
    with LabelEditor(store) as editor:
        editor.submit(Threshold(1, low=0, high=100))
        editor.submit(Threshold(1, low=0, high=200))
    path = os.path.join(store.path, EDITS_FOLDER, "journal")
    journal = EditJournal(path)  # the compacted journal (one snapshot record) plus one record more
    journal.append({"t": 99, "apply": 1})
    journal.close()
    good = open(path, "rb").read()
    open(path, "wb").write(good[:-5])  # the last record cut short, as a crash during its write leaves it
    journal = EditJournal(path)
    assert journal.repaired and "never acknowledged" in journal.repaired
    journal.close()
    damaged = bytearray(good)
    damaged[20] ^= 0xFF  # inside the first record, with a good one after it
    open(path, "wb").write(bytes(damaged))
    with pytest.raises(JournalError, match="damaged.*left as it is"):
        LabelEditor(store)
    assert open(path, "rb").read() == bytes(damaged)


def test_a_full_disk_stops_the_writer_with_a_clear_error_and_loses_nothing(tmp_path, small_chunks, monkeypatch):
    image, volume = make_image(tmp_path / "img.ome.zarr")
    store = create_labels(image, "seg", segments=[Segment(1, "a")])
    real = label_store.write_atomically
    full = {"on": True}

    def write(path, data, durable=True):
        if full["on"]:
            raise OSError(errno.ENOSPC, "No space left on device", path)
        return real(path, data, durable=durable)

    monkeypatch.setattr(label_store, "write_atomically", write)
    op = Threshold(1, low=100, high=600)
    editor = LabelEditor(store)
    editor.submit(op)
    with pytest.raises(BigVolumeError, match="No space left.*in the journal.*retry"):
        editor.wait()
    assert editor.status()["pending"] == 1 and "No space" in editor.status()["error"]
    assert np.array_equal(editor.read_chunk(0, (0, 0, 0)) == 1,
                          ((volume >= 100) & (volume <= 600))[:8, :8, :8])  # still shown as pending
    full["on"] = False
    editor.retry()
    editor.close()
    assert np.array_equal(stored_levels(store)[0] == 1, (volume >= 100) & (volume <= 600))
