"""An existing OME-Zarr image (NGFF 0.1-0.5) as a source: re-chunk, re-pyramid, or move from 0.4 to 0.5.

One level (the finest by default), one time point and one channel are read
in z-slabs through `bigvolume.open_image`, so the geometry (scale,
translation, our direction attribute, RFC-4 orientation) is exactly what
BigVolume shows for the store. A label image (`image-label` metadata) is
marked as labels, so its new pyramid is made with the mode, not the filter.
"""

import builtins
import json
import os

import numpy as np

from ..errors import InputError, StoreError
from ..store.geometry import LPS_TO_RAS, VolumeGeometry
from ..store.units import mm_per_unit
from .base import SourceInfo, VolumeSource


def probe(path):
    """True for a Zarr group folder with multiscales metadata (or one BigVolume is still writing)."""
    path = os.fspath(path)
    if os.path.basename(path) in ("zarr.json", ".zattrs", ".zgroup"):
        path = os.path.dirname(path) or "."
    if not os.path.isdir(path):
        return False
    for name in ("zarr.json", ".zattrs"):
        try:
            with builtins.open(os.path.join(path, name)) as handle:
                attrs = json.load(handle)
        except (OSError, ValueError):
            continue
        attrs = attrs.get("attributes", attrs) if name == "zarr.json" else attrs
        if "multiscales" in attrs or "multiscales" in (attrs.get("ome") or {}) or "bigvolume" in attrs:
            return True
    return False


def _open_image(location, t, c):
    from ..store.multiscale import open_image

    try:
        return open_image(location, t=t, c=c)
    except StoreError as error:
        raise InputError(str(error)) from None
    except ValueError as error:
        raise InputError(f"{location}: {error}") from None


def open(path, level=0, time=0, channel=0):
    return OmeZarrSource(path, level=level, time=time, channel=channel)


class OmeZarrSource(VolumeSource):
    def __init__(self, path, level=0, time=0, channel=0):
        self.path = os.fspath(path)
        self.level, self.time, self.channel = int(level), int(time or 0), int(channel or 0)
        image = _open_image(self.path, self.time, self.channel)
        if not 0 <= self.level < len(image.levels):
            raise InputError(f"{self.path}: has levels 0..{len(image.levels) - 1}, not {self.level}")
        lvl = image.levels[self.level]
        self.shape = tuple(int(n) for n in lvl.volume_shape)
        self.dtype = np.dtype(lvl.dtype).newbyteorder("=")
        self.info = SourceInfo(format=f"ome-zarr {image.version}", path=self.path)
        self.info.found["levels"] = len(image.levels)
        self.info.found["level read"] = f"{self.level}: {'x'.join(map(str, lvl.shape))}, chunks {lvl.chunks}" \
                                        + (f", shards {lvl.shards}" if lvl.shards else "")
        attrs = image.group.attrs.asdict()
        self.labels = "image-label" in attrs or "image-label" in (attrs.get("ome") or {})
        if self.labels:
            self.info.found["labels"] = "image-label metadata: downsampled with the mode"
        self.geometry = self._geometry(image, lvl)
        self._image = image

    def _geometry(self, image, lvl):
        matrix = np.asarray(lvl.ijk_to_ras)
        columns = LPS_TO_RAS @ matrix[:3, :3]  # LPS_TO_RAS is its own inverse
        origin_mm = LPS_TO_RAS @ matrix[:3, 3]
        spacing_mm = np.linalg.norm(columns, axis=0)
        direction = columns / spacing_mm
        units = {a.unit for a in image.meta.axes if a.type == "space"}
        unit = units.pop() if len(units) == 1 and None not in units else "millimeter"
        if unit == "millimeter" and len({a.unit for a in image.meta.axes if a.type == "space"}) != 1:
            self.info.assumed.append("axes with different or missing units: geometry converted to millimeter")
        scale = mm_per_unit(unit)
        self.info.found["voxel size"] = f"{tuple(round(float(s / scale), 9) for s in spacing_mm)} {unit}"
        return VolumeGeometry(spacing=tuple(spacing_mm / scale), origin=tuple(origin_mm / scale),
                              direction=direction, unit=unit)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_image"] = None  # re-opened from the path by whoever receives it
        return state

    def _read(self, z0, z1):
        if self._image is None:
            self._image = _open_image(self.path, self.time, self.channel)
        _, ny, nx = self.shape
        return self._image.read(self.level, [(z0, z1), (0, ny), (0, nx)]).astype(self.dtype, copy=False)


__all__ = ["OmeZarrSource", "open", "probe"]
