"""Benchmark: write the same volume as a 4-level OME-Zarr 0.5 pyramid with BigVolume, ngff-zarr and ome-zarr-py.

Input: the synthetic rock-core CT, stored once as a .npy file and read by
every writer in z-slabs, so all read the same bytes from the same disk. Each
writer runs in its own process; peak RSS is that process's and its worker
processes' together. Also measured: the
machine's limit for the level-0 share of the work (read the input, compress
every 64^3 chunk with the same Blosc-zstd codec, write the files), and the
quality of each coarse level against a reference Gaussian downsample.

    python bench/pyramid_write.py [--shape Z Y X] [--workdir DIR] [--output bench/results/pyramid_write.json]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

from common import peak_rss_mb, run_measured, write_report
from peers import FACTORS, write_ngff_zarr, write_ome_zarr

HERE = os.path.dirname(os.path.abspath(__file__))


class RawVolume:
    """The .npy input read with plain file reads (no memory map, whose touched pages would count as RSS).

    Behaves like a TIFF-stack reader: any z-range of full planes, then y/x sliced.
    """

    def __init__(self, path):
        array = np.load(path, mmap_mode="r")
        self.path, self.shape, self.dtype, self.ndim = path, array.shape, array.dtype, array.ndim
        self.offset = array.offset
        del array

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        z = key[0] if isinstance(key[0], slice) else slice(key[0], key[0] + 1)
        z0, z1, _ = z.indices(self.shape[0])
        plane = self.shape[1] * self.shape[2]
        data = np.fromfile(self.path, dtype=self.dtype, count=(z1 - z0) * plane,
                           offset=self.offset + z0 * plane * self.dtype.itemsize).reshape(z1 - z0, *self.shape[1:])
        rest = (slice(None),) + key[1:]
        data = data[rest]
        return data[0] if not isinstance(key[0], slice) else data


def _as_dask(source):
    import dask.array as da

    return da.from_array(source, chunks=(64,) + tuple(source.shape[1:]))


def _writer_bigvolume(source, out):
    import bigvolume

    bigvolume.write_pyramid(source, out, coarsest=source.shape[0] // 8)


def _machine_limit(source, out):
    """Level-0 floor: read every byte, compress each 64^3 chunk with Blosc-zstd-3 bitshuffle, write it."""
    from concurrent.futures import ThreadPoolExecutor

    from numcodecs import Blosc

    codec = Blosc(cname="zstd", clevel=3, shuffle=Blosc.BITSHUFFLE)
    os.makedirs(out)
    nz, ny, nx = source.shape

    def chunk(args):
        z0, y0, x0, slab = args
        data = np.ascontiguousarray(slab[:, y0:y0 + 64, x0:x0 + 64])
        with open(os.path.join(out, f"{z0}.{y0}.{x0}"), "wb") as f:
            f.write(codec.encode(data))

    with ThreadPoolExecutor(os.cpu_count()) as pool:
        for z0 in range(0, nz, 64):
            slab = np.array(source[z0:z0 + 64])
            list(pool.map(chunk, [(z0, y0, x0, slab) for y0 in range(0, ny, 64) for x0 in range(0, nx, 64)]))


def _writer_ngff_zarr(source, out):
    write_ngff_zarr(_as_dask(source), out)


def _writer_ome_zarr(source, out):
    write_ome_zarr(_as_dask(source), out)


WRITERS = {"bigvolume": _writer_bigvolume, "ngff-zarr": _writer_ngff_zarr, "ome-zarr-py": _writer_ome_zarr,
           "machine-limit": _machine_limit}


def _child(name, input_path, out):
    source = RawVolume(input_path)
    baseline = peak_rss_mb()  # interpreter and imports
    start = time.perf_counter()
    WRITERS[name](source, out)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "peak_rss_mb": peak_rss_mb(), "rss_before_mb": baseline}))


def _dir_size(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def _levels(path):
    """Arrays of a written pyramid, finest first, as BigVolume opens them."""
    import bigvolume

    image = bigvolume.open_image(path)
    return [image.read(lvl.index, [(0, n) for n in lvl.volume_shape]) for lvl in image.levels]


def _reference(volume, factor):
    """Gaussian low-pass (sigma = factor/2 voxels, about the ideal for the new Nyquist) sampled at the coarse centres."""
    from scipy import ndimage

    smooth = ndimage.gaussian_filter(volume.astype(np.float32), sigma=factor / 2.0, mode="mirror")
    start = (factor - 1) / 2.0
    grids = [start + factor * np.arange(-(-n // factor)) for n in volume.shape]
    coords = np.meshgrid(*grids, indexing="ij")
    return ndimage.map_coordinates(smooth, coords, order=1, mode="mirror")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(640, 512, 512))
    parser.add_argument("--workdir", default=os.path.join(HERE, "work", "pyramid_write"))
    parser.add_argument("--output", default=os.path.join(HERE, "results", "pyramid_write.json"))
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return _child(*args.child)

    from bigvolume.tools.synthetic import SyntheticRockCore

    shutil.rmtree(args.workdir, ignore_errors=True)
    os.makedirs(args.workdir)
    core = SyntheticRockCore(tuple(args.shape), seed=0)
    input_path = os.path.join(args.workdir, "input.npy")
    volume = np.lib.format.open_memmap(input_path, mode="w+", dtype=core.dtype, shape=core.shape)
    for z0 in range(0, core.shape[0], 64):
        volume[z0:z0 + 64] = core[z0:z0 + 64]
    volume.flush()
    del volume
    input_mb = os.path.getsize(input_path) / 1e6
    reference = np.load(input_path)
    references = {f: _reference(reference, f) for f in FACTORS}
    del reference

    results = {}
    for name in WRITERS:
        out = os.path.join(args.workdir, f"{name}.ome.zarr")
        subprocess.run(["sync"], check=False)
        try:
            _, tree_peak, stdout = run_measured([sys.executable, __file__, "--child", name, input_path, out])
        except RuntimeError as error:
            results[name] = {"error": str(error)}
            print(f"{name}: failed: {error}", flush=True)
            continue
        entry = json.loads(stdout.strip().splitlines()[-1])
        entry["peak_rss_mb"] = max(entry["peak_rss_mb"], tree_peak)  # worker processes count too
        entry["throughput_mb_s"] = input_mb / entry["seconds"]
        entry["output_mb"] = _dir_size(out) / 1e6
        if name != "machine-limit":
            levels = _levels(out)
            entry["levels"] = [list(level.shape) for level in levels]
            quality = {}
            for factor, level in zip(FACTORS, levels[1:]):
                ref = references[factor]
                common = tuple(slice(0, min(a, b)) for a, b in zip(ref.shape, level.shape))
                diff = level[common].astype(np.float64) - ref[common]
                quality[f"x{factor}"] = {"rms_vs_gaussian_reference": float(np.sqrt(np.mean(diff**2))),
                                         "reference_std": float(ref[common].std())}
            entry["quality"] = quality
        results[name] = entry
        print(f"{name}: {entry['seconds']:.1f} s, {entry['throughput_mb_s']:.0f} MB/s, peak RSS {entry['peak_rss_mb']:.0f} MB, "
              f"output {entry['output_mb']:.0f} MB", flush=True)

    limit = results.get("machine-limit", {}).get("throughput_mb_s")
    if limit and "throughput_mb_s" in results.get("bigvolume", {}):
        results["bigvolume"]["fraction_of_machine_limit"] = results["bigvolume"]["throughput_mb_s"] / limit
    write_report(args.output, "pyramid_write",
                 input={"shape_zyx": list(core.shape), "dtype": "uint16", "mb": input_mb, "levels": 1 + len(FACTORS)},
                 results=results)
    shutil.rmtree(args.workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
