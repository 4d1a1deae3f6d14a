"""NIfTI-1 and NIfTI-2 reader: .nii, .nii.gz, and .hdr/.img pairs (also Analyze 7.5 pairs).

Geometry is what ITK (and so SimpleITK and Slicer) makes of the header:

- sform (srow_x/y/z) when sform_code > 0 and its 3x3 is a rotation with
  per-axis scaling, and either there is no qform, or sform_code is
  SCANNER_ANAT, or the two describe nearly the same grid; otherwise the qform
  (quaternion, qoffset, qfac); neither: identity and a zero origin;
- NIfTI is RAS: x and y of origin and directions are negated into LPS;
- spacing is pixdim[1..3] (not the sform's column lengths), scaled to
  millimetres by xyzt_units; a negative pixdim flips its axis;
- NIfTI-1 keeps these matrices in single precision, and so do we.

Voxels keep their stored type: when scl_slope/scl_inter ask for scaling,
`info.assumed` says that raw stored values are kept.
"""

import gzip
import io
import math
import os
import struct
import zlib
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..store.geometry import VolumeGeometry
from .base import SourceInfo
from .blocks import BlockSource

_DTYPES = {2: "u1", 4: "i2", 8: "i4", 16: "f4", 64: "f8", 256: "i1", 512: "u2", 768: "u4", 1024: "i8", 1280: "u8"}
_UNSUPPORTED = {1: "binary", 32: "complex64", 128: "RGB24", 1536: "float128", 1792: "complex128",
                2048: "complex256", 2304: "RGBA32"}
_MM_PER_UNIT = {1: 1000.0, 2: 1.0, 3: 0.001}  # xyzt_units & 7: meter, millimeter, micron (others: as millimetres)
_SCANNER_ANAT = 1
_FLIP_RL_AP = np.array([-1.0, -1.0, 1.0])


@dataclass
class Header:
    version: int  # 1 or 2; 0 for an Analyze 7.5 header (no NIfTI magic)
    single_file: bool
    byte_order: str  # "<" or ">"
    dim: tuple
    datatype: int
    pixdim: tuple
    vox_offset: int
    scl_slope: float
    scl_inter: float
    xyzt_units: int
    qform_code: int
    sform_code: int
    quatern: tuple  # b, c, d, qoffset x, y, z
    srow: tuple  # 12 numbers, rows x, y, z
    intent_code: int

    @property
    def size(self):
        return 348 if self.version < 2 else 540


# (format, offset) of each field, NIfTI-1 then NIfTI-2.
_LAYOUT = {
    "dim": (("8h", 40), ("8q", 16)),
    "intent_code": (("h", 68), ("i", 504)),
    "datatype": (("h", 70), ("h", 12)),
    "pixdim": (("8f", 76), ("8d", 104)),
    "vox_offset": (("f", 108), ("q", 168)),
    "scl_slope": (("f", 112), ("d", 176)),
    "scl_inter": (("f", 116), ("d", 184)),
    "xyzt_units": (("B", 123), ("i", 500)),
    "qform_code": (("h", 252), ("i", 344)),
    "sform_code": (("h", 254), ("i", 348)),
    "quatern": (("6f", 256), ("6d", 352)),
    "srow": (("12f", 280), ("12d", 400)),
}


def _parse(path, data):
    for order in "<>":
        if len(data) >= 4 and struct.unpack_from(order + "i", data)[0] in (348, 540):
            break
    else:
        raise InputError(f"{path}: not a NIfTI or Analyze header (its first 4 bytes are not 348 or 540)")
    version = 1 if struct.unpack_from(order + "i", data)[0] == 348 else 2
    if len(data) < (348 if version == 1 else 540):
        raise InputError(f"{path}: truncated header ({len(data)} bytes)")
    values = {}
    for name, layouts in _LAYOUT.items():
        fmt, offset = layouts[version - 1]
        unpacked = struct.unpack_from(order + fmt, data, offset)
        values[name] = unpacked if len(unpacked) > 1 else unpacked[0]
    magic = data[344:348] if version == 1 else data[4:12]
    if version == 1 and magic not in (b"n+1\0", b"ni1\0"):
        version = 0  # Analyze 7.5
    if version == 2 and magic[:4] not in (b"n+2\0", b"ni2\0"):
        raise InputError(f"{path}: a 540-byte header without the NIfTI-2 magic")
    return Header(version=version, single_file=magic[1:2] == b"+", byte_order=order,
                  **{**values, "vox_offset": int(values["vox_offset"])})


def _paths(path):
    """(header file, data file) of a .nii(.gz) or a .hdr/.img(.gz) pair."""
    lower = path.lower()
    for header_ext, data_ext in ((".hdr", ".img"), (".img", ".img"), (".hdr.gz", ".img.gz"), (".img.gz", ".img.gz")):
        if lower.endswith(header_ext):
            stem = path[: -len(header_ext)]
            header = stem + header_ext.replace(".img", ".hdr")
            data = stem + data_ext
            if not os.path.isfile(data) and os.path.isfile(stem + data_ext.upper()):
                data = stem + data_ext.upper()
            return header, data
    return path, path


def _read_prefix(path, nbytes):
    try:
        if path.lower().endswith(".gz"):
            with gzip.open(path, "rb") as f:
                return f.read(nbytes)
        with io.open(path, "rb") as f:
            return f.read(nbytes)
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(f"{path}: cannot read the header ({exc})") from None


def probe(path):
    """Whether `path` is NIfTI/Analyze: a .nii(.gz), .hdr or .img(.gz) name with a 348- or 540-byte header."""
    name = str(path).lower()
    if not name.endswith((".nii", ".nii.gz", ".hdr", ".img", ".hdr.gz", ".img.gz")):
        return False
    header_path, _ = _paths(os.fspath(path))
    try:
        data = _read_prefix(header_path, 4)
    except InputError:
        return False
    return len(data) == 4 and bool({348, 540} & {struct.unpack("<i", data)[0], struct.unpack(">i", data)[0]})


def read_header(path):
    header_path, _ = _paths(os.fspath(path))
    return _parse(header_path, _read_prefix(header_path, 540))


def _quaternion_matrix(h):
    """The qform as a 4x4 voxel -> RAS matrix, following the NIfTI-1 definition."""
    b, c, d, *offset = h.quatern
    a2 = 1.0 - (b * b + c * c + d * d)
    if a2 < 1e-7:  # b, c, d describe a 180-degree rotation up to rounding
        norm = 1.0 / math.sqrt(b * b + c * c + d * d)
        a, b, c, d = 0.0, b * norm, c * norm, d * norm
    else:
        a = math.sqrt(a2)
    rotation = np.array([
        [a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
        [2 * (b * c + a * d), a * a + c * c - b * b - d * d, 2 * (c * d - a * b)],
        [2 * (b * d - a * c), 2 * (c * d + a * b), a * a + d * d - c * c - b * b],
    ])
    scale = [p if p > 0 else 1.0 for p in h.pixdim[1:4]]
    if h.pixdim[0] < 0:  # qfac: a left-handed grid
        scale[2] = -scale[2]
    matrix = np.eye(4)
    matrix[:3, :3] = rotation * scale
    matrix[:3, 3] = offset
    return matrix


def _sform_matrix(h):
    matrix = np.eye(4)
    matrix[:3, :] = np.reshape(h.srow, (3, 4))
    return matrix


def _normalized_columns(matrix):
    norms = np.linalg.norm(matrix[:3, :3], axis=0)
    return matrix[:3, :3] / np.where(norms > 0, norms, 1.0), norms


def _is_rotation_with_scaling(matrix):
    columns, norms = _normalized_columns(matrix)
    return bool(np.all(norms > 0) and np.abs(columns.T @ columns - np.eye(3)).max() <= 1e-4)


def _nearly_same(first, second):
    (a, norms_a), (b, norms_b) = _normalized_columns(first), _normalized_columns(second)
    return bool(np.abs(norms_a - norms_b).max() <= 1e-4 and np.abs(a - b).max() <= 1e-4
                and np.abs(first[:3, 3] - second[:3, 3]).max() <= 1e-4)


def _choose_transform(path, h):
    """('sform' or 'qform', 4x4 voxel -> RAS matrix), chosen as ITK chooses."""
    qform = _quaternion_matrix(h)
    if h.version == 1:
        qform = qform.astype(np.float32).astype(np.float64)  # NIfTI-1 software keeps it in single precision
    sform = _sform_matrix(h)
    if h.sform_code > 0 and _is_rotation_with_scaling(sform):
        if h.qform_code <= 0 or h.sform_code == _SCANNER_ANAT or _nearly_same(sform, qform):
            return "sform", sform
    if h.qform_code > 0:
        return "qform", qform
    raise InputError(f"{path}: the sform is sheared (not a rotation with scaling) and there is no qform to use instead")


def _geometry(path, h, assumed):
    units = h.xyzt_units & 7 if h.version else 0  # Analyze has no unit field
    mm = _MM_PER_UNIT.get(units, 1.0)
    if units not in _MM_PER_UNIT:
        assumed.append("spatial unit not given (xyzt_units); millimeter assumed")
    pixdim = np.array(h.pixdim[1:4], dtype=float)
    if not np.all(np.isfinite(pixdim) & (pixdim != 0)):
        assumed.append(f"pixdim {pixdim.tolist()} has zero or invalid entries; 1 assumed for those")
        pixdim = np.where(np.isfinite(pixdim) & (pixdim != 0), pixdim, 1.0)
    if h.version == 0 or (h.qform_code <= 0 and h.sform_code <= 0):
        lacking = "Analyze 7.5 header, no orientation" if h.version == 0 else "no qform or sform"
        assumed.append(f"{lacking}: identity direction and zero origin assumed (as ITK does)")
        which, direction, origin = None, np.eye(3), np.zeros(3)
    else:
        which, matrix = _choose_transform(path, h)
        direction = _FLIP_RL_AP[:, None] * _normalized_columns(matrix)[0]
        origin = _FLIP_RL_AP * matrix[:3, 3] * mm
        if which == "sform":
            lengths = _normalized_columns(matrix)[1]
            if np.abs(lengths - np.abs(pixdim)).max() > 1e-4 * max(1.0, np.abs(pixdim).max()):
                assumed.append(f"sform voxel size {lengths.round(6).tolist()} differs from pixdim "
                               f"{np.abs(pixdim).tolist()}; pixdim used, as ITK does")
    direction = direction * np.sign(pixdim)  # a negative pixdim flips its axis
    return which, VolumeGeometry(np.abs(pixdim) * mm, origin, direction)


def _scaling_note(h):
    slope, inter = h.scl_slope, h.scl_inter
    if h.version == 0 or not math.isfinite(slope) or slope == 0:
        return None  # no scaling
    inter = inter if math.isfinite(inter) else 0.0
    if slope == 1 and inter == 0:
        return None
    return (f"scl_slope = {slope:g}, scl_inter = {inter:g}: raw stored values are kept "
            f"(value = {slope:g} * stored + {inter:g} is not applied)")


def open(path):
    """Open a NIfTI-1/2 (.nii, .nii.gz, .hdr/.img) file as a lazy z-slab source."""
    path = os.fspath(path)
    header_path, data_path = _paths(path)
    h = _parse(header_path, _read_prefix(header_path, 540))
    ndim = h.dim[0]
    if not 1 <= ndim <= 7:
        raise InputError(f"{header_path}: dim[0] = {ndim} is not a number of dimensions (1 to 7)")
    if ndim < 3 or any(n != 1 for n in h.dim[4:ndim + 1]):
        raise InputError(f"{header_path}: dimensions {list(h.dim[1:ndim + 1])}; only 3D scalar volumes are supported")
    sizes = [int(n) for n in h.dim[1:4]]
    if min(sizes) < 1:
        raise InputError(f"{header_path}: sizes {sizes} must be positive")
    if h.datatype not in _DTYPES:
        name = _UNSUPPORTED.get(h.datatype, f"code {h.datatype}")
        raise InputError(f"{header_path}: unsupported datatype {name} (supported: integer and floating-point scalars)")
    if h.version == 0 and data_path == header_path:
        raise InputError(f"{header_path}: no NIfTI magic; a header without it (Analyze 7.5) must be a .hdr/.img pair")
    if h.version and h.single_file != (data_path == header_path):
        raise InputError(f"{header_path}: the magic says {'one file' if h.single_file else 'a .hdr/.img pair'}, "
                         f"the name says otherwise")
    if data_path != header_path and not os.path.isfile(data_path):
        raise InputError(f"{header_path}: its image file {data_path} is missing")

    assumed = []
    which, geometry = _geometry(header_path, h, assumed)
    note = _scaling_note(h)
    if note:
        assumed.append(note)
    offset = h.vox_offset
    if data_path == header_path and offset < h.size:
        assumed.append(f"vox_offset {offset} lies inside the header; data taken to start at {h.size + 4}")
        offset = h.size + 4
    found = {"version": {0: "Analyze 7.5", 1: "NIfTI-1", 2: "NIfTI-2"}[h.version], "dim": list(h.dim),
             "datatype": _DTYPES[h.datatype], "pixdim": list(h.pixdim), "vox_offset": h.vox_offset,
             "qform_code": h.qform_code, "sform_code": h.sform_code, "transform used": which,
             "scl_slope": h.scl_slope, "scl_inter": h.scl_inter, "xyzt_units": h.xyzt_units,
             "intent_code": h.intent_code}
    info = SourceInfo(format="nifti", path=path, found=found, assumed=assumed)
    dtype = np.dtype(_DTYPES[h.datatype]).newbyteorder(h.byte_order)
    label = header_path if data_path == header_path else f"{header_path}: image file {data_path}"
    shape = tuple(reversed(sizes))
    if data_path.lower().endswith(".gz"):
        return BlockSource(data_path, shape, dtype, geometry, info, encoding="gzip", skip=offset, label=label)
    return BlockSource(data_path, shape, dtype, geometry, info, offset=offset, label=label)


__all__ = ["Header", "open", "probe", "read_header"]
