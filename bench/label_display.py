"""Benchmark: painting a label pyramid of a 17 GB image from a slice view, against Slicer painting an ordinary
segmentation of the largest crop that fits here.

BigVolume (one process): the 2048^3 uint16 store bench/slice_browse.py writes (17.2 GB), a new label pyramid
in a separate local store, one 1024 x 1024 axial slice view streamed through one engine and a 2 GB chunk
cache, zoomed to show level 1. Strokes are Paint-effect strokes from the editing engine (3 view points, a disc
brush of 30 screen pixels, one displayed slice thick), submitted back to back as a user paints. Measured:

- stroke -> visible: from `submit` (journalled, fsynced) until the view that painted shows the stroke (its
  proxy voxel under the stroke's first point holds the segment; the views updated every 15 ms as Slicer's
  timer does), strokes `--interval` seconds apart (0.25 s: fast painting; 0: back to back) (goal <= 30 ms);
- resident memory over the session, sampled every 100 strokes (bounded: it should level off);
- how far the writer lags: operations and seconds of writing queued, sampled; the time from the last stroke
  until every stroke is written at full resolution;
- slice browsing, 60 level-1 slices, each frame complete, with the labels shown and with them hidden.

Slicer (a child process, for its own peak memory): vtkSlicerSegmentEditorLogic painting the same number of
strokes, made the way Slicer's Paint effect makes them, into an ordinary segmentation of a crop of the same
image held in memory (`--slicer-crop`, 512^3 by default: the image 256 MB, the segmentation's modifier and
undo states on top). Per stroke: the default modifier labelmap, the brush stamped, ModifySegmentByLabelmap,
with Slicer's default 5 undo states; rendering is not included.

    python bench/label_display.py [--image PATH] [--strokes 1000] [--interval 0.25] [--slicer-crop 512]
                                  [--slicer-strokes 200]
"""

import argparse
import json
import os
import shutil
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "Testing"))  # Slicer's painting, as the tests drive it
from common import frame_rate, peak_rss_mb, rss_mb, run_child, write_report  # noqa: E402
from slice_browse import _ensure_disk_store, _wait  # noqa: E402

VIEW = 1024
BRUSH_PIXELS = 30
BROWSE_SLICES = 60
TIMER_SECONDS = 0.015  # Slicer's BigVolume timer: how often the views catch up


def _summary(values):
    values = np.asarray(values) * 1e3
    return {"median_ms": float(np.median(values)), "p90_ms": float(np.percentile(values, 90)),
            "max_ms": float(values.max()), "n": int(len(values))}


def _stroke_paths(rng, count, size=VIEW, margin=60):
    """View-pixel paths of 3 points, each stroke starting where the last ended, in a random walk."""
    pos, heading, paths = np.array([size / 2, size / 2]), 0.0, []
    for _ in range(count):
        path = [pos.copy()]
        for _ in range(2):
            heading += rng.normal(0, 0.7)
            pos = np.clip(pos + rng.uniform(20, 40) * np.array([np.cos(heading), np.sin(heading)]), margin,
                          size - margin)
            path.append(pos.copy())
        paths.append(path)
    return paths


def _voxel_of(streamer, ras):
    """The proxy's voxel under a RAS point (aligned plans: the plan's box on its level's grid)."""
    plan = streamer.current_plan
    level = streamer.image.levels[plan.level]
    i, j, k = np.floor((level.ras_to_ijk @ np.append(ras, 1.0))[:3] + 0.5).astype(int)
    (z0, _), (y0, _), (x0, _) = plan.box
    return streamer.voxels[k - z0, j - y0, i - x0]


def _browse(streaming, red, streamers, step_mm):
    offset, frames = red.GetSliceOffset(), []
    for n in range(1, BROWSE_SLICES + 1):
        start = time.perf_counter()
        red.SetSliceOffset(offset + n * step_mm)
        _wait(streaming, lambda: all(s.complete for s in streamers if s.shown))
        frames.append(time.perf_counter() - start)
    red.SetSliceOffset(offset)
    return frame_rate(frames)


def measure_bigvolume(image_path, strokes, work, interval):
    import slicer

    import bigvolume
    from bigvolume.labels.segments import Segment
    from BigVolumeLib.offscreen.views import OffscreenScene
    from BigVolumeLib.segmentation.bound_labels import BoundLabels
    from BigVolumeLib.segmentation.editing import mm_per_pixel, xy_to_ras
    from BigVolumeLib.streaming.streaming_scene import StreamingScene

    result = {}
    labels_root = os.path.join(work, "label-display-labels")
    shutil.rmtree(labels_root, ignore_errors=True)
    os.makedirs(labels_root)
    scene = OffscreenScene()
    slicer.vtkSlicerSegmentationsModuleLogic().SetMRMLScene(scene.scene)
    red = scene.add_view("Red", "Axial", (VIEW, VIEW))
    image = bigvolume.open_image(image_path)
    streaming = StreamingScene(scene.scene, cache_bytes=2 * 1024**3, workers=2)
    streamed = streaming.add_image(image)
    voxel = image.levels[1].voxel_size_mm
    red.SetFieldOfView(VIEW * voxel[0], VIEW * voxel[1], voxel[2])  # one level-1 voxel per pixel
    red.UpdateMatrices()
    labels = BoundLabels(scene.scene, streaming, image, "phases", store=labels_root, create=True,
                         segments=[Segment(1, "pore", (0.2, 0.4, 1.0))])
    image_streamer = streamed.streamers[red.GetID()]
    label_streamer = labels.streamed.streamers[red.GetID()]
    _wait(streaming, lambda: image_streamer.complete and label_streamer.complete)
    result["view_level"] = label_streamer.level
    diameter = BRUSH_PIXELS * mm_per_pixel(red)
    result["brush_diameter_mm"] = diameter
    rng = np.random.default_rng(7)
    visible, submit, rss, lag = [], [], [], []
    rss_start = rss_mb()
    session_start = time.perf_counter()
    for n, path in enumerate(_stroke_paths(rng, strokes)):
        op = labels.editing.stroke(red, path, "pore", diameter)
        first = xy_to_ras(red, [path[0]])[0]
        start = time.perf_counter()
        labels.editing.submit(op)
        submit.append(time.perf_counter() - start)
        _wait(streaming, lambda: _voxel_of(label_streamer, first) == 1, period=TIMER_SECONDS, look_first=True)
        visible.append(time.perf_counter() - start)
        while time.perf_counter() < start + interval:  # Slicer's timer until the next stroke
            streaming.update()
            time.sleep(TIMER_SECONDS)
        if n % 100 == 99:
            status = labels.editor.status()
            rss.append({"strokes": n + 1, "rss_mb": rss_mb(), "chunk_cache_mb": streaming.cache.nbytes / 2**20})
            lag.append({"strokes": n + 1, "pending_operations": status["pending"],
                        "behind_seconds": status["behind_seconds"]})
    submitted = time.perf_counter()
    labels.editor.wait()
    result["strokes"] = strokes
    result["painting_seconds"] = submitted - session_start
    result["last_stroke_to_written_s"] = time.perf_counter() - submitted
    result["stroke_to_visible"] = _summary(visible)
    result["submit"] = _summary(submit)
    result["rss_mb"] = {"start": rss_start, "samples": rss, "peak": peak_rss_mb()}
    result["writer_lag"] = lag
    status = labels.editor.status()
    result["writer_voxels_per_s"] = status["voxels_per_second"]

    streamers = [image_streamer, label_streamer]
    result["browse_labels_shown"] = _browse(streaming, red, streamers, voxel[2])
    labels.node.GetDisplayNode().SetVisibility(False)
    result["browse_labels_hidden"] = _browse(streaming, red, streamers, voxel[2])
    labels.close()
    streaming.close()
    return result


def measure_slicer(image_path, crop, strokes):
    """Slicer's own painting of `strokes` strokes into an ordinary segmentation of a crop^3 of level 0."""
    import bigvolume
    from BigVolumeLib.segmentation.editing import interpolate_stroke
    from slicer_paint_oracle import SlicerPainter

    image = bigvolume.open_image(image_path)
    level = image.levels[0]
    box = tuple((n // 2 - crop // 2, n // 2 - crop // 2 + crop) for n in level.volume_shape)
    voxels = image.read(0, box)
    ijk_to_ras = np.array(level.ijk_to_ras, dtype=float)
    ijk_to_ras[:3, 3] = (ijk_to_ras @ np.array([box[2][0], box[1][0], box[0][0], 1.0]))[:3]
    rss_before = rss_mb()
    painter = SlicerPainter(voxels, ijk_to_ras)
    painter.add_segment(1)
    rng = np.random.default_rng(7)
    # The same strokes as BigVolume's, scaled to the crop: view pixels of a view showing the crop at level 0.
    pixel_mm = level.voxel_size_mm[0] * crop / VIEW
    centre_ras = (ijk_to_ras @ np.array([crop / 2, crop / 2, crop / 2, 1.0]))[:3]
    times = []
    for path in _stroke_paths(rng, strokes):
        points = [centre_ras + np.array([(x - VIEW / 2) * pixel_mm, (y - VIEW / 2) * pixel_mm, 0.0]) for x, y in path]
        dense = interpolate_stroke(points, BRUSH_PIXELS * pixel_mm)
        start = time.perf_counter()
        painter.logic.SaveStateForUndo()
        painter.paint(1, dense, BRUSH_PIXELS * pixel_mm / 2, normal=(0, 0, 1), height_mm=level.voxel_size_mm[2])
        times.append(time.perf_counter() - start)
    return {"crop": [crop] * 3, "image_mb": voxels.nbytes / 1e6, "stroke": _summary(times),
            "rss_before_segmentation_mb": rss_before, "peak_rss_mb": peak_rss_mb(),
            "undo_states": painter.logic.GetMaximumNumberOfUndoStates()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default=os.path.join(HERE, "work", "disk-2048.ome.zarr"))
    parser.add_argument("--strokes", type=int, default=1000)
    parser.add_argument("--slicer-crop", type=int, default=512)
    parser.add_argument("--slicer-strokes", type=int, default=200)
    parser.add_argument("--interval", type=float, default=0.25,
                        help="seconds from one stroke to the next (0: back to back, as fast as the writer allows)")
    parser.add_argument("--output", default=os.path.join(HERE, "results", "label_display.json"))
    parser.add_argument("--child", choices=["bigvolume", "slicer"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "bigvolume":
        print(json.dumps(measure_bigvolume(args.image, args.strokes, os.path.dirname(args.image), args.interval)))
        return
    if args.child == "slicer":
        print(json.dumps(measure_slicer(args.image, args.slicer_crop, args.slicer_strokes)))
        return
    _ensure_disk_store(args.image)
    common = ["--image", args.image, "--strokes", args.strokes, "--slicer-crop", args.slicer_crop, "--slicer-strokes",
              args.slicer_strokes, "--interval", args.interval]
    results = {child: run_child(__file__, ["--child", child] + common, child) for child in ("bigvolume", "slicer")}
    notes = [f"Strokes {args.interval} s apart, the views updated every 15 ms as Slicer's timer does. stroke_to_visible: "
             "submit (journal append + fdatasync, and back-pressure when the writer is 64 operations behind) until "
             "the painting view's proxy shows the stroke; rendering not included.",
             "Slicer: vtkSlicerSegmentEditorLogic on an ordinary segmentation of a crop held in memory, the brush "
             "made as Slicer's Paint effect makes it (Testing/slicer_paint_oracle.py), SaveStateForUndo before each "
             "stroke (Slicer's default 5 undo states); rendering not included."]
    write_report(args.output, "label_display", view=[VIEW, VIEW], brush_pixels=BRUSH_PIXELS, notes=notes,
                 results=results)


if __name__ == "__main__":
    main()
