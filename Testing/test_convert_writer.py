"""The block-parallel writer: same bits in any process, resume after Ctrl-C / kill -9 / full disk, cancel, memory, Dask."""

import errno
import json
import os
import signal
import subprocess
import sys
import time
import tracemalloc

import numpy as np
import pytest

import bigvolume
from bigvolume import IncompleteStoreError, StoreError, VolumeGeometry
from bigvolume.writing import shardio
from bigvolume.writing.downsample import halve_planes_z, mode_halve, plan_levels, smooth_halve, to_dtype
from bigvolume.ingest import open_source
from bigvolume.writing.write_journal import JOURNAL_NAME
from bigvolume.writing.pyramid import WriteCancelled
from bigvolume.store.validate import validate
from conftest import ROOT

SMALL = dict(chunks=(16, 16, 16), shard_chunks=(1, 2, 2), coarsest=8)  # many blocks and stages on a tiny volume


def reference_levels(volume, spacing_zyx, labels=False, coarsest=8):
    """Every level computed from the whole volume at once with the filter's reference functions."""
    levels = [volume]
    for factors in plan_levels(volume.shape, spacing_zyx, coarsest=coarsest)[1:]:
        previous = levels[-1]
        if labels:
            levels.append(mode_halve(previous, factors))
            continue
        m = -(-previous.shape[0] // factors[0])
        values = halve_planes_z(previous, 0, 0, m, previous.shape[0]) if factors[0] == 2 else previous.astype(np.float32)
        levels.append(to_dtype(smooth_halve(values, factors), volume.dtype))
    return levels


def store_levels(path):
    image = bigvolume.open_image(path)
    return [image.read(level.index, [(0, n) for n in level.volume_shape]) for level in image.levels]


def raw_source(tmp_path, volume, name="in.raw", **geometry):
    path = tmp_path / name
    volume.tofile(path)
    return open_source(path, size=volume.shape[::-1], dtype=volume.dtype.name, **geometry)


@pytest.fixture(scope="module")
def volume():
    rng = np.random.default_rng(7)
    return (rng.normal(20000, 6000, (150, 67, 45)).clip(0, 65535)).astype(np.uint16)


@pytest.mark.parametrize("spacing, chunks", [((1.0, 1.0, 1.0), (16, 16, 16)), ((1.0, 1.0, 3.0), (16, 16, 16)),
                                             ((1.0, 1.0, 1.0), (8, 16, 16))])
def test_blocks_in_processes_give_the_reference_bits(tmp_path, volume, spacing, chunks):
    source = raw_source(tmp_path, volume, spacing=spacing)
    options = {**SMALL, "chunks": chunks}  # 8-deep chunks: enough blocks for two z-halvings per stage
    stats = {}
    bigvolume.write_pyramid(source, tmp_path / "pool.ome.zarr", workers=2, stats=stats, **options)
    assert stats["runner"] == "2 processes" and stats["blocks"] > 6
    bigvolume.write_pyramid(volume, tmp_path / "here.ome.zarr", VolumeGeometry(spacing=spacing), workers=1, **options)
    expected = reference_levels(volume, spacing[::-1])
    for written in (store_levels(tmp_path / "pool.ome.zarr"), store_levels(tmp_path / "here.ome.zarr")):
        assert [a.shape for a in written] == [a.shape for a in expected]
        for level, (a, b) in enumerate(zip(written, expected)):
            np.testing.assert_array_equal(a, b, err_msg=f"level {level}")


def test_label_blocks_match_the_reference_mode(tmp_path):
    labels = np.random.default_rng(1).choice(np.array([0, 3, 9], np.uint8), size=(70, 40, 36), p=[0.6, 0.3, 0.1])
    source = raw_source(tmp_path, labels)
    bigvolume.write_pyramid(source, tmp_path / "l.ome.zarr", labels=True, workers=2, **SMALL)
    for a, b in zip(store_levels(tmp_path / "l.ome.zarr"), reference_levels(labels, (1, 1, 1), labels=True)):
        np.testing.assert_array_equal(a, b)


def test_zarr_v2_blocks_match(tmp_path, volume):
    source = raw_source(tmp_path, volume)
    bigvolume.write_pyramid(source, tmp_path / "v2.ome.zarr", ngff_version="0.4", workers=2, chunks=(16, 16, 16), coarsest=8)
    for a, b in zip(store_levels(tmp_path / "v2.ome.zarr"), reference_levels(volume, (1, 1, 1))):
        np.testing.assert_array_equal(a, b)


def _uninterrupted(tmp_path, volume):
    path = tmp_path / "whole.ome.zarr"
    if not path.exists():
        bigvolume.write_pyramid(volume, path, workers=1, **SMALL)
    return store_levels(path)


KILLED_WRITER = """
import sys, time
sys.path.insert(0, {module_dir!r})
from bigvolume import write_pyramid
from bigvolume.ingest import open_source
source = open_source({raw!r}, size={size!r}, dtype="uint16")
class Slow:
    shape, dtype, geometry = source.shape, source.dtype, source.geometry
    def __getitem__(self, key):
        time.sleep(0.08)
        return source[key]
write_pyramid(Slow(), {out!r}, workers=1, chunks=(16, 16, 16), shard_chunks=(1, 2, 2), coarsest=8)
"""


def test_kill_9_then_resume_gives_the_uninterrupted_result(tmp_path, volume):
    raw = tmp_path / "in.raw"
    volume.tofile(raw)
    out = tmp_path / "killed.ome.zarr"
    script = KILLED_WRITER.format(module_dir=os.path.join(ROOT, "BigVolume"), raw=str(raw), size=volume.shape[::-1], out=str(out))
    process = subprocess.Popen([sys.executable, "-c", script])
    journal = out / JOURNAL_NAME
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            if sum(len(v) for v in json.loads(journal.read_text())["done"].values()) >= 2:
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    with pytest.raises(IncompleteStoreError):
        bigvolume.open_image(out)
    assert not validate(out).valid
    stats = {}
    bigvolume.write_pyramid(open_source(raw, size=volume.shape[::-1], dtype="uint16"), out, resume=True, workers=1,
                            stats=stats, **SMALL)
    assert stats["blocks_skipped"] >= 2
    assert not journal.exists() and validate(out).valid
    for a, b in zip(store_levels(out), _uninterrupted(tmp_path, volume)):
        np.testing.assert_array_equal(a, b)


def test_full_disk_says_so_keeps_the_store_unfinished_and_resumes(tmp_path, volume, monkeypatch):
    real_write, calls = shardio.write_file, [0]

    def failing(path, data):
        calls[0] += 1
        if calls[0] > 5:
            raise OSError(errno.ENOSPC, "No space left on device", path)
        real_write(path, data)

    out = tmp_path / "full.ome.zarr"
    monkeypatch.setattr(shardio, "write_file", failing)
    with pytest.raises(StoreError, match=r"the disk is full \(No space left on device\) after \d+ of \d+ blocks.*--resume"):
        bigvolume.write_pyramid(volume, out, workers=1, **SMALL)
    with pytest.raises(IncompleteStoreError):
        bigvolume.open_image(out)
    monkeypatch.setattr(shardio, "write_file", real_write)
    bigvolume.write_pyramid(volume, out, resume=True, workers=1, **SMALL)
    for a, b in zip(store_levels(out), _uninterrupted(tmp_path, volume)):
        np.testing.assert_array_equal(a, b)


def test_ctrl_c_leaves_a_resumable_store(tmp_path, volume):
    out = tmp_path / "interrupted.ome.zarr"

    def interrupt(done, total):
        if done > 40:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        bigvolume.write_pyramid(volume, out, workers=1, progress=interrupt, **SMALL)
    assert (out / JOURNAL_NAME).exists()
    bigvolume.write_pyramid(volume, out, resume=True, workers=1, **SMALL)
    for a, b in zip(store_levels(out), _uninterrupted(tmp_path, volume)):
        np.testing.assert_array_equal(a, b)


def test_resume_in_another_runner_keeps_the_block_plan_of_the_journal(tmp_path, volume):
    # Two processes cut this volume into smaller blocks than this process would: the journal decides.
    out = tmp_path / "mixed.ome.zarr"
    source = raw_source(tmp_path, volume)
    with pytest.raises(KeyboardInterrupt):
        bigvolume.write_pyramid(source, out, workers=2, progress=lambda d, t: (_ for _ in ()).throw(KeyboardInterrupt),
                                **SMALL)
    assert json.loads((out / JOURNAL_NAME).read_text())["extra"]["halvings_per_stage"] == 1
    bigvolume.write_pyramid(source, out, resume=True, workers=1, **SMALL)
    for a, b in zip(store_levels(out), _uninterrupted(tmp_path, volume)):
        np.testing.assert_array_equal(a, b)


def test_resume_refuses_other_settings_and_skips_complete_stores(tmp_path, volume):
    out = tmp_path / "r.ome.zarr"
    with pytest.raises(KeyboardInterrupt):
        bigvolume.write_pyramid(volume, out, workers=1, progress=lambda d, t: (_ for _ in ()).throw(KeyboardInterrupt),
                                **SMALL)
    with pytest.raises(IncompleteStoreError, match=r"cannot resume: .*chunks: \[16, 16, 16\] in the store, \[32, 32, 32\] now"):
        bigvolume.write_pyramid(volume, out, resume=True, chunks=(32, 32, 32), shard_chunks=(1, 2, 2), coarsest=8)
    bigvolume.write_pyramid(volume, out, resume=True, **SMALL)
    stats = {}
    bigvolume.write_pyramid(volume, out, resume=True, stats=stats, **SMALL)
    assert stats["already_complete"]


@pytest.mark.parametrize("workers", [1, 2])
def test_cancel_removes_only_what_this_run_created(tmp_path, volume, workers):
    import threading

    source = raw_source(tmp_path, volume)
    cancel = threading.Event()
    out = tmp_path / "new.ome.zarr"
    with pytest.raises(WriteCancelled, match="removed"):
        bigvolume.write_pyramid(source, out, workers=workers, cancel=cancel, progress=lambda d, t: cancel.set(), **SMALL)
    assert not out.exists()

    kept = tmp_path / "kept.ome.zarr"  # a complete store the user asked to replace: back in place after a cancel
    bigvolume.write_pyramid(np.ones((20, 20, 20), np.uint8), kept)
    cancel.clear()
    with pytest.raises(WriteCancelled, match="previous one put back"):
        bigvolume.write_pyramid(source, kept, overwrite=True, workers=workers, cancel=cancel,
                                progress=lambda d, t: cancel.set(), **SMALL)
    assert bigvolume.open_image(kept).read(0, [(0, 20)] * 3).min() == 1
    assert sorted(os.listdir(tmp_path)) == ["in.raw", "kept.ome.zarr"]


def test_cancel_while_resuming_keeps_the_unfinished_store(tmp_path, volume):
    out = tmp_path / "partial.ome.zarr"
    with pytest.raises(KeyboardInterrupt):
        bigvolume.write_pyramid(volume, out, workers=1, progress=lambda d, t: (_ for _ in ()).throw(KeyboardInterrupt),
                                **SMALL)
    with pytest.raises(WriteCancelled, match="can be resumed"):
        bigvolume.write_pyramid(volume, out, resume=True, cancel=lambda: True, **SMALL)
    assert (out / JOURNAL_NAME).exists()


def test_overwrite_deletes_the_old_store_only_when_the_new_one_is_complete(tmp_path, volume):
    out = tmp_path / "o.ome.zarr"
    bigvolume.write_pyramid(np.ones((10, 10, 10), np.uint8), out)
    seen = []
    bigvolume.write_pyramid(volume, out, overwrite=True, progress=lambda d, t: seen.append(sorted(os.listdir(tmp_path))), **SMALL)
    assert any(name.startswith("o.ome.zarr.replaced-") for name in seen[0])  # set aside while writing
    assert sorted(os.listdir(tmp_path)) == ["o.ome.zarr"]
    assert bigvolume.open_image(out).levels[0].volume_shape == volume.shape


def _peak_tracemalloc(depth):
    class Lazy:
        shape, dtype = (depth, 256, 256), np.dtype(np.uint16)

        def __getitem__(self, key):
            z = np.arange(key.start, key.stop, dtype=np.uint16)[:, None, None]
            return np.broadcast_to(z, (key.stop - key.start, 256, 256)).copy()

    return Lazy()


def test_memory_bound_in_this_process_and_in_worker_processes(tmp_path):
    slab = 64 * 256 * 256 * 2
    peaks = []
    for depth in (128, 1024):  # 8x apart
        tracemalloc.start()
        try:
            bigvolume.write_pyramid(_peak_tracemalloc(depth), tmp_path / f"t{depth}.ome.zarr", coarsest=32, workers=1)
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
    assert peaks[1] < 1.25 * peaks[0] and peaks[1] < 2.5 * slab  # the documented bound in this process

    rss, slab = [], 64 * 512 * 512 * 2
    for depth in (64, 512):  # 32 MB and 256 MB of input, written by two worker processes
        volume = np.broadcast_to(np.arange(depth, dtype=np.uint16)[:, None, None], (depth, 512, 512))
        stats = {}
        bigvolume.write_pyramid(raw_source(tmp_path, np.ascontiguousarray(volume), name=f"m{depth}.raw"),
                                tmp_path / f"p{depth}.ome.zarr", coarsest=32, workers=2, stats=stats)
        rss.append(stats["peak_worker_rss_mb"] * 2**20)
    # Per worker: the live data does not grow with the number of slices; the allocator keeps a few MB
    # more per extra pyramid level (512 slices have three more levels than 64).
    assert rss[1] < rss[0] + 0.75 * slab


def test_dask_cluster_gives_the_same_store(tmp_path, volume):
    distributed = pytest.importorskip("distributed")
    source = raw_source(tmp_path, volume)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        stats = {}
        bigvolume.write_pyramid(source, tmp_path / "dask.ome.zarr", scheduler=cluster.scheduler_address, stats=stats, **SMALL)
    assert stats["runner"].startswith("Dask cluster")
    for a, b in zip(store_levels(tmp_path / "dask.ome.zarr"), _uninterrupted(tmp_path, volume)):
        np.testing.assert_array_equal(a, b)
