"""Make the extension's screenshots and the Sample Data thumbnail from the demo's streamed views.

    .venv/bin/python Resources/make_screenshots.py [--store STORE]

Writes the demo's synthetic rock core (640 x 512 x 512, seed 0) as a pyramid
in a temporary folder, unless --store names an existing one, streams it into
offscreen axial, sagittal and coronal slice views exactly as `bigvolume demo`
does (BigVolumeLib.offscreen.demo), and composes:

- Resources/Screenshots/1.png: the three views fitted to the volume,
- Resources/Screenshots/2.png: the same views zoomed in 4x on the centre,
  where the finest level is streamed,
- BigVolume/Resources/Icons/BigVolumeSampleRockCore.png: the axial view as
  the Sample Data thumbnail.

Each view has its layout colour bar on top (red, yellow, green), as in
Slicer's slice view controllers. Needs the `views` extra (slicer-core, vtk)
and Pillow (both in requirements/test.txt).
"""

import argparse
import os
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "BigVolume"))

import slicer  # noqa: E402
from PIL import Image  # noqa: E402

from bigvolume.tools.demo import run_demo  # noqa: E402
from BigVolumeLib.offscreen.demo import VIEWS, render_demo_views  # noqa: E402

SHAPE = (640, 512, 512)  # the default demo
VIEW_SIZE = (360, 360)  # each of the three views in a screenshot: 1088 x 366 pixels
THUMBNAIL_SIZE = (280, 260)  # Slicer's SampleData thumbnails are about 260 x 280 (template) to 288 x 261 pixels
BAR = 6  # layout colour bar above each view
GAP = 4
BACKGROUND = (40, 40, 40)
SCREENSHOTS = os.path.join(ROOT, "Resources", "Screenshots")
THUMBNAIL = os.path.join(ROOT, "BigVolume", "Resources", "Icons", "BigVolumeSampleRockCore.png")
COLORS = {"Red": slicer.vtkMRMLAbstractViewNode.GetRedColor(),
          "Yellow": slicer.vtkMRMLAbstractViewNode.GetYellowColor(),
          "Green": slicer.vtkMRMLAbstractViewNode.GetGreenColor()}


def read_png(path):
    """(height, width, 3) uint8, top row first."""
    return np.asarray(Image.open(path).convert("RGB"))


def write_png(rgb, path):
    """Write a grey image with a few colours as an 8-bit palette PNG: index = grey value, so it compresses as grey.

    The colours take the palette entries of the rarest grey values, whose pixels move to the next grey value
    (a change of 1/255 to a handful of pixels).
    """
    grey = rgb[..., 0]
    is_grey = (rgb[..., 1] == grey) & (rgb[..., 2] == grey)
    colours = np.unique(rgb[~is_grey].reshape(-1, 3), axis=0)
    counts = np.bincount(grey[is_grey], minlength=256)
    indices = grey.copy()
    palette = np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1)
    entries = np.argsort(counts, kind="stable")[:len(colours)]
    kept = np.setdiff1d(np.arange(256), entries)
    for entry, colour in zip(entries, colours):
        indices[is_grey & (grey == entry)] = kept[np.argmin(np.abs(kept - entry))]
        palette[entry] = colour
        indices[np.all(rgb == colour, axis=-1)] = entry
    image = Image.fromarray(indices, "P")
    image.putpalette(palette.reshape(-1).tolist())
    image.save(path, optimize=True)


def three_views(frames):
    """Views side by side, in the order of VIEWS, each under its layout colour bar."""
    height, width, _ = next(iter(frames.values())).shape
    canvas = np.empty((BAR + height, len(frames) * width + (len(frames) - 1) * GAP, 3), np.uint8)
    canvas[:] = BACKGROUND
    for n, name in enumerate(VIEWS):
        x = n * (width + GAP)
        canvas[:BAR, x:x + width] = np.round(np.array(COLORS[name]) * 255)
        canvas[BAR:, x:x + width] = frames[name]
    return canvas


def make(store, work):
    by_orientation = {orientation: name for name, orientation in VIEWS.items()}
    results = render_demo_views(store, os.path.join(work, "views"), size=VIEW_SIZE, zooms=(1, 4))
    os.makedirs(SCREENSHOTS, exist_ok=True)
    for number, zoom in ((1, 1), (2, 4)):
        frames = {by_orientation[r["view"]]: read_png(r["png"]) for r in results if r["zoom"] == zoom}
        path = os.path.join(SCREENSHOTS, f"{number}.png")
        write_png(three_views(frames), path)
        print(f"{path}: zoom {zoom}, levels " + ", ".join(
            f"{r['view']} {r['level']}" for r in results if r["zoom"] == zoom))
    results = render_demo_views(store, os.path.join(work, "thumbnail"), size=THUMBNAIL_SIZE, zooms=(1,))
    axial = next(r for r in results if r["view"] == "Axial")
    write_png(read_png(axial["png"]), THUMBNAIL)
    print(f"{THUMBNAIL}: axial view, level {axial['level']}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", help="an existing demo store (default: write a new one in a temporary folder)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as work:
        store = args.store
        if store is None:
            store = run_demo(os.path.join(work, "rock-core.ome.zarr"), SHAPE, seed=0)
        make(store, work)


if __name__ == "__main__":
    main()
