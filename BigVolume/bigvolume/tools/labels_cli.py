"""`bigvolume labels ...`: label pyramids from the command line (create, import, export, mesh, statistics,
threshold, replay, undo, status)."""

import contextlib
import json
import math
import sys
import time

from ..errors import BigVolumeError


def _open(args):
    from ..labels.label_store import open_labels
    from ..store.multiscale import open_image

    image = open_image(args.image)
    return image, open_labels(image, args.name, store=args.store)


def _run_writer(editor, label, quiet=False):
    """Wait for the writer with a progress bar of the current operation's level-0 chunks; Ctrl-C stops it with
    everything journaled (the next open completes it)."""
    from .progress import ProgressBar

    bar = None if quiet else ProgressBar(label, out=sys.stderr)
    try:
        while not editor.wait(timeout=0.5):
            done, total = editor.progress
            if bar and total:
                bar(done, total)
    except KeyboardInterrupt:
        editor.close(wait=False)
        raise BigVolumeError("interrupted: the unfinished edit is kept in the labels' journal; "
                             "`bigvolume labels replay` (or opening the labels anywhere) completes it") from None
    if bar and editor.progress[1]:
        bar(*editor.progress)


@contextlib.contextmanager
def _editing(args, label="finishing edits", quiet=None):
    """The labels' editor, with what earlier sessions left unfinished written first; closed (and every edit
    written) at the end."""
    from ..labels.editor import LabelEditor

    _, store = _open(args)
    with LabelEditor(store) as editor:
        _run_writer(editor, label, quiet=args.quiet if quiet is None else quiet)
        yield editor


def _cmd_list(args):
    from ..labels.label_store import label_names

    for name in label_names(args.store or args.image):
        print(name)
    return 0


def _cmd_create(args):
    from ..labels.label_store import create_labels
    from ..labels.segments import new_segment
    from ..store.multiscale import open_image

    segments = []
    for name in args.segment or []:
        segments.append(new_segment(segments, name=name))
    store = create_labels(open_image(args.image), args.name, store=args.store, segments=segments,
                          max_segments=args.max_segments, overwrite=args.overwrite)
    print(f"created {store.path}: {len(store.levels)} levels, {store.dtype}, segments: "
          f"{', '.join(f'{s.value}={s.name}' for s in store.segments) or 'none'}")
    return 0


def _cmd_import(args):
    from ..labels.seg_nrrd import import_labels
    from ..store.multiscale import open_image

    result = import_labels(open_image(args.image), args.name, args.file, store=args.store, overwrite=args.overwrite)
    how = "copied voxel for voxel" if result.exact else "resampled (nearest neighbour)"
    print(f"imported {args.file} into {result.store.path}, {how}, {result.chunks_written} chunks; segments "
          f"{', '.join(f'{s.value}={s.name}' for s in result.segments) or 'none'}")
    return 0


def _cmd_export(args):
    from ..labels.seg_nrrd import export_labels

    with _editing(args) as editor:
        result = export_labels(editor, args.output, level=args.level)
    z, y, x = result.shape
    print(f"wrote {result.path}: level {args.level}, {x} x {y} x {z} voxels, {result.bytes:,} bytes, "
          f"{len(result.segments)} segments")
    return 0


def _cmd_mesh(args):
    from ..labels.meshes import export_meshes
    from .progress import ProgressBar

    bar = None if args.quiet else ProgressBar("meshing", out=sys.stderr)
    segments = [int(s) if s.isdigit() else s for s in args.segment] if args.segment else None
    with _editing(args) as editor:
        results = export_meshes(editor, args.output, segments, level=args.level, format=args.format,
                                smoothing=args.smoothing, coordinates=args.coordinates, progress=bar,
                                workers=args.workers, scheduler=args.scheduler,
                                **({"block": args.block} if args.block else {}))
    for r in results:
        if r.path is None:
            print(f"{r.name}: no voxels at level {args.level}, no file written")
        else:
            print(f"wrote {r.path}: {r.triangles:,} triangles, {r.vertices:,} vertices, "
                  f"{r.volume_mm3:.3f} mm3, {r.area_mm2:.3f} mm2")
    return 0


def _cmd_stats(args):
    from ..labels.statistics import format_table, segment_statistics

    with _editing(args, quiet=True) as editor:
        stats = segment_statistics(editor, level=args.level)
    if args.json:
        json.dump([s if isinstance(s, dict) else s.__dict__ for s in stats], sys.stdout, indent=2, default=str)
        print()
    else:
        print(format_table(stats))
    return 0


def _cmd_threshold(args):
    from ..labels.operations import Threshold

    start = time.perf_counter()
    with _editing(args, "finishing earlier edits") as editor:
        segment = editor.store.segment(int(args.segment) if args.segment.isdigit() else args.segment)
        editor.submit(Threshold(segment.value, low=args.range[0], high=args.range[1]))
        _run_writer(editor, f"threshold into {segment.name}", quiet=args.quiet)
    voxels = math.prod(editor.store.levels[0].volume_shape)
    seconds = time.perf_counter() - start
    print(f"threshold {args.range[0]:g}..{args.range[1]:g} written into segment {segment.name!r} at every level "
          f"in {seconds:.1f} s ({voxels / max(seconds, 1e-9) / 1e6:.1f} M voxels/s)")
    return 0


def _cmd_replay(args):
    with _editing(args, "replaying") as editor:
        print(f"{editor.replayed} unfinished operation(s) completed")
    return 0


def _cmd_undo(args):
    with _editing(args, quiet=True) as editor:
        seq = editor.undo()
    print("nothing to undo" if seq is None else f"undid operation {seq}")
    return 0 if seq is not None else 1


def _cmd_status(args):
    from ..labels.editor import LabelEditor

    _, store = _open(args)
    editor = LabelEditor(store, start=False)  # reads the journal; writes nothing
    status = editor.status()
    editor.journal.close()
    print(f"{store.path}: {len(store.segments)} segments, {len(store.levels)} levels, {store.dtype}; "
          f"{status['pending']} unfinished operation(s), {status['undo_steps']} undo and {status['redo_steps']} redo steps")
    return 0


def add_parser(sub):
    labels = sub.add_parser("labels", help="label pyramids beside an image: create, import, export, meshes, "
                                           "statistics, edit")
    commands = labels.add_subparsers(dest="labels_command", required=True)

    def command(name, func, help, named=True):
        p = commands.add_parser(name, help=help)
        p.add_argument("image", help="the OME-Zarr image the labels belong to")
        if named:
            p.add_argument("name", help="the label pyramid's name (labels/<name>)")
        p.add_argument("--store", help="a separate local OME-Zarr holding the labels (for a read-only or remote image)")
        p.add_argument("--quiet", action="store_true", help="no progress bar")
        p.set_defaults(func=func)
        return p

    command("list", _cmd_list, "names of the image's label pyramids", named=False)
    create = command("create", _cmd_create, "create an empty label pyramid on the image's grid")
    create.add_argument("--segment", action="append", metavar="NAME", help="add a segment (repeat for more)")
    create.add_argument("--max-segments", type=int, default=255, help="chooses the label type (default 255: uint8)")
    create.add_argument("--overwrite", action="store_true", help="replace labels of that name")
    imp = command("import", _cmd_import, "import a labelmap .nrrd or Slicer .seg.nrrd onto the image's grid")
    imp.add_argument("file")
    imp.add_argument("--overwrite", action="store_true", help="replace labels of that name")
    export = command("export", _cmd_export, "export a level as .seg.nrrd (segments kept) or a labelmap .nrrd")
    export.add_argument("output")
    export.add_argument("--level", type=int, default=0, help="pyramid level (default 0: full resolution)")
    mesh = command("mesh", _cmd_mesh, "closed surface meshes of segments (STL, OBJ or PLY), one file per segment")
    mesh.add_argument("output", help="a folder (one <segment>.<format> per segment), or a .stl/.obj/.ply file for one")
    mesh.add_argument("--segment", action="append", metavar="NAME", help="segment name, ID or label value "
                      "(repeat for more; default: every segment)")
    mesh.add_argument("--level", type=int, default=0, help="pyramid level (default 0: full resolution)")
    mesh.add_argument("--format", choices=("stl", "obj", "ply"),
                      help="file format (default: the output file's extension, else stl)")
    mesh.add_argument("--smoothing", type=float, default=0.0,
                      help="0 (none, default) .. 1, as Slicer's closed-surface smoothing factor (its default: 0.5)")
    mesh.add_argument("--coordinates", choices=("RAS", "LPS"), default="RAS",
                      help="coordinate system of the files (default RAS; marked in the file as Slicer marks it)")
    mesh.add_argument("--block", type=int, help="voxels a side read at once, in whole label chunks (default 128)")
    mesh.add_argument("--workers", type=int, help="mesh blocks on this many processes (default: this one)")
    mesh.add_argument("--scheduler", metavar="ADDRESS", help="mesh blocks on a Dask distributed cluster, "
                      "e.g. tcp://host:8786 (its workers must see the same files)")
    stats = command("stats", _cmd_stats, "per-segment voxel count, volume, bounding box and image intensities")
    stats.add_argument("--level", type=int, default=0, help="pyramid level (default 0: full resolution)")
    stats.add_argument("--json", action="store_true")
    threshold = command("threshold", _cmd_threshold, "set a segment to an intensity range over the whole image")
    threshold.add_argument("--segment", required=True, help="segment name, ID or label value")
    threshold.add_argument("--range", type=float, nargs=2, required=True, metavar=("LOW", "HIGH"))
    command("replay", _cmd_replay, "complete edits that an interrupted session left unfinished")
    command("undo", _cmd_undo, "undo the latest edit")
    command("status", _cmd_status, "segments, unfinished edits, undo and redo steps")
