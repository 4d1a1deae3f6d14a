"""Which region and level a 3D view needs, for given cameras (pure numpy: no VTK, no MRML)."""

import numpy as np
import pytest

import bigvolume
from bigvolume.streaming.ordering import BACKGROUND
from bigvolume.streaming.volume_planner import Camera, Limits, plan_volume, visible_box0, whole_volume_plan

SHAPE = (64, 96, 128)


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    rng = np.random.default_rng(0)
    voxels = rng.integers(0, 1000, size=SHAPE, dtype=np.uint16)
    path = tmp_path_factory.mktemp("planner") / "img.ome.zarr"
    geometry = bigvolume.VolumeGeometry(spacing=(0.5, 0.5, 0.8), origin=(3.0, -4.0, 5.0))
    bigvolume.write_pyramid(voxels, path, geometry, coarsest=16, chunks=(16, 16, 16))
    return bigvolume.open_image(path)


def looking_at(image, target, distance, direction=(0.0, 1.0, 0.0), size=(400, 300), angle=30.0, parallel_scale=None):
    direction = np.asarray(direction, float) / np.linalg.norm(direction)
    target = np.asarray(target, float)
    up = (0.0, 0.0, 1.0) if abs(direction[2]) < 0.9 else (0.0, 1.0, 0.0)
    return Camera(position=tuple(target + direction * distance), focal_point=tuple(target), view_up=up,
                  view_angle_deg=angle, parallel=parallel_scale is not None,
                  parallel_scale=parallel_scale or 1.0, size=size)


def centre(image):
    lo, hi = image.bounds_ras()
    return (lo + hi) / 2


def test_pixel_size_at_the_focal_point():
    cam = Camera((0, 100, 0), (0, 0, 0), (0, 0, 1), view_angle_deg=30, size=(400, 300))
    assert cam.pixel_size_mm() == pytest.approx(2 * 100 * np.tan(np.radians(15)) / 300)
    flat = Camera((0, 100, 0), (0, 0, 0), (0, 0, 1), parallel=True, parallel_scale=45.0, size=(400, 300))
    assert flat.pixel_size_mm() == pytest.approx(2 * 45.0 / 300)


def test_zoomed_out_shows_the_whole_volume_at_the_level_the_screen_matches(image):
    cam = looking_at(image, centre(image), 2000.0, size=(200, 150))
    plan = plan_volume(image, cam)
    assert plan.level == len(image.levels) - 1 and plan.limited_by == "screen"
    assert plan.region0 == tuple((0, n) for n in SHAPE)
    assert all(tier == BACKGROUND for tier, *_ in plan.needs)
    assert {c for *_, c in plan.needs} == set(image.levels[plan.level].all_chunks())


def test_zoomed_into_a_corner_reads_that_corner_at_a_finer_level(image):
    level0 = image.levels[0]
    corner = level0.ijk_to_ras @ np.array([8, 8, 8, 1.0])
    cam = looking_at(image, corner[:3], 20.0, size=(400, 300), angle=20.0)
    plan = plan_volume(image, cam)
    assert plan.level == 0
    assert plan.voxels < 0.25 * np.prod(SHAPE)
    region = plan.region0
    assert all(a <= c <= b for (a, b), c in zip(region, (8, 8, 8)))
    # The chunks are those of the region only.
    assert set(plan.chunks[0]) == set(level0.chunks_in_box(plan.box))


def test_a_cropping_roi_limits_the_region_to_its_chunks(image):
    level0 = image.levels[0]
    low = level0.ijk_to_ras @ np.array([10, 20, 5, 1.0])
    high = level0.ijk_to_ras @ np.array([40, 50, 30, 1.0])
    cam = looking_at(image, centre(image), 300.0)
    plan = plan_volume(image, cam, roi_ras=(tuple(low[:3]), tuple(high[:3])))
    (z0, z1), (y0, y1), (x0, x1) = plan.region0
    assert z0 >= 5 - 1 and z1 <= 31 + 1 and y0 >= 20 - 1 and y1 <= 51 + 1 and x0 >= 10 - 1 and x1 <= 41 + 1
    lvl = image.levels[plan.level]
    roi_box = ((5, 31), (20, 51), (10, 41))
    from bigvolume.streaming.slice_planner import box_on_level
    allowed = set(lvl.chunks_in_box(box_on_level(image, 0, roi_box, plan.level)))
    assert set(plan.chunks[plan.level]) <= allowed
    assert plan_volume(image, cam, roi_ras=((1e4, 1e4, 1e4), (1e4 + 1, 1e4 + 1, 1e4 + 1))) is None


@pytest.mark.parametrize("limit", ["texture", "voxels", "memory"])
def test_a_region_too_large_for_a_limit_goes_coarser_and_never_exceeds_it(image, limit):
    cam = looking_at(image, centre(image), 150.0, size=(1600, 1200))
    free = plan_volume(image, cam)
    assert free.level == 0
    limits = {"texture": Limits(texture_side=70), "voxels": Limits(voxel_budget=100_000),
              "memory": Limits(memory_bytes=100 * 16**3 * 2)}[limit]
    plan = plan_volume(image, cam, limits=limits)
    assert plan.level > 0 and plan.limited_by == limit
    assert max(plan.shape) <= limits.texture_side
    assert plan.voxels <= limits.voxel_budget
    assert len(plan.chunks[plan.level]) * image.levels[plan.level].chunk_nbytes <= limits.memory_bytes


def test_quality_moves_the_level_from_the_screen_matched_one(image):
    pixel = 1.2 * max(image.levels[1].voxel_size_mm)  # level 1 matches the screen
    cam = looking_at(image, centre(image), pixel * 300 / (2 * np.tan(np.radians(15))), size=(400, 300))
    base = plan_volume(image, cam)
    assert base.level == 1 and len(image.levels) > 2
    assert plan_volume(image, cam, limits=Limits(quality=1)).level == base.level + 1
    assert plan_volume(image, cam, limits=Limits(quality=-1)).level == base.level - 1


def test_whole_volume_plan_is_the_coarsest_level(image):
    plan = whole_volume_plan(image)
    coarsest = image.levels[-1]
    assert plan.level == coarsest.index and plan.shape == tuple(coarsest.volume_shape)


@pytest.mark.parametrize("seed", range(6))
def test_every_voxel_the_camera_sees_is_in_the_visible_region(image, seed):
    """Conservative: voxel centres projecting inside the viewport (in front of the camera) lie in the region."""
    rng = np.random.default_rng(seed)
    level0 = image.levels[0]
    target = level0.ijk_to_ras @ np.append(rng.uniform(0, 1, 3) * np.array(SHAPE[::-1]), 1.0)
    direction = rng.normal(size=3)
    parallel = bool(seed % 2)
    cam = looking_at(image, target[:3], float(rng.uniform(15, 120)), direction=direction, size=(320, 240),
                     angle=float(rng.uniform(15, 50)), parallel_scale=float(rng.uniform(5, 40)) if parallel else None)
    within = tuple((0, n) for n in SHAPE)
    box = visible_box0(image, cam, within)
    k, j, i = np.meshgrid(*[np.arange(0, n, 2) for n in SHAPE], indexing="ij")
    ijk = np.stack([i.ravel(), j.ravel(), k.ravel(), np.ones(i.size)])
    ras = (level0.ijk_to_ras @ ijk)[:3].T
    d, right, up = cam.basis()
    rel = ras - np.asarray(cam.position)
    depth = rel @ d
    if parallel:
        x, y = (ras - np.asarray(cam.focal_point)) @ right, (ras - np.asarray(cam.focal_point)) @ up
        inside = (np.abs(x) <= cam.parallel_scale * cam.aspect) & (np.abs(y) <= cam.parallel_scale)
    else:
        tan = np.tan(np.radians(cam.view_angle_deg) / 2)
        inside = (depth > 0) & (np.abs(rel @ right) <= tan * cam.aspect * depth) & (np.abs(rel @ up) <= tan * depth)
    seen = np.stack([k.ravel(), j.ravel(), i.ravel()], axis=1)[inside]
    if box is None:
        assert not len(seen)
        return
    for axis, (a, b) in enumerate(box):
        assert seen[:, axis].min() >= a and seen[:, axis].max() < b if len(seen) else True
