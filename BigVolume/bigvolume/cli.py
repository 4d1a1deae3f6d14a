"""The `bigvolume` command line."""

import argparse
import json
import os
import sys
import time

from .errors import BigVolumeError


def _format_bytes(n):
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1000.0
    return f"{n:.1f} TB"


def print_info(image, out=None):
    out = out or sys.stdout
    info = image.describe()
    axes = ", ".join(f"{a['name']} ({a['type']}{', ' + a['unit'] if a['unit'] else ''})" for a in info["axes"])
    size = " x ".join(f"{v:.4g}" for v in info["physical_size_mm"])
    print(f"{info['location']}", file=out)
    print(f"  OME-NGFF {info['ngff_version']} on Zarr v{info['zarr_format']}, {info['dtype']}, axes: {axes}", file=out)
    print(f"  physical size (x, y, z): {size} mm", file=out)
    print(f"  {'level':>5}  {'shape':>22}  {'chunks':>16}  {'shards':>16}  {'voxel size x, y, z (mm)':>28}", file=out)
    for lvl in info["levels"]:
        shards = "x".join(map(str, lvl["shards"])) if lvl["shards"] else "-"
        voxel = ", ".join(f"{v:.4g}" for v in lvl["voxel_size_mm"])
        print(f"  {lvl['index']:>5}  {'x'.join(map(str, lvl['shape'])):>22}  {'x'.join(map(str, lvl['chunks'])):>16}"
              f"  {shards:>16}  {voxel:>28}", file=out)
    lo, hi = image.bounds_ras()
    print(f"  RAS bounds (voxel centres): [{lo[0]:.4g}, {hi[0]:.4g}] x [{lo[1]:.4g}, {hi[1]:.4g}] x [{lo[2]:.4g}, {hi[2]:.4g}] mm", file=out)
    for warning in info["warnings"]:
        print(f"  warning: {warning}", file=out)


def _cmd_info(args):
    from .multiscale import open_image

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
    return 0


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
    demo.set_defaults(func=_cmd_demo)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except BigVolumeError as error:
        print(f"bigvolume: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bigvolume: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
