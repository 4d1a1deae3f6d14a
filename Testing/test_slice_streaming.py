"""Streaming slice views, checked against Slicer's own rendering of the same data (slicer-core slice logic)."""

import threading

import numpy as np
import pytest
import slicer
import vtk

import bigvolume
from bigvolume.streaming.ordering import PREFETCH
from bigvolume.streaming.readers import ZarrChunkReader
from bigvolume.streaming.window import display_window
from bigvolume.streaming.level_choice import choose_level
from bigvolume.tools.synthetic import SyntheticRockCore
from BigVolumeLib.offscreen.views import OffscreenScene
from streaming_helpers import StreamedImage

SHAPE = (96, 128, 160)


@pytest.fixture(scope="module")
def pyramid(tmp_path_factory):
    voxels = SyntheticRockCore(SHAPE, seed=2)[0: SHAPE[0]]
    path = tmp_path_factory.mktemp("stream") / "core.ome.zarr"
    geometry = bigvolume.VolumeGeometry(spacing=(0.5, 0.5, 0.8), origin=(3.0, -4.0, 5.0))
    bigvolume.write_pyramid(voxels, path, geometry, coarsest=32, chunks=(32, 32, 32))
    return bigvolume.open_image(path), voxels


class RecordingReader(ZarrChunkReader):
    """Records every chunk read; can hold back chunks of chosen levels until released."""

    def __init__(self, image, hold_levels=()):
        super().__init__(image)
        self.reads = []
        self.hold_levels = set(hold_levels)
        self.released = threading.Event()
        self._lock = threading.Lock()

    def read_chunks(self, level_index, indices):
        if level_index in self.hold_levels:
            self.released.wait(30)
        with self._lock:
            self.reads.extend((level_index, index) for index in indices)
        return super().read_chunks(level_index, indices)


def _setup(pyramid, orientation="Axial", size=(200, 180), reader=None, layer="background", views=("Red",)):
    image, voxels = pyramid
    scene = OffscreenScene()
    nodes = {name: scene.add_view(name, orientation, size) for name in views}
    reference = scene.add_volume(voxels, image.levels[0].ijk_to_ras, display_window(image))
    for name in views:
        scene.composite(name).SetBackgroundVolumeID(reference.GetID())
        scene.logics[name].FitSliceToAll()
    streaming = StreamedImage(scene.scene, image, reader=reader(image) if reader else None, layer=layer)
    return scene, nodes, reference, streaming


def _settle(streaming):
    streaming.settle()


def _compare(scene, name, streaming, reference, layer="background"):
    """Render the view streamed, then with the ordinary volume in the same layer; return both images."""
    streamed = scene.render(name)
    reference.GetScalarVolumeDisplayNode().SetWindowLevel(*streaming.window_level)
    composite = scene.composite(name)
    setter = getattr(composite, f"Set{layer.capitalize()}VolumeID")
    proxy_id = streaming.streamers[next(iter(streaming.streamers))].proxy.GetID()
    setter(reference.GetID())
    expected = scene.render(name)
    setter(proxy_id)
    return streamed, expected


@pytest.mark.parametrize("orientation", ["Axial", "Sagittal", "Coronal"])
def test_level0_matches_slicer_pixel_for_pixel(pyramid, orientation):
    scene, nodes, reference, streaming = _setup(pyramid, orientation)
    node = nodes["Red"]
    fov = node.GetFieldOfView()
    node.SetFieldOfView(fov[0] * 4, fov[1] * 4, fov[2])  # zoomed out: a coarse level
    _settle(streaming)
    streamer = streaming.streamers[node.GetID()]
    first_level, window = streamer.level, streaming.window_level
    display = streamer.proxy.GetScalarVolumeDisplayNode()
    node.SetFieldOfView(fov[0] / 3, fov[1] / 3, fov[2])  # zoomed in: level 0
    node.SetSliceOffset(node.GetSliceOffset() + 2.35)  # between voxel centres: linear interpolation across planes
    _settle(streaming)
    # The window comes from the data's histogram and stays put when the level changes.
    assert first_level > 0 and window[0] > 1000
    assert (display.GetWindow(), display.GetLevel()) == window == streaming.window_level
    assert streamer.level == 0 and streamer.complete and streamer._plan.kind == "aligned"
    streamed, expected = _compare(scene, "Red", streaming, reference)
    # Identical: the proxy holds the very voxels Slicer would interpolate, on the same grid.
    np.testing.assert_array_equal(streamed, expected)
    assert expected[..., :3].std() > 10  # the view shows structure, not a blank
    streaming.close()


def test_pan_reads_only_newly_visible_chunks_and_stays_exact(pyramid):
    scene, nodes, reference, streaming = _setup(pyramid, reader=RecordingReader)
    node = nodes["Red"]
    fov = node.GetFieldOfView()
    node.SetFieldOfView(fov[0] / 3, fov[1] / 3, fov[2])
    _settle(streaming)
    streamer = streaming.streamers[node.GetID()]
    before = set(streamer._plan.chunks[0])
    reader = streaming.reader
    reads_before = len(reader.reads)
    node.SetXYZOrigin(40, 25, 0)  # pan by 40 x 25 pixels
    _settle(streaming)
    after = set(streamer._plan.chunks[0])
    new_reads = {key for key in reader.reads[reads_before:] if key[0] == 0}
    assert after - before, "the pan must reveal new chunks"
    assert new_reads == {(0, index) for index in after - before}
    streamed, expected = _compare(scene, "Red", streaming, reference)
    np.testing.assert_array_equal(streamed, expected)
    streaming.close()


def test_oblique_plane_matches_slicer_nearest_and_fetches_only_crossed_chunks(pyramid):
    image, _ = pyramid
    scene, nodes, reference, streaming = _setup(pyramid, reader=RecordingReader)
    node = nodes["Red"]
    # Tilt the plane 30 degrees about one axis and 20 about another.
    slice_to_ras = node.GetSliceToRAS()
    transform = vtk.vtkTransform()
    transform.SetMatrix(slice_to_ras)
    transform.RotateX(30)
    transform.RotateY(20)
    slice_to_ras.DeepCopy(transform.GetMatrix())
    fov = node.GetFieldOfView()
    node.SetFieldOfView(fov[0] / 2.5, fov[1] / 2.5, fov[2])
    node.UpdateMatrices()
    for display in (reference.GetScalarVolumeDisplayNode(),
                    streaming.streamers[node.GetID()].proxy.GetScalarVolumeDisplayNode()):
        display.SetInterpolate(0)
    _settle(streaming)
    streamer = streaming.streamers[node.GetID()]
    assert streamer._plan.kind == "oblique" and streamer.level == 0 and streamer.complete
    streamed, expected = _compare(scene, "Red", streaming, reference)
    differ = np.any(streamed != expected, axis=-1)
    # Nearest-voxel choice can differ only where a pixel centre lies on a voxel boundary to rounding precision.
    assert differ.mean() < 0.002
    level0 = image.levels[0]
    grid = [-(-n // 32) for n in level0.volume_shape]
    read0 = {index for level, index in streaming.reader.reads if level == 0}
    assert read0 == set(streamer._plan.chunks[0])
    assert len(read0) < 0.6 * grid[0] * grid[1] * grid[2]  # far fewer than the plane's bounding box
    streaming.close()


def test_zooming_out_chooses_the_coarsest_level_not_coarser_than_a_pixel(pyramid):
    image, _ = pyramid
    scene, nodes, reference, streaming = _setup(pyramid, size=(64, 60))
    node = nodes["Red"]
    _settle(streaming)
    streamer = streaming.streamers[node.GetID()]
    pixel = node.GetFieldOfView()[0] / node.GetDimensions()[0]
    assert streamer.level == choose_level(image, pixel, (0, 1)) > 0
    level_voxel = image.levels[streamer.level].voxel_size_mm[0]
    assert level_voxel <= pixel < image.levels[streamer.level + 1].voxel_size_mm[0] if streamer.level + 1 < len(image.levels) else True
    fov = node.GetFieldOfView()
    node.SetFieldOfView(fov[0] * 4, fov[1] * 4, fov[2])
    _settle(streaming)
    assert streamer.level == len(image.levels) - 1
    streaming.close()


def test_coarse_preview_is_shown_before_fine_chunks_arrive(pyramid):
    image, voxels = pyramid
    scene, nodes, reference, streaming = _setup(pyramid, reader=lambda im: RecordingReader(im, hold_levels={0}))
    node = nodes["Red"]
    fov = node.GetFieldOfView()
    node.SetFieldOfView(fov[0] / 3, fov[1] / 3, fov[2])
    streaming.update()
    reader = streaming.reader
    # Wait for every level but 0 to arrive.
    for _ in range(600):
        streaming.update()
        streamer = streaming.streamers[node.GetID()]
        if all(all(streaming.key(lvl, idx) in streaming.engine.cache for idx in streamer._plan.chunks[lvl]) for lvl in streamer._plan.chunks if lvl > 0):
            break
        threading.Event().wait(0.02)
    streaming.update()
    streamer = streaming.streamers[node.GetID()]
    assert streamer.level == 0 and not streamer.complete
    preview = scene.render("Red")
    assert preview[..., :3].std() > 10, "the view must show the coarse data, not be empty"
    reader.released.set()
    _settle(streaming)
    assert streamer.complete
    streamed, expected = _compare(scene, "Red", streaming, reference)
    np.testing.assert_array_equal(streamed, expected)
    # The preview was the coarse level, close to the final image but not equal to it.
    assert 0 < np.abs(preview[..., :3].astype(int) - expected[..., :3]).mean() < 40
    streaming.close()


def test_three_views_each_get_their_own_level(pyramid):
    image, _ = pyramid
    scene = OffscreenScene()
    sizes = {"Red": ("Axial", (400, 400)), "Yellow": ("Sagittal", (60, 60)), "Green": ("Coronal", (120, 100))}
    nodes = {name: scene.add_view(name, orientation, size) for name, (orientation, size) in sizes.items()}
    reference = scene.add_volume(pyramid[1], image.levels[0].ijk_to_ras, display_window(image))
    for name in nodes:
        scene.composite(name).SetBackgroundVolumeID(reference.GetID())
        scene.logics[name].FitSliceToAll()
    streaming = StreamedImage(scene.scene, image)
    _settle(streaming)
    levels = streaming.levels()
    for name, node in nodes.items():
        pixel = node.GetFieldOfView()[0] / node.GetDimensions()[0]
        axes = {"Red": (0, 1), "Yellow": (1, 2), "Green": (0, 2)}[name]
        assert levels[name] == choose_level(image, pixel, axes)
    assert levels["Red"] < levels["Yellow"]
    streaming.close()


def test_scrolling_prefetches_ahead_and_drops_what_left_the_view(pyramid):
    scene, nodes, reference, streaming = _setup(pyramid)
    node = nodes["Red"]
    fov = node.GetFieldOfView()
    node.SetFieldOfView(fov[0] / 3, fov[1] / 3, fov[2])
    _settle(streaming)
    streamer = streaming.streamers[node.GetID()]
    node.SetSliceOffset(node.GetSliceOffset() + 0.8)  # one slice up
    streaming.update()
    prefetch = [coords for tier, level, _, coords in streamer._plan.needs if tier == PREFETCH]
    assert prefetch, "scrolling up must prefetch the chunks above"
    z_visible = max(index[0] for index in streamer._plan.chunks[streamer.level])
    assert all(index[0] == z_visible + 1 for index in prefetch)
    # A new submission replaces the view's old one: chunks only the old plan wanted are no longer wanted.
    old = set(streamer._plan.chunks[0])
    node.SetSliceOffset(node.GetSliceOffset() - 40 * 0.8)  # 40 slices down: other chunks
    streamer.plan()  # the new needs reach the engine's queue (the next step starts them)
    wanted = set(streaming.engine.wants(streamer.requester))
    assert wanted and not {streaming.key(0, index) for index in old} & wanted
    streaming.close()


def test_streaming_can_use_another_layer(pyramid):
    scene, nodes, reference, streaming = _setup(pyramid, layer="foreground")
    composite = scene.composite("Red")
    assert composite.GetBackgroundVolumeID() == reference.GetID()  # the user's layer is left alone
    assert composite.GetForegroundVolumeID() == streaming.streamers[nodes["Red"].GetID()].proxy.GetID()
    streaming.close()
    with pytest.raises(ValueError, match="layer must be one of"):
        StreamedImage(scene.scene, pyramid[0], layer="overlay")


def test_a_view_showing_another_volume_in_the_layer_fetches_nothing_until_shown_again(pyramid):
    scene, nodes, reference, streaming = _setup(pyramid, views=("Red", "Yellow"))
    _settle(streaming)
    red = streaming.streamers[nodes["Red"].GetID()]
    composite = scene.composite("Red")
    composite.SetBackgroundVolumeID(reference.GetID())  # the user picks their own volume for the Red view
    streaming.update()
    assert not red.shown and not streaming.engine.wants(red.requester)
    read = streaming.engine.chunks_read
    nodes["Red"].GetSliceToRAS().SetElement(2, 3, nodes["Red"].GetSliceToRAS().GetElement(2, 3) + 20.0)
    nodes["Red"].UpdateMatrices()  # scrolling the hidden view
    _settle(streaming)
    assert streaming.engine.chunks_read == read  # nothing fetched for a view that does not show the stream
    assert composite.GetBackgroundVolumeID() == reference.GetID()  # and the user's choice is kept

    composite.SetBackgroundVolumeID(red.proxy.GetID())  # shown again: it catches up with where the view is
    _settle(streaming)
    assert red.shown and red.complete and streaming.engine.chunks_read > read
    streamed, expected = _compare(scene, "Red", streaming, reference)
    np.testing.assert_array_equal(streamed, expected)
    streaming.close()


def test_cache_stays_within_its_budget_while_browsing(pyramid):
    image, _ = pyramid
    scene = OffscreenScene()
    node = scene.add_view("Red", "Axial", (200, 180))
    reference = scene.add_volume(pyramid[1], image.levels[0].ijk_to_ras, display_window(image))
    scene.composite("Red").SetBackgroundVolumeID(reference.GetID())
    scene.logics["Red"].FitSliceToAll()
    budget = 60 * 32 * 32 * 32 * 2  # room for 60 chunks of 64 KB, a fraction of the 240 the volume has
    streaming = StreamedImage(scene.scene, image, cache_bytes=budget)
    start = node.GetSliceOffset()
    for step in range(0, 90, 6):
        node.SetSliceOffset(start - 35 + step * 0.8)
        _settle(streaming)
        assert streaming.engine.cache.nbytes <= budget
    assert streaming.engine.cache.evictions > 0
    streaming.close()


def test_fit_views_shows_the_whole_volume_like_slicer_does(pyramid):
    """fit_views frames the volume as Slicer's own FitSliceToAll does for the ordinary volume."""
    image, _ = pyramid
    for orientation in ("Axial", "Sagittal", "Coronal"):
        scene, nodes, reference, streaming = _setup(pyramid, orientation, size=(300, 200))
        node = nodes["Red"]
        expected_fov = np.array(node.GetFieldOfView())
        expected_centre = np.array([node.GetSliceToRAS().GetElement(r, 3) for r in range(3)])
        node.SetFieldOfView(1, 1, 1)
        node.GetSliceToRAS().SetElement(0, 3, 500.0)
        node.UpdateMatrices()
        streaming.fit_views()
        np.testing.assert_allclose(node.GetFieldOfView()[:2], expected_fov[:2], rtol=1e-9)
        centre = np.array([node.GetSliceToRAS().GetElement(r, 3) for r in range(3)])
        np.testing.assert_allclose(centre, expected_centre, atol=1e-9)
        streaming.close()


def test_close_removes_the_proxies_and_frees_the_cache(pyramid):
    scene, nodes, reference, streaming = _setup(pyramid)
    _settle(streaming)
    proxies = [s.proxy for s in streaming.streamers.values()]
    assert streaming.engine.cache.nbytes > 0
    streaming.close()
    assert all(p.GetScene() is None for p in proxies)
    assert streaming.engine.cache.nbytes == 0
    assert scene.scene.GetNodesByClass("vtkMRMLScalarVolumeNode").GetNumberOfItems() == 1  # the reference only


def test_data_probe_reads_the_true_voxel_values_from_the_proxy(pyramid):
    """Slicer's data probe reads the layer volume at a RAS point through its RASToIJK: the proxy must answer as the volume would."""
    image, voxels = pyramid
    scene, nodes, reference, streaming = _setup(pyramid)
    node = nodes["Red"]
    fov = node.GetFieldOfView()
    node.SetFieldOfView(fov[0] / 3, fov[1] / 3, fov[2])
    _settle(streaming)
    proxy = streaming.streamers[node.GetID()].proxy
    proxy_voxels = slicer.util.arrayFromVolume(proxy)
    ras_to_ijk, full_ras_to_ijk = vtk.vtkMatrix4x4(), vtk.vtkMatrix4x4()
    proxy.GetRASToIJKMatrix(ras_to_ijk)
    reference.GetRASToIJKMatrix(full_ras_to_ijk)
    xy_to_ras = node.GetXYToRAS()
    rng = np.random.default_rng(0)
    for x, y in rng.uniform([0, 0], node.GetDimensions()[:2], size=(50, 2)):
        ras = xy_to_ras.MultiplyPoint((x, y, 0, 1))
        i, j, k = [int(np.floor(v + 0.5)) for v in ras_to_ijk.MultiplyPoint(ras)[:3]]
        fi, fj, fk = [int(np.floor(v + 0.5)) for v in full_ras_to_ijk.MultiplyPoint(ras)[:3]]
        assert proxy_voxels[k, j, i] == voxels[fk, fj, fi]
    streaming.close()


def test_demo_renders_the_streamed_views_to_png(pyramid, tmp_path):
    from BigVolumeLib.offscreen.demo import render_demo_views

    image, _ = pyramid
    results = render_demo_views(image.location, tmp_path / "views", size=(64, 48))
    assert [(r["view"], r["zoom"]) for r in results] == [
        (view, zoom) for zoom in (1, 4) for view in ("Axial", "Sagittal", "Coronal")]
    for result in results:
        png = vtk.vtkPNGReader()
        png.SetFileName(result["png"])
        png.Update()
        assert png.GetOutput().GetDimensions()[:2] == (64, 48)
        assert png.GetOutput().GetPointData().GetScalars().GetRange(0)[1] > 50  # something is shown
    by_view = {(r["view"], r["zoom"]): r["level"] for r in results}
    assert all(by_view[(view, 4)] < by_view[(view, 1)] for view in ("Axial", "Sagittal", "Coronal"))
    assert all(r["seconds_to_preview"] is not None for r in results if r["zoom"] == 1)


def test_demo_volume_renders_the_store_in_a_3d_view(pyramid, tmp_path):
    from BigVolumeLib.offscreen.demo import render_demo_3d
    from BigVolumeLib.offscreen.views import offscreen_3d_works

    if not offscreen_3d_works():
        pytest.skip("no offscreen OpenGL (EGL or OSMesa) on this machine")
    image, _ = pyramid
    result = render_demo_3d(image.location, tmp_path / "views", size=(80, 60))
    png = vtk.vtkPNGReader()
    png.SetFileName(result["png"])
    png.Update()
    assert png.GetOutput().GetDimensions()[:2] == (80, 60)
    assert result["seconds_to_preview"] <= result["seconds_to_complete"]
    assert result["level"] < len(image.levels) - 1  # refined past the coarse whole volume
