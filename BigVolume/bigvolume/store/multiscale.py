"""Open a multiscale OME-Zarr image and read any box of any level.

A `MultiscaleImage` is a 3D (z, y, x) view of one time point and one channel
of an OME-NGFF multiscale image (0.4 on Zarr v2, 0.5 on Zarr v3, sharded or
not). Each `Level` knows its shape, chunking, voxel size in millimetres and the
IJK->RAS matrix Slicer would hold for it.
"""

import os
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import zarr

from ..errors import CorruptChunkError, IncompleteStoreError, MetadataError, StoreError
from .geometry import AxisFrame, orientation_matrix, ras_corners
from .ngff import NAMESPACE, SPATIAL, find_multiscales, parse_multiscales
from .units import mm_per_unit


@dataclass(frozen=True)
class Level:
    index: int
    path: str
    array: object  # zarr.Array, all axes
    shape: tuple  # array order, all axes
    volume_shape: tuple  # z, y, x
    dtype: np.dtype
    chunks: tuple  # inner chunk shape, array order
    shards: tuple  # shard shape, array order, or None
    voxel_size_mm: tuple  # x, y, z
    ijk_to_ras: np.ndarray  # 4x4
    axis_names: tuple  # array order, e.g. ("t", "c", "z", "y", "x")

    # -- the chunk grid (z, y, x): the unit of decoding, caching and streaming --------------------
    @cached_property
    def chunk_shape(self):
        """Inner chunk shape (z, y, x); 1 along a spatial axis the array does not have."""
        sizes = dict(zip(self.axis_names, self.chunks))
        return tuple(int(sizes.get(axis, 1)) for axis in ("z", "y", "x"))

    @cached_property
    def grid_shape(self):
        """Number of chunks along z, y, x."""
        return tuple(-(-n // c) for n, c in zip(self.volume_shape, self.chunk_shape))

    @cached_property
    def chunk_nbytes(self):
        """Bytes of one whole decoded chunk."""
        return int(np.prod(self.chunk_shape)) * self.dtype.itemsize

    def chunk_box(self, coords):
        """((z0, z1), (y0, y1), (x0, x1)) of the voxels of chunk `coords` (z, y, x), clipped to the volume."""
        return tuple((i * c, min((i + 1) * c, n)) for i, c, n in zip(coords, self.chunk_shape, self.volume_shape))

    def chunks_in_box(self, box):
        """Chunk coordinates (z, y, x) of every chunk that a voxel box ((z0, z1), (y0, y1), (x0, x1)) touches."""
        ranges = [range(max(a, 0) // c, (min(b, n) - 1) // c + 1) if min(b, n) > max(a, 0) else range(0)
                  for (a, b), c, n in zip(box, self.chunk_shape, self.volume_shape)]
        return [(z, y, x) for z in ranges[0] for y in ranges[1] for x in ranges[2]]

    def all_chunks(self):
        """Chunk coordinates of the whole level."""
        return self.chunks_in_box(tuple((0, n) for n in self.volume_shape))

    @cached_property
    def ras_to_ijk(self):
        """Inverse of ijk_to_ras, computed once."""
        return np.linalg.inv(self.ijk_to_ras)

    def describe(self):
        return {
            "index": self.index,
            "path": self.path,
            "shape": list(self.shape),
            "dtype": str(self.dtype),
            "chunks": list(self.chunks),
            "shards": list(self.shards) if self.shards else None,
            "voxel_size_mm": list(self.voxel_size_mm),
            "ijk_to_ras": self.ijk_to_ras.tolist(),
        }


def _is_url(location):
    return isinstance(location, str) and "://" in location


def open_group(location):
    if isinstance(location, (str, os.PathLike)) and not _is_url(location):
        path = os.fspath(location)
        if not os.path.exists(path):
            raise StoreError(f"{path}: no such file or directory")
        if os.path.isfile(path):
            if os.path.basename(path) in ("zarr.json", ".zattrs", ".zgroup"):
                path = os.path.dirname(path) or "."
            else:
                raise StoreError(f"{path}: is a file, not a Zarr store (an OME-Zarr image is a folder)")
        if not any(os.path.exists(os.path.join(path, name)) for name in ("zarr.json", ".zgroup", ".zarray")):
            raise StoreError(f"{path}: not a Zarr store (no zarr.json, .zgroup or .zarray in it)")
        location = path
    try:
        node = zarr.open(store=location, mode="r")
    except Exception as error:  # zarr raises many types for unreadable metadata
        raise StoreError(f"{location}: cannot be opened as a Zarr store: {error}") from error
    if not isinstance(node, zarr.Group):
        raise StoreError(f"{location}: is a Zarr array, not a group; open the OME-Zarr image folder that contains it")
    return node, str(location)


def _check_complete(attrs, where):
    state = (attrs.get(NAMESPACE) or {}).get("write", {}).get("state")
    if state is not None and state != "complete":
        raise IncompleteStoreError(
            f"{where}: this store's write did not finish (state {state!r}); it is incomplete and must be written again or resumed")


class MultiscaleImage:
    """A 3D view (one time point, one channel) of a multiscale OME-Zarr image."""

    def __init__(self, location, t=0, c=0):
        self.group, self.location = open_group(location)
        attrs = self.group.attrs.asdict()
        _check_complete(attrs, self.location)
        version, first = find_multiscales(attrs)
        if first is None:
            raise MetadataError(f"{self.location}: a Zarr group without OME-NGFF 'multiscales' metadata")
        arrays = self._open_arrays(first)
        self.meta = parse_multiscales(attrs, arrays[0].ndim, self.location)
        self.version = self.meta.version
        self.zarr_format = self.group.metadata.zarr_format
        self.name = self.meta.name
        self.warnings = []
        self.t, self.c = t, c
        self._index = self._select(t, c, arrays[0].shape)
        self.frame = self._axis_frame()
        self.levels = tuple(self._make_level(i, ds, arr) for i, (ds, arr) in enumerate(zip(self.meta.datasets, arrays)))
        self._check_shapes()

    # -- opening ---------------------------------------------------------
    def _open_arrays(self, first):
        arrays = []
        for i, dataset in enumerate(first.get("datasets") or []):
            path = str(dataset.get("path"))
            try:
                node = self.group[path]
            except KeyError:
                raise MetadataError(f"{self.location}: level {i} (path {path!r}) is listed in the multiscales metadata but missing from the store") from None
            except Exception as error:
                raise StoreError(f"{self.location}: level {i} (path {path!r}) cannot be opened: {error}") from error
            if not isinstance(node, zarr.Array):
                raise MetadataError(f"{self.location}: level {i} (path {path!r}) is a group, not an array")
            arrays.append(node)
        if not arrays:
            raise MetadataError(f"{self.location}: multiscales metadata lists no datasets")
        return arrays

    def _select(self, t, c, shape):
        """Index tuple prefix for the non-spatial axes; None marks a spatial axis."""
        index = []
        for axis, size in zip(self.meta.axes, shape):
            if axis.type == "space":
                if axis.name not in SPATIAL:
                    raise MetadataError(f"{self.location}: space axis {axis.name!r} is not one of z, y, x")
                index.append(None)
                continue
            wanted = t if axis.type == "time" else c if axis.type == "channel" else 0
            if not 0 <= wanted < size:
                raise ValueError(f"{self.location}: {axis.type or axis.name} index {wanted} is outside 0..{size - 1}")
            index.append(wanted)
        return tuple(index)

    def _axis_frame(self):
        spatial = {a.name: a for a in self.meta.axes if a.type == "space"}
        mm = np.array([mm_per_unit(spatial[n].unit) if n in spatial else 1.0 for n in ("x", "y", "z")])
        orientation, warning = orientation_matrix({n: a.orientation for n, a in spatial.items()})
        if warning:
            self.warnings.append(warning)
        extra = self.meta.extra or {}
        direction = np.eye(3)
        if "direction" in extra:
            direction = np.asarray(extra["direction"], dtype=float)
            if direction.shape != (3, 3) or not np.allclose(direction.T @ direction, np.eye(3), atol=1e-5):
                raise MetadataError(f"{self.location}: '{NAMESPACE}.direction' is not an orthonormal 3x3 matrix")
        return AxisFrame(mm_per_unit=mm, direction=direction,
                         pivot=self._xyz(self.meta.datasets[0].translation, 0.0) * mm, orientation=orientation)

    def _xyz(self, values, missing):
        """Spatial values of a per-axis tuple, in x, y, z order (missing axes filled)."""
        out = []
        for name in ("x", "y", "z"):
            i = self.meta.axis_index(name)
            out.append(values[i] if i is not None else missing)
        return np.asarray(out, dtype=float)

    def spatial_zyx(self, values, missing):
        """The z, y, x entries of a per-axis tuple in array order (`missing` for an axis the image lacks)."""
        return tuple(self._xyz(values, missing)[::-1].tolist())

    def _make_level(self, index, dataset, array):
        if array.ndim != len(self.meta.axes):
            raise MetadataError(f"{self.location}: level {index} (path {dataset.path!r}) has {array.ndim} dimensions "
                                f"but the metadata names {len(self.meta.axes)} axes")
        scale = self._xyz(dataset.scale, 1.0)
        shards = getattr(array, "shards", None)
        return Level(
            index=index,
            path=dataset.path,
            array=array,
            shape=tuple(array.shape),
            volume_shape=tuple(int(v) for v in self.spatial_zyx(array.shape, 1)),
            dtype=np.dtype(array.dtype),
            chunks=tuple(array.chunks),
            shards=tuple(shards) if shards else None,
            voxel_size_mm=tuple((scale * self.frame.mm_per_unit).tolist()),
            ijk_to_ras=self.frame.ijk_to_ras(scale, self._xyz(dataset.translation, 0.0)),
            axis_names=tuple(a.name for a in self.meta.axes),
        )

    def _check_shapes(self):
        base = self.levels[0]
        base_scale = np.asarray(self.meta.datasets[0].scale)
        for level, dataset in zip(self.levels[1:], self.meta.datasets[1:]):
            for i, axis in enumerate(self.meta.axes):
                if axis.type != "space":
                    if level.shape[i] != base.shape[i]:
                        raise MetadataError(f"{self.location}: level {level.index} has {level.shape[i]} along {axis.name!r}, level 0 has {base.shape[i]}")
                    continue
                expected = base.shape[i] * base_scale[i] / dataset.scale[i]
                if abs(level.shape[i] - expected) > 1.0 + 1e-6:
                    raise MetadataError(
                        f"{self.location}: level {level.index} (path {level.path!r}) has shape {list(level.shape)} but its scale "
                        f"implies about {expected:.1f} voxels along {axis.name!r} (level 0 has {base.shape[i]})")

    # -- reading ---------------------------------------------------------
    def read(self, level, box, fill_value=None):
        """Voxels of `level` inside `box`, as a (z, y, x) numpy array.

        `box` is ((z0, z1), (y0, y1), (x0, x1)) in that level's voxel indices,
        stop excluded; it may reach outside the volume, where `fill_value` (the
        array's own fill value by default) is returned.
        """
        lvl = self.levels[level]
        box = [(int(a), int(b)) for a, b in box]
        if len(box) != 3 or any(b < a for a, b in box):
            raise ValueError(f"box must be three (start, stop) pairs with start <= stop, got {box!r}")
        if fill_value is None:
            fill_value = lvl.array.fill_value if lvl.array.fill_value is not None else 0
        out = np.full([b - a for a, b in box], fill_value, dtype=lvl.dtype)
        inside = [(max(a, 0), min(b, n)) for (a, b), n in zip(box, lvl.volume_shape)]
        if any(b <= a for a, b in inside):
            return out
        target = tuple(slice(a - o, b - o) for (a, b), (o, _) in zip(inside, box))
        out[target] = self._read_inside(lvl, inside)
        return out

    def selection(self, lvl, inside):
        """Zarr selection (all axes) of a z, y, x box inside a level, at this view's time point and channel."""
        spatial = dict(zip(SPATIAL, inside))
        selection = []
        for axis, fixed in zip(self.meta.axes, self._index):
            if fixed is not None:
                selection.append(fixed)
            else:
                a, b = spatial[axis.name]
                selection.append(slice(a, b))
        return tuple(selection)

    def _read_inside(self, lvl, inside):
        try:
            data = lvl.array[self.selection(lvl, inside)]
        except Exception as error:
            raise self.chunk_error(lvl, inside, error) from error
        # Absent spatial axes (a 2D image) come back missing; restore z, y, x.
        return np.asarray(data).reshape([b - a for a, b in inside])

    def chunk_error(self, lvl, inside, error):
        """The error to raise for a failed read of a box: re-read storage chunk by storage chunk to name the one that fails."""
        grid = lvl.shards or lvl.chunks
        spatial_grid = tuple(int(v) for v in self.spatial_zyx(grid, 1))
        ranges = [range(a // g, (b - 1) // g + 1) for (a, b), g in zip(inside, spatial_grid)]
        for cz in ranges[0]:
            for cy in ranges[1]:
                for cx in ranges[2]:
                    cell = [(c * g, min((c + 1) * g, n)) for c, g, n in zip((cz, cy, cx), spatial_grid, lvl.volume_shape)]
                    selection = self.selection(lvl, cell)
                    try:
                        lvl.array[selection]
                    except Exception as cell_error:
                        coords = tuple(s.start // g if isinstance(s, slice) else s // g
                                       for s, g in zip(selection, grid))
                        key = lvl.array.metadata.encode_chunk_key(coords)
                        return CorruptChunkError(
                            f"{self.location}: chunk {lvl.path}/{key} of level {lvl.index} cannot be read: "
                            f"{type(cell_error).__name__}: {cell_error}", level=lvl.index, chunk_key=f"{lvl.path}/{key}")
        return StoreError(f"{self.location}: reading level {lvl.index} box {inside} failed: {type(error).__name__}: {error}")

    # -- description -----------------------------------------------------
    @property
    def dtype(self):
        return self.levels[0].dtype

    def bounds_ras(self, level=0, edges=False):
        """(min, max) RAS corners of the volume's voxel-centre bounding box (with `edges`, of its outer voxel faces)."""
        corners = ras_corners(self.levels[level].ijk_to_ras, self.levels[level].volume_shape, edges=edges)
        return corners.min(axis=0), corners.max(axis=0)

    def physical_size_mm(self):
        """Extent of the volume along x, y, z in millimetres (voxel edges, level 0)."""
        lvl = self.levels[0]
        return tuple(float(n * s) for n, s in zip(lvl.volume_shape[::-1], lvl.voxel_size_mm))

    def describe(self):
        return {
            "location": self.location,
            "name": self.name,
            "ngff_version": self.version,
            "zarr_format": self.zarr_format,
            "axes": [{"name": a.name, "type": a.type, "unit": a.unit, "orientation": a.orientation} for a in self.meta.axes],
            "dtype": str(self.dtype),
            "physical_size_mm": list(self.physical_size_mm()),
            "levels": [lvl.describe() for lvl in self.levels],
            "warnings": list(self.warnings),
        }


def open_image(location, t=0, c=0):
    """Open a multiscale OME-Zarr image (a local folder now; URLs where zarr/fsspec can reach them)."""
    return MultiscaleImage(location, t=t, c=c)
