"""Readers that turn what users have into lazy z-slab sources for `write_pyramid`.

Each reader module has `probe(path) -> bool` and `open(path, **options) -> VolumeSource`.
`open_source` picks the reader (by `format`, or by asking each reader's probe
in turn), opens the input, and applies the user's geometry overrides.
"""

import glob
import importlib
import inspect
import os

from ..errors import InputError
from .base import SourceInfo, VolumeSource, with_overrides

# Format name -> (module, what it reads). Probed in this order: specific signatures first, raw (no signature) last.
FORMATS = {
    "ome-zarr": ("omezarr", "OME-Zarr image folder (NGFF 0.1-0.5)"),
    "tiff": ("tiff", "TIFF: a folder of 2D slices (or a glob pattern), multi-page TIFF, BigTIFF, OME-TIFF, ImageJ hyperstack"),
    "nrrd": ("nrrd", "NRRD (.nrrd, .nhdr)"),
    "metaimage": ("metaimage", "MetaImage (.mha, .mhd)"),
    "nifti": ("nifti", "NIfTI (.nii, .nii.gz, .hdr/.img)"),
    "dicom": ("dicom", "DICOM series (a folder or a file of it)"),
    "raw": ("raw", "raw voxels (.raw, .bin, .dat, .vol) with --raw-size and --raw-dtype"),
}
GEOMETRY_OPTIONS = ("spacing", "origin", "direction", "unit")


def reader(name):
    """The reader module of a format name; InputError if the name is unknown or its reader cannot be loaded."""
    if name not in FORMATS:
        raise InputError(f"unknown format {name!r}; supported formats: {', '.join(FORMATS)}")
    try:
        return importlib.import_module(f".{FORMATS[name][0]}", __name__)
    except ImportError as error:
        raise InputError(f"the {name} reader cannot be loaded: {error}") from error


def supported_formats():
    return "\n".join(f"  {name}: {text}" for name, (_, text) in FORMATS.items())


def detect_format(path):
    """Name of the first format whose probe recognises `path`, or None."""
    for name in FORMATS:
        try:
            if reader(name).probe(path):
                return name
        except InputError:
            continue
    return None


def open_source(path, format=None, spacing=None, origin=None, direction=None, unit=None, **options):
    """Open any supported input as a VolumeSource; spacing/origin/direction/unit (x, y, z) override the file's."""
    path = os.fspath(path)
    if not os.path.exists(path) and not (any(c in path for c in "*?[") and glob.glob(path)):
        raise InputError(f"{path}: no such file or folder")
    if os.path.isdir(path) and not os.listdir(path):  # said as such: the list of formats would not help
        raise InputError(f"{path}: the folder is empty")
    name = format or detect_format(path)
    if name is None:
        raise InputError(f"{path}: not a format BigVolume reads (or give --format); supported formats:\n{supported_formats()}")
    module = reader(name)
    options = {key: value for key, value in options.items() if value is not None}
    try:
        inspect.signature(module.open).bind(path, **options)
    except TypeError:
        accepted = [p for p in inspect.signature(module.open).parameters if p != "path"]
        raise InputError(f"{path}: the {name} reader does not take option(s) {', '.join(sorted(options))}"
                         f" (it takes: {', '.join(accepted) or 'none'})") from None
    source = module.open(path, **options)
    return with_overrides(source, spacing=spacing, origin=origin, direction=direction, unit=unit)


__all__ = ["FORMATS", "SourceInfo", "VolumeSource", "detect_format", "open_source", "reader", "supported_formats",
           "with_overrides"]
