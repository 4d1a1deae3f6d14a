"""Benchmark: streaming a 3D view (volume rendering) on a 1 TB generated store and a >16 GB on-disk store.

One 3D view (800 x 600) and one axial slice view (1024 x 1024) stream through
one fetch engine and cache; Slicer's own volume rendering (slicer-core:
vtkMRMLVolumeRenderingDisplayableManager, GPU ray casting, here Mesa on the
CPU through EGL) draws the 3D view. Measured, per store, each in its own
process:

- open -> first 3D rendering: the whole volume at the coarsest level,
  composed (handed to Slicer) and rendered;
- open -> refined: the region the fitted camera sees at the finest level
  that fits (level, region voxels, texture MB against the GPU voxel budget);
- zoom: the camera moved to a quarter of its distance, aimed at a point off
  the centre; until the refined region is swapped in (fetch and compose),
  then its rendering;
- rendering time per frame (Mesa on 2 CPU cores, far slower than a GPU) kept
  apart from fetching and composing;
- slice browsing while the 3D view refines: the axial view at level 0 scrolled
  slice by slice, each frame complete before the next, once with the 3D view
  idle and once starting right after a 3D camera move (its region loading at
  BACKGROUND priority), frames/s of each;
- peak RSS against the cache budget.

    python bench/volume_3d.py [--disk-store PATH] [--budget-mb 2048] [--only generated|disk] [--scroll 60]

The on-disk store is the one bench/slice_browse.py writes (2048^3 uint16,
17.2 GB logical), written once if missing.
"""

import argparse
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from common import frame_rate, peak_rss_mb, rss_mb, run_child, write_report  # noqa: E402
from slice_browse import _drop_page_cache, _ensure_disk_store, _store, _wait  # noqa: E402

VIEW_3D = (800, 600)
VIEW_2D = 1024
SCROLL = 60


def _render(scene, name):
    start = time.perf_counter()
    rgba = scene.render_3d(name)
    return time.perf_counter() - start, rgba


def _shown(streamer):
    plan = streamer.shown_plan
    return {"level": plan.level, "region_zyx": list(plan.shape), "voxels": plan.voxels,
            "texture_mb": plan.voxels * streamer.image.levels[0].dtype.itemsize / 1e6,
            "limited_by": plan.limited_by, "screen_level": plan.screen_level}


def _browse(views, red, streamer_2d, voxel_z, scroll):
    frames = []
    offset = red.GetSliceOffset()
    for step in range(1, scroll + 1):
        start = time.perf_counter()
        red.SetSliceOffset(offset + step * voxel_z)
        _wait(views, lambda: streamer_2d.complete)
        frames.append(time.perf_counter() - start)
    red.SetSliceOffset(offset)
    return frame_rate(frames)


def measure(kind, path, budget_mb, scroll):
    import bigvolume
    from BigVolumeLib.offscreen.views import OffscreenScene
    from BigVolumeLib.streaming.streaming_scene import StreamingScene
    from BigVolumeLib.streaming.volume_streamer import camera_of

    result = {"store": kind}
    scene = OffscreenScene()
    view = scene.add_3d_view("1", VIEW_3D)
    view.SetBoxVisible(False)
    view.SetAxisLabelsVisible(False)
    red = scene.add_view("Red", "Axial", (VIEW_2D, VIEW_2D))
    scene.render_3d("1")  # the render window exists and has drawn once before a store is opened
    result["rss_before_open_mb"] = rss_mb()
    if kind == "disk":
        result["page_cache"] = "cold" if _drop_page_cache(path) else "warm"
    store = _store(kind, path)
    start = time.perf_counter()
    image = bigvolume.open_image(store)
    views = StreamingScene(scene.scene, cache_bytes=budget_mb * 1024**2, workers=2,
                           view_size=scene.view_size)
    streamed = views.add_image(image)
    streamer = streamed.streamers[view.GetID()]
    streamer_2d = streamed.streamers[red.GetID()]
    result["logical_size_gb"] = float(np.prod(image.levels[0].volume_shape) * image.levels[0].dtype.itemsize / 1e9)
    result["levels"] = [list(lvl.volume_shape) for lvl in image.levels]
    _wait(views, lambda: streamer.showing)
    result["open_to_first_3d_composed_s"] = time.perf_counter() - start
    render_s, _ = _render(scene, "1")
    result["first_3d_render_s"] = render_s
    result["open_to_first_3d_rendered_s"] = time.perf_counter() - start
    result["first_3d"] = _shown(streamer)
    _wait(views, lambda: streamer.complete and streamer.shown_plan is streamer.pending_plan)
    result["open_to_refined_composed_s"] = time.perf_counter() - start
    render_s, _ = _render(scene, "1")
    result["refined_render_s"] = render_s
    result["refined"] = _shown(streamer)
    limits = streamer._limits()
    result["gpu_voxel_budget"] = limits.voxel_budget
    result["texture_side_cap"] = limits.texture_side
    result["region_memory_cap_mb"] = limits.memory_bytes / 2**20

    # Zoom: a quarter of the distance, aimed at a point a quarter of the way to a corner.
    camera = camera_of(scene.scene, view)
    focal, position = np.array(camera.GetFocalPoint()), np.array(camera.GetPosition())
    lo, hi = image.bounds_ras(0, edges=True)
    target = focal + (hi - focal) * 0.25
    zoom_start = time.perf_counter()
    camera.SetFocalPoint(*target)
    camera.SetPosition(*(target + (position - focal) * 0.25))
    camera.ResetClippingRange()
    views.set_volume_options(settle_seconds=0.0)
    _wait(views, lambda: streamer.pending_plan is not None and streamer.shown_plan is streamer.pending_plan
          and streamer.complete)
    result["zoom_refined_composed_s"] = time.perf_counter() - zoom_start
    render_s, _ = _render(scene, "1")
    result["zoom_render_s"] = render_s
    result["zoom"] = _shown(streamer)

    # Slice browsing with the 3D view idle, then while it refines after a camera move.
    voxel = image.levels[0].voxel_size_mm
    red.SetFieldOfView(VIEW_2D * voxel[0], VIEW_2D * voxel[1], voxel[2])
    red.UpdateMatrices()
    _wait(views, lambda: streamer_2d.complete)
    result["browse_3d_idle"] = _browse(views, red, streamer_2d, voxel[2], scroll)
    # Pan to the opposite side of the centre: a region none of whose chunks are cached.
    other = focal + (lo - focal) * 0.25
    move_start = time.perf_counter()
    camera.SetFocalPoint(*other)
    camera.SetPosition(*(other + (position - focal) * 0.25))
    camera.ResetClippingRange()
    views.update()
    refined = lambda: streamer.complete and streamer.shown_plan is streamer.pending_plan  # noqa: E731
    result["browse_while_3d_refines"] = _browse(views, red, streamer_2d, voxel[2], scroll)
    result["3d_refined_before_browse_ended"] = bool(refined())
    _wait(views, refined)
    result["pan_refined_composed_s"] = time.perf_counter() - move_start
    result["pan"] = _shown(streamer)
    result["status_line"] = views.volume_status()

    engine = views.engine
    result["peak_rss_mb"] = peak_rss_mb()
    result["cache_budget_mb"] = budget_mb
    result["chunks_read"] = engine.chunks_read
    result["read_mb_per_s_while_reading"] = engine.bytes_read / 1e6 / max(engine.seconds_reading, 1e-9)
    views.close()
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--disk-store", default=os.path.join(HERE, "work", "disk-2048.ome.zarr"))
    parser.add_argument("--budget-mb", type=int, default=2048)
    parser.add_argument("--output", default=os.path.join(HERE, "results", "volume_3d.json"))
    parser.add_argument("--only", choices=["generated", "disk"])
    parser.add_argument("--scroll", type=int, default=SCROLL, help="slices scrolled at level 0 for each browse")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child[0], args.child[1], args.budget_mb, args.scroll)))
        return
    kinds = [args.only] if args.only else ["generated", "disk"]
    if "disk" in kinds:
        os.makedirs(os.path.dirname(args.disk_store), exist_ok=True)
        _ensure_disk_store(args.disk_store)
    results = {}
    for kind in kinds:
        results[kind] = run_child(__file__, ["--child", kind, args.disk_store, "--budget-mb", args.budget_mb,
                                             "--scroll", args.scroll], kind)
    notes = ["composed: the proxy holds the region and is handed to Slicer; rendered: Slicer's volume rendering also "
             "drew the 800 x 600 view, here with Mesa's llvmpipe on 2 CPU cores through EGL (a GPU renders far faster; "
             "the render times are kept apart for that reason).",
             "The GPU voxel budget is Slicer's default GPU memory (256 MB) x 0.75 / bytes per voxel; a region may also "
             "take a quarter of the chunk cache.",
             "browse_*: the axial 1024 x 1024 slice view at level 0 scrolled slice by slice, each frame complete before "
             "the next; without the 3D view refining, and starting right after a 3D camera pan to uncached chunks "
             "(fetched at BACKGROUND priority, below the slice view's); pan_refined_composed_s: that pan until the "
             "new region was composed, the browse included."]
    write_report(args.output, "volume_3d", view_3d=list(VIEW_3D), view_2d=[VIEW_2D, VIEW_2D], notes=notes,
                 results=results)


if __name__ == "__main__":
    main()
