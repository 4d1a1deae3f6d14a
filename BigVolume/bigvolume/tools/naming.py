"""Output names for conversions; zarr-free, so a GUI can propose a name before the packages are installed."""

import os

_STRIP = (".ome.zarr", ".zarr", ".ome.tiff", ".ome.tif", ".nii.gz", ".tiff", ".tif", ".btf", ".nrrd", ".nhdr",
          ".mha", ".mhd", ".nii", ".raw", ".bin", ".dat", ".vol", ".dcm", ".hdr", ".img")


def output_name(input_path):
    """`scan_01.tif` -> `scan_01.ome.zarr`; a folder `core_A/` -> `core_A.ome.zarr`."""
    name = os.path.basename(os.path.normpath(input_path)) or "volume"
    if any(c in name for c in "*?["):
        name = os.path.basename(os.path.dirname(os.path.normpath(input_path))) or "volume"
    lower = name.lower()
    for suffix in _STRIP:
        if lower.endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
            break
    return name + ".ome.zarr"
