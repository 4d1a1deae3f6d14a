"""Edits as operations in physical coordinates, rasterised at any level of the pyramid.

An operation says which voxels it covers (its *region*, tested at voxel
centres in RAS millimetres, so the same operation gives a smooth boundary at
full resolution and a coarse one at a coarse level) and what it does there to
one segment's label value:

- paint: region voxels that may be edited take the segment's value;
- erase: region voxels of the segment become background (0);
- set: within the operation's box, the segment becomes exactly the region
  (Threshold, and Mask with mode "set").

Which voxels may be edited follows Slicer's Segment Editor masking
(vtkMRMLSegmentEditorNode): an editable area (everywhere, inside or outside
all segments, inside or outside given segments: one segment, or the visible
ones, resolved by the caller), an optional editable intensity range of the
image, and whether other segments may be overwritten (all, the listed ones,
none). Every operation is a function of each voxel's own old value (Fill
excepted: its region depends on the labels around the seed), so applying
one twice gives the same labels: replaying an operation that was partly
written is safe.

Operations are plain data: `to_json` / `operation_from_json` round-trip them
through the journal exactly.
"""

import base64
import zlib
from dataclasses import asdict, dataclass, field

import numpy as np

AREAS = ("everywhere", "inside_all", "outside_all", "inside_segments", "outside_segments")
OVERWRITES = ("all", "listed", "none")
MAX_FILL_VOXELS = 256**3  # a fill's box at the level it is computed at: its region is held whole in memory


@dataclass(frozen=True)
class Masking:
    area: str = "everywhere"
    area_values: tuple = ()  # label values for inside_segments / outside_segments
    intensity_range: tuple = None  # (low, high) of the image, inclusive, or None
    overwrite: str = "all"
    overwrite_values: tuple = ()  # values that may be overwritten when overwrite == "listed"

    def __post_init__(self):
        if self.area not in AREAS:
            raise ValueError(f"editable area {self.area!r} is not one of {', '.join(AREAS)}")
        if self.overwrite not in OVERWRITES:
            raise ValueError(f"overwrite {self.overwrite!r} is not one of {', '.join(OVERWRITES)}")
        object.__setattr__(self, "area_values", tuple(int(v) for v in self.area_values))
        object.__setattr__(self, "overwrite_values", tuple(int(v) for v in self.overwrite_values))
        if self.intensity_range is not None:
            object.__setattr__(self, "intensity_range", tuple(float(v) for v in self.intensity_range))

    def editable(self, old, intensities=None):
        """Which voxels may change, from their old label values (and the image, for an intensity range)."""
        if self.area == "everywhere":
            allowed = np.ones(old.shape, dtype=bool)
        elif self.area == "inside_all":
            allowed = old != 0
        elif self.area == "outside_all":
            allowed = old == 0
        elif self.area == "inside_segments":
            allowed = np.isin(old, self.area_values)
        else:
            allowed = ~np.isin(old, self.area_values)
        if self.intensity_range is not None:
            low, high = self.intensity_range
            allowed &= (intensities >= low) & (intensities <= high)
        return allowed

    def overwritable(self, old, value):
        """Voxels whose old value may be replaced by `value` (background and the segment itself always may)."""
        if self.overwrite == "all":
            return np.ones(old.shape, dtype=bool)
        free = (old == 0) | (old == value)
        return free | np.isin(old, self.overwrite_values) if self.overwrite == "listed" else free


def voxel_centres_ras(level, box, origin=(0.0, 0.0, 0.0)):
    """RAS x, y and z (minus `origin`) of the centres of a voxel box of `level`: three arrays that broadcast to
    (nz, ny, nx). Each is a sum of per-axis terms, so it stays as small as the axes it depends on (a volume whose
    axes are RAS axes gives three 1-D arrays) and no (nz, ny, nx, 3) array is built."""
    (z0, z1), (y0, y1), (x0, x1) = box
    m = level.ijk_to_ras
    axes = (np.arange(x0, x1, dtype=float)[None, None, :], np.arange(y0, y1, dtype=float)[None, :, None],
            np.arange(z0, z1, dtype=float)[:, None, None])
    out = []
    for row in range(3):
        value = np.full((1, 1, 1), m[row, 3] - origin[row])
        for column, along in enumerate(axes):
            if m[row, column] != 0:
                value = value + along * m[row, column]
        out.append(value)
    return out


def _dot(components, vector):
    return components[0] * vector[0] + components[1] * vector[1] + components[2] * vector[2]


def ras_bounds_to_box(level, low, high, margin=1):
    """Voxel box of `level` holding every voxel centre inside the RAS bounds [low, high], clipped; None if empty."""
    corners = np.array([[x, y, z, 1.0] for x in (low[0], high[0]) for y in (low[1], high[1]) for z in (low[2], high[2])])
    ijk = (level.ras_to_ijk @ corners.T)[:3].T
    lo = np.floor(ijk.min(axis=0)).astype(int) - margin
    hi = np.ceil(ijk.max(axis=0)).astype(int) + 1 + margin
    box = tuple((max(int(a), 0), min(int(b), n)) for a, b, n in zip(lo[::-1], hi[::-1], level.volume_shape))
    return None if any(b <= a for a, b in box) else box


def whole_box(level):
    return tuple((0, n) for n in level.volume_shape)


def intersect(a, b):
    box = tuple((max(p, r), min(q, s)) for (p, q), (r, s) in zip(a, b))
    return None if any(hi <= lo for lo, hi in box) else box


def _unit(vector):
    v = np.asarray(vector, dtype=float)
    norm = np.linalg.norm(v)
    if not norm > 0:
        raise ValueError(f"plane normal {vector!r} has no direction")
    return v / norm


def _near_path(level, box, path, radius, normal=None, half_thickness=0.0):
    """Voxels of `box` whose centre is within `radius` of the polyline `path` (N, 3; one point: a sphere). With a
    unit `normal`, distances are measured in the plane through path[0] with that normal (the path projected onto
    it) and only centres within `half_thickness` of the plane count. Each segment is tested only over the part of
    `box` its capsule can reach."""
    out = np.zeros([b - a for a, b in box], dtype=bool)
    if normal is not None:
        path = path - ((path - path[0]) @ normal)[:, None] * normal
    reach = radius + half_thickness
    for a, b in zip(path, path[1:] if len(path) > 1 else path):
        sub = ras_bounds_to_box(level, np.minimum(a, b) - reach, np.maximum(a, b) + reach)
        if sub is not None:
            sub = intersect(sub, box)
        if sub is None:
            continue
        q = voxel_centres_ras(level, sub, origin=a)
        # Squared distance to the segment as |q|^2 - t (2 q.ab - t |ab|^2), t the clipped projection: a few passes
        # over the box, most terms staying as small as the axes they depend on.
        q2 = q[0] ** 2 + q[1] ** 2 + q[2] ** 2
        if normal is not None:
            along = _dot(q, normal)
            q2 = q2 - along ** 2  # in the plane (the segment lies in it)
        ab = b - a
        length2 = float(ab @ ab)
        if length2 > 0:
            u = _dot(q, ab)
            t = u * (1.0 / length2)
            np.maximum(t, 0.0, out=t)
            np.minimum(t, 1.0, out=t)
            u *= 2.0
            u -= t * length2
            u *= t
            q2 = q2 - u
        hit = q2 <= radius * radius
        if normal is not None:
            hit = hit & (np.abs(along) <= half_thickness)
        out[tuple(slice(p - o, r - o) for (p, r), (o, _) in zip(sub, box))] |= hit
    return out


def _plane_basis(normal):
    n = _unit(normal)
    helper = np.array([1.0, 0.0, 0.0]) if abs(n[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    u = np.cross(n, helper)
    u /= np.linalg.norm(u)
    return n, u, np.cross(n, u)


@dataclass(frozen=True)
class Operation:
    value: int  # the segment's label value
    masking: Masking = field(default_factory=Masking)

    kind = "operation"
    mode = "paint"
    needs_labels_around = False  # the region depends on labels outside the voxel (Fill)

    @property
    def needs_image(self):
        return self.masking.intensity_range is not None

    def ras_bounds(self):
        """(low, high) RAS corners of what the operation may touch, or None for the whole volume."""
        return None

    def voxel_box(self, level):
        """The voxel box of `level` the operation may change, or None if it misses the volume."""
        bounds = self.ras_bounds()
        return whole_box(level) if bounds is None else ras_bounds_to_box(level, *bounds)

    def region(self, level, box, intensities=None, labels=None):
        """Boolean (z, y, x) array over `box`: the voxels the operation covers."""
        raise NotImplementedError

    def domain(self, level, box):
        """For mode "set": the voxels of `box` where the segment is replaced (outside, it is left alone)."""
        return np.ones([b - a for a, b in box], dtype=bool)

    def to_json(self):
        data = asdict(self)
        data["kind"] = self.kind
        return data


@dataclass(frozen=True)
class Brush(Operation):
    """A stroke: every voxel centre within `radius_mm` of the path through `points` (RAS). With `normal`, a
    disc brush in that slice plane, `thickness_mm` thick (the displayed level's voxel); else a sphere."""

    points: tuple = ()
    radius_mm: float = 1.0
    normal: tuple = None
    thickness_mm: float = 0.0
    erase: bool = False

    kind = "brush"

    def __post_init__(self):
        object.__setattr__(self, "points", tuple(tuple(float(c) for c in p) for p in self.points))
        if not self.points or any(len(p) != 3 for p in self.points):
            raise ValueError("a brush stroke needs one or more RAS points (x, y, z)")
        if not self.radius_mm > 0:
            raise ValueError(f"brush radius {self.radius_mm} must be positive")
        if self.normal is not None:
            object.__setattr__(self, "normal", tuple(float(c) for c in _unit(self.normal)))

    @property
    def mode(self):
        return "erase" if self.erase else "paint"

    def ras_bounds(self):
        p = np.asarray(self.points)
        return p.min(axis=0) - self.radius_mm, p.max(axis=0) + self.radius_mm

    def region(self, level, box, intensities=None, labels=None):
        normal = None if self.normal is None else np.asarray(self.normal)
        return _near_path(level, box, np.asarray(self.points), self.radius_mm, normal, self.thickness_mm / 2)


@dataclass(frozen=True)
class Polygon(Operation):
    """A filled polygon (Draw) in the slice plane with `normal` through `vertices` (RAS), `thickness_mm` thick;
    inside by the even-odd rule at voxel centres projected onto the plane."""

    vertices: tuple = ()
    normal: tuple = (0.0, 0.0, 1.0)
    thickness_mm: float = 0.0
    erase: bool = False

    kind = "polygon"

    def __post_init__(self):
        object.__setattr__(self, "vertices", tuple(tuple(float(c) for c in p) for p in self.vertices))
        if len(self.vertices) < 3:
            raise ValueError("a polygon needs three or more vertices")
        object.__setattr__(self, "normal", tuple(float(c) for c in _unit(self.normal)))

    @property
    def mode(self):
        return "erase" if self.erase else "paint"

    def ras_bounds(self):
        v = np.asarray(self.vertices)
        pad = self.thickness_mm / 2
        return v.min(axis=0) - pad, v.max(axis=0) + pad

    def region(self, level, box, intensities=None, labels=None):
        n, u, w = _plane_basis(self.normal)
        origin = np.asarray(self.vertices[0])
        relative = voxel_centres_ras(level, box, origin)
        along = _dot(relative, n)
        pu, pw = np.broadcast_arrays(_dot(relative, u), _dot(relative, w))
        poly = (np.asarray(self.vertices) - origin) @ np.stack([u, w], axis=1)
        inside = np.zeros(pu.shape, dtype=bool)
        for (au, aw), (bu, bw) in zip(poly, np.roll(poly, -1, axis=0)):
            if aw == bw:
                continue
            crosses = (aw > pw) != (bw > pw)
            at = au + (pw - aw) * (bu - au) / (bw - aw)
            inside ^= crosses & (pu < at)
        return inside & (np.abs(along) <= self.thickness_mm / 2)


@dataclass(frozen=True)
class Threshold(Operation):
    """Within `box_ras` (RAS low and high corners; None: the whole volume) the segment becomes exactly the voxels
    whose image intensity is in [low, high] (and editable), as Slicer's Threshold effect sets a segment."""

    low: float = 0.0
    high: float = 0.0
    box_ras: tuple = None

    kind = "threshold"
    mode = "set"
    needs_image = True

    def __post_init__(self):
        if self.box_ras is not None:
            object.__setattr__(self, "box_ras", tuple(tuple(float(c) for c in p) for p in self.box_ras))

    def ras_bounds(self):
        return None if self.box_ras is None else (np.asarray(self.box_ras[0]), np.asarray(self.box_ras[1]))

    def voxel_box(self, level):
        if self.box_ras is None:
            return whole_box(level)
        return ras_bounds_to_box(level, *self.ras_bounds(), margin=0)

    def region(self, level, box, intensities=None, labels=None):
        return (intensities >= self.low) & (intensities <= self.high) & self.domain(level, box)

    def domain(self, level, box):
        """The voxel centres inside `box_ras` (everywhere without one)."""
        if self.box_ras is None:
            return np.ones([b - a for a, b in box], dtype=bool)
        low, high = self.ras_bounds()
        inside = np.ones((1, 1, 1), dtype=bool)
        for c, lo, hi in zip(voxel_centres_ras(level, box), np.minimum(low, high), np.maximum(low, high)):
            inside = inside & (c >= lo) & (c <= hi)
        return np.broadcast_to(inside, [b - a for a, b in box])


@dataclass(frozen=True)
class Fill(Operation):
    """Flood fill from `seed_ras`: the voxels 6-connected to the seed's voxel that hold the seed's label value
    (and are editable), within `box_ras`. Computed at each level on that level's labels."""

    seed_ras: tuple = (0.0, 0.0, 0.0)
    box_ras: tuple = ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0))

    kind = "fill"
    needs_labels_around = True

    def __post_init__(self):
        object.__setattr__(self, "seed_ras", tuple(float(c) for c in self.seed_ras))
        object.__setattr__(self, "box_ras", tuple(tuple(float(c) for c in p) for p in self.box_ras))

    def ras_bounds(self):
        return np.asarray(self.box_ras[0]), np.asarray(self.box_ras[1])

    def voxel_box(self, level):
        return ras_bounds_to_box(level, *self.ras_bounds(), margin=0)

    def region(self, level, box, intensities=None, labels=None):
        """`box` must be the operation's whole voxel box at `level`, and `labels` its labels there."""
        size = int(np.prod([b - a for a, b in box]))
        if size > MAX_FILL_VOXELS:
            raise ValueError(f"a fill box of {size} voxels at level {level.index} is more than {MAX_FILL_VOXELS}; "
                             "fill a smaller box or at a coarser level")
        seed = np.rint((level.ras_to_ijk @ np.array([*self.seed_ras, 1.0]))[:3][::-1]).astype(int)
        local = tuple(int(s - a) for s, (a, _) in zip(seed, box))
        if any(not 0 <= s < b - a for s, (a, b) in zip(seed, box)):
            return np.zeros(labels.shape, dtype=bool)
        allowed = (labels == labels[local]) & self.masking.editable(labels, intensities)
        return flood(allowed, local)


def flood(allowed, seed):
    """Voxels of `allowed` 6-connected to `seed`: spread along each axis in turn over whole runs of allowed
    voxels (a run touching a filled voxel is filled whole), until nothing changes."""
    filled = np.zeros(allowed.shape, dtype=bool)
    if not allowed[seed]:
        return filled
    filled[seed] = True
    changed = True
    while changed:
        changed = False
        for axis in range(3):
            a = np.moveaxis(allowed, axis, -1)
            f = np.moveaxis(filled, axis, -1)
            starts = np.diff(a, axis=-1, prepend=False) & a  # first voxel of each run along the axis
            run = np.cumsum(starts, axis=-1) * a  # run number along the line, 0 outside runs
            lines = np.arange(run[..., 0].size).reshape(run.shape[:-1])[..., None] * (run.shape[-1] + 1)
            ids = np.where(a, run + lines, 0)
            hit = np.zeros(ids.max() + 1, dtype=bool)
            hit[ids[f]] = True
            hit[0] = False
            grown = hit[ids]
            if (grown & ~f).any():
                changed = True
                f |= grown
            filled = np.moveaxis(f, -1, axis)
    return filled


@dataclass(frozen=True)
class Mask(Operation):
    """A boolean mask over a voxel box of one level (results of other tools, the ROI round trip). The op keeps
    that level's IJK->RAS, so at any level each voxel takes the mask voxel its centre falls in (the same level:
    the mask itself). mode: "add" (paint), "remove" (erase) or "set" (the segment becomes exactly the mask
    within the box)."""

    ijk_to_ras: tuple = ()  # 4x4, of the level the mask was made at
    box: tuple = ((0, 0), (0, 0), (0, 0))  # voxel box of that level, z, y, x
    bits: bytes = b""  # np.packbits of the mask, C order, zlib-compressed
    mask_mode: str = "add"

    kind = "mask"

    @classmethod
    def from_array(cls, value, level, box, mask, mask_mode="add", masking=None):
        """`level`: the Level the mask is on; `box`: ((z0, z1), (y0, y1), (x0, x1)) of it; `mask` fills the box."""
        box = tuple((int(a), int(b)) for a, b in box)
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != tuple(b - a for a, b in box):
            raise ValueError(f"mask shape {mask.shape} does not fill the box {box}")
        return cls(value=value, masking=masking or Masking(), ijk_to_ras=level.ijk_to_ras, box=box,
                   bits=zlib.compress(np.packbits(mask).tobytes(), 1), mask_mode=mask_mode)

    def __post_init__(self):
        if self.mask_mode not in ("add", "remove", "set"):
            raise ValueError(f"mask mode {self.mask_mode!r} is not add, remove or set")
        object.__setattr__(self, "box", tuple((int(a), int(b)) for a, b in self.box))
        object.__setattr__(self, "ijk_to_ras", tuple(tuple(float(v) for v in row) for row in np.asarray(self.ijk_to_ras)))

    @property
    def mode(self):
        return {"add": "paint", "remove": "erase", "set": "set"}[self.mask_mode]

    def array(self):
        shape = tuple(b - a for a, b in self.box)
        return np.unpackbits(np.frombuffer(zlib.decompress(self.bits), dtype=np.uint8),
                             count=int(np.prod(shape))).reshape(shape).astype(bool)

    def ras_bounds(self):
        (z0, z1), (y0, y1), (x0, x1) = self.box
        corners = np.array([[x, y, z, 1.0] for x in (x0 - 0.5, x1 - 0.5) for y in (y0 - 0.5, y1 - 0.5)
                            for z in (z0 - 0.5, z1 - 0.5)])
        ras = (np.asarray(self.ijk_to_ras) @ corners.T)[:3].T
        return ras.min(axis=0), ras.max(axis=0)

    def _same_grid(self, level):
        return np.allclose(np.asarray(self.ijk_to_ras), level.ijk_to_ras, atol=1e-9)

    def voxel_box(self, level):
        if self._same_grid(level):
            return intersect(self.box, whole_box(level))
        return ras_bounds_to_box(level, *self.ras_bounds(), margin=0)

    def _mask_index(self, level, box):
        """For each voxel of `box`: the index into the mask its centre falls in, and whether it is inside it."""
        to_ijk = np.linalg.inv(np.asarray(self.ijk_to_ras))
        shape = [b - a for a, b in box]
        ras = voxel_centres_ras(level, box)
        index, inside = [], np.ones((1, 1, 1), dtype=bool)
        for axis in (2, 1, 0):  # z, y, x of the mask from its i, j, k
            ijk = _dot(ras, to_ijk[axis, :3]) + to_ijk[axis, 3]
            within = np.floor(ijk + 0.5).astype(int) - self.box[2 - axis][0]
            inside = inside & (within >= 0) & (within < self.box[2 - axis][1] - self.box[2 - axis][0])
            index.append(np.broadcast_to(within, shape))
        return np.stack(index, axis=-1), np.broadcast_to(inside, shape)

    def region(self, level, box, intensities=None, labels=None):
        if self._same_grid(level):
            out = np.zeros([b - a for a, b in box], dtype=bool)
            inter = intersect(box, self.box)
            if inter is not None:
                out[tuple(slice(a - o, b - o) for (a, b), (o, _) in zip(inter, box))] = \
                    self.array()[tuple(slice(a - o, b - o) for (a, b), (o, _) in zip(inter, self.box))]
            return out
        index, inside = self._mask_index(level, box)
        out = np.zeros(inside.shape, dtype=bool)
        out[inside] = self.array()[tuple(index[inside].T)]
        return out

    def domain(self, level, box):
        """The voxels whose centre falls inside the mask's box."""
        return self._mask_index(level, box)[1]

    def to_json(self):
        data = super().to_json()
        data["bits"] = base64.b64encode(self.bits).decode()
        return data


@dataclass(frozen=True)
class Replace(Mask):
    """The labels of a voxel box of one level, written back whole (an ROI edited elsewhere, as by any of
    Slicer's effects): at any level each voxel whose centre falls in the box takes the value of the patch voxel
    it falls in, whatever segment it held. One operation for every segment of the box, undone at once; masking
    does not apply (the patch was edited with it). `value` is unused."""

    dtype: str = "uint8"

    kind = "replace"
    mode = "replace"

    @classmethod
    def from_labels(cls, level, box, labels):
        box = tuple((int(a), int(b)) for a, b in box)
        labels = np.ascontiguousarray(labels)
        if labels.shape != tuple(b - a for a, b in box):
            raise ValueError(f"labels of shape {labels.shape} do not fill the box {box}")
        return cls(value=0, ijk_to_ras=level.ijk_to_ras, box=box, bits=zlib.compress(labels.tobytes(), 1),
                   dtype=str(labels.dtype))

    def array(self):
        shape = tuple(b - a for a, b in self.box)
        return np.frombuffer(zlib.decompress(self.bits), dtype=self.dtype).reshape(shape)

    def region(self, level, box, intensities=None, labels=None):
        return np.broadcast_to(self.domain(level, box), [b - a for a, b in box])

    def values(self, level, box):
        """The patch's value for each voxel of `box` (0 outside the patch)."""
        if self._same_grid(level):
            return self._same_grid_values(box)
        index, inside = self._mask_index(level, box)
        out = np.zeros(inside.shape, dtype=self.dtype)
        out[inside] = self.array()[tuple(index[inside].T)]
        return out

    def _same_grid_values(self, box):
        out = np.zeros([b - a for a, b in box], dtype=self.dtype)
        inter = intersect(box, self.box)
        if inter is not None:
            out[tuple(slice(a - o, b - o) for (a, b), (o, _) in zip(inter, box))] = \
                self.array()[tuple(slice(a - o, b - o) for (a, b), (o, _) in zip(inter, self.box))]
        return out


@dataclass(frozen=True)
class Clear(Operation):
    """The segment's voxels become background everywhere (the segment was removed)."""

    kind = "clear"
    mode = "erase"

    def region(self, level, box, intensities=None, labels=None):
        return np.ones([b - a for a, b in box], dtype=bool)


OPERATIONS = {cls.kind: cls for cls in (Brush, Polygon, Threshold, Fill, Mask, Replace, Clear)}


def operation_from_json(data):
    """The operation a `to_json` dict describes."""
    data = dict(data)
    kind = data.pop("kind")
    if kind not in OPERATIONS:
        raise ValueError(f"unknown operation kind {kind!r}")
    data["masking"] = Masking(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in data["masking"].items()})
    if kind in ("mask", "replace"):
        data["bits"] = base64.b64decode(data["bits"])
    for name in ("points", "vertices", "box_ras", "box", "ijk_to_ras"):
        if isinstance(data.get(name), list):
            data[name] = tuple(tuple(v) if isinstance(v, list) else v for v in data[name])
    return OPERATIONS[kind](**data)
