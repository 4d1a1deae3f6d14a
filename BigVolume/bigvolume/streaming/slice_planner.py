"""What a slice view needs from a pyramid, and how to compose what has arrived.

Pure numpy: a view is described by its XYToRAS matrix and pixel dimensions
(what Slicer's vtkMRMLSliceNode holds); the MRML layer turns the result into
a volume node. Two kinds of view:

- Axis-aligned (the plane's in-plane axes run along the level's voxel axes,
  e.g. Red/Yellow/Green on an unrotated volume): the view gets a proxy box
  on the level's own voxel grid, the visible rectangle plus one voxel of
  margin and, at level 0, the two planes around the slice, so Slicer's
  reslice interpolates it exactly as it would interpolate the whole volume
  (coarser levels: the nearest plane).
- Oblique: the proxy is the view's own pixel grid (one voxel per screen
  pixel, one slice), filled by nearest-neighbour sampling, and only the
  chunks the plane passes through are fetched.

Coarser levels fill whatever the chosen level has not delivered yet, mapped
through the levels' exact IJK->RAS matrices, so nothing jumps by half a voxel
when the fine data arrives. Only the cheap ones are fetched for that
(fill_levels): the coarsest always, the next finer ones when they cost a
small fraction of the view's own chunks.
"""

from dataclasses import dataclass, field

import numpy as np

from .level_choice import choose_level, pixel_size_mm
from .ordering import NOW, PREFETCH, VISIBLE

_ALIGN_TOLERANCE = 1e-6
FILL_COST = 8  # see fill_levels
FILL_CHEAP = 4
FIRST_FRAME_MAX_CHUNKS = 8  # a first frame needing more coarsest chunks (a store with a large top level) waits its turn


@dataclass
class SlicePlan:
    level: int
    kind: str  # "aligned" or "oblique"
    box: tuple  # proxy box on the level grid ((z0, z1), (y0, y1), (x0, x1)); oblique: the XY grid (1, h, w)
    proxy_ijk_to_ras: np.ndarray
    xy_to_ras: np.ndarray
    chunks: dict = field(default_factory=dict)  # level -> list of chunk coordinates (z, y, x) the view needs
    needs: list = field(default_factory=list)  # (tier, level, distance, coords) for the ordering policy

    @property
    def shape(self):
        return tuple(b - a for a, b in self.box)

    @property
    def empty(self):
        return any(n <= 0 for n in self.shape)


def _aligned_axes(xy_to_ijk):
    """(in-plane IJK axis of screen x, of screen y, normal IJK axis) if the plane is axis-aligned, else None."""
    hot = []
    for column in range(3):
        vector = xy_to_ijk[:3, column]
        big = np.abs(vector) > _ALIGN_TOLERANCE * np.abs(vector).max()
        if big.sum() != 1:
            return None
        hot.append(int(np.argmax(big)))
    return tuple(hot) if len(set(hot)) == 3 else None


def _clip_box(box_zyx, shape_zyx):
    """Box clipped to the volume; empty boxes keep stop == start."""
    clipped = []
    for (a, b), n in zip(box_zyx, shape_zyx):
        a = int(min(max(0, a), n))
        clipped.append((a, int(max(a, min(n, b)))))
    return tuple(clipped)


def box_on_level(image, source_level, box_zyx, target_level):
    """The box of `target_level` voxels covering the same physical region as `box_zyx` of `source_level`."""
    src, dst = image.levels[source_level], image.levels[target_level]
    mapping = dst.ras_to_ijk @ src.ijk_to_ras
    (z0, z1), (y0, y1), (x0, x1) = box_zyx
    corners = np.array([[x, y, z, 1.0] for x in (x0 - 0.5, x1 - 0.5) for y in (y0 - 0.5, y1 - 0.5) for z in (z0 - 0.5, z1 - 0.5)])
    ijk = (mapping @ corners.T)[:3]
    lo = np.floor(ijk.min(axis=1) + 0.5).astype(int)
    hi = np.floor(ijk.max(axis=1) + 0.5).astype(int) + 1
    return _clip_box(((lo[2], hi[2]), (lo[1], hi[1]), (lo[0], hi[0])), dst.volume_shape)


def _distances(level, coords, centre_ijk):
    """Distance (voxels) from each chunk's centre to the view centre."""
    if not coords:
        return np.zeros(0)
    shape = np.array(level.chunk_shape)[::-1]  # x, y, z
    centres = (np.array([c[::-1] for c in coords], dtype=float) + 0.5) * shape
    return np.linalg.norm(centres - centre_ijk, axis=1)


def plan_slice(image, xy_to_ras, dims, motion_ras=None, first_frame=False):
    """Plan one slice view: level, proxy box or grid, chunks needed at every level, and the needs to fetch.

    xy_to_ras: the slice node's XYToRAS (4x4); dims: (width, height) in pixels.
    motion_ras: how the view's centre moved since the last plan (RAS mm), to prefetch ahead of it.
    first_frame: the view shows nothing yet; its few coarsest chunks are needed NOW.
    """
    xy_to_ras = np.asarray(xy_to_ras, dtype=float)
    width, height = int(dims[0]), int(dims[1])
    pixel = pixel_size_mm(xy_to_ras)
    probe = _aligned_axes(image.levels[0].ras_to_ijk @ xy_to_ras)
    in_plane = (probe[0], probe[1]) if probe else (0, 1, 2)
    level_index = choose_level(image, pixel, in_plane)
    level = image.levels[level_index]
    xy_to_ijk = level.ras_to_ijk @ xy_to_ras
    axes = _aligned_axes(xy_to_ijk)
    centre_xy = np.array([(width - 1) / 2.0, (height - 1) / 2.0, 0.0, 1.0])
    if axes is not None:
        plan = _plan_aligned(image, level_index, xy_to_ijk, width, height, axes)
    else:
        plan = _plan_oblique(image, level_index, xy_to_ras, width, height)
    plan.xy_to_ras = xy_to_ras
    _add_needs(image, plan, centre_xy, motion_ras, first_frame)
    return plan


def _plan_aligned(image, level_index, xy_to_ijk, width, height, axes):
    level = image.levels[level_index]
    corners = np.array([[x, y, 0.0, 1.0] for x in (0, width - 1) for y in (0, height - 1)])
    ijk = (xy_to_ijk @ corners.T)[:3]
    lo = np.floor(ijk.min(axis=1)).astype(int)
    hi = np.floor(ijk.max(axis=1)).astype(int) + 2  # the next voxel, for linear interpolation
    normal = axes[2]
    position = ijk[normal, 0]
    if abs(position - round(position)) < 1e-6 or level_index > 0:
        # One plane: the plane lies on voxel centres, or this is a coarser level, where the nearest plane is
        # as good as interpolating two (and halves the chunks read when they straddle a chunk boundary).
        lo[normal] = int(np.floor(position + 0.5))
        hi[normal] = lo[normal] + 1
    box = _clip_box(((lo[2], hi[2]), (lo[1], hi[1]), (lo[0], hi[0])), level.volume_shape)
    start_ijk = np.array([box[2][0], box[1][0], box[0][0]], dtype=float)
    proxy = level.ijk_to_ras.copy()
    proxy[:3, 3] = (level.ijk_to_ras @ np.append(start_ijk, 1.0))[:3]
    plan = SlicePlan(level_index, "aligned", box, proxy, None)
    if not plan.empty:
        for coarser in range(level_index, len(image.levels)):
            plan.chunks[coarser] = image.levels[coarser].chunks_in_box(box_on_level(image, level_index, box, coarser))
    return plan


def _oblique_chunks(level, xy_to_ijk, width, height):
    """Chunks of `level` whose voxels are the nearest voxel of some pixel of the view."""
    ijk_to_xy = np.linalg.inv(xy_to_ijk)
    corners = np.array([[x, y, 0.0, 1.0] for x in (-0.5, width - 0.5) for y in (-0.5, height - 0.5)])
    ijk = (xy_to_ijk @ corners.T)[:3]
    shape_xyz = np.array(level.volume_shape[::-1])
    chunk_xyz = np.array(level.chunk_shape[::-1])
    lo = np.clip(np.floor(ijk.min(axis=1) + 0.5), 0, shape_xyz - 1).astype(int) // chunk_xyz
    hi = np.clip(np.floor(ijk.max(axis=1) + 0.5), 0, shape_xyz - 1).astype(int) // chunk_xyz + 1
    grid = np.stack(np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi)], indexing="ij"), -1).reshape(-1, 3)
    if not len(grid):
        return []
    # Chunk c holds the nearest voxel of plane points inside [c0 - 0.5, c1 - 0.5] (clipped to the volume).
    start = grid * chunk_xyz - 0.5
    stop = np.minimum((grid + 1) * chunk_xyz, shape_xyz) - 0.5
    offsets = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], dtype=float)
    corner_ijk = start[:, None, :] + offsets[None] * (stop - start)[:, None, :]
    corner_xy = np.einsum("ab,ncb->nca", ijk_to_xy[:3, :3], corner_ijk) + ijk_to_xy[:3, 3]
    crosses = (corner_xy[..., 2].min(axis=1) <= 0) & (corner_xy[..., 2].max(axis=1) >= 0)
    inside = ((corner_xy[..., 0].max(axis=1) >= -0.5) & (corner_xy[..., 0].min(axis=1) <= width - 0.5)
              & (corner_xy[..., 1].max(axis=1) >= -0.5) & (corner_xy[..., 1].min(axis=1) <= height - 0.5))
    return [tuple(int(v) for v in cell[::-1]) for cell in grid[crosses & inside]]


def _plan_oblique(image, level_index, xy_to_ras, width, height):
    plan = SlicePlan(level_index, "oblique", ((0, 1), (0, height), (0, width)), xy_to_ras.copy(), None)
    for coarser in range(level_index, len(image.levels)):
        level = image.levels[coarser]
        plan.chunks[coarser] = _oblique_chunks(level, level.ras_to_ijk @ xy_to_ras, width, height)
    return plan


def fill_levels(image, plan):
    """The coarser levels worth fetching to fill the view until its own level arrives.

    Each coarser level of a slice costs about a quarter of the chunks of the next
    finer one, and every chunk is decoded whole: fetching them all adds a third
    to the reads before the view is complete. A coarser level is fetched only if
    it costs at most 1/FILL_COST of the view's own chunks, or a handful of
    chunks (FILL_CHEAP); the coarsest level always is (no view is ever empty).
    Whatever coarser chunks are cached anyway still fill the view.
    """
    own = len(plan.chunks.get(plan.level, ()))
    coarsest = len(image.levels) - 1
    return [level for level, chunks in plan.chunks.items()
            if level > plan.level and (level == coarsest or len(chunks) <= FILL_CHEAP or len(chunks) * FILL_COST <= own)]


def _add_needs(image, plan, centre_xy, motion_ras, first_frame):
    needs = []
    fetched = {plan.level, *fill_levels(image, plan)}
    coarsest = len(image.levels) - 1
    for level_index, coords in plan.chunks.items():
        if level_index not in fetched:
            continue
        level = image.levels[level_index]
        tier = NOW if first_frame and level_index == coarsest and len(coords) <= FIRST_FRAME_MAX_CHUNKS else VISIBLE
        centre_ijk = (level.ras_to_ijk @ plan.xy_to_ras @ centre_xy)[:3]
        needs += [(tier, level_index, float(d), c) for c, d in zip(coords, _distances(level, coords, centre_ijk))]
    if motion_ras is not None and plan.kind == "aligned" and not plan.empty and np.linalg.norm(motion_ras) > 0:
        level = image.levels[plan.level]
        step_ijk = level.ras_to_ijk[:3, :3] @ np.asarray(motion_ras, dtype=float)
        chunk_xyz = np.array(level.chunk_shape[::-1])
        shift = np.where(np.abs(step_ijk) > 1e-9, np.sign(step_ijk) * chunk_xyz, 0).astype(int)[::-1]  # z, y, x
        ahead = _clip_box(tuple((a + s, b + s) for (a, b), s in zip(plan.box, shift)), level.volume_shape)
        visible = set(plan.chunks[plan.level])
        centre_ijk = (level.ras_to_ijk @ plan.xy_to_ras @ centre_xy)[:3]
        extra = [c for c in level.chunks_in_box(ahead) if c not in visible]
        needs += [(PREFETCH, plan.level, float(d), c) for c, d in zip(extra, _distances(level, extra, centre_ijk))]
    plan.needs = needs


def coarsest_level_needs(image):
    """Every chunk of the coarsest level, prefetched after what the views show, so no view is ever empty."""
    level = image.levels[-1]
    return [(PREFETCH, level.index, 0.0, c) for c in level.all_chunks()]
