"""What a 3D view needs from a pyramid: the region the camera sees, at the finest level that fits.

Pure numpy: a camera is described by what Slicer's vtkMRMLCameraNode holds
(position, focal point, view up, view angle or parallel scale) and the
view's size in pixels; the MRML layer turns the plan into a volume node that
Slicer volume-renders.

- Visible region: view frustum ∩ volume ∩ cropping ROI. The volume (or the
  ROI's part of it) is cut into a lattice of up to LATTICE³ cells on level 0's
  voxel grid; a cell is kept when its centre lies within half the cell's
  diagonal of the inside of every side plane of the frustum. That is
  conservative (a cell the frustum touches is always kept) and costs a few
  thousand dot products. The near and far planes are left out: Slicer sets
  the clipping range from what it renders, so they never hide the volume.
- Level by screen: the coarsest level whose voxels are no larger than a
  screen pixel at the focal point (perspective: 2·d·tan(angle/2)/height, d
  the focal distance; parallel: 2·parallelScale/height), moved by `quality`
  (-1 one level finer, +1 one coarser), then coarser until the region fits
  every limit: each side within the 3D texture side, its voxels within the
  GPU voxel budget, its chunks within the memory allowed (they must all be
  in the chunk cache at once to compose the region).
- Margin: the region reaches MARGIN of its size beyond what is visible (as
  far as the limits allow), so a small rotation or pan stays inside it.
  What a larger move brings into view is covered by the coarse whole volume
  (`whole_volume_plan`), shown until the new region is complete.
"""

from dataclasses import dataclass, field

import numpy as np

from .level_choice import choose_level
from .ordering import BACKGROUND
from .slice_planner import box_on_level

LATTICE = 32
MARGIN = 0.125


@dataclass(frozen=True)
class Camera:
    position: tuple
    focal_point: tuple
    view_up: tuple
    view_angle_deg: float = 30.0
    parallel: bool = False
    parallel_scale: float = 1.0
    size: tuple = (400, 400)  # viewport width, height in pixels

    @property
    def aspect(self):
        return self.size[0] / max(1, self.size[1])

    def basis(self):
        """Unit vectors: direction of projection, screen right, screen up."""
        d = np.asarray(self.focal_point, float) - np.asarray(self.position, float)
        d /= np.linalg.norm(d)
        right = np.cross(d, np.asarray(self.view_up, float))
        right /= np.linalg.norm(right)
        return d, right, np.cross(right, d)

    def pixel_size_mm(self):
        """Size of one screen pixel at the focal point (mm)."""
        height = max(1, self.size[1])
        if self.parallel:
            return 2.0 * self.parallel_scale / height
        distance = np.linalg.norm(np.asarray(self.focal_point, float) - np.asarray(self.position, float))
        return 2.0 * distance * np.tan(np.radians(self.view_angle_deg) / 2.0) / height

    def side_planes(self):
        """(normals (4, 3), offsets (4,)): a point X is inside the frustum's sides when normals @ X + offsets >= 0."""
        d, right, up = self.basis()
        if self.parallel:
            f = np.asarray(self.focal_point, float)
            half_h, half_w = self.parallel_scale, self.parallel_scale * self.aspect
            normals = np.array([right, -right, up, -up])
            offsets = np.array([half_w, half_w, half_h, half_h]) - normals @ f
            return normals, offsets
        p = np.asarray(self.position, float)
        tan_h = np.tan(np.radians(self.view_angle_deg) / 2.0)
        tan_w = tan_h * self.aspect
        # Inside: (X - P)·right <= tan_w (X - P)·d, and so on for each side; normals made unit length.
        normals = np.array([d * tan_w - right, d * tan_w + right, d * tan_h - up, d * tan_h + up])
        normals /= np.linalg.norm(normals, axis=1)[:, None]
        return normals, -(normals @ p)


@dataclass(frozen=True)
class Limits:
    texture_side: int = 4096  # largest 3D texture side (voxels)
    voxel_budget: int = 256 * 2**20  # voxels the GPU may hold for this view
    memory_bytes: int = 1 << 30  # decoded chunk bytes the region may take in the cache
    quality: int = 0  # level offset from the screen-matched one: -1 finer, +1 coarser


@dataclass
class VolumePlan:
    level: int
    box: tuple  # region on the level's voxel grid ((z0, z1), (y0, y1), (x0, x1))
    proxy_ijk_to_ras: np.ndarray
    visible_box0: tuple  # the visible region on level 0's grid (before the margin)
    screen_level: int  # the level the screen asks for (before quality and limits)
    limited_by: str  # "screen", or the limit that made the level coarser: texture, voxels, memory
    kind: str = "aligned"  # what Composition paints: the level's own voxel grid
    chunks: dict = field(default_factory=dict)  # level -> chunk coordinates (only the plan's level)
    needs: list = field(default_factory=list)
    region0: tuple = None  # the region on level 0's grid

    @property
    def shape(self):
        return tuple(b - a for a, b in self.box)

    @property
    def empty(self):
        return any(n <= 0 for n in self.shape)

    @property
    def voxels(self):
        return int(np.prod(self.shape))

    def covers(self, other):
        """True if this plan's region holds every voxel of `other`'s visible region (on level 0)."""
        return all(a <= c and d <= b for (a, b), (c, d) in zip(self.region0, other.visible_box0))


def roi_box0(image, roi_ras):
    """The level-0 voxels whose centres lie in an RAS box (low, high corners); None if it misses the volume."""
    level0 = image.levels[0]
    low, high = np.minimum(*np.asarray(roi_ras, float)), np.maximum(*np.asarray(roi_ras, float))
    corners = np.array([[x, y, z, 1.0] for x in (low[0], high[0]) for y in (low[1], high[1]) for z in (low[2], high[2])])
    ijk = (level0.ras_to_ijk @ corners.T)[:3]
    lo = np.ceil(ijk.min(axis=1) - 1e-9).astype(int)
    hi = np.floor(ijk.max(axis=1) + 1e-9).astype(int) + 1
    box = tuple((max(0, int(lo[a])), min(n, int(hi[a]))) for a, n in zip((2, 1, 0), level0.volume_shape))
    return None if any(b <= a for a, b in box) else box


def visible_box0(image, camera, within0):
    """The part of the level-0 box `within0` the camera's frustum reaches (lattice test); None if none."""
    level0 = image.levels[0]
    normals, offsets = camera.side_planes()
    edges = [np.unique(np.linspace(a, b, min(LATTICE, b - a) + 1).round().astype(int)) for a, b in within0]
    centres = [(e[:-1] + e[1:] - 1) / 2.0 for e in edges]  # cell centres, voxel index (z, y, x)
    grid = np.stack(np.meshgrid(*centres, indexing="ij"), -1).reshape(-1, 3)
    ijk = np.c_[grid[:, ::-1], np.ones(len(grid))]
    ras = (level0.ijk_to_ras @ ijk.T)[:3].T
    # Half of the largest cell's diagonal, in mm.
    cell = np.array([max(np.diff(e)) for e in edges][::-1], dtype=float)  # x, y, z voxels
    half_diagonal = 0.5 * np.linalg.norm(level0.ijk_to_ras[:3, :3] @ cell)
    inside = np.all(ras @ normals.T + offsets >= -half_diagonal, axis=1)
    if not inside.any():
        return None
    index = np.stack(np.meshgrid(*[np.arange(len(c)) for c in centres], indexing="ij"), -1).reshape(-1, 3)[inside]
    lo, hi = index.min(axis=0), index.max(axis=0)
    return tuple((int(e[a]), int(e[b + 1])) for e, a, b in zip(edges, lo, hi))


def _with_margin(box, within, fraction):
    out = []
    for (a, b), (lo, hi) in zip(box, within):
        extra = int(np.ceil((b - a) * fraction))
        out.append((max(lo, a - extra), min(hi, b + extra)))
    return tuple(out)


def _fits(image, level_index, box, limits):
    """'' if a region of the level fits every limit, else the first limit it breaks."""
    level = image.levels[level_index]
    shape = [b - a for a, b in box]
    if max(shape) > limits.texture_side:
        return "texture"
    if int(np.prod(shape)) > limits.voxel_budget:
        return "voxels"
    if len(level.chunks_in_box(box)) * level.chunk_nbytes > limits.memory_bytes:
        return "memory"
    return ""


def _clip_to_texture(box, side):
    """Keep at most `side` voxels per axis around the box's centre (the coarsest level too large: rare)."""
    out = []
    for a, b in box:
        if b - a > side:
            centre = (a + b) // 2
            a, b = centre - side // 2, centre - side // 2 + side
        out.append((a, b))
    return tuple(out)


def _proxy_matrix(level, box):
    start = np.array([box[2][0], box[1][0], box[0][0], 1.0])
    proxy = level.ijk_to_ras.copy()
    proxy[:3, 3] = (level.ijk_to_ras @ start)[:3]
    return proxy


def _distances(level, coords, centre_ijk):
    if not coords:
        return np.zeros(0)
    shape = np.array(level.chunk_shape)[::-1]
    centres = (np.array([c[::-1] for c in coords], dtype=float) + 0.5) * shape
    return np.linalg.norm(centres - centre_ijk, axis=1)


def _finish(image, level_index, box, visible0, screen, limited_by, camera, tier):
    level = image.levels[level_index]
    plan = VolumePlan(level_index, box, _proxy_matrix(level, box), visible0, screen, limited_by)
    plan.region0 = box_on_level(image, level_index, box, 0) if level_index else box
    if not plan.empty:
        coords = level.chunks_in_box(box)
        plan.chunks[level_index] = coords
        focal = level.ras_to_ijk @ np.append(np.asarray(camera.focal_point, float), 1.0) if camera else None
        distances = _distances(level, coords, focal[:3]) if focal is not None else np.zeros(len(coords))
        plan.needs = [(tier, level_index, float(d), c) for c, d in zip(coords, distances)]
    return plan


def whole_volume_plan(image, limits=Limits(), tier=BACKGROUND):
    """The whole volume (or as much as the texture allows) at the coarsest level: what a 3D view shows first."""
    coarsest = len(image.levels) - 1
    level = image.levels[coarsest]
    box = _clip_to_texture(tuple((0, n) for n in level.volume_shape), limits.texture_side)
    whole0 = tuple((0, n) for n in image.levels[0].volume_shape)
    return _finish(image, coarsest, box, whole0, coarsest, "screen", None, tier)


def plan_volume(image, camera, roi_ras=None, limits=Limits(), tier=BACKGROUND):
    """Plan a 3D view: the visible region (with margin) at the finest level that fits; None if nothing of the
    volume is in view."""
    level0 = image.levels[0]
    within = tuple((0, n) for n in level0.volume_shape)
    if roi_ras is not None:
        within = roi_box0(image, roi_ras)
        if within is None:
            return None
    visible0 = visible_box0(image, camera, within)
    if visible0 is None:
        return None
    coarsest = len(image.levels) - 1
    screen = choose_level(image, camera.pixel_size_mm())
    start = int(np.clip(screen + limits.quality, 0, coarsest))
    wanted0 = _with_margin(visible0, within, MARGIN)
    limited_by = "screen" if limits.quality == 0 else "quality"
    for level_index in range(start, coarsest + 1):
        for box0 in (wanted0, visible0):  # with the margin if it fits, else without
            box = box_on_level(image, 0, box0, level_index)
            broken = _fits(image, level_index, box, limits)
            if not broken:
                return _finish(image, level_index, box, visible0, screen, limited_by, camera, tier)
        limited_by = broken
    box = _clip_to_texture(box_on_level(image, 0, visible0, coarsest), limits.texture_side)
    return _finish(image, coarsest, box, visible0, screen, limited_by, camera, tier)
