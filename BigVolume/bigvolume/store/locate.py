"""Recognise an OME-Zarr multiscale image from a path a user dropped or picked.

Cheap (reads one small JSON file, opens no array), so a file reader can ask
it about every file of a dropped folder. Accepts the image folder itself or
its root metadata file (`zarr.json` for Zarr v3, `.zattrs` / `.zgroup` for
Zarr v2); the metadata of a level array or of a plain group is not claimed.
"""

import json
import os

from .ngff import find_multiscales

METADATA_FILES = ("zarr.json", ".zattrs", ".zgroup")


def _group_attributes(folder):
    """The group attributes stored in `folder` (Zarr v3 or v2), or None if it holds no Zarr group."""
    v3 = os.path.join(folder, "zarr.json")
    if os.path.isfile(v3):
        with open(v3, "rb") as f:
            meta = json.load(f)
        return meta.get("attributes") or {} if meta.get("node_type") == "group" else None
    if os.path.isfile(os.path.join(folder, ".zgroup")):
        attrs = os.path.join(folder, ".zattrs")
        if not os.path.isfile(attrs):
            return {}
        with open(attrs, "rb") as f:
            return json.load(f)
    return None


def image_root(path):
    """The folder of the multiscale image that `path` is or whose root metadata file it is; None otherwise."""
    path = os.path.abspath(os.fspath(path))
    if os.path.isfile(path):
        if os.path.basename(path) not in METADATA_FILES:
            return None
        path = os.path.dirname(path)
    if not os.path.isdir(path):
        return None
    try:
        attrs = _group_attributes(path)
    except (OSError, ValueError):  # unreadable or not JSON: not ours to claim
        return None
    if not isinstance(attrs, dict):
        return None
    return path if find_multiscales(attrs)[1] is not None else None
