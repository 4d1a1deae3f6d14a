"""The label store: an OME-NGFF label pyramid on the image's own voxel grid, read and written chunk by chunk.

Where it lives. Beside the image as `<image>/labels/<name>` (NGFF's place,
found by napari and ome-zarr-py) when the image folder can be written; else
(a read-only folder, a store opened by URL) in a separate local OME-Zarr
given as `store`, whose `labels/<name>` records the image it belongs to
(location and a fingerprint of every level's shape and IJK->RAS matrix). A
label pyramid refuses to pair with an image whose fingerprint differs; the
API is the same in both places.

Layout. One level per image level, with the image's NGFF scale and
translation, so level k of the labels covers exactly level k of the image.
Integer dtype from the number of segments (uint8 up to 255). Chunks of 64^3,
not sharded, each in its own file: an edit rewrites only the chunks it
touches, atomically (write, fsync, rename). bench/label_layout.py measured
what one brush stroke costs to write for each layout (figures in its results
and in the README); rewriting a 64 x 512 x 512 shard for a stroke that
touches two of its chunks costs many times more. Chunks that are all
background are never written (an absent chunk reads as 0).
"""

import datetime
import hashlib
import json
import os

import numpy as np
import zarr

from ..errors import BigVolumeError, CorruptChunkError, MetadataError, StoreError
from ..store.multiscale import MultiscaleImage, open_group
from ..store.ngff import NAMESPACE, multiscales_attrs
from ..writing.atomic import fsync_dir, write_atomically
from ..writing.pyramid import default_compressor
from ..writing.shardio import LevelWriter
from .segments import check_unique, image_label_attrs, segments_from_image_label

LABEL_CHUNKS = (64, 64, 64)


def label_dtype(max_segments):
    """The smallest unsigned integer type that holds `max_segments` label values besides 0."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if max_segments <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    raise ValueError(f"{max_segments} segments do not fit a 32-bit label value")


def geometry_fingerprint(image):
    """A digest of every level's voxel shape and IJK->RAS matrix: equal exactly when the voxel grids are equal."""
    levels = [[list(map(int, lvl.volume_shape)), np.round(lvl.ijk_to_ras, 9).tolist()] for lvl in image.levels]
    return hashlib.sha256(json.dumps(levels).encode()).hexdigest()[:32]


def _labels_group_attrs(group):
    attrs = group.attrs.asdict()
    return (attrs.get("ome") or {}).get("labels", attrs.get("labels", [])), "ome" in attrs


def label_names(location):
    """Names listed by a store's `labels` group (NGFF 0.4 or 0.5), in stored order; [] if none."""
    group, _ = open_group(location)
    try:
        labels = group["labels"]
    except KeyError:
        return []
    if not isinstance(labels, zarr.Group):
        return []
    return [str(name) for name in _labels_group_attrs(labels)[0]]


def _is_writable_folder(location):
    return isinstance(location, (str, os.PathLike)) and "://" not in str(location) and os.access(location, os.W_OK)


def _root_for(image, store):
    if store is not None:
        return os.fspath(store)
    if not _is_writable_folder(image.location):
        raise StoreError(f"{image.location}: the image's folder cannot be written (read-only or a URL); "
                         f"give a separate local store for its labels (store=PATH, --store PATH)")
    return os.fspath(image.location)


def create_labels(image, name, *, store=None, segments=(), max_segments=255, overwrite=False):
    """Create an empty label pyramid `name` for `image` (beside it, or in the separate local `store`)."""
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"label name {name!r} must be a plain folder name")
    root_path = _root_for(image, store)
    segments = list(segments)
    check_unique(segments, name)
    dtype = label_dtype(max(max_segments, max((s.value for s in segments), default=0)))
    zarr_format = image.zarr_format
    version = "0.5" if zarr_format == 3 else "0.4"
    if store is not None and not os.path.exists(os.path.join(root_path, "zarr.json" if zarr_format == 3 else ".zgroup")):
        os.makedirs(root_path, exist_ok=True)
        zarr.open_group(root_path, mode="a", zarr_format=zarr_format)
    root = zarr.open_group(root_path, mode="a")
    labels_group = root.require_group("labels")
    names, _ = _labels_group_attrs(labels_group)
    if name in labels_group:
        if not overwrite:
            raise StoreError(f"{root_path}: labels {name!r} already exist; open them, or replace them with overwrite=True (--overwrite)")
        import shutil

        shutil.rmtree(os.path.join(root_path, "labels", name))
    group = labels_group.create_group(name)
    meta = image.meta
    datasets = []
    for lvl, dataset in zip(image.levels, meta.datasets):
        datasets.append((str(lvl.index), image.spatial_zyx(dataset.scale, 1.0), image.spatial_zyx(dataset.translation, 0.0)))
        chunks = tuple(min(c, n) for c, n in zip(LABEL_CHUNKS, lvl.volume_shape))
        kwargs = {"dimension_names": ["z", "y", "x"]} if zarr_format == 3 else {"chunk_key_encoding": {"name": "v2", "separator": "/"}}
        group.create_array(str(lvl.index), shape=lvl.volume_shape, chunks=chunks, dtype=dtype,
                           compressors=[default_compressor(zarr_format)], fill_value=0, **kwargs)
    unit = next((a.unit for a in meta.axes if a.type == "space"), None) or "millimeter"
    orientation = any(a.orientation for a in meta.axes)
    attrs = multiscales_attrs(version, unit, datasets, name=name, orientation=orientation)
    label_meta = image_label_attrs(segments, version)
    if version == "0.5":
        attrs["ome"]["image-label"] = label_meta
    else:
        attrs["image-label"] = label_meta
    own = {"labels": {"image": str(image.location), "fingerprint": geometry_fingerprint(image),
                      "t": image.t, "c": image.c,
                      "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}}
    if (meta.extra or {}).get("direction") is not None:
        own["direction"] = meta.extra["direction"]
    attrs[NAMESPACE] = own
    group.attrs.put(attrs)
    names = [n for n in names if n != name] + [name]
    labels_group.attrs.put({"ome": {"version": "0.5", "labels": names}} if version == "0.5" else {"labels": names})
    return LabelStore(image, name, store=store)


def open_labels(image, name, *, store=None):
    """Open the label pyramid `name` of `image` (beside it, or in the separate local `store`)."""
    return LabelStore(image, name, store=store)


class LabelStore:
    """A label pyramid paired with its image: levels, segments, and chunk reads and atomic chunk writes."""

    def __init__(self, image, name, *, store=None):
        self.image, self.name = image, name
        self.root = os.fspath(store) if store is not None else str(image.location)
        self.path = os.path.join(self.root, "labels", name)
        if not os.path.isdir(self.path):
            where = f"the separate store {self.root}" if store is not None else str(image.location)
            raise StoreError(f"{where}: has no labels {name!r} (labels there: {', '.join(label_names(self.root)) or 'none'})")
        self.pyramid = MultiscaleImage(self.path)
        self._check_pairing()
        self._writers = [LevelWriter(os.path.join(self.path, lvl.path)) for lvl in self.levels]
        for writer, lvl in zip(self._writers, self.levels):
            if writer.codec is None or writer.inner is not None:
                raise MetadataError(f"{self.path}: level {lvl.index} is not stored as BigVolume writes labels "
                                    f"(unsharded Blosc chunks); convert it with `bigvolume labels import`")
        self.dtype = self.levels[0].dtype
        self.segments = segments_from_image_label(self._image_label(), self.path)

    # -- pairing and metadata ------------------------------------------------------------------------------
    @property
    def levels(self):
        return self.pyramid.levels

    @property
    def location(self):
        return self.path

    def _own_attrs(self):
        return self.pyramid.group.attrs.asdict().get(NAMESPACE) or {}

    def _image_label(self):
        attrs = self.pyramid.group.attrs.asdict()
        return (attrs.get("ome") or {}).get("image-label", attrs.get("image-label", {}))

    def _check_pairing(self):
        recorded = self._own_attrs().get("labels") or {}
        fingerprint = geometry_fingerprint(self.image)
        if recorded.get("fingerprint") not in (None, fingerprint):
            raise StoreError(f"{self.path}: these labels belong to the image {recorded.get('image')} "
                             f"(geometry fingerprint {recorded.get('fingerprint')}), not to {self.image.location} "
                             f"({fingerprint}); their voxel grids differ")
        if len(self.levels) != len(self.image.levels):
            raise MetadataError(f"{self.path}: {len(self.levels)} label levels for an image of {len(self.image.levels)}")
        for label_level, image_level in zip(self.levels, self.image.levels):
            if label_level.volume_shape != image_level.volume_shape or not np.allclose(
                    label_level.ijk_to_ras, image_level.ijk_to_ras, atol=1e-6):
                raise MetadataError(f"{self.path}: label level {label_level.index} ({label_level.volume_shape}) does not "
                                    f"lie on image level {image_level.index} ({image_level.volume_shape}) voxel for voxel")

    def set_segments(self, segments):
        """Replace the segment list (names, colours, tags) in the store's metadata."""
        segments = list(segments)
        check_unique(segments, self.path)
        top = np.iinfo(self.dtype).max
        if any(s.value > top for s in segments):
            raise ValueError(f"{self.path}: label values above {top} do not fit this pyramid's {self.dtype}")
        attrs = self.pyramid.group.attrs.asdict()
        version = "0.5" if "ome" in attrs else "0.4"
        meta = image_label_attrs(segments, version)
        if version == "0.5":
            attrs["ome"]["image-label"] = meta
        else:
            attrs["image-label"] = meta
        zarr.open_group(self.path, mode="r+").attrs.put(attrs)  # the pyramid's own handle is read-only
        self.pyramid = MultiscaleImage(self.path)
        self.segments = segments

    def segment(self, key):
        """The segment with this label value, ID or name."""
        for s in self.segments:
            if key in (s.value, s.id, s.name):
                return s
        raise BigVolumeError(f"{self.path}: no segment {key!r} (segments: {', '.join(s.name for s in self.segments) or 'none'})")

    # -- chunks ----------------------------------------------------------------------------------------------
    def chunk_path(self, level, coords):
        return self._writers[level].unit_path(tuple(coords))

    def read_chunk(self, level, coords):
        """The stored voxels of chunk `coords` (z, y, x) of `level`, clipped to the volume; zeros where never written."""
        return self.decode_chunk(level, coords, self.encoded_chunk(level, coords))

    def decode_chunk(self, level, coords, encoded):
        """The voxels of chunk `coords` of `level` from its file's bytes (None: an absent chunk, all zeros)."""
        shape = tuple(b - a for a, b in self.levels[level].chunk_box(coords))
        if encoded is None:
            return np.zeros(shape, dtype=self.dtype)
        writer = self._writers[level]
        try:
            full = np.frombuffer(writer.codec.decode(encoded), dtype=writer.dtype).reshape(writer.grid)
        except Exception as error:
            path = self.chunk_path(level, coords)
            raise CorruptChunkError(f"{path}: label chunk {tuple(coords)} of level {level} cannot be decoded: {error}",
                                    level=level, chunk_key=os.path.relpath(path, self.path)) from error
        return full[tuple(slice(0, n) for n in shape)].astype(self.dtype, copy=False)

    def encode_chunk(self, level, data):
        """A chunk file's bytes for `data` (a chunk's clipped shape); None for an all-zero chunk (never stored)."""
        if not data.any():
            return None
        writer = self._writers[level]
        block = np.zeros(writer.grid, dtype=writer.dtype)
        block[tuple(slice(0, n) for n in data.shape)] = data
        return writer.codec.encode(block)

    def read_box(self, level, box):
        """Stored voxels of a box ((z0, z1), (y0, y1), (x0, x1)) of `level` inside the volume, chunk by chunk."""
        lvl = self.levels[level]
        out = np.zeros([b - a for a, b in box], dtype=self.dtype)
        for coords in lvl.chunks_in_box(box):
            cbox = lvl.chunk_box(coords)
            inter = [(max(a, c), min(b, d)) for (a, b), (c, d) in zip(box, cbox)]
            out[tuple(slice(a - o, b - o) for (a, b), (o, _) in zip(inter, box))] = \
                self.read_chunk(level, coords)[tuple(slice(a - c, b - c) for (a, b), (c, _) in zip(inter, cbox))]
        return out

    def encoded_chunk(self, level, coords):
        """The chunk file's bytes as stored, or None where the chunk is absent (for before-images)."""
        try:
            with open(self.chunk_path(level, coords), "rb") as handle:
                return handle.read()
        except FileNotFoundError:
            return None

    def write_chunk(self, level, coords, data, durable=True):
        """Replace chunk `coords` of `level` by `data` (its clipped shape) atomically; an all-zero chunk is removed."""
        self.write_encoded(level, coords, self.encode_chunk(level, data), durable=durable)

    def write_encoded(self, level, coords, encoded, durable=True):
        """Replace a chunk file by already encoded bytes (None: remove it)."""
        path = self.chunk_path(level, coords)
        if encoded is None:
            try:
                os.remove(path)
            except FileNotFoundError:
                pass
            return
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_atomically(path, encoded, durable=durable)

    def sync_folders(self, level, coords_list):
        """Make the renames of written chunks durable (one fsync per folder)."""
        for folder in {os.path.dirname(self.chunk_path(level, c)) for c in coords_list}:
            if os.path.isdir(folder):
                fsync_dir(folder)

    def stored_chunks(self, level):
        """Coordinates (z, y, x) of the chunks of `level` that exist on disk, found by listing its folder (the
        rest are background): statistics and exports visit only these."""
        writer = self._writers[level]
        top = os.path.join(writer.array_dir, *writer.prefix)
        found = []
        for folder, _, files in os.walk(top):
            for name in files:
                if name.endswith(".tmp") or name in ("zarr.json", ".zarray", ".zattrs"):
                    continue
                relative = os.path.relpath(os.path.join(folder, name), top)
                parts = relative.split(os.sep) if writer.separator == "/" else relative.split(writer.separator)
                try:
                    coords = tuple(int(p) for p in parts)
                except ValueError:
                    continue
                if len(coords) == 3:
                    found.append(coords)
        return sorted(found)

    def describe(self):
        return {"name": self.name, "path": self.path, "image": str(self.image.location), "dtype": str(self.dtype),
                "levels": [list(lvl.volume_shape) for lvl in self.levels],
                "segments": [{"value": s.value, "name": s.name, "color": list(s.color)} for s in self.segments]}
