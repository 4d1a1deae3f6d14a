"""Labelmaps in and out: Slicer's `.seg.nrrd` and plain labelmap `.nrrd`, streamed in bounded memory.

Export writes a voxel box of any level, one chunk-row of z at a time, through
a gzip compressor, to a temporary file renamed into place at the end, so a
failed export leaves no file under the final name. The region's voxel 0 lies
where that level's voxel does (NRRD geometry is LPS; the pyramid's IJK->RAS is
turned into it). A `.seg.nrrd` carries Slicer's `SegmentN_*` keys with each
segment's extent in the exported image's index space; since the extents are
known only once the data is written, the compressed data is spooled to an
anonymous temporary file and copied after the header.

Import places a labelmap by its geometry onto the image's level-0 grid: an
exact copy (with an integer offset) where the grids coincide, else nearest
neighbour (each level-0 voxel takes the source voxel its centre falls in;
ties go to the higher index). Level-0 chunks are visited in the order of the
source planes they need, so the source (a forward-only stream when gzipped)
is read forward, each plane once per pass, through a window of at most one
chunk's span of planes (a plain labelmap takes a first pass that finds its
label values, so its segments and dtype are known before anything is
created); only non-empty chunks are written, then the coarser levels are
rebuilt by mode.
"""

import os
import shutil
import tempfile
import zlib
from dataclasses import dataclass, field

import numpy as np
import zarr

from ..errors import InputError, MetadataError, StoreError
from ..ingest import nrrd as nrrd_reader
from ..store.geometry import LPS_TO_RAS
from ..store.ngff import NAMESPACE
from ..store.units import mm_per_unit
from ..writing.atomic import fsync_dir
from . import label_store
from .apply import rebuild_coarser
from .segments import DEFAULT_COLORS, Segment, segments_from_slicer_pairs, slicer_pairs

_NRRD_TYPES = {"u1": "unsigned char", "u2": "unsigned short", "u4": "unsigned int"}
_EMPTY_EXTENT = (0, -1, 0, -1, 0, -1)  # Slicer's extent of an empty segment
_COPY_PIECE = 1 << 20
GRID_TOLERANCE = 1e-6  # relative difference of spacing/direction under which two grids are taken as the same
ORIGIN_TOLERANCE = 1e-4  # voxels: an origin this close to a voxel centre is on it


@dataclass
class ExportResult:
    path: str
    shape: tuple  # (z, y, x) of the exported region
    bytes: int
    segments: list = field(default_factory=list)  # Segment objects written to the header ([] for a plain labelmap)


@dataclass
class ImportResult:
    store: object  # the new LabelStore
    segments: list
    exact: bool  # True: copied voxel for voxel (grids coincide); False: nearest-neighbour resampled
    offset_xyz: tuple  # for an exact copy, source index = level-0 index + offset (x, y, z); else None
    chunks_written: int
    unlisted_voxels: int = 0  # .seg.nrrd voxels whose value names no segment: background, as Slicer shows them


def _label_source(obj):
    """(the LabelStore, the object to read through): a LabelEditor reads with its pending edits applied."""
    return getattr(obj, "store", obj), obj


# -- export ---------------------------------------------------------------------------------------------------
def _vector(values):
    return "(" + ",".join(repr(float(v)) for v in values) + ")"


def _header(dtype, shape_zyx, ijk_to_ras, corner_zyx, compressed, pairs):
    """NRRD header bytes for a (z, y, x) block whose voxel 0 is voxel `corner_zyx` of a grid with `ijk_to_ras`."""
    m = np.asarray(ijk_to_ras, dtype=float)
    directions = LPS_TO_RAS @ m[:3, :3]  # columns: LPS step of i, j, k (the flip is its own inverse)
    origin = LPS_TO_RAS @ (m @ np.array([corner_zyx[2], corner_zyx[1], corner_zyx[0], 1.0]))[:3]
    lines = ["NRRD0004",
             "# Complete NRRD file format specification at:",
             "# http://teem.sourceforge.net/nrrd/format.html",
             f"type: {_NRRD_TYPES[dtype.str[1:]]}",
             "dimension: 3",
             "space: left-posterior-superior",
             "sizes: " + " ".join(str(n) for n in reversed(shape_zyx)),
             "space directions: " + " ".join(_vector(directions[:, a]) for a in range(3)),
             "kinds: domain domain domain",
             "endian: little",
             f"encoding: {'gzip' if compressed else 'raw'}",
             "space origin: " + _vector(origin)]
    for key, value in pairs.items():
        lines.append(f"{key}:={' '.join(str(value).splitlines())}")  # one line per pair
    return ("\n".join(lines) + "\n\n").encode("utf-8")  # Slicer writes segment names as UTF-8


def _check_box(lvl, box):
    if box is None:
        return tuple((0, n) for n in lvl.volume_shape)
    box = tuple((int(a), int(b)) for a, b in box)
    if len(box) != 3 or any(not 0 <= a < b <= n for (a, b), n in zip(box, lvl.volume_shape)):
        raise ValueError(f"box {box} is not a non-empty voxel box inside level {lvl.index} "
                         f"(shape {lvl.volume_shape}, z, y, x)")
    return box


def _stream_slabs(reader, lvl, box, out, compression, extents):
    """Write the box's voxels plane after plane (little-endian, x fastest) to `out`, one chunk-row of z at a
    time; record each label value's inclusive index extent (i0, i1, j0, j1, k0, k1) relative to the box."""
    (z0, z1), ybox, xbox = box
    step = lvl.chunk_shape[0]
    compressor = zlib.compressobj(compression, zlib.DEFLATED, 16 + zlib.MAX_WBITS) if compression else None
    za = z0
    while za < z1:
        zb = min((za // step + 1) * step, z1)  # to the next chunk boundary: each chunk is read once
        slab = np.asarray(reader.read_box(lvl.index, ((za, zb), ybox, xbox)))
        if slab.any():
            for value in np.unique(slab):
                if value == 0:
                    continue
                mask = slab == value
                ks = np.flatnonzero(mask.any(axis=(1, 2))) + (za - z0)
                js = np.flatnonzero(mask.any(axis=(0, 2)))
                is_ = np.flatnonzero(mask.any(axis=(0, 1)))
                new = (is_[0], is_[-1], js[0], js[-1], ks[0], ks[-1])
                old = extents.get(int(value), new)
                extents[int(value)] = tuple(int(f(a, b)) for f, a, b in zip((min, max) * 3, old, new))
        data = np.ascontiguousarray(slab, dtype=slab.dtype.newbyteorder("<"))
        out.write(compressor.compress(data) if compressor else data)
        za = zb
    if compressor:
        out.write(compressor.flush())


def export_labels(store_or_editor, path, level=0, box=None, segments_only=True, *, compression=6):
    """Write a voxel box of `level` (None: the whole level) as Slicer's `.seg.nrrd`, or as a plain labelmap
    `.nrrd` when `path` does not end in `.seg.nrrd`.

    Reads go through `read_box` of the object given, so a LabelEditor's pending edits are included.
    segments_only: list only the segments that have voxels in the region (False: every segment of the store;
    empty ones with Slicer's empty extent). Label values present but naming no segment get an auto-named one.
    compression: gzip level 1..9, or 0 for raw (uncompressed) data.
    Memory: one chunk-row of z of the region (chunk depth x region rows x region columns labels).
    """
    store, reader = _label_source(store_or_editor)
    if not 0 <= level < len(store.levels):
        raise ValueError(f"{store.path}: level {level} does not exist (levels 0..{len(store.levels) - 1})")
    lvl = store.levels[level]
    box = _check_box(lvl, box)
    shape = tuple(b - a for a, b in box)
    corner = tuple(a for a, _ in box)
    if not 0 <= int(compression) <= 9:
        raise ValueError(f"compression {compression} must be a gzip level 1..9, or 0 for raw data")
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise StoreError(f"{path}: cannot export there: the folder {folder} does not exist")
    as_segmentation = path.lower().endswith(".seg.nrrd")
    dtype = np.dtype(store.dtype)
    temporary = f"{path}.{os.getpid()}.tmp"
    written = []
    try:
        with open(temporary, "wb") as handle:
            if as_segmentation:
                extents = {}
                with tempfile.TemporaryFile(dir=folder) as spool:  # anonymous: gone even after a crash
                    _stream_slabs(reader, lvl, box, spool, compression, extents)
                    written = _segments_for(store.segments, extents, segments_only)
                    empty = {s.value: _EMPTY_EXTENT for s in written if s.value not in extents}
                    handle.write(_header(dtype, shape, lvl.ijk_to_ras, corner, compression,
                                         slicer_pairs(written, {**empty, **extents})))
                    spool.seek(0)
                    shutil.copyfileobj(spool, handle, _COPY_PIECE)
            else:
                handle.write(_header(dtype, shape, lvl.ijk_to_ras, corner, compression, {}))
                _stream_slabs(reader, lvl, box, handle, compression, {})
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
        fsync_dir(folder)
    except BaseException as error:
        try:
            os.remove(temporary)
        except FileNotFoundError:
            pass
        if isinstance(error, OSError):
            raise StoreError(f"{path}: the export failed ({error.strerror or error}); no file was written") from error
        raise
    return ExportResult(path=path, shape=shape, bytes=os.path.getsize(path), segments=written)


def _segments_for(segments, extents, segments_only):
    """The store's segments to list (present ones, or all), plus an auto-named one per unlisted value present."""
    chosen = [s for s in segments if not segments_only or s.value in extents]
    known = {s.value for s in segments}
    taken_ids = {s.id for s in segments}
    for value in sorted(set(extents) - known):
        auto = _auto_segment(value)
        while auto.id in taken_ids:
            auto = _auto_segment(value, auto.name + "_")
        taken_ids.add(auto.id)
        chosen.append(auto)
    return sorted(chosen, key=lambda s: s.value)


def _auto_segment(value, name=None):
    """A segment named and coloured the way Slicer names and colours new ones."""
    return Segment(value=value, name=name or f"Segment_{value}", name_auto_generated=True,
                   color=DEFAULT_COLORS[(value - 1) % len(DEFAULT_COLORS)], color_auto_generated=True)


# -- import ---------------------------------------------------------------------------------------------------
def _utf8(text):
    """The reader decodes headers as Latin-1; Slicer writes names as UTF-8: recover them where they are."""
    try:
        return text.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return text


def _source_to_ras(geometry):
    """4x4 matrix from the source's (i, j, k) index to RAS millimetres."""
    mm = mm_per_unit(geometry.unit)
    matrix = np.eye(4)
    scale = np.diag(np.asarray(geometry.spacing, dtype=float) * mm)
    matrix[:3, :3] = LPS_TO_RAS @ np.asarray(geometry.direction, dtype=float) @ scale
    matrix[:3, 3] = LPS_TO_RAS @ (np.asarray(geometry.origin, dtype=float) * mm)
    return matrix


def _nearest(values):
    """Index of the voxel a continuous index falls in; exact halves go up whatever the rounding noise."""
    return np.floor(values + (0.5 + 1e-9)).astype(np.int64)


class _Plan:
    """Which level-0 chunks a source covers, what source planes each needs, and how its voxels map."""

    def __init__(self, image, source, chunk_shape, where):
        self.shape0 = image.levels[0].volume_shape
        self.source_shape = tuple(source.shape)  # z, y, x
        self.chunk_shape = chunk_shape
        # level-0 (i, j, k) -> the source's (i, j, k)
        self.to_source = np.linalg.inv(_source_to_ras(source.geometry)) @ image.levels[0].ijk_to_ras
        linear, shift = self.to_source[:3, :3], self.to_source[:3, 3]
        rounded = np.round(shift)
        self.exact = bool(np.allclose(linear, np.eye(3), rtol=0, atol=GRID_TOLERANCE)
                          and np.all(np.abs(shift - rounded) <= ORIGIN_TOLERANCE))
        self.offset_xyz = tuple(int(v) for v in rounded) if self.exact else None
        if self.exact:
            self.to_source[:3, :3], self.to_source[:3, 3] = np.eye(3), rounded
        self.chunks = self._covered_chunks()
        if not self.chunks:
            raise InputError(f"{where}: the labelmap does not overlap the image at all (compare their origins, "
                             f"spacings and directions)")

    def _map(self, points_ijk):
        return points_ijk @ self.to_source[:3, :3].T + self.to_source[:3, 3]

    def _covered_chunks(self):
        # The source's outer voxel faces in level-0 index space bound the part it can reach.
        nz, ny, nx = self.source_shape
        faces = np.array([[i, j, k] for k in (-0.5, nz - 0.5) for j in (-0.5, ny - 0.5) for i in (-0.5, nx - 0.5)])
        back = np.linalg.inv(self.to_source)
        reached = faces @ back[:3, :3].T + back[:3, 3]
        low = np.floor(reached.min(axis=0)).astype(int) - 1
        high = np.ceil(reached.max(axis=0)).astype(int) + 2
        box = tuple((max(int(a), 0), min(int(b), n)) for a, b, n in zip(low[::-1], high[::-1], self.shape0))
        if any(b <= a for a, b in box):
            return []
        grid = [range(a // c, (b - 1) // c + 1) for (a, b), c in zip(box, self.chunk_shape)]
        found = []
        for coords in ((z, y, x) for z in grid[0] for y in grid[1] for x in grid[2]):
            cbox = self.chunk_box(coords)
            corners = np.array([[i, j, k] for k in (cbox[0][0], cbox[0][1] - 1) for j in (cbox[1][0], cbox[1][1] - 1)
                                for i in (cbox[2][0], cbox[2][1] - 1)], dtype=float)
            nearest = _nearest(self._map(corners))  # affine: the extremes are at the corners
            lo, hi = nearest.min(axis=0), nearest.max(axis=0)
            sizes = self.source_shape[::-1]
            if np.all(hi >= 0) and np.all(lo < np.asarray(sizes)):
                planes = (max(int(lo[2]), 0), min(int(hi[2]) + 1, nz))
                found.append((planes, coords))
        found.sort()  # by the source planes needed: the source is read forward, once
        return found

    def chunk_box(self, coords):
        return tuple((i * c, min((i + 1) * c, n)) for i, c, n in zip(coords, self.chunk_shape, self.shape0))

    def sample(self, coords, window, window_z0):
        """The source's values on the voxels of a level-0 chunk (source dtype) and where the source reaches."""
        cbox = self.chunk_box(coords)
        shape = tuple(b - a for a, b in cbox)
        if self.exact:  # a slice, shifted by the integer offset
            tx, ty, tz = self.offset_xyz
            shifted = [(a + t, b + t) for (a, b), t in zip(cbox, (tz, ty, tx))]
            inter = [(max(a, 0), min(b, n)) for (a, b), n in zip(shifted, self.source_shape)]
            out = np.zeros(shape, dtype=window.dtype)
            inside = np.zeros(shape, dtype=bool)
            if all(b > a for a, b in inter):
                target = tuple(slice(a - s, b - s) for (a, b), (s, _) in zip(inter, shifted))
                out[target] = window[inter[0][0] - window_z0:inter[0][1] - window_z0,
                                     inter[1][0]:inter[1][1], inter[2][0]:inter[2][1]]
                inside[target] = True
            return out, inside
        k = np.arange(*cbox[0], dtype=float)[:, None, None]
        j = np.arange(*cbox[1], dtype=float)[None, :, None]
        i = np.arange(*cbox[2], dtype=float)[None, None, :]
        m = self.to_source
        index = [_nearest(m[r, 0] * i + m[r, 1] * j + m[r, 2] * k + m[r, 3]) for r in range(3)]  # x, y, z
        nz, ny, nx = self.source_shape
        inside = np.ones(shape, dtype=bool)
        for axis, n in zip(index, (nx, ny, nz)):
            inside &= (axis >= 0) & (axis < n)
        out = np.zeros(shape, dtype=window.dtype)
        out[inside] = window[index[2][inside] - window_z0, index[1][inside], index[0][inside]]
        return out, inside

    def walk(self, source):
        """Yield (coords, values, inside) for every covered chunk, reading the source forward through a window
        of planes: chunks come sorted by their first plane, so the window never exceeds one chunk's span."""
        window, window_z0 = None, 0
        for (z0, z1), coords in self.chunks:
            if z1 <= z0:
                continue
            if window is None or not window_z0 <= z0 < window_z0 + len(window):
                window, window_z0 = source[z0:z1], z0
            else:
                window, window_z0 = window[z0 - window_z0:], z0  # drop planes no later chunk needs
                if z1 > window_z0 + len(window):
                    window = np.concatenate([window, source[window_z0 + len(window):z1]])
            values, inside = self.sample(coords, window, window_z0)
            yield coords, values, inside


def _segments_of_file(pairs, where):
    if not any(k.startswith("Segment") and k.endswith(("_ID", "_LabelValue")) for k in pairs):
        return None
    try:
        return segments_from_slicer_pairs({k: _utf8(v) for k, v in pairs.items()}, where)
    except MetadataError as error:
        raise InputError(str(error)) from error


def _open_source(path):
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such labelmap file")
    fields, _, _ = nrrd_reader.read_header(path)
    if fields.get("dimension", "").strip() == "4":  # Slicer's layers of overlapping segments along a 4th axis
        layers = (fields.get("sizes", "").split() or ["several"])[0]
        raise InputError(f"{path}: a 4D segmentation ({layers} layer(s)); overlapping segments are not supported, "
                         "as one label pyramid holds one label per voxel: in Slicer, make the segments not overlap "
                         "and save them as one layer (a 3D .seg.nrrd) or as a labelmap")
    source = nrrd_reader.open(path)
    if source.dtype.kind not in "iu":
        source.close()
        raise InputError(f"{path}: voxel type {source.dtype} is not an integer type; a labelmap holds integer "
                         "label values")
    return source


def _discard(store):
    """Remove a label pyramid that was being imported, and its name from the labels list."""
    shutil.rmtree(store.path, ignore_errors=True)
    group = zarr.open_group(os.path.join(store.root, "labels"), mode="r+")
    attrs = group.attrs.asdict()
    holder = attrs["ome"] if "ome" in attrs else attrs
    holder["labels"] = [n for n in holder.get("labels", []) if n != store.name]
    group.attrs.put(attrs)


def _mark(store, state, source_path):
    """Record in the pyramid's own attributes whether the import finished (a crash leaves 'in progress')."""
    group = zarr.open_group(store.path, mode="r+")
    attrs = group.attrs.asdict()
    attrs.setdefault(NAMESPACE, {})["import"] = {"source": os.path.abspath(source_path), "state": state}
    group.attrs.put(attrs)


def import_labels(image, name, path, *, store=None, overwrite=False):
    """Create the label pyramid `name` of `image` from a labelmap `.nrrd` / `.nhdr` or Slicer `.seg.nrrd`.

    Segments come from a `.seg.nrrd`'s keys (voxels whose value names no segment import as background, as Slicer
    shows them), or for a plain labelmap one auto-named segment per label value that lands on the image.
    Everything that can be refused is checked before the pyramid is created; a failure while writing removes it
    (with overwrite=True the labels it replaced are gone by then). Returns an ImportResult.
    """
    path = os.fspath(path)
    source = _open_source(path)
    try:
        return _import(image, name, path, source, store, overwrite)
    finally:
        source.close()


def _import(image, name, path, source, store_location, overwrite):
    root = label_store._root_for(image, store_location)
    if os.path.isdir(os.path.join(root, "labels", name)) and not overwrite:  # before the reading passes
        raise StoreError(f"{root}: labels {name!r} already exist; open them, or replace them with overwrite=True "
                         "(--overwrite)")
    chunk_shape = tuple(min(c, n) for c, n in zip(label_store.LABEL_CHUNKS, image.levels[0].volume_shape))
    plan = _Plan(image, source, chunk_shape, path)
    segments = _segments_of_file(source.info.found.get("key/value pairs", {}), path)
    if segments is None:  # a plain labelmap: a first pass finds the values that land on the image
        present = set()
        for _, values, inside in plan.walk(source):
            present.update(int(v) for v in np.unique(values[inside]))
        present.discard(0)
        if present and min(present) < 0:
            raise InputError(f"{path}: negative label value {min(present)}; label values are 0 (background) or more")
        if present and max(present) > np.iinfo(np.uint32).max:
            raise InputError(f"{path}: label value {max(present)} does not fit 32 bits")
        segments = [_auto_segment(value) for value in sorted(present)]
        listed = None
    else:
        listed = np.array(sorted(s.value for s in segments), dtype=np.int64)
    top = max([255] + [s.value for s in segments])
    labels = label_store.create_labels(image, name, store=store_location, segments=segments, max_segments=top,
                                       overwrite=overwrite)
    try:
        if labels.levels[0].chunk_shape != chunk_shape:
            raise StoreError(f"{labels.path}: label chunks {labels.levels[0].chunk_shape}, expected {chunk_shape}")
        _mark(labels, "in progress", path)
        written, unlisted = [], 0
        for coords, values, inside in plan.walk(source):
            if listed is not None:  # a .seg.nrrd: values naming no segment are not part of any segment
                stray = inside & (values != 0) & ~np.isin(values, listed)
                unlisted += int(stray.sum())
                values[stray] = 0
            if values.any():
                labels.write_chunk(0, coords, values.astype(labels.dtype))
                written.append(coords)
        rebuild_coarser(labels, written, labels.write_chunk)
        _mark(labels, "complete", path)
    except BaseException:
        _discard(labels)
        raise
    return ImportResult(store=labels, segments=list(labels.segments), exact=plan.exact, offset_xyz=plan.offset_xyz,
                        chunks_written=len(written), unlisted_voxels=unlisted)


__all__ = ["ExportResult", "ImportResult", "export_labels", "import_labels"]
