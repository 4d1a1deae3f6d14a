"""The demo's last step: stream a store into offscreen views and save what Slicer would show.

Axial, sagittal and coronal views are fitted to the whole volume, then zoomed
in 4x on its centre; each state is saved as a PNG once every view is
complete, with the time it took from opening the store to the first coarse
preview and to the complete frame. Where the machine renders offscreen
OpenGL, a 3D view volume-renders the store too (`render_demo_3d`).
"""

import os
import time

from bigvolume.store.multiscale import open_image

from ..streaming.streaming_scene import StreamingScene
from .views import OffscreenScene, offscreen_3d_works, save_png

VIEWS = {"Red": "Axial", "Yellow": "Sagittal", "Green": "Coronal"}


def _settle(streaming, done, timeout=120.0):
    start = time.perf_counter()
    streaming.update()  # the views see their slice nodes' latest state before `done` is asked
    while not done():
        streaming.update()
        if time.perf_counter() - start > timeout:
            raise TimeoutError("the streamed views did not complete")
        time.sleep(0.001)
    return time.perf_counter() - start


def render_demo_views(store, out_dir, size=(256, 256), zooms=(1, 4)):
    """Render the three streamed views at each zoom into `out_dir`; return a list of result dicts."""
    os.makedirs(out_dir, exist_ok=True)
    scene = OffscreenScene()
    nodes = {name: scene.add_view(name, orientation, size) for name, orientation in VIEWS.items()}
    start = time.perf_counter()
    image = open_image(store)
    streaming = StreamingScene(scene.scene)
    streamed = streaming.add_image(image)
    streamers = list(streamed.streamers.values())
    try:
        _settle(streaming, lambda: all(s.showing for s in streamers))
        preview = time.perf_counter() - start
        results = []
        for zoom in zooms:
            streaming.fit_views(streamed)
            for node in nodes.values():
                fov = node.GetFieldOfView()
                node.SetFieldOfView(fov[0] / zoom, fov[1] / zoom, fov[2])
            zoom_start = time.perf_counter()
            _settle(streaming, lambda: all(s.complete for s in streamers))
            complete = time.perf_counter() - (start if zoom == zooms[0] else zoom_start)
            for name, node in nodes.items():
                path = os.path.join(out_dir, f"{VIEWS[name].lower()}-zoom{zoom}.png")
                save_png(scene.render(name), path)
                results.append({"view": VIEWS[name], "zoom": zoom, "level": streamed.streamers[node.GetID()].level,
                                "png": path, "seconds_to_complete": complete,
                                "seconds_to_preview": preview if zoom == zooms[0] else None})
        return results
    finally:
        streaming.close()


def render_demo_3d(store, out_dir, size=(400, 300)):
    """Volume-render the store in one streamed 3D view, fitted to it; save the PNG once refined; a result dict."""
    os.makedirs(out_dir, exist_ok=True)
    scene = OffscreenScene()
    view = scene.add_3d_view("1", size)
    start = time.perf_counter()
    streaming = StreamingScene(scene.scene, view_size=scene.view_size)
    streamed = streaming.add_image(open_image(store))
    streamer = streamed.streamers[view.GetID()]
    try:
        _settle(streaming, lambda: streamer.showing)
        preview = time.perf_counter() - start
        _settle(streaming, lambda: streamer.complete)
        complete = time.perf_counter() - start
        path = os.path.join(out_dir, "3d.png")
        render_start = time.perf_counter()
        save_png(scene.render_3d("1"), path)
        return {"view": "3D", "level": streamer.level, "region_zyx": list(streamer.shown_plan.shape), "png": path,
                "seconds_to_preview": preview, "seconds_to_complete": complete,
                "render_seconds": time.perf_counter() - render_start}
    finally:
        streaming.close()


def print_demo_views(store, out):
    """The `bigvolume demo` views step (entry point `bigvolume.demo_views`): render and report each view."""
    out_dir = os.path.join(os.path.dirname(os.path.abspath(store)), "views")
    print(f"Streaming {store} into axial, sagittal and coronal 256 x 256 views (Slicer's slice rendering, offscreen):",
          file=out)
    for result in render_demo_views(store, out_dir):
        preview = result["seconds_to_preview"]
        timing = f"preview {1000 * preview:.0f} ms, complete {1000 * result['seconds_to_complete']:.0f} ms after opening" \
            if preview is not None else f"complete {1000 * result['seconds_to_complete']:.0f} ms after zooming"
        print(f"  {result['view']:<8} zoom x{result['zoom']}: level {result['level']}, {timing} -> {result['png']}", file=out)
    if not offscreen_3d_works():
        print("No offscreen OpenGL here (EGL or OSMesa): the 3D view is left out.", file=out)
        return
    print(f"Volume-rendering {store} in a 400 x 300 3D view (Slicer's GPU ray casting, offscreen):", file=out)
    r = render_demo_3d(store, out_dir)
    z, y, x = r["region_zyx"]
    print(f"  3D: coarse whole volume {1000 * r['seconds_to_preview']:.0f} ms after opening, level {r['level']} "
          f"({x} x {y} x {z} voxels) {1000 * r['seconds_to_complete']:.0f} ms after opening, drawn in "
          f"{1000 * r['render_seconds']:.0f} ms -> {r['png']}", file=out)
