"""`bigvolume demo`: the main job on a built-in sample, no download.

A synthetic rock-core CT is written as a folder of TIFF slices (with ImageJ
calibration, as scanners' reconstruction software writes them), then
converted with `bigvolume convert`'s own code path, so the demo exercises
the real reader, writer and progress display.
"""

import os
import shutil
import sys
import time

from .convert import convert
from ..errors import StoreError
from ..store.multiscale import open_image
from ..store.ngff import NAMESPACE
from .progress import ProgressBar
from .synthetic import SyntheticRockCore

_MARKER = ".bigvolume-demo"  # in the slice folder: it was written by this demo and may be replaced


def _is_previous_demo(path):
    """True if `path` is a store this demo wrote before (so replacing it loses nothing of the user's)."""
    import zarr

    try:
        attrs = zarr.open_group(path, mode="r").attrs.asdict()
    except Exception:
        return False
    namespace = attrs.get(NAMESPACE) or {}
    return namespace.get("demo") is True or namespace.get("write", {}).get("demo") is True or \
        os.path.exists(os.path.join(path, _MARKER))


def slices_folder(output):
    """Where the demo's TIFF slices go: beside the store, named after it."""
    base = output[:-len(".ome.zarr")] if output.endswith(".ome.zarr") else output.rstrip("/")
    return base + "-slices"


def write_tiff_slices(core, folder, out=None):
    """Write `core` as one uint16 TIFF per z plane, ImageJ-calibrated (pixel width and slice distance in um)."""
    import tifffile

    os.makedirs(folder)
    open(os.path.join(folder, _MARKER), "w").close()
    spacing_um = core.geometry.spacing[0]
    digits = len(str(core.shape[0] - 1))
    bar = ProgressBar("TIFF slices", out or sys.stdout, unit_bytes=core.shape[1] * core.shape[2] * 2)
    for z0 in range(0, core.shape[0], 64):
        slab = core[z0:z0 + 64]
        for k, plane in enumerate(slab):
            tifffile.imwrite(os.path.join(folder, f"rock-core_{z0 + k:0{digits}d}.tif"), plane, imagej=True,
                             resolution=(1.0 / spacing_um, 1.0 / spacing_um),
                             metadata={"spacing": spacing_um, "unit": "um"})
        bar(min(z0 + 64, core.shape[0]), core.shape[0])


def run_demo(output, shape, seed=0, out=None):
    out = out or sys.stdout
    output = os.fspath(output)
    slices = slices_folder(output)
    if os.path.exists(output):
        if not _is_previous_demo(output):
            raise StoreError(f"{output}: exists and was not written by 'bigvolume demo'; choose another --output")
        shutil.rmtree(output)
    if os.path.exists(slices):
        if not os.path.exists(os.path.join(slices, _MARKER)):
            raise StoreError(f"{slices}: exists and was not written by 'bigvolume demo'; choose another --output")
        shutil.rmtree(slices)
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    core = SyntheticRockCore(shape, seed=seed)
    nbytes = core.dtype.itemsize * shape[0] * shape[1] * shape[2]
    print(f"Synthetic rock-core CT: {shape[2]} x {shape[1]} x {shape[0]} voxels (x, y, z), uint16, "
          f"{nbytes / 1e6:.0f} MB, {core.geometry.spacing[0]:g} um voxels", file=out)
    write_tiff_slices(core, slices, out)
    print(f"Converting the {shape[0]} TIFF slices in {slices}", file=out)
    bars = {}

    def progress(done, total, unit_bytes):
        bars.setdefault("bar", ProgressBar("pyramid", out, unit_bytes))(done, total)

    def on_open(source):
        print("\n".join("  " + line for line in source.info.describe().splitlines()), file=out)

    start = time.perf_counter()
    result = convert(slices, output, name="synthetic rock core", progress=progress, on_open=on_open)
    seconds = time.perf_counter() - start
    import zarr

    group = zarr.open_group(output, mode="r+")
    group.attrs.put({**group.attrs.asdict(), NAMESPACE: {**group.attrs[NAMESPACE], "demo": True}})
    print(f"Wrote {output} in {seconds:.1f} s ({nbytes / 1e6 / seconds:.0f} MB/s of input, TIFF reading included), "
          f"{result.output_bytes / 1e6:.0f} MB on disk", file=out)
    from .cli import print_info

    print_info(open_image(output), out=out)
    return output
