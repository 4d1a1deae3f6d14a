"""The `bigvolume` command line."""

import argparse
import json
import os
import re
import sys

from ..errors import BigVolumeError

RESUME = "run the same command with --resume to continue where it stopped"  # after a conversion stopped midway


def _format_bytes(n):
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1000.0
    return f"{n:.1f} TB"


# The writer's advice names the keyword and the option ("overwrite=True (--overwrite)"); the command line keeps
# only the option.
_KEYWORD_AND_OPTION = re.compile(r"\b(overwrite|resume)=True \(--\1\)")


def _as_options(message):
    """An error message with the writer's keyword arguments named as the command line's options only."""
    return _KEYWORD_AND_OPTION.sub(r"--\1", message)


def _xyz(level, sizes):
    """Sizes in array order (all axes) as XxYxZ, the order of Slicer and of the voxel sizes."""
    named = dict(zip(level.axis_names, sizes))
    return "x".join(str(named.get(axis, 1)) for axis in "xyz")


def print_info(image, out=None):
    out = out or sys.stdout
    info = image.describe()
    # The table shows the space axes only: the sizes of a time or channel axis are said here.
    sizes = dict(zip(image.levels[0].axis_names, image.levels[0].shape))
    axes = ", ".join(f"{a['name']} ({a['type']}{', ' + a['unit'] if a['unit'] else ''}"
                     + ("" if a["type"] == "space" else f", size {sizes[a['name']]}") + ")" for a in info["axes"])
    size = " x ".join(f"{v:.4g}" for v in info["physical_size_mm"])
    print(f"{info['location']}", file=out)
    print(f"  OME-NGFF {info['ngff_version']} on Zarr v{info['zarr_format']}, {info['dtype']}, axes: {axes}", file=out)
    print(f"  physical size (x, y, z): {size} mm", file=out)
    print(f"  {'level':>5}  {'shape (x, y, z)':>22}  {'chunks (x, y, z)':>16}  {'shards (x, y, z)':>16}"
          f"  {'voxel size (x, y, z) mm':>28}", file=out)
    for lvl in image.levels:
        shards = _xyz(lvl, lvl.shards) if lvl.shards else "-"
        voxel = ", ".join(f"{v:.4g}" for v in lvl.voxel_size_mm)
        print(f"  {lvl.index:>5}  {_xyz(lvl, lvl.shape):>22}  {_xyz(lvl, lvl.chunks):>16}  {shards:>16}  {voxel:>28}",
              file=out)
    lo, hi = image.bounds_ras()
    print(f"  RAS bounds (voxel centres): [{lo[0]:.4g}, {hi[0]:.4g}] x [{lo[1]:.4g}, {hi[1]:.4g}] x [{lo[2]:.4g}, {hi[2]:.4g}] mm", file=out)
    for warning in info["warnings"]:
        print(f"  warning: {warning}", file=out)


def _cmd_info(args):
    from ..store.multiscale import open_image

    image = open_image(args.store)
    if args.json:
        json.dump(image.describe(), sys.stdout, indent=2)
        print()
    else:
        print_info(image)
    return 0


DEMO_SIZES = {"small": (160, 128, 128), "default": (640, 512, 512), "large": (1280, 1024, 1024)}


def _cmd_demo(args):
    from .demo import run_demo

    shape = tuple(args.shape) if args.shape else DEMO_SIZES[args.size]
    run_demo(args.output, shape, seed=args.seed)
    if not args.no_views:
        _render_demo_views(args.output)
    return 0


DEMO_VIEWS_GROUP = "bigvolume.demo_views"  # entry points: callables (store, out) that show the demo's store


def _render_demo_views(store):
    """Show the demo store through every installed views plugin (the MRML layer registers one).

    The core knows no layer above it: what renders views is found through an
    entry-point group, which the package's MRML layer fills in pyproject.toml.
    """
    from importlib.metadata import entry_points

    plugins = list(entry_points(group=DEMO_VIEWS_GROUP))
    if not plugins:
        print("Streamed views not rendered: no views plugin is installed (pip install 'bigvolume[views]')")
        return
    for plugin in plugins:
        try:
            render = plugin.load()
        except ImportError as error:  # the plugin's own packages (vtk, slicer-core) are missing
            print(f"Streamed views not rendered ({error}); install them with: pip install 'bigvolume[views]'")
            continue
        render(store, sys.stdout)


def _reader_options(args):
    options = {"pattern": args.pattern, "channel": args.channel, "time": args.time, "level": args.level}
    if args.raw_size:
        options.update(size=tuple(args.raw_size), dtype=args.raw_dtype, byte_order=args.raw_byte_order,
                       header_bytes=args.raw_header)
    return options


def _direction(values):
    if values is None:
        return None
    if len(values) != 9:
        from ..errors import InputError

        raise InputError("--direction takes 9 numbers: the x, y and z axis directions, one after another")
    return tuple(zip(*[values[0:3], values[3:6], values[6:9]]))  # columns as given -> rows of the matrix


class _JsonEvents:
    """`--progress-format json`: one JSON object per line on stdout, for a program that follows the conversion.

    Progress events are throttled (a GUI does not need more than ~10 a second). If the reader goes away
    (a broken pipe), the conversion is cancelled: nobody is left to see it finish.
    """

    PROGRESS_INTERVAL = 0.1  # seconds

    def __init__(self, out, cancel):
        self.out = out
        self.cancel = cancel
        self.last_progress = None

    def emit(self, event, **fields):
        if self.out is None:
            return
        try:
            self.out.write(json.dumps({"event": event, **fields}) + "\n")
            self.out.flush()
        except OSError:  # the reader is gone: stop writing and stop the conversion
            self.out = None
            self.cancel.set()
            _stdout_to_devnull()

    def progress(self, done, total, unit_bytes):
        import time

        now = time.monotonic()
        if done < total and self.last_progress is not None and now - self.last_progress < self.PROGRESS_INTERVAL:
            return
        self.last_progress = now
        self.emit("progress", done=done, total=total, bytes_per_unit=unit_bytes)


def _stdout_to_devnull():
    """After a broken pipe on stdout: so that what is still buffered, and the interpreter's final flush, go nowhere."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):  # no file descriptor (stdout replaced, as in tests)
        pass


def _watch_stdin_for_cancel(cancel):
    """Set `cancel` when stdin says "cancel", or closes (the parent process is gone).

    Only a pipe or socket is watched: a terminal is left alone (reading it would stop a background job,
    and Ctrl-C is there), and /dev/null or a file would end at once and cancel every conversion.
    """
    import stat
    import threading

    try:
        fd = sys.stdin.fileno()
        mode = os.fstat(fd).st_mode
    except (AttributeError, OSError, ValueError):
        return
    if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
        return

    def watch():
        pending = b""
        while True:
            try:  # os.read, not sys.stdin: a daemon thread blocked in a buffered read can abort the interpreter's exit
                data = os.read(fd, 4096)
            except OSError:
                data = b""
            if not data:
                cancel.set()
                return
            *lines, pending = (pending + data).split(b"\n")
            if any(line.strip() == b"cancel" for line in lines):
                cancel.set()
                return

    threading.Thread(target=watch, name="bigvolume-stdin", daemon=True).start()


def _cmd_convert(args):
    import threading

    from .convert import summary_table
    from .progress import ProgressBar

    *inputs, output = args.paths
    if not inputs:
        print("bigvolume: error: give at least one INPUT and the OUTPUT", file=sys.stderr)
        return 2
    batch = len(inputs) > 1 or (os.path.isdir(output) and not output.rstrip("/").endswith(".zarr")
                                and not os.path.exists(os.path.join(output, "zarr.json"))
                                and not os.path.exists(os.path.join(output, ".zgroup")))
    options = dict(format=args.format, reader_options=_reader_options(args), spacing=args.spacing,
                   origin=args.origin, direction=_direction(args.direction), unit=args.unit, labels=args.labels,
                   ngff_version=args.ngff, chunks=tuple(args.chunks),
                   shard_chunks=None if args.no_shards else tuple(args.shard_chunks), coarsest=args.coarsest,
                   resume=args.resume, overwrite=args.overwrite, workers=args.workers, scheduler=args.scheduler)
    out = sys.stdout
    bars = {}
    cancel = threading.Event()
    if args.progress_format == "json":
        return _convert_json(args, inputs, output, batch, options, cancel)

    def progress(done, total, unit_bytes):
        if args.quiet:
            return
        bar = bars.get("bar")
        if bar is None:
            bar = bars["bar"] = ProgressBar("writing", out, unit_bytes)
        bar(done, total)

    def on_open(source):
        if not args.quiet:
            print("\n".join("  " + line for line in source.info.describe().splitlines()), file=out)

    def on_start(index, count, path, target):
        bars.clear()
        print(f"[{index + 1}/{count}] {path} -> {target}", file=out)

    def on_done(result):
        if result.ok:
            print(f"  {result.status} in {result.seconds:.1f} s", file=out)
        else:
            print(f"  {result.status}: {result.error}", file=out)

    options.update(progress=progress, on_open=on_open)
    try:
        results = _run_conversions(inputs, output, batch, options, cancel, on_start, on_done)
    except BrokenPipeError:  # stdout's reader has gone (| head) mid-conversion: the output is unfinished
        print(f"bigvolume: output closed, conversion stopped; {RESUME}", file=sys.stderr)
        raise
    print(file=out)
    print(summary_table(results), file=out)
    return 0 if all(r.ok for r in results) else 1


def _convert_json(args, inputs, output, batch, options, cancel):
    """`convert --progress-format json`: events on stdout, "cancel" (or the end of a piped stdin) cancels."""
    events = _JsonEvents(sys.stdout, cancel)
    current = {}

    def on_start(index, count, path, target):
        current.update(input=os.fspath(path), output=os.fspath(target))
        events.emit("start", index=index, count=count, input=current["input"], output=current["output"])

    def on_open(source):
        events.emit("opened", input=current.get("input"), output=current.get("output"), report=source.info.describe(),
                    shape=[int(n) for n in source.shape], dtype=str(source.dtype), input_bytes=int(source.nbytes))

    def on_done(result):
        events.emit("done", input=result.input, status=result.status, output=result.output,
                    output_bytes=result.output_bytes, seconds=round(result.seconds, 3), error=result.error)

    _watch_stdin_for_cancel(cancel)
    options.update(progress=events.progress, on_open=on_open)
    results = _run_conversions(inputs, output, batch, options, cancel, on_start, on_done)
    return 0 if all(r.ok for r in results) else 1


def _run_conversions(inputs, output, batch, options, cancel, on_start, on_done):
    """One input into the image OUTPUT, or a batch into the folder OUTPUT; a ConversionResult for each."""
    import time

    from .convert import ConversionResult, convert, convert_batch
    from ..errors import WriteCancelled

    def done(result):  # a batch records each failure, in the core's words
        result.error = result.error and _as_options(result.error)
        on_done(result)

    if batch:
        return convert_batch(inputs, output, on_start=on_start, on_done=done, cancel=cancel, **options)
    on_start(0, 1, inputs[0], output)
    start = time.perf_counter()
    try:
        result = convert(inputs[0], output, cancel=cancel, **options)
    except WriteCancelled as error:  # as convert_batch reports it
        result = ConversionResult(inputs[0], output, status="cancelled", error=str(error),
                                  seconds=time.perf_counter() - start)
    on_done(result)
    return [result]


def _cmd_validate(args):
    from ..store.validate import validate

    code = 0
    for store in args.stores:
        report = validate(store, deep=args.deep)
        if args.json:
            json.dump({"store": report.store, "valid": report.valid, "errors": report.errors,
                       "warnings": report.warnings, "facts": report.facts}, sys.stdout, indent=2)
            print()
        else:
            print(report.text())
        code = code or (0 if report.valid else 1)
    return code


def build_parser():
    parser = argparse.ArgumentParser(prog="bigvolume", description="Multiscale OME-Zarr volumes far larger than memory.")
    sub = parser.add_subparsers(dest="command", required=True)

    info = sub.add_parser("info", help="print levels, shapes, chunking, voxel size and extent of an OME-Zarr image")
    info.add_argument("store", help="OME-Zarr image folder (or its zarr.json / .zattrs)")
    info.add_argument("--json", action="store_true", help="print JSON, with each level's ijk_to_ras 4x4 matrix")
    info.set_defaults(func=_cmd_info)

    demo = sub.add_parser("demo", help="generate a synthetic rock-core CT and write it as a pyramid")
    demo.add_argument("--output", default=os.path.join("bigvolume-demo", "rock-core.ome.zarr"),
                      help="where to write the pyramid (default: %(default)s)")
    demo.add_argument("--size", choices=sorted(DEMO_SIZES), default="default",
                      help="small 160x128x128 (5 MB), default 640x512x512 (335 MB), large 1280x1024x1024 (2.7 GB)")
    demo.add_argument("--shape", type=int, nargs=3, metavar=("Z", "Y", "X"), help="any size instead of --size")
    demo.add_argument("--seed", type=int, default=0, help="random seed of the synthetic sample")
    demo.add_argument("--no-views", action="store_true", help="skip rendering the streamed slice views to PNG")
    demo.set_defaults(func=_cmd_demo)

    convert = sub.add_parser(
        "convert", help="convert TIFF, raw, OME-Zarr, NRRD, MetaImage, NIfTI or DICOM into OME-Zarr pyramids",
        description="Convert INPUT into the OME-Zarr image OUTPUT, or several INPUTs into the folder OUTPUT "
                    "(each as <name>.ome.zarr), with a summary table at the end. Voxel size, origin and direction "
                    "come from the files unless given here (files often lie).")
    convert.add_argument("paths", nargs="+", metavar="PATH",
                         help="INPUT... OUTPUT: inputs (files, folders of slices, glob patterns in quotes), then the output")
    convert.add_argument("--format", help="input format instead of detecting it: ome-zarr, tiff, nrrd, metaimage, "
                                          "nifti, dicom, raw")
    geometry = convert.add_argument_group("geometry (overrides what the input says; x, y, z order)")
    geometry.add_argument("--spacing", type=float, nargs=3, metavar=("X", "Y", "Z"), help="voxel size and slice distance")
    geometry.add_argument("--origin", type=float, nargs=3, metavar=("X", "Y", "Z"), help="centre of the first voxel (LPS)")
    geometry.add_argument("--direction", type=float, nargs="+", metavar="D",
                          help="9 numbers: directions of the x, y and z index axes (LPS)")
    geometry.add_argument("--unit", help="length unit of spacing and origin, e.g. micrometer, millimeter")
    reading = convert.add_argument_group("reading")
    reading.add_argument("--pattern", help="only slices matching this glob pattern in a folder, e.g. 'rec_*.tif'")
    reading.add_argument("--channel", type=int, help="channel of a multi-channel TIFF or OME-Zarr (default 0)")
    reading.add_argument("--time", type=int, help="time point of a TIFF hyperstack or OME-Zarr (default 0)")
    reading.add_argument("--level", type=int, help="level of an OME-Zarr input to read (default 0)")
    reading.add_argument("--raw-size", type=int, nargs=3, metavar=("X", "Y", "Z"), help="size of a raw input")
    reading.add_argument("--raw-dtype", default="uint16", help="data type of a raw input (default %(default)s)")
    reading.add_argument("--raw-byte-order", choices=("little", "big"), default="little")
    reading.add_argument("--raw-header", type=int, default=0, metavar="BYTES", help="bytes to skip before the voxels")
    writing = convert.add_argument_group("output")
    kind = writing.add_mutually_exclusive_group()
    kind.add_argument("--labels", action="store_true", default=None,
                      help="a label map: downsample with the most frequent value, not the filter")
    kind.add_argument("--intensity", action="store_false", dest="labels",
                      help="an intensity image even if the input says labels")
    writing.add_argument("--ngff", choices=("0.5", "0.4"), default="0.5", help="OME-NGFF version (0.4: Zarr v2, no shards)")
    writing.add_argument("--chunks", type=int, nargs=3, default=(64, 64, 64), metavar=("Z", "Y", "X"))
    writing.add_argument("--shard-chunks", type=int, nargs=3, default=(1, 8, 8), metavar=("Z", "Y", "X"),
                         help="chunks per shard (default 1 8 8)")
    writing.add_argument("--no-shards", action="store_true", help="one file per chunk")
    writing.add_argument("--coarsest", type=int, default=None,
                         help="stop when every axis has at most this many voxels (default 64: one chunk)")
    writing.add_argument("--resume", action="store_true",
                         help="continue unfinished outputs where they stopped; complete ones are skipped")
    writing.add_argument("--overwrite", action="store_true",
                         help="replace existing outputs (the old one is deleted only when the new one is complete)")
    running = convert.add_argument_group("running")
    running.add_argument("--workers", type=int, help="processes to use (default: all cores for large inputs)")
    running.add_argument("--scheduler", metavar="ADDRESS", help="run on a Dask distributed cluster, e.g. tcp://host:8786")
    running.add_argument("--quiet", action="store_true", help="no progress or metadata report, only the summary")
    running.add_argument("--progress-format", choices=("text", "json"), default="text",
                         help="json: one JSON object per line on stdout (events opened, progress, done, error) "
                              "for a program that runs the conversion; it cancels when it reads the line 'cancel' "
                              "on a piped stdin, or when that pipe closes")
    convert.set_defaults(func=_cmd_convert)

    validate = sub.add_parser("validate", help="check OME-NGFF conformance and completeness of stores")
    validate.add_argument("stores", nargs="+", metavar="STORE")
    validate.add_argument("--deep", action="store_true", help="also decode every stored chunk")
    validate.add_argument("--json", action="store_true")
    validate.set_defaults(func=_cmd_validate)

    from .labels_cli import add_parser as add_labels_parser

    add_labels_parser(sub)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)
        sys.stdout.flush()  # here, where a closed pipe is caught, not at the interpreter's exit
        return code
    except BrokenPipeError:  # stdout's reader has gone (| head): stop quietly, as a command stopped by SIGPIPE does
        _stdout_to_devnull()
        return 141  # 128 + SIGPIPE, what a shell reports for such a command
    except (BigVolumeError, OSError) as error:
        message = _as_options(str(error))
        print(f"bigvolume: error: {message}", file=sys.stderr)
        _json_error(args, message)
        return 2
    except KeyboardInterrupt:
        message = "interrupted" + (f"; {RESUME}" if args.command == "convert" else "")
        print(f"bigvolume: {message}", file=sys.stderr)
        _json_error(args, message)
        return 130


def _json_error(args, message):
    """With --progress-format json, the error is also an event on stdout, where the caller reads."""
    if getattr(args, "progress_format", "text") == "json":
        import threading

        _JsonEvents(sys.stdout, threading.Event()).emit("error", message=message)


if __name__ == "__main__":
    sys.exit(main())
