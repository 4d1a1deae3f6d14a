"""Streamed 3D views, rendered offscreen by Slicer's own volume rendering (slicer-core, EGL) and compared with
Slicer volume-rendering an ordinary volume node that holds the same level's region."""

import threading

import numpy as np
import pytest
import vtk

import bigvolume
from bigvolume.streaming.readers import ZarrChunkReader
from bigvolume.tools.synthetic import SyntheticRockCore
from BigVolumeLib.offscreen.views import OffscreenScene, offscreen_3d_works
from BigVolumeLib.streaming.volume_streamer import VolumeStreamer, camera_of
from streaming_helpers import StreamedImage

SHAPE = (96, 128, 160)
SIZE = (200, 150)

pytestmark = pytest.mark.skipif(not offscreen_3d_works(), reason="no offscreen OpenGL (EGL or OSMesa) on this machine")


@pytest.fixture(scope="module")
def pyramid(tmp_path_factory):
    voxels = SyntheticRockCore(SHAPE, seed=2)[0: SHAPE[0]]
    path = tmp_path_factory.mktemp("stream3d") / "core.ome.zarr"
    geometry = bigvolume.VolumeGeometry(spacing=(0.5, 0.5, 0.8), origin=(3.0, -4.0, 5.0))
    bigvolume.write_pyramid(voxels, path, geometry, coarsest=16, chunks=(16, 16, 16))
    return bigvolume.open_image(path)


class GatedReader(ZarrChunkReader):
    """Records every chunk read; holds back chunks of levels finer than `open_from` until released."""

    def __init__(self, image, open_from=None):
        super().__init__(image)
        self.reads = []
        self.open_from = open_from
        self.released = threading.Event()
        self._lock = threading.Lock()

    def read_chunks(self, level_index, indices):
        if self.open_from is not None and level_index < self.open_from:
            self.released.wait(30)
        with self._lock:
            self.reads.extend((level_index, tuple(i)) for i in indices)
        return super().read_chunks(level_index, indices)


def _setup(pyramid, views=("1",), reader=None, cache_bytes=None, slice_views=()):
    scene = OffscreenScene()
    nodes = {name: scene.add_3d_view(name, SIZE) for name in views}
    for name in slice_views:
        scene.add_view(name, "Axial", (160, 120))
    for node in nodes.values():  # only the volume in the pictures
        node.SetBoxVisible(False)
        node.SetAxisLabelsVisible(False)
    streaming = StreamedImage(scene.scene, pyramid, reader=reader(pyramid) if reader else None, cache_bytes=cache_bytes)
    streaming.streaming.view_size = scene.view_size
    streaming.streaming.set_volume_options(settle_seconds=0.0)
    return scene, nodes, streaming


def _streamer(streaming, node):
    streamer = streaming.streamers[node.GetID()]
    assert isinstance(streamer, VolumeStreamer)
    return streamer


def _settle(streaming, streamer, timeout=30.0):
    for _ in range(int(timeout / 0.01)):
        streaming.update()
        if streamer.complete and not streaming.engine.in_flight and not streaming.engine.outstanding:
            streaming.update()
            return
        threading.Event().wait(0.01)
    raise AssertionError(f"3D view did not settle: {streamer.describe()}")


def _look(scene, node, target, distance, direction=(0.3, 1.0, 0.4)):
    camera = camera_of(scene.scene, node)
    direction = np.asarray(direction, float) / np.linalg.norm(direction)
    camera.SetFocalPoint(*target)
    camera.SetPosition(*(np.asarray(target) + direction * distance))
    camera.SetViewUp(0.0, 0.0, 1.0)
    camera.ResetClippingRange()


def _reference_render(scene, name, streamer):
    """Slicer rendering an ordinary volume node that holds the streamed region (same voxels, place, properties)."""
    plan = streamer.shown_plan
    voxels = streamer.image.read(plan.level, plan.box)
    reference = scene.add_volume(voxels, plan.proxy_ijk_to_ras, streamer.display.window_level, name="reference")
    node = scene.volume_rendering.CreateDefaultVolumeRenderingNodes(reference)
    node.SetViewNodeIDs([streamer.view_node.GetID()])
    node.GetVolumePropertyNode().GetVolumeProperty().DeepCopy(streamer.property_node.GetVolumeProperty())
    node.SetVisibility(True)
    streamer.render_node.SetVisibility(False)
    try:
        return scene.render_3d(name)
    finally:
        node.SetVisibility(False)
        streamer.render_node.SetVisibility(True)
        scene.scene.RemoveNode(reference)


def _shows_volume(rgba, background):
    """Fraction of pixels that differ from the empty view."""
    return float(np.mean(np.any(rgba[..., :3] != background[..., :3], axis=-1)))


def test_open_renders_the_whole_volume_coarse_at_once_and_resets_the_camera(pyramid):
    scene, nodes, streaming = _setup(pyramid, reader=lambda im: GatedReader(im, open_from=len(im.levels) - 1))
    streamer = _streamer(streaming, nodes["1"])
    empty = scene.render_3d("1")
    for _ in range(300):
        streaming.update()
        if streamer.showing:
            break
        threading.Event().wait(0.01)
    assert streamer.shown_plan.level == len(pyramid.levels) - 1  # the coarse whole volume, finer levels held back
    assert streamer.shown_plan.region0 == tuple((0, n) for n in SHAPE)
    first = scene.render_3d("1")
    assert _shows_volume(first, empty) > 0.1
    # The camera looks at the volume's centre.
    lo, hi = pyramid.bounds_ras(0, edges=True)
    np.testing.assert_allclose(camera_of(scene.scene, nodes["1"]).GetFocalPoint(), (lo + hi) / 2)
    streaming.reader.released.set()
    _settle(streaming, streamer)
    assert streamer.shown_plan.level < len(pyramid.levels) - 1
    streaming.close()


@pytest.mark.parametrize("zoom", ["whole", "corner"])
def test_streamed_rendering_equals_slicer_rendering_the_same_region(pyramid, zoom):
    scene, nodes, streaming = _setup(pyramid)
    node = nodes["1"]
    streamer = _streamer(streaming, node)
    level0 = pyramid.levels[0]
    if zoom == "corner":
        corner = level0.ijk_to_ras @ np.array([20, 20, 12, 1.0])
        _look(scene, node, corner[:3], 40.0)
    _settle(streaming, streamer)
    if zoom == "corner":
        assert streamer.shown_plan.level == 0 and streamer.shown_plan.voxels < np.prod(SHAPE) / 2
    streamed = scene.render_3d("1")
    expected = _reference_render(scene, "1", streamer)
    assert _shows_volume(streamed, np.zeros_like(streamed)) > 0.1
    np.testing.assert_array_equal(streamed, expected)
    streaming.close()


def test_zoom_out_shows_the_coarse_whole_until_the_new_region_arrives_and_no_frame_is_empty(pyramid):
    reader = {}

    def make(im):
        reader["r"] = GatedReader(im)
        return reader["r"]

    scene, nodes, streaming = _setup(pyramid, reader=make)
    node = nodes["1"]
    streamer = _streamer(streaming, node)
    corner = pyramid.levels[0].ijk_to_ras @ np.array([20, 20, 12, 1.0])
    _look(scene, node, corner[:3], 40.0)
    _settle(streaming, streamer)
    empty_view = np.zeros_like(scene.render_3d("1"))
    zoomed = streamer.shown_plan
    # Hold back everything finer than the coarsest level, then zoom out past the region shown.
    reader["r"].open_from = len(pyramid.levels) - 1
    reader["r"].released.clear()
    lo, hi = pyramid.bounds_ras(0, edges=True)
    _look(scene, node, (lo + hi) / 2, 260.0)
    frames = []
    for _ in range(20):
        streaming.update()
        frames.append(scene.render_3d("1"))
    assert streamer.shown_plan is not zoomed and streamer.shown_plan.level == len(pyramid.levels) - 1
    assert not streamer.complete
    assert all(_shows_volume(f, empty_view) > 0.05 for f in frames), "a frame showed no volume"
    reader["r"].released.set()
    _settle(streaming, streamer)
    assert streamer.shown_plan.level < len(pyramid.levels) - 1
    streaming.close()


def test_a_camera_that_moves_again_cancels_the_refinement_it_no_longer_needs(pyramid):
    scene, nodes, streaming = _setup(pyramid, reader=lambda im: GatedReader(im, open_from=len(im.levels) - 1))
    node = nodes["1"]
    streamer = _streamer(streaming, node)
    level0 = pyramid.levels[0]
    _look(scene, node, (level0.ijk_to_ras @ np.array([20, 20, 12, 1.0]))[:3], 40.0)
    streaming.update()
    streaming.update()
    first = streamer.pending_plan
    _look(scene, node, (level0.ijk_to_ras @ np.array([140, 110, 80, 1.0]))[:3], 40.0)
    streaming.update()
    second = streamer.pending_plan
    assert second is not first
    wanted = set(streaming.engine.wants(streamer.requester))
    old_only = {streaming.key(first.level, c) for c in first.chunks[first.level]} - \
        {streaming.key(second.level, c) for c in second.chunks[second.level]}
    assert old_only and not (old_only & wanted), "chunks only the old region needed are still queued"
    streaming.reader.released.set()
    _settle(streaming, streamer)
    assert streamer.shown_plan is second
    streaming.close()


def test_a_cropping_roi_reads_only_the_chunks_inside_it(pyramid):
    scene, nodes, streaming = _setup(pyramid, reader=lambda im: GatedReader(im))
    node = nodes["1"]
    streamer = _streamer(streaming, node)
    _settle(streaming, streamer)
    level0 = pyramid.levels[0]
    low = level0.ijk_to_ras @ np.array([10, 10, 10, 1.0])
    high = level0.ijk_to_ras @ np.array([50, 40, 30, 1.0])
    roi = scene.scene.AddNewNodeByClass("vtkMRMLMarkupsROINode")
    roi.SetXYZ(*((low[:3] + high[:3]) / 2))
    roi.SetRadiusXYZ(*(np.abs(high[:3] - low[:3]) / 2))
    streamer.render_node.SetAndObserveROINodeID(roi.GetID())
    streamer.render_node.SetCroppingEnabled(True)
    streaming.engine.cache.clear()  # every chunk must be read again: the reads show what the ROI asks for
    streaming.reader.reads.clear()
    _settle(streaming, streamer)
    plan = streamer.shown_plan
    from bigvolume.streaming.slice_planner import box_on_level

    inside = set(pyramid.levels[plan.level].chunks_in_box(box_on_level(pyramid, 0, ((9, 32), (9, 42), (9, 52)), plan.level)))
    read = {c for level, c in streaming.reader.reads if level == plan.level}
    assert read and read <= inside
    streaming.close()


def test_two_3d_views_and_slice_views_keep_the_cache_budget(pyramid):
    budget = 2 * 2**20
    scene, nodes, streaming = _setup(pyramid, views=("1", "2"), cache_bytes=budget, slice_views=("Red",))
    corner = pyramid.levels[0].ijk_to_ras @ np.array([20, 20, 12, 1.0])
    _look(scene, nodes["2"], corner[:3], 40.0)
    cache = streaming.engine.cache
    peak = 0
    for _ in range(400):
        streaming.update()
        peak = max(peak, cache.nbytes + cache.reserved_bytes)
        if all(_streamer(streaming, n).complete for n in nodes.values()) and not streaming.engine.in_flight:
            break
        threading.Event().wait(0.01)
    assert peak <= budget
    levels = {name: _streamer(streaming, n).shown_plan.level for name, n in nodes.items()}
    assert levels["1"] != levels["2"] or _streamer(streaming, nodes["1"]).shown_plan.box != \
        _streamer(streaming, nodes["2"]).shown_plan.box
    for n in nodes.values():  # each view's region fits its share of the cache
        plan = _streamer(streaming, n).shown_plan
        assert len(plan.chunks[plan.level]) * pyramid.levels[plan.level].chunk_nbytes <= budget // 4
    streaming.close()


def test_settings_status_and_the_proxy_stays_out_of_editors_and_the_saved_scene(pyramid):
    scene, nodes, streaming = _setup(pyramid)
    node = nodes["1"]
    streamer = _streamer(streaming, node)
    _settle(streaming, streamer)
    assert streamer.proxy.GetHideFromEditors() and not streamer.proxy.GetSaveWithScene()
    assert not streamer.render_node.GetSaveWithScene() and list(streamer.render_node.GetViewNodeIDs()) == [node.GetID()]
    base = streamer.shown_plan.level
    status = streaming.streaming.volume_status()
    assert len(status) == 1 and f"level {base}" in status[0]
    streaming.streaming.set_volume_options(quality=1)
    _settle(streaming, streamer)
    assert streamer.shown_plan.level == min(base + 1, len(pyramid.levels) - 1)
    streaming.streaming.set_volume_options(quality=0, gpu_voxel_budget=5000)
    _settle(streaming, streamer)
    assert streamer.shown_plan.voxels <= 5000
    proxy_id = streamer.proxy.GetID()
    streaming.streaming.set_volume_options(enabled=False)
    streaming.update()
    assert node.GetID() not in streaming.streamers and scene.scene.GetNodeByID(proxy_id) is None
    streaming.streaming.set_volume_options(enabled=True)
    streaming.update()
    assert isinstance(streaming.streamers[node.GetID()], VolumeStreamer)
    streaming.close()
