"""`bigvolume demo`: the main job on a built-in sample, no download."""

import os
import shutil
import sys
import time

from .errors import StoreError
from .multiscale import open_image
from .ngff import NAMESPACE
from .pyramid import write_pyramid
from .synthetic import SyntheticRockCore


def _is_previous_demo(path):
    """True if `path` is a store this demo wrote before (so replacing it loses nothing of the user's)."""
    import zarr

    try:
        attrs = zarr.open_group(path, mode="r").attrs.asdict()
    except Exception:
        return False
    return (attrs.get(NAMESPACE) or {}).get("demo") is True


def _progress_printer(out, label):
    """One updating line on a terminal; a line per tenth of the work in a log."""
    start = time.perf_counter()
    interactive = hasattr(out, "isatty") and out.isatty()
    reported = [-1]

    def progress(done, total):
        tenth = 10 * done // total
        if not interactive and tenth == reported[0]:
            return
        reported[0] = tenth
        elapsed = time.perf_counter() - start
        eta = elapsed / done * (total - done) if done else 0.0
        line = f"  {label}: {done}/{total} planes, {elapsed:.1f} s elapsed, ETA {eta:.1f} s"
        if interactive:
            out.write("\r" + line + ("\n" if done == total else ""))
        else:
            out.write(line + "\n")
        out.flush()

    return progress


def run_demo(output, shape, seed=0, out=None):
    out = out or sys.stdout
    if os.path.exists(output):
        if not _is_previous_demo(output):
            raise StoreError(f"{output}: exists and was not written by 'bigvolume demo'; choose another --output")
        shutil.rmtree(output)
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    core = SyntheticRockCore(shape, seed=seed)
    nbytes = core.dtype.itemsize * shape[0] * shape[1] * shape[2]
    print(f"Synthetic rock-core CT: {shape[2]} x {shape[1]} x {shape[0]} voxels (x, y, z), uint16, "
          f"{nbytes / 1e6:.0f} MB, {core.geometry.spacing[0]:g} um voxels", file=out)
    start = time.perf_counter()
    write_pyramid(core, output, name="synthetic rock core", attributes={"demo": True},
                  progress=_progress_printer(out, "pyramid"))
    seconds = time.perf_counter() - start
    stored = sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(output) for f in files)
    print(f"Wrote {output} in {seconds:.1f} s ({nbytes / 1e6 / seconds:.0f} MB/s of input, generation included), "
          f"{stored / 1e6:.0f} MB on disk", file=out)
    from .cli import print_info

    print_info(open_image(output), out=out)
    return output
