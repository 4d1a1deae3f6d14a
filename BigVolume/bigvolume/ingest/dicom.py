"""DICOM series reader: a folder of single-frame slices, read one slab of files at a time.

Each file's header is parsed once, up to the pixel data, by a small parser of
our own (uncompressed transfer syntaxes: implicit and explicit VR little
endian, explicit big endian); it keeps only the tags the geometry needs and
where the pixel data starts, so a slab later reads exactly its files' pixels.

Geometry is what ITK's series reader makes of it: slices sorted by their
position along the normal of ImageOrientationPatient (row x column
direction), origin at the first slice's ImagePositionPatient, in-plane
spacing from PixelSpacing (row spacing is y), slice spacing from the first
and last positions. Rescale slope/intercept are not applied: raw stored values
are kept, and `info.assumed` says so when the series has a rescale.
"""

import io
import os
import struct
from collections import Counter, defaultdict

import numpy as np

from ..errors import InputError
from ..store.geometry import VolumeGeometry
from .base import SourceInfo, VolumeSource
from .blocks import orthonormal_direction

_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
_UNDEFINED = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_PIXEL_DATA = 0x7FE00010
_FIRST_READ = 32 << 10  # bytes read at first: the whole header of almost every file

_IMPLICIT_LE, _EXPLICIT_LE, _EXPLICIT_BE = "1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"
_DEFLATED = "1.2.840.10008.1.2.1.99"
_SYNTAXES = {_IMPLICIT_LE: ("<", False), _EXPLICIT_LE: ("<", True), _EXPLICIT_BE: (">", True)}

# Tags kept: name and how its value is decoded ("us": unsigned short, "ds": numbers, "str": text).
_TAGS = {
    0x00080060: ("Modality", "str"),
    0x0008103E: ("SeriesDescription", "str"),
    0x00180050: ("SliceThickness", "ds"),
    0x00180088: ("SpacingBetweenSlices", "ds"),
    0x00181164: ("ImagerPixelSpacing", "ds"),
    0x0020000E: ("SeriesInstanceUID", "str"),
    0x00200013: ("InstanceNumber", "ds"),
    0x00200032: ("ImagePositionPatient", "ds"),
    0x00200037: ("ImageOrientationPatient", "ds"),
    0x00280002: ("SamplesPerPixel", "us"),
    0x00280004: ("PhotometricInterpretation", "str"),
    0x00280008: ("NumberOfFrames", "ds"),
    0x00280010: ("Rows", "us"),
    0x00280011: ("Columns", "us"),
    0x00280030: ("PixelSpacing", "ds"),
    0x00280100: ("BitsAllocated", "us"),
    0x00280103: ("PixelRepresentation", "us"),
    0x00281052: ("RescaleIntercept", "ds"),
    0x00281053: ("RescaleSlope", "ds"),
}


class _Header:
    """What one file says: the kept tags by name, its transfer syntax, and where its pixel data is."""

    __slots__ = ("path", "tags", "syntax", "pixel_offset", "pixel_length", "file_size")

    def __init__(self, path, tags, syntax, pixel_offset, pixel_length, file_size):
        self.path, self.tags, self.syntax = path, tags, syntax
        self.pixel_offset, self.pixel_length, self.file_size = pixel_offset, pixel_length, file_size

    def get(self, name, default=None):
        return self.tags.get(name, default)


class _Parser:
    """Walks data elements from the start of a file, reading more of it only when an element needs it."""

    def __init__(self, file):
        self.file = file
        self.data = file.read(_FIRST_READ)
        self.order, self.explicit = "<", True

    def ensure(self, end):
        while len(self.data) < end:
            more = self.file.read(max(end - len(self.data), len(self.data)))
            if not more:
                return False
            self.data += more
        return True

    def element(self, pos, explicit):
        """(tag, VR or None, value length, value position) of the element at `pos`, or None at the end of the file."""
        if not self.ensure(pos + 12):
            if not self.ensure(pos + 8):
                return None
        group, number, length = struct.unpack_from(self.order + "HHI", self.data, pos)
        tag = group << 16 | number
        if group == 0xFFFE or not explicit:  # items and delimiters never have a VR
            return tag, None, length, pos + 8
        vr = self.data[pos + 4:pos + 6]
        if vr in _LONG_VRS:
            return tag, vr, struct.unpack_from(self.order + "I", self.data, pos + 8)[0], pos + 12
        return tag, vr, struct.unpack_from(self.order + "H", self.data, pos + 6)[0], pos + 8

    def skip_sequence(self, pos, explicit):
        """Position after an undefined-length sequence whose first item starts at `pos`."""
        while True:
            item = self.element(pos, False)
            if item is None:
                raise ValueError("file ends inside a sequence")
            tag, _, length, pos = item
            if tag == _SEQUENCE_END:
                return pos
            if tag != _ITEM:
                raise ValueError(f"expected a sequence item at byte {pos - 8}, found tag {tag:08X}")
            if length != _UNDEFINED:
                pos += length
                continue
            while True:  # an item of undefined length: its elements, up to the item end
                element = self.element(pos, explicit)
                if element is None:
                    raise ValueError("file ends inside a sequence item")
                tag, vr, length, pos = element
                if tag == _ITEM_END:
                    break
                pos = self.skip_sequence(pos, explicit and vr != b"UN") if length == _UNDEFINED else pos + length

    def value(self, pos, length, kind):
        if not self.ensure(pos + length):
            raise ValueError("file ends inside an element")
        raw = self.data[pos:pos + length]
        if kind == "us":
            return struct.unpack_from(self.order + "H", raw)[0] if length >= 2 else None
        text = raw.decode("latin-1").strip(" \0")
        if kind == "str":
            return text
        try:
            return [float(v) for v in text.split("\\") if v.strip()]
        except ValueError:
            return None


def _has_vr(data, pos):
    vr = data[pos + 4:pos + 6]
    return len(vr) == 2 and vr.isalpha() and vr.isupper()


def _guess_syntax(data, pos):
    """Little endian syntax of a data set whose header does not say: explicit if a VR follows the first tag."""
    return _EXPLICIT_LE if _has_vr(data, pos) else _IMPLICIT_LE


def read_header(path):
    """Parse one file up to its pixel data; None if it is not DICOM. Raises ValueError if a DICOM file is malformed.

    A file without the DICM preamble is taken for a bare data set only if it parses: any other file whose first
    bytes happen to look like a tag is not DICOM.
    """
    with io.open(path, "rb") as f:
        parser = _Parser(f)
        data = parser.data
        if data[128:132] == b"DICM":
            return _parse(parser, path, 132, None)
        if len(data) >= 8 and struct.unpack_from("<H", data)[0] in (0x0002, 0x0008):
            syntax = _guess_syntax(data, 0)
        elif len(data) >= 8 and struct.unpack_from(">H", data)[0] == 0x0008 and _has_vr(data, 0):
            syntax = _EXPLICIT_BE
        else:
            return None
        try:
            return _parse(parser, path, 0, syntax)
        except (ValueError, struct.error):
            return None


def _parse(parser, path, pos, syntax):
    tags = {}
    size = os.fstat(parser.file.fileno()).st_size
    while syntax is None:  # the file meta group: always explicit VR little endian
        element = parser.element(pos, True)
        if element is None or element[0] >> 16 != 0x0002:
            syntax = tags.get("TransferSyntaxUID") or _guess_syntax(parser.data, pos)
            break
        tag, _, length, pos = element
        if tag == 0x00020010:
            tags["TransferSyntaxUID"] = parser.value(pos, length, "str")
        pos += length
    if syntax == _DEFLATED:  # the data set itself is compressed: report the file as an image we cannot read
        return _Header(path, tags, syntax, 0, _UNDEFINED, size)
    parser.order, explicit = _SYNTAXES.get(syntax, ("<", True))  # compressed syntaxes: explicit little endian
    while True:
        element = parser.element(pos, explicit)
        if element is None or element[0] > _PIXEL_DATA:
            return _Header(path, tags, syntax, None, None, size)
        tag, vr, length, pos = element
        if tag == _PIXEL_DATA:
            return _Header(path, tags, syntax, pos, length, size)
        if tag in _TAGS and length != _UNDEFINED:
            name, kind = _TAGS[tag]
            tags[name] = parser.value(pos, length, kind)
        pos = parser.skip_sequence(pos, explicit and vr != b"UN") if length == _UNDEFINED else pos + length


def _is_dicom_file(path):
    try:
        with io.open(path, "rb") as f:
            return f.read(132)[128:] == b"DICM"
    except OSError:
        return False


def _candidate_files(folder, recursive):
    for entry in os.scandir(folder):
        if entry.name.startswith("."):
            continue
        if entry.is_file():
            yield entry.path
        elif recursive and entry.is_dir():
            yield from _candidate_files(entry.path, recursive)


def probe(path):
    """Whether `path` is a DICOM file, or a folder whose first files include one."""
    if os.path.isfile(path):
        return _is_dicom_file(path)
    if not os.path.isdir(path):
        return False
    for count, name in enumerate(_candidate_files(path, False)):
        if _is_dicom_file(name):
            return True
        if count >= 20:
            break
    return False


def scan(folder, recursive=False):
    """(headers of the image files, number of other files) of a folder."""
    headers, skipped = [], 0
    for path in sorted(_candidate_files(folder, recursive)):
        try:
            header = read_header(path)
        except (OSError, ValueError, struct.error) as exc:
            raise InputError(f"{path}: unreadable DICOM header ({exc})") from None
        if header is None or header.pixel_offset is None:
            skipped += 1
        else:
            headers.append(header)
    return headers, skipped


def _check_slices(headers):
    """Refuse what cannot be stacked into one scalar volume; return the pixel dtype as stored."""
    first = headers[0]
    if first.syntax not in _SYNTAXES:
        raise InputError(f"{first.path}: transfer syntax {first.syntax} is compressed or deflated, which is not "
                         "supported; decompress the series first (e.g. gdcmconv --raw or dcmdjpeg)")
    shape = (first.get("Rows"), first.get("Columns"))
    bits, signed = first.get("BitsAllocated"), first.get("PixelRepresentation", 0)
    if None in shape or bits not in (8, 16, 32):
        raise InputError(f"{first.path}: Rows {shape[0]}, Columns {shape[1]}, BitsAllocated {bits}: "
                         "only 8, 16 and 32-bit images with rows and columns are supported")
    for header in headers:
        size = (header.get("Rows"), header.get("Columns"))
        if size != shape or header.get("BitsAllocated") != bits or header.get("PixelRepresentation", 0) != signed:
            raise InputError(f"{header.path}: slice of {size[0]} x {size[1]}, {header.get('BitsAllocated')} bits, "
                             f"differs from {first.path} ({shape[0]} x {shape[1]}, {bits} bits): inconsistent slices")
        if header.syntax != first.syntax:
            raise InputError(f"{header.path}: transfer syntax {header.syntax} differs from "
                             f"{first.path}'s {first.syntax}")
        if header.get("SamplesPerPixel", 1) != 1:
            raise InputError(f"{header.path}: {header.get('SamplesPerPixel')} samples per pixel (colour); "
                             "only scalar images are supported")
        frames = header.get("NumberOfFrames")
        if frames and frames[0] > 1:
            raise InputError(f"{header.path}: {int(frames[0])} frames in one file; "
                             "only single-frame slices are supported")
        needed = shape[0] * shape[1] * bits // 8
        if header.pixel_length == _UNDEFINED:
            raise InputError(f"{header.path}: encapsulated (compressed) pixel data is not supported")
        present = min(header.pixel_length, header.file_size - header.pixel_offset)
        if present < needed:
            raise InputError(f"{header.path}: truncated pixel data: {shape[0]} x {shape[1]} x {bits // 8} bytes = "
                             f"{needed} expected, {max(present, 0)} present")
    order = _SYNTAXES[first.syntax][0]
    return np.dtype(f"{order}{'i' if signed else 'u'}{bits // 8}")


def _slice_geometry(headers, assumed):
    """(headers sorted along the slice normal, VolumeGeometry)."""
    first = headers[0]
    pixel_spacing = first.get("PixelSpacing") or first.get("ImagerPixelSpacing")
    if not pixel_spacing or len(pixel_spacing) != 2 or min(pixel_spacing) <= 0:
        assumed.append("pixel spacing: not given; 1 x 1 assumed")
        pixel_spacing = [1.0, 1.0]
    positioned = all(len(h.get("ImagePositionPatient") or ()) == 3 and len(h.get("ImageOrientationPatient") or ()) == 6
                     for h in headers)
    if not positioned:
        return _unpositioned_geometry(headers, pixel_spacing, assumed)
    orientation = np.array(first.get("ImageOrientationPatient"))
    for header in headers:
        if np.abs(np.array(header.get("ImageOrientationPatient")) - orientation).max() > 1e-4:
            raise InputError(f"{header.path}: ImageOrientationPatient differs from {first.path}'s; "
                             "slices of one volume must share their orientation")
    row, column = orientation[:3], orientation[3:]
    normal = np.cross(row, column)
    positions = np.array([h.get("ImagePositionPatient") for h in headers])
    distance = positions @ normal
    order = np.argsort(distance, kind="stable")
    headers, positions, distance = [headers[i] for i in order], positions[order], distance[order]
    steps = np.diff(distance)
    if len(steps) and steps.min() < 1e-4:
        i = int(np.argmin(steps))
        raise InputError(f"{headers[i].path} and {headers[i + 1].path} lie at the same position: the series holds "
                         "several volumes (echoes, phases, repeats); choose files of one volume")
    if len(headers) > 1:
        slice_spacing = (distance[-1] - distance[0]) / (len(headers) - 1)
        if np.abs(steps - slice_spacing).max() > 1e-3 * slice_spacing + 1e-4:
            assumed.append(f"slice distances vary from {steps.min():.6g} to {steps.max():.6g}: slices are placed "
                           f"{slice_spacing:.6g} apart (missing slices?)")
        drift = positions[-1] - positions[0]
        if np.linalg.norm(drift - (drift @ normal) * normal) > 1e-3 * np.linalg.norm(drift):
            assumed.append("slice positions move sideways (tilted gantry): slices are stacked along the normal")
    else:
        slice_spacing = _thickness(first, assumed)
    direction, note = orthonormal_direction(np.column_stack([row, column, normal]), first.path)
    if note:
        assumed.append(note)
    geometry = VolumeGeometry((pixel_spacing[1], pixel_spacing[0], slice_spacing), positions[0], direction)
    return headers, geometry


def _thickness(header, assumed):
    for name in ("SpacingBetweenSlices", "SliceThickness"):
        value = header.get(name)
        if value and value[0] > 0:
            assumed.append(f"slice spacing: taken from {name}")
            return value[0]
    assumed.append("slice spacing: not given; 1 assumed")
    return 1.0


def _unpositioned_geometry(headers, pixel_spacing, assumed):
    if all(h.get("InstanceNumber") for h in headers):
        headers = sorted(headers, key=lambda h: h.get("InstanceNumber")[0])
        assumed.append("no ImagePositionPatient/ImageOrientationPatient: slices ordered by InstanceNumber, "
                       "identity direction and zero origin assumed")
    else:
        assumed.append("no ImagePositionPatient/ImageOrientationPatient or InstanceNumber: slices ordered by "
                       "file name, identity direction and zero origin assumed")
    spacing = (pixel_spacing[1], pixel_spacing[0], _thickness(headers[0], assumed))
    return headers, VolumeGeometry(spacing, (0.0, 0.0, 0.0))


def _rescale_note(headers):
    pairs = Counter(((h.get("RescaleSlope") or [1.0])[0], (h.get("RescaleIntercept") or [0.0])[0]) for h in headers)
    if set(pairs) == {(1.0, 0.0)}:
        return None
    if len(pairs) == 1:
        slope, intercept = next(iter(pairs))
        return (f"RescaleSlope {slope:g}, RescaleIntercept {intercept:g}: raw stored values are kept "
                f"(value = {slope:g} * stored + {intercept:g} is not applied)")
    return (f"rescale slope/intercept vary between slices ({len(pairs)} different pairs): raw stored values are "
            "kept, so values of different slices are not on one scale")


class DicomSeriesSource(VolumeSource):
    """A DICOM series as a (z, y, x) volume: a slab reads the pixel data of its own files only."""

    def __init__(self, headers, file_dtype, geometry, info):
        self.headers = headers
        self.file_dtype = file_dtype
        self.dtype = file_dtype.newbyteorder("=")
        self.shape = (len(headers), headers[0].get("Rows"), headers[0].get("Columns"))
        self.geometry = geometry
        self.info = info
        self._closed = False

    def _read(self, z0, z1):
        if self._closed:
            raise InputError(f"{self.info.path}: the source was closed")
        out = np.empty((z1 - z0,) + self.shape[1:], self.file_dtype)
        for plane, header in zip(out, self.headers[z0:z1]):
            view = memoryview(plane.reshape(-1).view(np.uint8))
            try:
                with io.open(header.path, "rb") as f:
                    f.seek(header.pixel_offset)
                    filled = f.readinto(view)
            except OSError as exc:
                raise InputError(f"{header.path}: cannot read its pixel data ({exc.strerror})") from None
            if filled != len(view):
                raise InputError(f"{header.path}: truncated pixel data: {len(view)} bytes expected, {filled} present")
        if not self.file_dtype.isnative:
            out = out.byteswap(inplace=True).view(self.dtype)
        return out

    def close(self):
        self._closed = True


def open(path, series_uid=None, recursive=False):
    """Open the DICOM series in folder `path` (the one with most files, or `series_uid`) as a lazy z-slab source.

    `path` may also be one file of the series. `recursive` also looks in sub-folders.
    """
    path = os.fspath(path)
    if os.path.isfile(path):
        header = read_header(path)
        if header is None:
            raise InputError(f"{path}: not a DICOM file")
        series_uid = series_uid or header.get("SeriesInstanceUID", "")
        folder = os.path.dirname(os.path.abspath(path))
    elif os.path.isdir(path):
        folder = path
    else:
        raise InputError(f"{path}: no such file or folder")
    headers, skipped = scan(folder, recursive)
    if not headers:
        hint = "" if recursive else "; sub-folders were not searched (recursive=True searches them)"
        raise InputError(f"{folder}: no DICOM images found ({skipped} other files){hint}")
    by_series = defaultdict(list)
    for header in headers:
        by_series[header.get("SeriesInstanceUID", "")].append(header)
    if series_uid is None:
        series_uid = max(by_series, key=lambda uid: len(by_series[uid]))
    elif series_uid not in by_series:
        raise InputError(f"{folder}: no images of series {series_uid} (series found: {sorted(by_series)})")
    chosen = by_series[series_uid]

    assumed = []
    others = {uid: len(files) for uid, files in by_series.items() if uid != series_uid}
    if others:
        assumed.append(f"the folder holds {len(others)} other series ({sum(others.values())} files); "
                       f"series {series_uid} with {len(chosen)} files was read")
    file_dtype = _check_slices(chosen)
    chosen, geometry = _slice_geometry(chosen, assumed)
    note = _rescale_note(chosen)
    if note:
        assumed.append(note)
    first = chosen[0]
    found = {name: first.get(name) for name in ("Modality", "SeriesDescription", "PixelSpacing", "SliceThickness",
                                                "PhotometricInterpretation", "RescaleSlope", "RescaleIntercept")
             if first.get(name) is not None}
    found.update({"SeriesInstanceUID": series_uid, "files": len(chosen), "transfer syntax": first.syntax,
                  "other series": others, "other files": skipped})
    if first.get("PhotometricInterpretation") == "MONOCHROME1":
        assumed.append("MONOCHROME1: low values are meant to look bright; values are kept as stored")
    info = SourceInfo(format="dicom", path=folder, found=found, assumed=assumed)
    return DicomSeriesSource(chosen, file_dtype, geometry, info)


__all__ = ["DicomSeriesSource", "open", "probe", "read_header", "scan"]
