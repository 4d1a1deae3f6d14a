"""Benchmark: editing the labels of a >= 16 GB image: stroke latency, writer throughput, memory, journal, undo,
and Slicer's own segmentation painting the same strokes.

The image (default 1024 x 2048 x 4096 uint16, 17.2 GB, 0.075 mm voxels) is the
synthetic rock-core CT (`bigvolume.tools.synthetic`) written once with
`write_pyramid` (timed, kept out of the editing figures), or given with
`--image`. Labels go to a separate local store in the work folder, so a given
image is never changed. Strokes are `Brush` spheres of radius 40 level-0
voxels (3 mm), three points each moving about 40 voxels in an axial plane,
in a random walk inside a 768^3 level-0 crop in the middle of the core (the
walk scrolls a few slices now and then, as someone painting does).
Measured, each on a fresh label pyramid unless said:

- latency, on the first `--latency-strokes` strokes of the walk: at the
  displayed level (default 2) `editor.preview(op, level)` (the core part:
  rasterise and read the few label chunks) and `editor.apply(op, level)`
  (journal append with fdatasync, queue, and the labels of the op's box with
  it applied), median and p90; apply's `submit` share is timed by wrapping
  the editor's `submit`; also preview at level 0 (full-resolution
  rasterising, what Slicer does per stroke). The writer is idle at each
  stroke (`wait()` after each, not timed; the time it took is the writer's
  time for one stroke);
- writer throughput: `--session-strokes` strokes submitted back to back (the
  editor's back-pressure, `max_pending` 64, paces submission) until `wait()`
  returns: level-0 voxels per second, voxels counted as the sum of the
  strokes' level-0 boxes (what `status()` counts), with the number of
  voxels the session changed (labelled at the end; the store starts empty);
- resident memory over that session: VmRSS from /proc/self/status every
  0.1 s in a thread, start, peak, end, and its growth over the second half;
- journal: `submit` with durable=True and durable=False (two editors whose
  writers are not started, submissions alternated), time and bytes per
  record;
- undo: `undo()` of strokes already written (before-images restored, coarser
  levels rebuilt), right after the session; and `undo()` of a stroke still
  queued behind another;
- threshold: a `Threshold` over a box of level 0 covering >= 1 GB of image
  (default 256 x 1024 x 2048, 1.07 GB of uint16) or, with `--threshold-whole`,
  the whole volume (box_ras=None): submit to `wait()`, voxels per second;
- Slicer (slicer-core, in a child process so its memory is its own): the
  crop loaded as a vtkMRMLScalarVolumeNode, a vtkMRMLSegmentationNode on it,
  and the latency strokes painted as Slicer's Paint effect does at mouse
  release (qSlicerSegmentEditorPaintEffect::paintApply): SaveStateForUndo,
  the default modifier labelmap (ResetModifierLabelmapToDefault: the whole
  reference extent, zero-filled), the stroke rasterised into it, and
  ModifySegmentByLabelmap (add mode) over the stroke's extent, all through
  vtkSlicerSegmentEditorLogic. The stroke is rasterised with BigVolume's own
  `Brush.region` (Slicer rasterises a brush polydata with a stencil; timed
  apart). RSS after each stroke, then `Undo()` timed. Once with the logic's
  default number of undo states and once with BigVolume's (100), stopped
  early if the child's RSS passes `--slicer-rss-cap-gb`.

    python bench/label_edit.py                      # writes the 17 GB image (4-5 minutes), then about 22 minutes
    python bench/label_edit.py --image PATH --keep   # an image written earlier
    python bench/label_edit.py --quick              # a small image and a few strokes, under a minute
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from common import peak_rss_mb, rss_mb, write_report  # noqa: E402

FULL = {"shape": (1024, 2048, 4096), "crop": 768, "radius": 40, "latency": 200, "session": 1000, "undo": 50,
        "pending_undo": 20, "journal": 200, "threshold": (256, 1024, 2048), "slicer": 200}
QUICK = {"shape": (128, 256, 512), "crop": 96, "radius": 10, "latency": 20, "session": 40, "undo": 5,
         "pending_undo": 5, "journal": 20, "threshold": (64, 128, 256), "slicer": 20}
VOXEL_MM = 0.075
THRESHOLD = (24000.0, 65535.0)  # quartz, feldspar and heavy grains of the synthetic core


def _summary(values, scale=1e3):
    a = np.asarray(values, dtype=float) * scale
    if not a.size:
        return None
    return {"median": float(np.median(a)), "p90": float(np.percentile(a, 90)), "mean": float(a.mean()),
            "max": float(a.max()), "n": int(a.size)}


def _du(path):
    total = 0
    for root, _, names in os.walk(path):
        for name in names:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except FileNotFoundError:
                pass
    return total


class RssSampler:
    """VmRSS of this process every `period` seconds, in a thread."""

    def __init__(self, period=0.1):
        self.period, self.samples = period, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        start = time.perf_counter()
        while not self._stop.is_set():
            self.samples.append((time.perf_counter() - start, rss_mb()))
            self._stop.wait(self.period)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


# -- the image and the strokes -------------------------------------------------------------------------------
def _ensure_image(path, shape):
    import bigvolume
    from bigvolume.tools.synthetic import SyntheticRockCore

    core = SyntheticRockCore(shape)
    geometry = bigvolume.VolumeGeometry(spacing=(VOXEL_MM,) * 3, unit="millimeter")
    gb = float(np.prod(shape)) * 2 / 1e9
    print(f"writing the synthetic CT {shape} uint16 ({gb:.1f} GB) to {path} ...", flush=True)
    last = [0.0]

    def progress(done, total):
        if time.perf_counter() - last[0] > 30:
            last[0] = time.perf_counter()
            print(f"  {done}/{total} planes", flush=True)

    start = time.perf_counter()
    bigvolume.write_pyramid(core, path, geometry, overwrite=True, progress=progress)
    seconds = time.perf_counter() - start
    print(f"  written in {seconds:.0f} s ({gb * 1e3 / seconds:.0f} MB/s)", flush=True)
    return seconds


def _crop_box(shape, size):
    """A size^3 box of level 0 in the middle of the volume (inside the core's cylinder)."""
    return tuple((n // 2 - min(size, n) // 2, n // 2 - min(size, n) // 2 + min(size, n)) for n in shape)


def _walk(rng, crop, n, radius):
    """Stroke paths (lists of z, y, x level-0 voxel positions): a random walk in axial planes inside `crop`."""
    lo = np.array([a + radius + 1 for a, _ in crop], dtype=float)
    hi = np.array([b - radius - 2 for _, b in crop], dtype=float)
    pos = (lo + hi) / 2
    heading = rng.uniform(0, 2 * np.pi)
    strokes = []
    for _ in range(n):
        if rng.random() < 0.2:  # scroll a few slices
            pos[0] = float(np.clip(pos[0] + rng.integers(-8, 9), lo[0], hi[0]))
        path = [pos.copy()]
        for _ in range(2):
            heading += rng.normal(0, 0.6)
            step = rng.uniform(15, 25) * np.array([0.0, np.sin(heading), np.cos(heading)])
            new = pos + step
            for axis in (1, 2):
                if not lo[axis] <= new[axis] <= hi[axis]:  # bounce off the crop's walls
                    heading = np.arctan2(-np.sin(heading), np.cos(heading)) if axis == 1 else \
                        np.arctan2(np.sin(heading), -np.cos(heading))
                    new[axis] = np.clip(new[axis], lo[axis], hi[axis])
            pos = new
            path.append(pos.copy())
        strokes.append(path)
    return strokes


def _brushes(paths, level0, radius_mm, value=1):
    from bigvolume.labels.operations import Brush

    return [Brush(value, points=[tuple((level0.ijk_to_ras @ np.array([p[2], p[1], p[0], 1.0]))[:3]) for p in path],
                  radius_mm=radius_mm) for path in paths]


def _box_voxels(op, level):
    box = op.voxel_box(level)
    return 0 if box is None else int(np.prod([b - a for a, b in box]))


def _region_voxels(ops, level):
    """Voxels inside the strokes' shapes (capsules), summed over strokes (a voxel painted twice counts twice)."""
    total = 0
    for op in ops:
        box = op.voxel_box(level)
        total += int(np.count_nonzero(op.region(level, box)))
    return total


def _labelled(store, level=0):
    """Voxels of `level` with a label (non-zero), over the stored chunks."""
    return int(sum(np.count_nonzero(store.read_chunk(level, c)) for c in store.stored_chunks(level)))


# -- BigVolume ---------------------------------------------------------------------------------------------------
def _latency(store, ops, level):
    from bigvolume.labels.editor import LabelEditor

    editor = LabelEditor(store)
    submit_times = []
    plain_submit = editor.submit

    def timed_submit(*a, **k):
        t = time.perf_counter()
        try:
            return plain_submit(*a, **k)
        finally:
            submit_times.append(time.perf_counter() - t)

    editor.submit = timed_submit  # apply() calls self.submit: its share of apply, timed on the same strokes
    rows = {"preview": [], "apply": [], "preview_level0": [], "writer_per_stroke": []}
    try:
        for op in ops:
            t = time.perf_counter()
            editor.preview(op, level)
            rows["preview"].append(time.perf_counter() - t)
            t = time.perf_counter()
            editor.preview(op, 0)
            rows["preview_level0"].append(time.perf_counter() - t)
            t = time.perf_counter()
            editor.apply(op, level)
            rows["apply"].append(time.perf_counter() - t)
            t = time.perf_counter()
            editor.wait()
            rows["writer_per_stroke"].append(time.perf_counter() - t)
    finally:
        editor.close()
    rows["submit_in_apply"] = submit_times
    lvl = store.levels[level]
    return {"level": level, "voxel_mm": list(lvl.voxel_size_mm),
            "box_voxels_at_level": _summary([_box_voxels(op, lvl) for op in ops], 1),
            "chunks_read_at_level": _summary([len(lvl.chunks_in_box(op.voxel_box(lvl))) for op in ops], 1),
            "level0_chunks_per_stroke": _summary([len(store.levels[0].chunks_in_box(op.voxel_box(store.levels[0])))
                                                  for op in ops], 1),
            **{f"{k}_ms": _summary(v) for k, v in rows.items()}}


def _session(store, ops, undo_count, pending_ops):
    from bigvolume.labels.editor import LabelEditor

    level0 = store.levels[0]
    editor = LabelEditor(store)
    submits = []
    with RssSampler() as sampler:
        rss_start = rss_mb()
        start = time.perf_counter()
        for op in ops:
            t = time.perf_counter()
            editor.submit(op)
            submits.append(time.perf_counter() - t)
        submitted = time.perf_counter() - start
        editor.wait()
        seconds = time.perf_counter() - start
        status = editor.status()
        rss_end = rss_mb()
    samples = np.array(sampler.samples)
    box_voxels = sum(_box_voxels(op, level0) for op in ops)
    print(f"  session: {len(ops)} strokes written in {seconds:.1f} s, "
          f"{box_voxels / seconds / 1e6:.1f} M voxels/s (box voxels)", flush=True)
    labelled = _labelled(store)
    half = samples[samples[:, 0] >= samples[-1, 0] / 2]
    session = {
        "strokes": len(ops), "seconds": seconds, "submitted_in_s": submitted,
        "box_voxels": box_voxels, "voxels_per_s": box_voxels / seconds,
        "stroke_region_voxels": _region_voxels(ops, level0),
        "changed_voxels": labelled, "changed_voxels_per_s": labelled / seconds,
        "writer_status_voxels_per_s": status["voxels_per_second"],
        "submit_ms": _summary(submits),
        "rss_mb": {"start": rss_start, "peak": float(samples[:, 1].max()), "end": rss_end,
                   "growth_over_second_half": float(half[-1, 1] - half[0, 1]) if len(half) > 1 else 0.0,
                   "trace_s_mb": [[round(float(t), 1), round(float(m), 1)]
                                  for t, m in samples[::max(1, len(samples) // 60)]]},
        "undo_folder_mb": _du(editor.before.folder) / 1e6,
        "journal_kb": editor.journal.size() / 1e3,
    }
    # Undo of strokes already written: before-images back, coarser levels rebuilt.
    undos = []
    for _ in range(undo_count):
        t = time.perf_counter()
        if editor.undo() is None:
            break
        undos.append(time.perf_counter() - t)
    # Undo of a stroke still queued: it waits behind another stroke being written.
    pending, was_pending = [], []
    for a, b in pending_ops:
        editor.submit(a)
        editor.submit(b)
        was_pending.append(editor.status()["pending"] >= 2)
        t = time.perf_counter()
        editor.undo()
        pending.append(time.perf_counter() - t)
        editor.wait()
    editor.close()
    session["undo_written_ms"] = _summary(undos)
    session["undo_pending_ms"] = _summary(pending)
    session["undo_pending_all_were_queued"] = all(was_pending)
    return session


def _journal(image, root, ops):
    from bigvolume.labels.editor import LabelEditor
    from bigvolume.labels.label_store import create_labels

    editors = {}
    for durable in (True, False):
        store = create_labels(image, f"journal_{'durable' if durable else 'fast'}", store=root, overwrite=True)
        editors[durable] = LabelEditor(store, durable=durable, start=False, max_pending=10**6)
    times = {True: [], False: []}
    sizes = {d: e.journal.size() for d, e in editors.items()}
    for op in ops:
        for durable, editor in editors.items():
            t = time.perf_counter()
            editor.submit(op)
            times[durable].append(time.perf_counter() - t)
    result = {}
    for durable, editor in editors.items():
        record = (editor.journal.size() - sizes[durable]) / len(ops)
        editor.close(wait=False)
        result["durable" if durable else "not_durable"] = {"submit_ms": _summary(times[durable]),
                                                           "bytes_per_record": record}
        shutil.rmtree(editor.store.path, ignore_errors=True)
    return result


def _threshold(image, root, box, whole):
    from bigvolume.labels.editor import LabelEditor
    from bigvolume.labels.label_store import create_labels
    from bigvolume.labels.operations import Threshold
    from bigvolume.labels.segments import Segment

    store = create_labels(image, "threshold", store=root, segments=[Segment(2, "Grains")], overwrite=True)
    level0 = store.levels[0]
    if whole:
        op = Threshold(2, low=THRESHOLD[0], high=THRESHOLD[1])
        box = tuple((0, n) for n in level0.volume_shape)
    else:
        corners = [level0.ijk_to_ras @ np.array([b[2], b[1], b[0], 1.0]) for b in
                   ((box[0][0], box[1][0], box[2][0]), (box[0][1] - 1, box[1][1] - 1, box[2][1] - 1))]
        op = Threshold(2, low=THRESHOLD[0], high=THRESHOLD[1], box_ras=(tuple(corners[0][:3]), tuple(corners[1][:3])))
        assert op.voxel_box(level0) == tuple(box), (op.voxel_box(level0), box)
    voxels = int(np.prod([b - a for a, b in box]))
    editor = LabelEditor(store)
    with RssSampler() as sampler:
        start = time.perf_counter()
        editor.submit(op)
        editor.wait()
        seconds = time.perf_counter() - start
    editor.close()
    labelled = _labelled(store)
    print(f"  threshold over {voxels / 1e6:.0f} M voxels ({voxels * 2 / 1e9:.2f} GB of image): {seconds:.1f} s, "
          f"{voxels / seconds / 1e6:.1f} M voxels/s", flush=True)
    return {"whole_volume": whole, "box_zyx": [list(b) for b in box], "voxels": voxels, "image_gb": voxels * 2 / 1e9,
            "seconds": seconds, "voxels_per_s": voxels / seconds, "voxels_set": labelled,
            "label_mb_on_disk": _du(os.path.join(store.path, "0")) / 1e6,
            "peak_rss_mb": float(max(m for _, m in sampler.samples))}


# -- Slicer (child process) ----------------------------------------------------------------------------------
def _slicer_child(spec_path):
    """Paint the strokes in `spec` into a Slicer segmentation of the crop; print the figures as JSON."""
    with open(spec_path) as f:
        spec = json.load(f)
    import bigvolume
    import slicer
    import vtk
    from vtk.util import numpy_support

    from bigvolume.labels.operations import operation_from_json

    image = bigvolume.open_image(spec["image"])
    level0 = image.levels[0]
    crop = [tuple(b) for b in spec["crop"]]
    rss0 = rss_mb()
    t = time.perf_counter()
    voxels = image.read(0, crop)
    read_s = time.perf_counter() - t

    factory = slicer.vtkSegmentationConverterFactory.GetInstance()
    factory.RegisterConverterRule(slicer.vtkBinaryLabelmapToClosedSurfaceConversionRule())
    factory.RegisterConverterRule(slicer.vtkClosedSurfaceToBinaryLabelmapConversionRule())
    scene = slicer.vtkMRMLScene()
    app_logic = slicer.vtkSlicerApplicationLogic()
    app_logic.SetMRMLScene(scene)
    segmentations_logic = slicer.vtkSlicerSegmentationsModuleLogic()
    segmentations_logic.SetMRMLScene(scene)  # registers the segmentation and segment editor node classes

    volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "crop")
    data = vtk.vtkImageData()
    data.SetDimensions(voxels.shape[2], voxels.shape[1], voxels.shape[0])
    data.GetPointData().SetScalars(numpy_support.numpy_to_vtk(voxels.reshape(-1), deep=True))
    del voxels
    volume.SetAndObserveImageData(data)
    ijk_to_ras = level0.ijk_to_ras @ np.array([[1, 0, 0, crop[2][0]], [0, 1, 0, crop[1][0]], [0, 0, 1, crop[0][0]],
                                                [0, 0, 0, 1.0]])
    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(ijk_to_ras[r, c]))
    volume.SetIJKToRASMatrix(matrix)
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "segmentation")
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volume)
    segment_id = segmentation.GetSegmentation().AddEmptySegment("Painted")
    editor_node = scene.AddNewNodeByClass("vtkMRMLSegmentEditorNode")
    logic = slicer.vtkSlicerSegmentEditorLogic()
    logic.SetMRMLScene(scene)
    logic.SetMRMLApplicationLogic(app_logic)
    logic.SetSegmentEditorNode(editor_node)
    logic.SetSegmentationNode(segmentation)
    logic.SetSourceVolumeNode(volume)
    editor_node.SetSelectedSegmentID(segment_id)
    default_states = logic.GetMaximumNumberOfUndoStates()
    if spec["undo_states"]:
        logic.SetMaximumNumberOfUndoStates(spec["undo_states"])
    rss_loaded = rss_mb()

    parts = {"save_state_for_undo": [], "reset_modifier_labelmap": [], "rasterise": [], "modify_segment": [],
             "total": []}
    rss_after, stopped = [], None
    for i, op_json in enumerate(spec["strokes"]):
        op = operation_from_json(op_json)
        box = op.voxel_box(level0)
        local = [(max(a, c0) - c0, min(b, c1) - c0) for (a, b), (c0, c1) in zip(box, crop)]
        start = time.perf_counter()
        logic.SaveStateForUndo()
        t1 = time.perf_counter()
        logic.ResetModifierLabelmapToDefault()
        modifier = logic.GetModifierLabelmap()
        t2 = time.perf_counter()
        e = modifier.GetExtent()
        array = numpy_support.vtk_to_numpy(modifier.GetPointData().GetScalars()).reshape(
            e[5] - e[4] + 1, e[3] - e[2] + 1, e[1] - e[0] + 1)
        region = op.region(level0, tuple((a + c0, b + c0) for (a, b), (c0, _) in zip(local, crop)))
        array[tuple(slice(a - o, b - o) for (a, b), o in zip(local, (e[4], e[2], e[0])))][region] = 1
        modifier.Modified()
        t3 = time.perf_counter()
        extent = (local[2][0], local[2][1] - 1, local[1][0], local[1][1] - 1, local[0][0], local[0][1] - 1)
        logic.ModifySegmentByLabelmap(segmentation, segment_id, modifier, logic.ModificationModeAdd, extent,
                                      False, False)
        t4 = time.perf_counter()
        for key, value in zip(parts, (t1 - start, t2 - t1, t3 - t2, t4 - t3, t4 - start)):
            parts[key].append(value)
        rss_after.append(rss_mb())
        if rss_after[-1] > spec["rss_cap_mb"]:
            stopped = i + 1
            break
    labelmap = segmentation.GetSegmentation().GetSegment(segment_id).GetRepresentation("Binary labelmap")
    e = labelmap.GetExtent()
    painted = numpy_support.vtk_to_numpy(labelmap.GetPointData().GetScalars())
    painted_voxels = int(np.count_nonzero(painted))
    labelmap_mb = painted.nbytes / 1e6
    undos = []
    for _ in range(min(spec["undo_count"], len(parts["total"]))):
        if not logic.CanUndo():
            break
        t = time.perf_counter()
        logic.Undo()
        undos.append(time.perf_counter() - t)
    print(json.dumps({
        "crop_zyx": [list(b) for b in crop], "crop_mb": float(np.prod([b - a for a, b in crop]) * 2 / 1e6),
        "read_crop_s": read_s, "default_undo_states": default_states,
        "undo_states": logic.GetMaximumNumberOfUndoStates(), "strokes_painted": len(parts["total"]),
        "stopped_at_rss_cap_after": stopped,
        "stroke_ms": {k: _summary(v) for k, v in parts.items()},
        "rss_mb": {"before_volume": rss0, "loaded": rss_loaded, "after_strokes": rss_after[-1] if rss_after else None,
                   "peak": peak_rss_mb(), "growth_over_strokes": (rss_after[-1] - rss_loaded) if rss_after else None,
                   "trace_after_stroke": [round(m, 1) for m in rss_after[::max(1, len(rss_after) // 40)]]},
        "segment_labelmap_extent": list(e), "segment_labelmap_mb": labelmap_mb, "painted_voxels": painted_voxels,
        "undo_ms": _summary(undos)}))


def _slicer(image_path, crop, ops, undo_states, undo_count, rss_cap_gb, workdir):
    spec = {"image": image_path, "crop": [list(b) for b in crop], "strokes": [op.to_json() for op in ops],
            "undo_states": undo_states, "undo_count": undo_count, "rss_cap_mb": rss_cap_gb * 1024}
    path = os.path.join(workdir, f"slicer-spec-{undo_states}.json")
    with open(path, "w") as f:
        json.dump(spec, f)
    try:
        run = subprocess.run([sys.executable, os.path.abspath(__file__), "--slicer-child", path],
                             capture_output=True, text=True)
    finally:
        os.remove(path)
    if run.returncode != 0:
        return {"error": (run.stderr.strip().splitlines() or ["failed"])[-1], "stderr_tail": run.stderr[-2000:]}
    return json.loads(run.stdout.strip().splitlines()[-1])


# -- main ----------------------------------------------------------------------------------------------------
def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small image and a few strokes: checks the script")
    parser.add_argument("--image", help="an existing image store to edit (not deleted; its labels go to --workdir)")
    parser.add_argument("--shape", type=int, nargs=3, metavar=("Z", "Y", "X"),
                        help="image to write (default 1024 2048 4096)")
    parser.add_argument("--workdir", default="/work/bench-work/label_edit")
    parser.add_argument("--keep", action="store_true", help="keep the image and the label stores")
    parser.add_argument("--level", type=int, default=2, help="the displayed level for preview and apply")
    parser.add_argument("--latency-strokes", type=int)
    parser.add_argument("--session-strokes", type=int)
    parser.add_argument("--undo", type=int, help="undos of written strokes")
    parser.add_argument("--threshold-whole", action="store_true", help="threshold the whole volume, not a >= 1 GB box")
    parser.add_argument("--slicer-strokes", type=int, help="latency strokes painted in Slicer (0: skip Slicer)")
    parser.add_argument("--slicer-rss-cap-gb", type=float, default=8.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=os.path.join(HERE, "results", "label_edit.json"))
    parser.add_argument("--slicer-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.slicer_child:
        return _slicer_child(args.slicer_child)

    import bigvolume
    from bigvolume.labels.label_store import create_labels
    from bigvolume.labels.segments import Segment

    preset = dict(QUICK if args.quick else FULL)
    shape = tuple(args.shape or preset["shape"])
    latency_n = args.latency_strokes if args.latency_strokes is not None else preset["latency"]
    session_n = args.session_strokes if args.session_strokes is not None else preset["session"]
    undo_n = args.undo if args.undo is not None else preset["undo"]
    slicer_n = min(latency_n, args.slicer_strokes if args.slicer_strokes is not None else preset["slicer"])
    if args.quick and args.output == parser.get_default("output"):
        args.output = os.path.join(args.workdir, "label_edit_quick.json")
    os.makedirs(args.workdir, exist_ok=True)
    labels_root = os.path.join(args.workdir, "labels.ome.zarr")
    image_path = args.image or os.path.join(args.workdir, "image_quick.ome.zarr" if args.quick else "image.ome.zarr")
    run_start = time.perf_counter()
    written_here = False
    try:
        write_s = None
        if args.image is None:
            write_s = _ensure_image(image_path, shape)
            written_here = True
        image = bigvolume.open_image(image_path)
        level0 = image.levels[0]
        shape = tuple(level0.volume_shape)
        image_info = {"path": image_path, "shape_zyx": list(shape), "dtype": str(level0.dtype),
                      "logical_gb": float(np.prod(shape)) * level0.dtype.itemsize / 1e9,
                      "on_disk_gb": _du(image_path) / 1e9, "levels": [list(lvl.volume_shape) for lvl in image.levels],
                      "chunks": list(level0.chunks), "shards": list(level0.shards) if level0.shards else None,
                      "voxel_mm": list(level0.voxel_size_mm),
                      "write_seconds": write_s,
                      "write_mb_per_s": (float(np.prod(shape)) * 2 / 1e6 / write_s) if write_s else None,
                      "written_by": ("this run (write_pyramid of SyntheticRockCore)" if write_s
                                     else "given with --image")}
        print(f"image {shape}, {image_info['logical_gb']:.1f} GB logical, {image_info['on_disk_gb']:.1f} GB on disk, "
              f"{len(image.levels)} levels", flush=True)
        shutil.rmtree(labels_root, ignore_errors=True)

        voxel = float(level0.voxel_size_mm[0])
        radius_mm = preset["radius"] * voxel
        crop = _crop_box(shape, preset["crop"])
        rng = np.random.default_rng(args.seed)
        paths = _walk(rng, crop, max(latency_n, session_n), preset["radius"])
        ops = _brushes(paths, level0, radius_mm)
        segments = [Segment(1, "Painted")]
        strokes_info = {"radius_voxels": preset["radius"], "radius_mm": radius_mm, "points_per_stroke": 3,
                        "crop_zyx": [list(b) for b in crop],
                        "level0_box_voxels": _summary([_box_voxels(op, level0) for op in ops[:latency_n]], 1)}
        results = {}

        print(f"latency: {latency_n} strokes at level {args.level} (writer idle at each) ...", flush=True)
        store = create_labels(image, "latency", store=labels_root, segments=segments)
        results["latency"] = _latency(store, ops[:latency_n], args.level)
        results["latency"]["labelled_voxels_after"] = _labelled(store)
        lat = results["latency"]
        print(f"  preview {lat['preview_ms']['median']:.1f} ms (p90 {lat['preview_ms']['p90']:.1f}), "
              f"apply {lat['apply_ms']['median']:.1f} ms (p90 {lat['apply_ms']['p90']:.1f}), "
              f"writer {lat['writer_per_stroke_ms']['median']:.0f} ms per stroke", flush=True)

        print(f"session: {session_n} strokes submitted back to back ...", flush=True)
        store = create_labels(image, "session", store=labels_root, segments=segments)
        far = _brushes([[np.array([c0 + preset["radius"] + 2, c1 + preset["radius"] + 2, c2 + preset["radius"] + 2])]
                        for (c0, _), (c1, _), (c2, _) in [crop]], level0, radius_mm)[0]
        pending_pairs = [(far, op) for op in ops[:preset["pending_undo"]]]
        results["session"] = _session(store, ops[:session_n], undo_n, pending_pairs)
        s = results["session"]
        print(f"  RSS {s['rss_mb']['start']:.0f} -> peak {s['rss_mb']['peak']:.0f} -> {s['rss_mb']['end']:.0f} MB; "
              f"undo of written strokes {s['undo_written_ms']['median']:.0f} ms, of a queued one "
              f"{s['undo_pending_ms']['median']:.1f} ms", flush=True)

        print("journal ...", flush=True)
        results["journal"] = _journal(image, labels_root, ops[:preset["journal"]])
        j = results["journal"]
        print(f"  submit durable {j['durable']['submit_ms']['median']:.2f} ms, not durable "
              f"{j['not_durable']['submit_ms']['median']:.3f} ms, {j['durable']['bytes_per_record']:.0f} B per record",
              flush=True)

        print("threshold ...", flush=True)
        tbox = tuple((n // 2 - min(t, n) // 2, n // 2 - min(t, n) // 2 + min(t, n))
                     for n, t in zip(shape, preset["threshold"]))
        results["threshold"] = _threshold(image, labels_root, tbox, args.threshold_whole)

        if slicer_n > 0:
            runs = {}
            for label, states in (("default_undo_states", 0), ("undo_states_100", 100)):
                print(f"Slicer: {slicer_n} strokes on a {preset['crop']}^3 crop ({label}) ...", flush=True)
                runs[label] = _slicer(image_path, crop, ops[:slicer_n], states, undo_n, args.slicer_rss_cap_gb,
                                      args.workdir)
                r = runs[label]
                if "error" in r:
                    print(f"  failed: {r['error']}", flush=True)
                else:
                    undo = r["undo_ms"]["median"] if r["undo_ms"] else float("nan")
                    print(f"  {r['undo_states']} undo states: stroke {r['stroke_ms']['total']['median']:.0f} ms "
                          f"(p90 {r['stroke_ms']['total']['p90']:.0f}), "
                          f"RSS +{r['rss_mb']['growth_over_strokes']:.0f} MB over {r['strokes_painted']} strokes, "
                          f"undo {undo:.1f} ms", flush=True)
            results["slicer"] = runs
            if slicer_n == latency_n:  # the same strokes: the same voxels must be painted
                bigvolume_voxels = results["latency"]["labelled_voxels_after"]
                results["slicer"]["same_voxels_as_bigvolume"] = {
                    k: (v.get("painted_voxels") == bigvolume_voxels) for k, v in runs.items()
                    if "painted_voxels" in v and not v.get("stopped_at_rss_cap_after")}

        print_summary(results)
        write_report(args.output, "label_edit", image=image_info, strokes=strokes_info,
                     options={k: v for k, v in vars(args).items() if k != "slicer_child"},
                     counts={"latency": latency_n, "session": session_n, "undo": undo_n, "slicer": slicer_n},
                     run_seconds=time.perf_counter() - run_start, peak_rss_mb=peak_rss_mb(), results=results)
    finally:
        if not args.keep:
            shutil.rmtree(labels_root, ignore_errors=True)
            if written_here:
                shutil.rmtree(image_path, ignore_errors=True)


def print_summary(r):
    lat, s, j, t = r["latency"], r["session"], r["journal"], r["threshold"]

    def ms(entry, digits=1):
        return f"{entry['median']:.{digits}f} ms", f"{entry['p90']:.{digits}f} ms"

    rss = s["rss_mb"]
    rows = [
        (f"preview at level {lat['level']} (core part)", *ms(lat["preview_ms"])),
        (f"apply at level {lat['level']}", *ms(lat["apply_ms"])),
        ("  of which submit (journal fdatasync)", *ms(lat["submit_in_apply_ms"])),
        ("preview at level 0", *ms(lat["preview_level0_ms"], 0)),
        ("writer time per stroke (idle writer)", *ms(lat["writer_per_stroke_ms"], 0)),
        (f"session of {s['strokes']} strokes", f"{s['seconds']:.1f} s", ""),
        ("  writer throughput (box voxels)", f"{s['voxels_per_s'] / 1e6:.2f} M/s", ""),
        ("  changed voxels per second", f"{s['changed_voxels_per_s'] / 1e6:.2f} M/s", ""),
        ("  RSS start / peak / end", f"{rss['start']:.0f} / {rss['peak']:.0f} / {rss['end']:.0f} MB", ""),
        ("submit, durable journal", *ms(j["durable"]["submit_ms"], 2)),
        ("submit, not durable", *ms(j["not_durable"]["submit_ms"], 3)),
        ("journal bytes per stroke record", f"{j['durable']['bytes_per_record']:.0f} B", ""),
        ("undo of a written stroke", *ms(s["undo_written_ms"], 0)),
        ("undo of a queued stroke", *ms(s["undo_pending_ms"])),
        (f"threshold, {t['image_gb']:.2f} GB of image", f"{t['seconds']:.1f} s",
         f"{t['voxels_per_s'] / 1e6:.1f} M voxels/s"),
    ]
    for run in (r.get("slicer") or {}).values():
        if not isinstance(run, dict) or "stroke_ms" not in run:
            continue
        parts = run["stroke_ms"]
        rows.append((f"Slicer stroke ({run['undo_states']} undo states)", *ms(parts["total"], 0)))
        rows.append(("  of which rasterising (Brush.region)", *ms(parts["rasterise"], 0)))
        rows.append(("  of which the default modifier labelmap", *ms(parts["reset_modifier_labelmap"], 0)))
        rows.append((f"  Slicer RSS growth over {run['strokes_painted']} strokes",
                     f"{run['rss_mb']['growth_over_strokes']:.0f} MB",
                     "stopped at the RSS cap" if run["stopped_at_rss_cap_after"] else ""))
        if run["undo_ms"]:
            rows.append(("  Slicer undo", *ms(run["undo_ms"])))
    print()
    print(f"{'':<44}{'median':>18}{'p90 / note':>24}")
    for label, a, b in rows:
        print(f"{label:<44}{a:>18}{b:>24}")


if __name__ == "__main__":
    main()
