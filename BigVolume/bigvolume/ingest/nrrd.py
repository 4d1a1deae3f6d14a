"""NRRD reader: .nrrd (header and data in one file) and .nhdr (header pointing at one data file).

Geometry follows ITK's NRRD reader: spacing is the length of each space
direction, the direction its unit vector; RAS and LAS spaces are turned into
LPS by negating the R/A components of directions and origin; other spaces
(scanner-xyz, 3D-right-handed) are taken as LPS.
"""

import io
import os
import re

import numpy as np

from ..errors import BigVolumeError, InputError
from ..store.geometry import VolumeGeometry
from ..store.units import canonical_space_unit
from .base import SourceInfo, leading_bytes, open_input
from .blocks import BlockSource, orthonormal_direction

_MAX_HEADER_LINES = 10000


def _nrrd_types():
    spellings = {
        "i1": ("signed char", "int8", "int8_t"),
        "u1": ("uchar", "unsigned char", "uint8", "uint8_t"),
        "i2": ("short", "short int", "signed short", "signed short int", "int16", "int16_t"),
        "u2": ("ushort", "unsigned short", "unsigned short int", "uint16", "uint16_t"),
        "i4": ("int", "signed int", "int32", "int32_t"),
        "u4": ("uint", "unsigned int", "uint32", "uint32_t"),
        "i8": ("longlong", "long long", "long long int", "signed long long", "signed long long int", "int64",
               "int64_t"),
        "u8": ("ulonglong", "unsigned long long", "unsigned long long int", "uint64", "uint64_t"),
        "f4": ("float",),
        "f8": ("double",),
    }
    return {name: code for code, names in spellings.items() for name in names}


_TYPES = _nrrd_types()
_ENCODINGS = {"raw": "raw", "gzip": "gzip", "gz": "gzip", "bzip2": "bzip2", "bz2": "bzip2"}
# Sign that turns each axis of a named space into LPS (ITK converts these three, and takes others as they are).
_SPACE_SIGNS = {
    "left-posterior-superior": (1, 1, 1), "lps": (1, 1, 1),
    "right-anterior-superior": (-1, -1, 1), "ras": (-1, -1, 1),
    "left-anterior-superior": (1, -1, 1), "las": (1, -1, 1),
}
_OTHER_3D_SPACES = {"scanner-xyz", "3d-right-handed", "3d-left-handed"}
_SPATIAL_KINDS = {"domain", "space", "time", "none", "???"}




def probe(path):
    """Whether `path` is a NRRD header (attached or detached): its first bytes are the NRRD magic."""
    return re.match(rb"NRRD000\d", leading_bytes(path, 8)) is not None


def read_header(path):
    """(fields by lower-case name, key/value pairs, byte where attached data starts or None)."""
    f = open_input(path)
    with f:
        if not re.match(rb"NRRD000\d\s*$", f.readline(64)):
            raise InputError(f"{path}: not a NRRD file (it does not start with NRRD000X)")
        fields, pairs = {}, {}
        for _ in range(_MAX_HEADER_LINES):
            line = f.readline(1 << 20)
            if not line:
                return fields, pairs, None  # header without data: a detached header
            text = line.decode("latin-1").rstrip("\r\n")
            if not text:
                return fields, pairs, f.tell()
            if text.startswith("#"):
                continue
            if ":=" in text:
                key, value = text.split(":=", 1)
                pairs[key] = value
                continue
            name, colon, value = text.partition(":")
            if not colon:
                raise InputError(f"{path}: header line {text!r} is not 'field: value'")
            fields[name.strip().lower()] = value.strip()
        raise InputError(f"{path}: no end of header within {_MAX_HEADER_LINES} lines")


def _numbers(path, name, text, count, cast=float):
    words = text.replace(",", " ").split()
    try:
        values = [cast(w) for w in words]
    except ValueError:
        values = []
    if len(values) != count:
        raise InputError(f"{path}: '{name}: {text}' should be {count} number{'s' if count > 1 else ''}")
    return values


def _vectors(path, name, text):
    """'(1,0,0) (0,1,0) none' -> [[1, 0, 0], [0, 1, 0], None]."""
    vectors = []
    for match in re.finditer(r"\(([^)]*)\)|(none)", text):
        if match.group(2):
            vectors.append(None)
        else:
            vectors.append(_numbers(path, name, match.group(1), 3))
    return vectors


def _data_location(path, fields, data_start):
    """(data file path, offset where its data or compressed stream starts) after 'line skip'."""
    name = fields.get("data file", fields.get("datafile"))
    if name is None:
        if data_start is None:
            raise InputError(f"{path}: the header has no 'data file' field and no data after it")
        data_path, offset = path, data_start
    else:
        words = name.split()
        if words and (words[0].upper() == "LIST" or (len(words) >= 4 and "%" in words[0])):
            raise InputError(f"{path}: 'data file: {name}' spreads the data over several files; "
                             "only a single data file is supported")
        data_path = os.path.join(os.path.dirname(os.path.abspath(path)), name)
        offset = 0
        if not os.path.isfile(data_path):
            raise InputError(f"{path}: its data file {data_path} is missing")
    lines = _numbers(path, "line skip", fields.get("line skip", fields.get("lineskip", "0")), 1, int)[0]
    if lines:
        with io.open(data_path, "rb") as f:
            f.seek(offset)
            for _ in range(lines):
                if not f.readline():
                    raise InputError(f"{path}: 'line skip: {lines}' passes the end of {data_path}")
            offset = f.tell()
    return data_path, offset


def _space_unit(path, fields, assumed):
    text = fields.get("space units")
    if text is None:
        assumed.append("space units: none given; millimeter assumed")
        return "millimeter"
    units = set(re.findall(r'"([^"]*)"', text)) or set(text.split())
    try:
        canonical = {canonical_space_unit(u) for u in units}
    except BigVolumeError:
        assumed.append(f"space units {text} not recognised; millimeter assumed")
        return "millimeter"
    if len(canonical) != 1:
        raise InputError(f"{path}: 'space units: {text}' differ between axes; only one unit is supported")
    return canonical.pop()


def _geometry(path, fields, sizes, assumed):
    space = fields.get("space", "").lower()
    if space and space not in _SPACE_SIGNS and space not in _OTHER_3D_SPACES:
        raise InputError(f"{path}: space '{fields['space']}' is not a 3D space; only 3D volumes are supported")
    if space in _OTHER_3D_SPACES:
        assumed.append(f"space '{fields['space']}' has no anatomical meaning; taken as LPS")
    signs = np.array(_SPACE_SIGNS.get(space, (1, 1, 1)), dtype=float)
    unit = _space_unit(path, fields, assumed) if ("space" in fields or "space dimension" in fields) else "millimeter"
    if "space directions" in fields:
        vectors = _vectors(path, "space directions", fields["space directions"])
        if len(vectors) != 3 or any(v is None for v in vectors):
            raise InputError(f"{path}: 'space directions: {fields['space directions']}' should be three vectors; "
                             "only 3D scalar volumes are supported")
        columns = np.array(vectors, dtype=float).T * signs[:, None]
        spacing = np.linalg.norm(columns, axis=0)
        if not np.all(spacing > 0):
            raise InputError(f"{path}: a space direction has zero length")
        direction, note = orthonormal_direction(columns / spacing, path)
        if note:
            assumed.append(note)
    else:
        direction = np.eye(3)
        spacing = np.array(_numbers(path, "spacings", fields.get("spacings", "nan nan nan"), 3))
        if not np.all(np.isfinite(spacing) & (spacing > 0)):
            assumed.append("spacing: not given; 1 assumed where missing")
            spacing = np.where(np.isfinite(spacing) & (spacing > 0), spacing, 1.0)
        assumed.append("direction: no space directions; identity assumed")
    if "space origin" in fields:
        vectors = _vectors(path, "space origin", fields["space origin"])
        if len(vectors) != 1 or vectors[0] is None:
            raise InputError(f"{path}: 'space origin: {fields['space origin']}' should be one vector")
        origin = np.array(vectors[0]) * signs
    elif "axis mins" in fields and "space directions" not in fields:
        origin = _origin_from_axis_mins(path, fields, sizes, spacing)
    else:
        origin = np.zeros(3)
        assumed.append("origin: not given; (0, 0, 0) assumed")
    return VolumeGeometry(spacing, origin, direction, unit)


def _origin_from_axis_mins(path, fields, sizes, spacing):
    """Origin of an orientation-free NRRD: the first sample's position, cell-centred unless 'centers' says node."""
    mins = np.array(_numbers(path, "axis mins", fields["axis mins"], 3))
    centers = fields.get("centers", fields.get("centerings", "cell cell cell")).split()
    cell = np.array([c.lower() != "node" for c in (centers + ["cell"] * 3)[:3]])
    if "spacings" not in fields and "axis maxs" in fields:
        maxs = np.array(_numbers(path, "axis maxs", fields["axis maxs"], 3))
        spacing = (maxs - mins) / np.where(cell, sizes, np.maximum(np.asarray(sizes) - 1, 1))
    return np.where(cell, mins + spacing / 2, mins)


def open(path):
    """Open a .nrrd or .nhdr file as a lazy z-slab source."""
    path = os.fspath(path)
    fields, pairs, data_start = read_header(path)
    for required in ("type", "dimension", "sizes", "encoding"):
        if required not in fields:
            raise InputError(f"{path}: the header has no '{required}' field")
    kind = _TYPES.get(fields["type"].lower())
    if kind is None:
        raise InputError(f"{path}: unsupported type '{fields['type']}' (supported: integer and floating-point scalars)")
    if fields["dimension"] != "3":
        raise InputError(f"{path}: dimension {fields['dimension']}; only 3D scalar volumes are supported")
    sizes = _numbers(path, "sizes", fields["sizes"], 3, int)
    if min(sizes) < 1:
        raise InputError(f"{path}: sizes {sizes} must be positive")
    kinds = fields.get("kinds", "domain domain domain").split()
    if any(k.lower() not in _SPATIAL_KINDS for k in kinds):
        raise InputError(f"{path}: kinds '{fields['kinds']}' include a non-spatial axis; "
                         "only 3D scalar volumes are supported")
    encoding = _ENCODINGS.get(fields["encoding"].lower())
    if encoding is None:
        raise InputError(f"{path}: unsupported encoding '{fields['encoding']}' (supported: raw, gzip, bzip2)")
    dtype = np.dtype(kind)
    if dtype.itemsize > 1:
        endian = fields.get("endian", "").lower()
        if endian not in ("little", "big"):
            raise InputError(f"{path}: the header has no valid 'endian' field, needed for type '{fields['type']}'")
        dtype = dtype.newbyteorder("<" if endian == "little" else ">")

    assumed = []
    geometry = _geometry(path, fields, sizes, assumed)
    data_path, offset = _data_location(path, fields, data_start)
    byte_skip = _numbers(path, "byte skip", fields.get("byte skip", fields.get("byteskip", "0")), 1, int)[0]
    if byte_skip < -1:
        raise InputError(f"{path}: byte skip {byte_skip} is invalid (must be -1 or more)")
    found = {name: fields[name] for name in ("type", "encoding", "endian", "sizes", "space", "space directions",
                                             "space origin", "space units", "spacings", "kinds", "byte skip",
                                             "line skip") if name in fields}
    found["data file"] = data_path
    if pairs:
        found["key/value pairs"] = dict(pairs)
    info = SourceInfo(format="nrrd", path=path, found=found, assumed=assumed)
    label = path if data_path == path else f"{path}: data file {data_path}"
    shape = tuple(reversed(sizes))
    if encoding == "raw":
        raw_offset = -1 if byte_skip == -1 else offset + byte_skip
        return BlockSource(data_path, shape, dtype, geometry, info, offset=raw_offset, label=label)
    return BlockSource(data_path, shape, dtype, geometry, info, encoding=encoding, offset=offset, skip=byte_skip,
                       label=label)


__all__ = ["open", "probe", "read_header"]
