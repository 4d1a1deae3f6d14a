"""The demo's last step: stream a store into three offscreen slice views and save what Slicer would show.

Axial, sagittal and coronal views are fitted to the whole volume, then zoomed
in 4x on its centre; each state is saved as a PNG once every view is
complete, with the time it took from opening the store to the first coarse
preview and to the complete frame.
"""

import os
import time

from bigvolume.store.multiscale import open_image

from ..streaming.streaming_scene import StreamingScene
from .views import OffscreenScene, save_png

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
