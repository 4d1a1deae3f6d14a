"""Benchmark: convert the same synthetic TIFF stack with BigVolume, ngff-zarr and ome-zarr-py, against the machine's limit.

Input: the synthetic rock-core CT (default 2048 x 1024 x 1024 uint16, 4.3 GB)
written once as a folder of ImageJ-calibrated TIFF slices, as CT
reconstruction software delivers it. Each converter runs in its own process
(BigVolume through its command line, `bigvolume convert`); its peak RSS is
the largest sum of the resident memory of that process and all its children,
sampled every 50 ms. Every converter writes a 4-level OME-Zarr 0.5 pyramid
(factors 2, 4, 8 along z, y and x). The peers read the stack the usual way
(tifffile per slice into a dask array, 64-plane chunks).

The machine's limit is the level-0 share of the same work at full speed:
read and decode every slice with tifffile, compress every 64^3 chunk with the
same Blosc-zstd codec, and write it, on all cores (one process per core).

Quality: each coarse level against a reference Gaussian low-pass (sigma =
factor / 2 voxels, mirrored edges) sampled at the coarse voxel centres,
on 512 central planes (RMS difference; the reference's standard deviation
for scale).

    python bench/convert.py [--shape Z Y X] [--tools bigvolume ngff-zarr ...] [--workdir DIR]
"""

import argparse
import os
import shutil
import subprocess
import sys

import numpy as np

from common import run_measured, write_report
from peers import FACTORS, write_ngff_zarr, write_ome_zarr

HERE = os.path.dirname(os.path.abspath(__file__))
TOOLS = ("machine-limit", "bigvolume", "ome-zarr-py", "ngff-zarr")


def _write_stack(shape, folder):
    import tifffile

    from bigvolume.tools.synthetic import SyntheticRockCore

    core = SyntheticRockCore(shape, seed=0)
    os.makedirs(folder)
    spacing = core.geometry.spacing[0]
    for z0 in range(0, shape[0], 64):
        for k, plane in enumerate(core[z0:z0 + 64]):
            tifffile.imwrite(os.path.join(folder, f"rec_{z0 + k:05d}.tif"), plane, imagej=True,
                             resolution=(1 / spacing, 1 / spacing), metadata={"spacing": spacing, "unit": "um"})
    return core


def _files(folder):
    return sorted(os.path.join(folder, n) for n in os.listdir(folder) if n.endswith(".tif"))


def _dask_stack(folder):
    import dask
    import dask.array as da
    import tifffile

    files = _files(folder)
    with tifffile.TiffFile(files[0]) as tif:
        shape, dtype = tif.pages[0].shape, tif.pages[0].dtype
    planes = [da.from_delayed(dask.delayed(tifffile.imread)(f), shape, dtype) for f in files]
    return da.stack(planes).rechunk((64,) + tuple(shape))


def _run_ngff_zarr(folder, out):
    write_ngff_zarr(_dask_stack(folder), out)


def _run_ome_zarr(folder, out):
    write_ome_zarr(_dask_stack(folder), out)


def _limit_slab(args):
    import tifffile
    from numcodecs import Blosc

    files, z0, out = args
    codec = Blosc(cname="zstd", clevel=3, shuffle=Blosc.BITSHUFFLE)
    slab = np.stack([tifffile.imread(f) for f in files])
    _, ny, nx = slab.shape
    for y0 in range(0, ny, 64):
        for x0 in range(0, nx, 64):
            with open(os.path.join(out, f"{z0}.{y0}.{x0}"), "wb") as handle:
                handle.write(codec.encode(np.ascontiguousarray(slab[:, y0:y0 + 64, x0:x0 + 64])))


def _run_limit(folder, out):
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import numcodecs.blosc

    numcodecs.blosc.use_threads = False
    os.makedirs(out)
    files = _files(folder)
    tasks = [(files[z0:z0 + 64], z0, out) for z0 in range(0, len(files), 64)]
    with ProcessPoolExecutor(os.cpu_count(), mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(_limit_slab, tasks))


def _command(tool, folder, out):
    if tool == "bigvolume":
        return [sys.executable, "-m", "bigvolume", "convert", folder, out, "--quiet"]
    return [sys.executable, __file__, "--child", tool, folder, out]


def _dir_size(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def _quality(out, references):
    """RMS difference of each coarse level from the reference, levels found through the store's own metadata."""
    import bigvolume

    image = bigvolume.open_image(out)
    quality = {}
    for level, factor in enumerate(FACTORS, start=1):
        if level >= len(image.levels):
            break
        ks, ref = references[factor]
        _, ny, nx = image.levels[level].volume_shape
        data = image.read(level, [(ks[0], ks[-1] + 1), (0, ny), (0, nx)]).astype(np.float64)
        common = tuple(slice(0, min(a, b)) for a, b in zip(ref.shape, data.shape))
        diff = data[common] - ref[common]
        quality[f"x{factor}"] = {"rms_vs_gaussian_reference": float(np.sqrt(np.mean(diff ** 2))),
                                 "reference_std": float(ref[common].std())}
    return quality


def _references(folder, depth):
    """Gaussian-filtered reference of each factor on 512 central planes (with a margin), at the coarse centres."""
    import tifffile
    from scipy import ndimage

    a, b = max(0, depth // 2 - 320), min(depth, depth // 2 + 320)
    files = _files(folder)[a:b]
    crop = np.stack([tifffile.imread(f) for f in files]).astype(np.float32)
    references = {}
    for factor in FACTORS:
        smooth = ndimage.gaussian_filter(crop, sigma=factor / 2.0, mode="mirror")
        margin = 64
        ks = [k for k in range(depth // factor) if a + margin <= factor * k + (factor - 1) / 2 < b - margin]
        grids = [np.array([factor * k + (factor - 1) / 2 - a for k in ks])] + \
                [(factor - 1) / 2 + factor * np.arange(-(-n // factor)) for n in crop.shape[1:]]
        coords = np.meshgrid(*grids, indexing="ij")
        references[factor] = (ks, ndimage.map_coordinates(smooth, coords, order=1, mode="mirror"))
        del smooth
    return references


CHILDREN = {"ngff-zarr": _run_ngff_zarr, "ome-zarr-py": _run_ome_zarr, "machine-limit": _run_limit}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(2048, 1024, 1024), metavar=("Z", "Y", "X"))
    parser.add_argument("--tools", nargs="+", default=list(TOOLS), choices=TOOLS)
    parser.add_argument("--workdir", default=os.path.join(HERE, "work", "convert"),
                        help="scratch folder of this benchmark alone: deleted before and after the run")
    parser.add_argument("--output", default=os.path.join(HERE, "results", "convert.json"))
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return CHILDREN[args.child[0]](*args.child[1:])

    shutil.rmtree(args.workdir, ignore_errors=True)
    folder = os.path.join(args.workdir, "slices")
    try:
        print(f"writing the TIFF stack {args.shape}", flush=True)
        _write_stack(tuple(args.shape), folder)
        input_mb = args.shape[0] * args.shape[1] * args.shape[2] * 2 / 1e6
        references = _references(folder, args.shape[0])
        results = {}
        for tool in args.tools:
            out = os.path.join(args.workdir, f"{tool}.ome.zarr")
            subprocess.run(["sync"], check=False)
            try:
                seconds, peak, _ = run_measured(_command(tool, folder, out))
            except RuntimeError as error:
                results[tool] = {"error": str(error)}
                print(f"{tool}: failed: {error}", flush=True)
                shutil.rmtree(out, ignore_errors=True)
                continue
            entry = {"seconds": seconds, "throughput_mb_s": input_mb / seconds, "peak_rss_mb": peak,
                     "output_mb": _dir_size(out) / 1e6}
            if tool != "machine-limit":
                entry["quality"] = _quality(out, references)
            results[tool] = entry
            shutil.rmtree(out, ignore_errors=True)
            print(f"{tool}: {seconds:.1f} s, {entry['throughput_mb_s']:.0f} MB/s, peak RSS {peak:.0f} MB, "
                  f"output {entry['output_mb']:.0f} MB", flush=True)
        ours = results.get("bigvolume", {})
        peers = [results[p] for p in ("ngff-zarr", "ome-zarr-py") if "throughput_mb_s" in results.get(p, {})]
        if "throughput_mb_s" in ours:
            if peers:
                faster = max(peers, key=lambda e: e["throughput_mb_s"])
                ours["speedup_vs_faster_peer"] = ours["throughput_mb_s"] / faster["throughput_mb_s"]
                ours["peak_rss_fraction_of_faster_peer"] = ours["peak_rss_mb"] / faster["peak_rss_mb"]
            if "throughput_mb_s" in results.get("machine-limit", {}):
                ours["fraction_of_machine_limit"] = ours["throughput_mb_s"] / results["machine-limit"]["throughput_mb_s"]
        write_report(args.output, "convert",
                     input={"shape_zyx": list(args.shape), "dtype": "uint16", "mb": input_mb, "slices": args.shape[0],
                            "levels": 1 + len(FACTORS)},
                     results=results)
    finally:
        shutil.rmtree(args.workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
