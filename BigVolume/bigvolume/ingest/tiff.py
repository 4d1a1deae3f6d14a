"""TIFF reader: a folder of 2D slices, or one multi-page TIFF / BigTIFF / OME-TIFF / ImageJ hyperstack.

Planes are read on demand. Uncompressed contiguous planes are read straight
into the output (a folder's slices with one read each; a multi-page file
through a memory map of just the planes asked for, so resident memory stays
bounded whatever the file's size). Compressed planes are decoded by tifffile
(zlib, PackBits, LZMA and zstd built in; LZW, JPEG and others need the
optional imagecodecs package, and the error says so).

Geometry: voxel size from OME `PhysicalSize{X,Y,Z}` (with their units),
else ImageJ calibration (`spacing`, `unit`, X/YResolution), else the
resolution tags in inch or centimetre. What is missing is assumed and said:
slice distance = pixel width, unit millimetre, origin 0, identity direction.
The reader options `channel` and `time` pick one plane of hyperstacks.
"""

import builtins
import glob
import os
import re
import xml.etree.ElementTree as ElementTree

import numpy as np

from ..errors import InputError
from ..store.geometry import VolumeGeometry
from ..store.units import canonical_space_unit, mm_per_unit
from .base import SourceInfo, VolumeSource, leading_bytes

EXTENSIONS = (".tif", ".tiff", ".btf", ".tf2", ".tf8")
_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def _tifffile():
    try:
        import tifffile
    except ImportError as error:  # a core dependency; only a broken install gets here
        raise InputError("reading TIFF needs the 'tifffile' package: pip install tifffile") from error
    return tifffile


def natural_key(name):
    """Sort key that puts slice_2 before slice_10."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def _is_tiff_file(path):
    return os.path.isfile(path) and leading_bytes(path, 4) in _MAGIC


def _has_glob(path):
    return any(c in os.fspath(path) for c in "*?[")


def probe(path):
    """True for a TIFF file, a folder holding TIFF files, or a glob pattern matching TIFF files."""
    path = os.fspath(path)
    if _has_glob(path) and not os.path.exists(path):
        return any(_is_tiff_file(p) for p in glob.glob(path)[:3])
    if os.path.isdir(path):
        if os.path.exists(os.path.join(path, "zarr.json")) or os.path.exists(os.path.join(path, ".zgroup")):
            return False
        return any(name.lower().endswith(EXTENSIONS) for name in os.listdir(path))
    return _is_tiff_file(path)


def open(path, pattern=None, channel=None, time=None):
    """Open a TIFF file, a folder of TIFF slices (optionally only names matching `pattern`), or a glob pattern."""
    path = os.fspath(path)
    if _has_glob(path) and not os.path.exists(path):
        folder, pattern = os.path.dirname(path) or ".", os.path.basename(path)
        return TiffSliceFolder(folder, pattern)
    if os.path.isdir(path):
        if channel is not None or time is not None:
            raise InputError(f"{path}: 'channel' and 'time' select planes of one multi-page file, not of a folder of slices")
        return TiffSliceFolder(path, pattern)
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file or folder")
    if pattern is not None:
        raise InputError(f"{path}: 'pattern' selects slices in a folder; this is a single file")
    return TiffStack(path, channel=channel, time=time)


# -- metadata -----------------------------------------------------------------
def _unit(text):
    if text is None:
        return None
    text = str(text).strip()
    if "\\u" in text:
        text = text.encode("ascii", "backslashreplace").decode("unicode_escape")
    try:
        return canonical_space_unit(text)
    except Exception:
        return None


def _resolution(page, tag):
    value = page.tags.get(tag)
    if value is None:
        return None
    value = value.value
    numerator, denominator = value if isinstance(value, tuple) else (value, 1)
    if not numerator or not denominator:
        return None
    return float(numerator) / float(denominator)  # pixels per resolution unit


def _ome_pixels(xml):
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError:
        return None, None
    for element in root.iter():
        if element.tag.endswith("}Pixels") or element.tag == "Pixels":
            plane = next((p for p in element if p.tag.endswith("Plane")), None)
            return element.attrib, (plane.attrib if plane is not None else {})
    return None, None


class _Metadata:
    """Voxel size, origin and unit gathered from a TIFF's tags, recording what was found and what assumed."""

    def __init__(self, tif, page, info):
        self.info = info
        self.spacing = [None, None, None]  # x, y, z in self.unit
        self.origin = [0.0, 0.0, 0.0]
        self.unit = None
        if tif.is_ome and tif.ome_metadata:
            self._ome(tif.ome_metadata)
        if self.spacing[0] is None and tif.is_imagej:
            self._imagej(tif.imagej_metadata or {}, page)
        if self.spacing[0] is None:
            self._resolution_tags(page)

    def _set(self, axis, value, unit, where):
        if value is None or not np.isfinite(value) or value <= 0:
            return
        unit = unit or self.unit or "micrometer"
        if self.unit is None:
            self.unit = unit
        self.spacing[axis] = float(value) * mm_per_unit(unit) / mm_per_unit(self.unit)
        self.info.found[f"spacing {'xyz'[axis]}"] = f"{value} {unit} ({where})"

    def _ome(self, xml):
        pixels, plane = _ome_pixels(xml)
        if not pixels:
            return
        for axis, name in enumerate("XYZ"):
            value = pixels.get(f"PhysicalSize{name}")
            if value is not None:
                self._set(axis, float(value), _unit(pixels.get(f"PhysicalSize{name}Unit", "µm")), "OME PhysicalSize" + name)
        for axis, name in enumerate("XYZ"):
            value = (plane or {}).get(f"Position{name}")
            if value is not None and self.unit:
                unit = _unit(plane.get(f"Position{name}Unit", "µm")) or self.unit
                self.origin[axis] = float(value) * mm_per_unit(unit) / mm_per_unit(self.unit)
                self.info.found[f"origin {'xyz'[axis]}"] = f"{value} {unit} (OME Plane Position{name})"

    def _imagej(self, meta, page):
        unit = _unit(meta.get("unit"))
        if unit is None:
            if meta.get("unit") not in (None, "pixel"):
                self.info.assumed.append(f"ImageJ unit {meta.get('unit')!r} is not a length; calibration ignored")
            return
        for axis, tag in ((0, "XResolution"), (1, "YResolution")):
            resolution = _resolution(page, tag)
            if resolution:
                self._set(axis, 1.0 / resolution, unit, f"ImageJ {tag}")
        if meta.get("spacing"):
            self._set(2, float(meta["spacing"]), unit, "ImageJ spacing")
        for axis, key in enumerate(("xorigin", "yorigin", "zorigin")):
            if key in meta and self.spacing[axis]:
                self.origin[axis] = -float(meta[key]) * self.spacing[axis]  # ImageJ origins are in pixels
                self.info.found[f"origin {'xyz'[axis]}"] = f"{meta[key]} pixels (ImageJ {key})"

    def _resolution_tags(self, page):
        unit_tag = page.tags.get("ResolutionUnit")
        unit_code = int(unit_tag.value) if unit_tag is not None else 2
        per = {2: "inch", 3: "centimeter"}.get(unit_code)
        if per is None:
            return
        for axis, tag in ((0, "XResolution"), (1, "YResolution")):
            resolution = _resolution(page, tag)
            if resolution and resolution != 1.0 and not (per == "inch" and resolution in (72.0, 96.0, 300.0)):
                self._set(axis, 1.0 / resolution, per, f"TIFF {tag} per {per}")

    def geometry(self):
        x, y, z = self.spacing
        if x is None and y is None:
            self.unit = "millimeter"
            x = y = 1.0
            self.info.assumed.append("pixel size 1 millimeter (no calibration in the file)")
        x = x if x is not None else y
        y = y if y is not None else x
        if z is None:
            z = x
            self.info.assumed.append(f"slice distance {z:g} {self.unit} (equal to the pixel width; the file does not say)")
        self.info.assumed.append("origin 0, identity direction (TIFF stores no orientation)"
                                 if not any(k.startswith("origin") for k in self.info.found)
                                 else "identity direction (TIFF stores no orientation)")
        return VolumeGeometry(spacing=(x, y, z), origin=tuple(self.origin), unit=self.unit)


# -- checks shared by both readers ------------------------------------------------
def _check_page(path, page):
    tifffile = _tifffile()
    compression = page.compression
    if compression != 1:
        try:
            tifffile.TIFF.DECOMPRESSORS[compression]
        except KeyError:
            name = getattr(compression, "name", compression)
            raise InputError(f"{path}: compression {name} is not supported without the optional 'imagecodecs' "
                             f"package (pip install imagecodecs), or save the slices uncompressed") from None
    if page.dtype is None:
        raise InputError(f"{path}: sample format {page.sampleformat} with {page.bitspersample} bits is not supported")


def _contiguous(page):
    """(offset, bytes) of a page whose data is stored uncompressed, in one run, in final form; else None."""
    if not page.is_final or page.samplesperpixel != 1:
        return None
    return int(page.dataoffsets[0]), int(page.nbytes)


def _check_length(path, end, size, what):
    if end > size:
        raise InputError(f"{path}: truncated: {what} ends at byte {end} but the file has {size} bytes")


def _open_tiff(path):
    tifffile = _tifffile()
    try:
        tif = tifffile.TiffFile(path)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file or folder") from None
    except Exception as error:
        raise InputError(f"{path}: not a readable TIFF file ({type(error).__name__}: {error})") from None
    try:
        empty = len(tif.pages) == 0 or tif.pages[0] is None
    except Exception:
        empty = True
    if empty:
        tif.close()
        raise InputError(f"{path}: not a readable TIFF file (it holds no image)")
    return tif


# -- a folder of slices --------------------------------------------------------------
class TiffSliceFolder(VolumeSource):
    """A folder of single-page TIFF slices in natural order; each file is one z plane."""

    def __init__(self, folder, pattern=None):
        folder = os.fspath(folder)
        if not os.path.isdir(folder):
            raise InputError(f"{folder}: no such folder")
        if pattern:
            names = [os.path.basename(p) for p in glob.glob(os.path.join(glob.escape(folder), pattern)) if os.path.isfile(p)]
        else:
            names = [n for n in os.listdir(folder) if n.lower().endswith(EXTENSIONS) and not n.startswith(".")]
        if not names:
            raise InputError(f"{folder}: no TIFF slices found" + (f" matching {pattern!r}" if pattern else ""))
        names.sort(key=natural_key)
        self.files = [os.path.join(folder, n) for n in names]
        self.info = SourceInfo(format="tiff-folder", path=folder)
        self.info.found["slices"] = len(self.files)
        self.info.found["first and last slice"] = f"{names[0]} ... {names[-1]}"
        self.locations = []
        with _open_tiff(self.files[0]) as tif:
            page = tif.pages[0]
            self._first = (page.shape, page.dtype, tif.byteorder)
            self.geometry = _Metadata(tif, page, self.info).geometry()
        for path in self.files:
            self.locations.append(self._scan(path))
        shape, dtype, byteorder = self._first
        self.shape = (len(self.files),) + tuple(shape)
        self.file_dtype = np.dtype(dtype).newbyteorder(byteorder)
        self.dtype = np.dtype(dtype).newbyteorder("=")
        self.info.found["slice"] = f"{shape[1]} x {shape[0]} pixels, {self.dtype}"

    def _scan(self, path):
        with _open_tiff(path) as tif:
            if len(tif.pages) != 1:
                raise InputError(f"{path}: holds {len(tif.pages)} pages; a folder of slices needs one 2D image per file")
            page = tif.pages[0]
            if page.samplesperpixel != 1 or len(page.shape) != 2:
                raise InputError(f"{path}: a {page.samplesperpixel}-sample (colour) image of shape {page.shape}; "
                                 f"slices must be single-channel 2D images")
            _check_page(path, page)
            shape, dtype, _ = self._first
            if page.shape != shape or page.dtype != dtype:
                raise InputError(f"{path}: slice is {page.shape[1]} x {page.shape[0]} {page.dtype}, but "
                                 f"{self.files[0]} is {shape[1]} x {shape[0]} {dtype}; all slices must match")
            size = os.path.getsize(path)
            offsets = [o + n for o, n in zip(page.dataoffsets, page.databytecounts)]
            _check_length(path, max(offsets) if offsets else 0, size, "the image data")
            return _contiguous(page)

    def _read(self, z0, z1):
        out = np.empty((z1 - z0,) + self.shape[1:], self.dtype)
        swap = self.file_dtype.byteorder not in ("=", "|") and self.file_dtype != self.dtype
        for i, z in enumerate(range(z0, z1)):
            path, location = self.files[z], self.locations[z]
            if location is not None:
                target = out[i].view(self.file_dtype) if swap else out[i]
                with builtins.open(path, "rb") as handle:
                    handle.seek(location[0])
                    got = handle.readinto(memoryview(target).cast("B"))
                if got != location[1]:
                    raise InputError(f"{path}: truncated: {got} of {location[1]} bytes of image data could be read")
                if swap:
                    out[i] = target.astype(self.dtype)
            else:
                with _open_tiff(path) as tif:
                    try:
                        out[i] = tif.pages[0].asarray()
                    except Exception as error:
                        raise InputError(f"{path}: cannot decode the image data ({type(error).__name__}: {error})") from None
        return out


# -- one multi-page file --------------------------------------------------------------
class TiffStack(VolumeSource):
    """The first image series of a TIFF file as (z, y, x): pages are z planes (one channel and time point)."""

    def __init__(self, path, channel=None, time=None):
        self.path = os.fspath(path)
        self.info = SourceInfo(format="tiff", path=self.path)
        self.options = {"channel": channel, "time": time}
        with _open_tiff(self.path) as tif:
            if not tif.series:
                raise InputError(f"{self.path}: no image in the file")
            series = tif.series[0]
            page = series.keyframe
            _check_page(self.path, page)
            kind = "OME-TIFF" if tif.is_ome else "ImageJ" if tif.is_imagej else "BigTIFF" if tif.is_bigtiff else "TIFF"
            self.info.format = kind
            axes, shape = series.axes, series.shape
            self.info.found["axes"] = f"{axes} {tuple(shape)}"
            self.geometry = _Metadata(tif, page, self.info).geometry()
            self._layout(axes, shape, channel, time)
            self.dtype = np.dtype(series.dtype).newbyteorder("=")
            self.file_dtype = np.dtype(series.dtype).newbyteorder(tif.byteorder)
            size = os.path.getsize(self.path)
            self.contiguous = series.dataoffset if (page.is_final and series.dataoffset is not None
                                                    and not self.samples) else None
            if self.contiguous is not None:
                _check_length(self.path, self.contiguous + int(np.prod(shape)) * self.file_dtype.itemsize, size,
                              f"the {self.info.format} image data")
            else:
                last = series.pages[-1] if len(series.pages) else None
                if last is None or len(series.pages) < self.page_count:
                    raise InputError(f"{self.path}: holds {len(series.pages)} image pages, its metadata says "
                                     f"{self.page_count}; the file is truncated or its metadata is wrong")
                ends = [o + n for o, n in zip(last.dataoffsets, last.databytecounts)]
                _check_length(self.path, max(ends) if ends else 0, size, "the last page's data")
        self._tif = None

    def _layout(self, axes, shape, channel, time):
        """Map z to page indices: one Z (or other stacking) axis, optional channel/time picked, Y X (and S) in the page."""
        self.samples = "S" in axes
        picks = {"C": channel, "T": time, "S": channel if "C" not in axes else None}
        self.plane_axes = [(a, n) for a, n in zip(axes, shape) if a not in "YXS"]
        self.page_count = int(np.prod([n for _, n in self.plane_axes])) if self.plane_axes else 1
        z_axis = next((a for a, _ in self.plane_axes if a == "Z"), None)
        if z_axis is None:  # plain multi-page files stack along an unnamed axis
            stacking = [a for a, n in self.plane_axes if a not in "CT" and n > 1]
            if len(stacking) > 1:
                raise InputError(f"{self.path}: axes {axes}: more than one axis could be z; cannot tell the volume apart")
            z_axis = stacking[0] if stacking else None
        self.index = {}
        for a, n in self.plane_axes + ([("S", shape[axes.index("S")])] if self.samples else []):
            if a == z_axis:
                continue
            wanted = picks.get(a)
            if wanted is None:
                wanted = 0
                if n > 1:
                    self.info.assumed.append(f"{'channel' if a in 'CS' else 'time point' if a == 'T' else 'index'} 0 "
                                             f"of {n} along axis {a} (choose with the channel/time options)")
            elif not 0 <= wanted < n:
                raise InputError(f"{self.path}: {a} index {wanted} is outside 0..{n - 1}")
            self.index[a] = int(wanted)
        self.z_axis = z_axis
        depth = dict(self.plane_axes).get(z_axis, 1) if z_axis else 1
        y, x = shape[axes.index("Y")], shape[axes.index("X")]
        self.shape = (int(depth), int(y), int(x))

    def _page_of(self, z):
        position = [z if a == self.z_axis else self.index.get(a, 0) for a, _ in self.plane_axes]
        return int(np.ravel_multi_index(position, [n for _, n in self.plane_axes])) if self.plane_axes else 0

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_tif"] = None  # file handles are not sent to other processes; they re-open the file
        return state

    def close(self):
        if self._tif is not None:
            self._tif.close()
            self._tif = None

    def _read(self, z0, z1):
        plane = self.shape[1] * self.shape[2]
        pages = [self._page_of(z) for z in range(z0, z1)]
        out = np.empty((z1 - z0,) + self.shape[1:], self.dtype)
        if self.contiguous is not None:
            # Map only the pages asked for (consecutive pages when z is the outer axis).
            first, last = min(pages), max(pages)
            step = self.file_dtype.itemsize * plane
            mapped = np.memmap(self.path, dtype=self.file_dtype, mode="r", offset=self.contiguous + first * step,
                               shape=(last - first + 1,) + self.shape[1:])
            out[...] = mapped[[p - first for p in pages]] if len(pages) > 1 and pages != list(range(first, last + 1)) \
                else mapped
            del mapped
            return out
        if self._tif is None:
            self._tif = _open_tiff(self.path)
        series = self._tif.series[0]
        for i, index in enumerate(pages):
            try:
                data = series.pages[index].asarray()
            except Exception as error:
                raise InputError(f"{self.path}: cannot decode page {index} ({type(error).__name__}: {error})") from None
            if self.samples:
                data = data[..., self.index.get("S", 0)] if data.ndim == 3 else data
            out[i] = data.reshape(self.shape[1:])
        return out


__all__ = ["TiffSliceFolder", "TiffStack", "natural_key", "open", "probe"]
