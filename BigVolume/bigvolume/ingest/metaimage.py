"""MetaImage reader: .mha (header and data in one file) and .mhd (header pointing at one data file).

Follows ITK's MetaImage reader: TransformMatrix (or Rotation, Orientation)
lists the direction of each index axis in turn, i.e. the direction matrix
column by column; Offset (or Origin, Position) is the first voxel's centre;
AnatomicalOrientation is recorded but, as in ITK, does not change the
geometry. HeaderSize skips bytes from the start of the data file, -1 puts the
data at its end. CompressedData is a zlib stream, streamed forward.
"""

import os

import numpy as np

from ..errors import InputError
from ..store.geometry import VolumeGeometry
from .base import SourceInfo, leading_bytes, open_input
from .blocks import BlockSource, orthonormal_direction

_TYPES = {
    "MET_CHAR": "i1", "MET_UCHAR": "u1", "MET_SHORT": "i2", "MET_USHORT": "u2",
    "MET_INT": "i4", "MET_UINT": "u4", "MET_LONG": "i4", "MET_ULONG": "u4",
    "MET_LONG_LONG": "i8", "MET_ULONG_LONG": "u8", "MET_FLOAT": "f4", "MET_DOUBLE": "f8",
}
_SYNONYMS = {  # first spelling found wins, in this order
    "spacing": ("ElementSpacing", "ElementSize"),
    "origin": ("Offset", "Origin", "Position"),
    "matrix": ("TransformMatrix", "Rotation", "Orientation"),
    "msb": ("BinaryDataByteOrderMSB", "ElementByteOrderMSB"),
}
_MAX_HEADER_LINES = 1000


def probe(path):
    """Whether `path` is a MetaImage header: a .mha/.mhd name, or a first line naming the object type or dimensions."""
    if str(path).lower().endswith((".mha", ".mhd")):
        return os.path.isfile(path)
    return leading_bytes(path, 16).lstrip().startswith((b"ObjectType", b"NDims"))


def read_header(path):
    """(fields by lower-case name -> (name as written, value), byte after the ElementDataFile line)."""
    f = open_input(path)
    fields = {}
    with f:
        for _ in range(_MAX_HEADER_LINES):
            line = f.readline(1 << 16)
            if not line:
                break
            name, equals, value = line.decode("latin-1").partition("=")
            if not equals:
                if line.strip():
                    raise InputError(f"{path}: header line {line.strip()!r} is not 'Name = Value'")
                continue
            fields[name.strip().lower()] = (name.strip(), value.strip())
            if name.strip().lower() == "elementdatafile":  # always the last field; data may follow
                return fields, f.tell()
    raise InputError(f"{path}: not a MetaImage header (no ElementDataFile field)")


def _get(fields, key):
    for name in _SYNONYMS.get(key, (key,)):
        if name.lower() in fields:
            return fields[name.lower()]
    return None


def _numbers(path, field, count, cast=float):
    name, text = field
    try:
        values = [cast(w) for w in text.split()]
    except ValueError:
        values = []
    if len(values) != count:
        raise InputError(f"{path}: '{name} = {text}' should be {count} number{'s' if count > 1 else ''}")
    return values


def _true(field):
    return field is not None and field[1].lower() in ("true", "1", "yes")


def _geometry(path, fields, assumed):
    spacing = _get(fields, "spacing")
    origin = _get(fields, "origin")
    matrix = _get(fields, "matrix")
    if spacing is None:
        assumed.append("spacing: not given; 1 assumed")
    if origin is None:
        assumed.append("origin: not given; (0, 0, 0) assumed")
    if matrix is None:
        assumed.append("direction: no TransformMatrix; identity assumed")
    assumed.append("unit: MetaImage does not record one; millimeter assumed")
    spacing = _numbers(path, spacing, 3) if spacing else [1.0, 1.0, 1.0]
    if min(spacing) <= 0:
        raise InputError(f"{path}: spacing {spacing} must be positive")
    direction = np.eye(3)
    if matrix is not None:
        direction, note = orthonormal_direction(np.reshape(_numbers(path, matrix, 9), (3, 3)).T, path)
        if note:
            assumed.append(note)
    return VolumeGeometry(spacing, _numbers(path, origin, 3) if origin else [0.0, 0.0, 0.0], direction)


def _data_location(path, fields, data_start):
    name = fields["elementdatafile"][1]
    words = name.split()
    if name.upper().startswith("LIST") or "%" in name:
        raise InputError(f"{path}: 'ElementDataFile = {name}' spreads the data over several files; "
                         "only a single data file is supported")
    if name.lower() == "local":
        return path, data_start
    if not words:
        raise InputError(f"{path}: ElementDataFile is empty")
    data_path = os.path.join(os.path.dirname(os.path.abspath(path)), name)
    if not os.path.isfile(data_path):
        raise InputError(f"{path}: its data file {data_path} is missing")
    return data_path, 0


def open(path):
    """Open a .mha or .mhd file as a lazy z-slab source."""
    path = os.fspath(path)
    fields, data_start = read_header(path)
    object_type = fields.get("objecttype", ("", "Image"))[1]
    if object_type.lower() != "image":
        raise InputError(f"{path}: ObjectType {object_type}; only images are supported")
    for required in ("NDims", "DimSize", "ElementType"):
        if required.lower() not in fields:
            raise InputError(f"{path}: the header has no {required} field")
    if fields["ndims"][1] != "3":
        raise InputError(f"{path}: NDims = {fields['ndims'][1]}; only 3D scalar volumes are supported")
    channels = fields.get("elementnumberofchannels", ("", "1"))[1]
    if channels != "1":
        raise InputError(f"{path}: {channels} channels per voxel; only 3D scalar volumes are supported")
    element_type = fields["elementtype"][1]
    if element_type.upper() not in _TYPES:
        raise InputError(f"{path}: unsupported ElementType {element_type} "
                         "(supported: integer and floating-point scalars)")
    if not _true(fields.get("binarydata", ("", "True"))):
        raise InputError(f"{path}: BinaryData = False (voxels written as text) is not supported")
    sizes = _numbers(path, fields["dimsize"], 3, int)
    if min(sizes) < 1:
        raise InputError(f"{path}: DimSize {sizes} must be positive")
    dtype = np.dtype(_TYPES[element_type.upper()]).newbyteorder(">" if _true(_get(fields, "msb")) else "<")

    assumed = []
    geometry = _geometry(path, fields, assumed)
    data_path, offset = _data_location(path, fields, data_start)
    header_size = _numbers(path, fields.get("headersize", ("HeaderSize", "0")), 1, int)[0]
    if header_size > 0:
        offset = header_size  # counted from the start of the data file, as ITK does
    elif header_size == -1:
        offset = -1
    compressed = _true(fields.get("compresseddata"))
    if compressed and offset == -1:
        size = fields.get("compresseddatasize")
        if size is None:
            raise InputError(f"{path}: HeaderSize = -1 with compressed data needs CompressedDataSize")
        offset = os.path.getsize(data_path) - int(size[1])

    found = {name: value for name, value in fields.values()}
    found["data file"] = data_path
    info = SourceInfo(format="metaimage", path=path, found=found, assumed=assumed)
    label = path if data_path == path else f"{path}: data file {data_path}"
    return BlockSource(data_path, tuple(reversed(sizes)), dtype, geometry, info,
                       encoding="zlib" if compressed else "raw", offset=offset, label=label)


__all__ = ["open", "probe", "read_header"]
