"""The module's logic through the MRML layer: open, status, channel/time, settings, region export, scene save/restore."""

import re
import threading

import numpy as np
import pytest
import slicer
import zarr

import bigvolume
from bigvolume.tools.synthetic import SyntheticRockCore
from BigVolumeLib import scene_state
from BigVolumeLib.offscreen.views import OffscreenScene
from BigVolumeLib.region_export import RegionTooLarge
from BigVolumeLib.session import BigVolumeSession

SHAPE = (64, 96, 112)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    voxels = SyntheticRockCore(SHAPE, seed=3)[0:SHAPE[0]]
    path = tmp_path_factory.mktemp("session") / "core.ome.zarr"
    geometry = bigvolume.VolumeGeometry(spacing=(0.5, 0.5, 0.8), origin=(3.0, -4.0, 5.0))
    bigvolume.write_pyramid(voxels, path, geometry, coarsest=16, chunks=(16, 16, 16))
    return str(path), voxels


@pytest.fixture(scope="module")
def tc_store(tmp_path_factory):
    """A t, c, z, y, x image with two levels; voxel value = 1000 * t + 100 * c + 1 everywhere."""
    path = tmp_path_factory.mktemp("tc") / "tc.ome.zarr"
    root = zarr.open_group(path, mode="w", zarr_format=3)
    data = np.zeros((2, 3, 32, 32, 32), dtype=np.uint16)
    for t in range(2):
        for c in range(3):
            data[t, c] = 1000 * t + 100 * c + 1
    root.create_array("0", data=data, chunks=(1, 1, 16, 16, 16), dimension_names=list("tczyx"))
    root.create_array("1", data=data[:, :, ::2, ::2, ::2], chunks=(1, 1, 16, 16, 16), dimension_names=list("tczyx"))
    axes = [{"name": "t", "type": "time", "unit": "second"}, {"name": "c", "type": "channel"}] + \
        [{"name": n, "type": "space", "unit": "millimeter"} for n in "zyx"]
    datasets = [{"path": str(i), "coordinateTransformations": [
        {"type": "scale", "scale": [1, 1] + [2.0 ** i] * 3},
        {"type": "translation", "translation": [0, 0] + [(2.0 ** i - 1) / 2] * 3}]} for i in range(2)]
    root.attrs.put({"ome": {"version": "0.5", "multiscales": [{"axes": axes, "datasets": datasets}]}})
    return str(path)


def _views(size=(160, 140)):
    scene = OffscreenScene()
    for name, orientation in (("Red", "Axial"), ("Yellow", "Sagittal"), ("Green", "Coronal")):
        scene.add_view(name, orientation, size)
    return scene


def _stream_until_complete(session):
    for _ in range(400):
        session.update()
        if all(s.complete for s in session.streamed.streamers.values()):
            return
        session.streaming.engine.wait_idle(5)
    raise AssertionError("views did not complete")


def _volume_nodes(scene):
    nodes = scene.GetNodesByClass("vtkMRMLScalarVolumeNode")
    return [nodes.GetItemAsObject(i) for i in range(nodes.GetNumberOfItems())]


def test_open_streams_reports_status_and_close_frees_everything(store):
    path, _ = store
    views = _views()
    threads_before = set(threading.enumerate())
    session = BigVolumeSession(views.scene, cache_bytes=64 * 1024**2, workers=2)
    image = session.open(path)
    _stream_until_complete(session)
    assert len(_volume_nodes(views.scene)) == 3  # one proxy per view
    for name in ("Red", "Yellow", "Green"):
        assert views.composite(name).GetBackgroundVolumeID() in {n.GetID() for n in _volume_nodes(views.scene)}
    status = session.status()
    assert status["voxel_size_mm"] == pytest.approx([0.5, 0.5, 0.8])
    assert status["physical_size_mm"] == pytest.approx([112 * 0.5, 96 * 0.5, 64 * 0.8])
    assert len(status["levels"]) == len(image.levels)
    assert status["view_levels"] == session.levels() and set(status["view_levels"]) == {"Red", "Yellow", "Green"}
    assert 0 < status["cache_bytes"] <= 64 * 1024**2 and status["chunks_read"] > 0
    text = session.status_text()
    assert "voxel size 500 x 500 x 800 um" in text and "level shown: Green:" in text
    assert scene_state.load_reference(views.scene)["location"] == image.location

    engine = session.streaming.engine
    session.close()
    assert _volume_nodes(views.scene) == [] and len(engine.cache) == 0 and engine.cache.nbytes == 0
    assert engine.sources == {} and engine.in_flight == 0 and session.streaming is None
    assert set(threading.enumerate()) <= threads_before  # no thread of the session's is left
    assert scene_state.load_reference(views.scene) is None
    assert session.status() == {"open": False} and session.status_text() == "No store open."


def test_a_wrong_path_keeps_the_current_store_streaming(store, tmp_path):
    path, _ = store
    views = _views()
    session = BigVolumeSession(views.scene, workers=1)
    session.open(path)
    with pytest.raises(bigvolume.StoreError, match="no such file"):
        session.open(tmp_path / "missing.ome.zarr")
    assert session.is_open and session.image.location == path and len(_volume_nodes(views.scene)) == 3
    session.close()


def _shown_value(session, view="Red"):
    streamer = next(s for s in session.streamed.streamers.values() if s.slice_node.GetName() == view)
    return np.unique(streamer.voxels)


def test_switching_channel_and_time_point_restreams_in_place(tc_store):
    views = _views()
    session = BigVolumeSession(views.scene, workers=1)
    session.open(tc_store)
    _stream_until_complete(session)
    assert session.axis_sizes() == (3, 2)
    assert list(_shown_value(session)) == [1]
    red = views.scene.GetSingletonNode("Red", "vtkMRMLSliceNode")
    red.GetSliceToRAS().SetElement(2, 3, 20.0)  # move the view: switching must keep it there
    red.UpdateMatrices()
    window = session.window_level

    session.select(channel=2)
    _stream_until_complete(session)
    assert list(_shown_value(session)) == [201] and session.channel == 2
    assert red.GetSliceToRAS().GetElement(2, 3) == 20.0
    channel_window = session.window_level
    assert channel_window != window  # a new channel gets its own window
    session.select(time_point=1)
    _stream_until_complete(session)
    assert list(_shown_value(session)) == [1201]
    assert session.window_level == channel_window  # the same channel at another time keeps it
    assert scene_state.load_reference(views.scene)["channel"] == 2
    assert scene_state.load_reference(views.scene)["timePoint"] == 1
    with pytest.raises(ValueError, match="channel index 3 is outside"):
        session.select(channel=3)
    assert session.channel == 2 and session.is_open  # a wrong index keeps what is shown
    session.close()


def test_budget_and_workers_apply_while_streaming(store):
    path, _ = store
    views = _views()
    session = BigVolumeSession(views.scene, cache_bytes=256 * 1024**2, workers=2)
    session.open(path)
    _stream_until_complete(session)
    cache = session.streaming.cache
    before = cache.nbytes
    assert before > 16 * 16 * 16 * 2 * 4
    red = views.scene.GetSingletonNode("Red", "vtkMRMLSliceNode")
    position = [red.GetSliceToRAS().GetElement(r, 3) for r in range(3)]
    window = session.window_level
    proxies = {s.proxy.GetID(): s.voxels.copy() for s in session.streamed.streamers.values()}
    cached = cache.keys()
    session.set_workers(1)  # in place: every proxy, what it shows and every cached chunk stay
    assert session.streaming.engine.workers == 1 and session.window_level == window
    assert {s.proxy.GetID() for s in session.streamed.streamers.values()} == set(proxies)
    for streamer in session.streamed.streamers.values():
        np.testing.assert_array_equal(streamer.voxels, proxies[streamer.proxy.GetID()])
    assert cache is session.streaming.cache and cache.nbytes == before and all(k in cache for k in cached)
    assert [red.GetSliceToRAS().GetElement(r, 3) for r in range(3)] == position
    red.GetSliceToRAS().SetElement(2, 3, red.GetSliceToRAS().GetElement(2, 3) + 3.2)
    red.UpdateMatrices()
    _stream_until_complete(session)  # and streaming goes on with the new setting
    session.set_budget(16 * 16 * 16 * 2 * 4)  # room for four chunks: the least recently used go at once
    assert session.streaming.cache.nbytes <= 16 * 16 * 16 * 2 * 4
    assert session.streaming.cache.budget_bytes == 16 * 16 * 16 * 2 * 4
    assert len(_volume_nodes(views.scene)) == 3
    session.close()


def _roi(scene, ras_min, ras_max):
    roi = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode")
    lo, hi = np.asarray(ras_min, float), np.asarray(ras_max, float)
    roi.SetCenter(*((lo + hi) / 2))
    roi.SetSize(*(hi - lo))
    return roi


def test_export_roi_reads_the_voxels_it_covers_at_the_chosen_level(store):
    path, voxels = store
    views = _views()
    session = BigVolumeSession(views.scene, workers=1)
    image = session.open(path)
    level0 = image.levels[0]
    # RAS of voxel centres (x, y, z) = (10, 20, 5) and (29, 39, 14): the ROI is grown by a quarter voxel.
    a = (level0.ijk_to_ras @ [10, 20, 5, 1])[:3]
    b = (level0.ijk_to_ras @ [29, 39, 14, 1])[:3]
    margin = 0.25 * np.asarray(level0.voxel_size_mm)
    roi = _roi(views.scene, np.minimum(a, b) - margin, np.maximum(a, b) + margin)
    plan = session.plan_roi(roi, 0)
    assert plan.box == ((5, 15), (20, 40), (10, 30)) and plan.nbytes == 10 * 20 * 20 * 2 and plan.fits
    node = session.export_roi(roi, 0, name="region")
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(node), voxels[5:15, 20:40, 10:30])
    matrix = vtk_matrix_to_numpy(node)
    np.testing.assert_allclose(matrix[:3, 3], a)  # the node lands where the region is
    assert node.GetScalarVolumeDisplayNode() is not None

    coarse_plan = session.plan_roi(roi, 1)
    coarse = session.export_roi(roi, 1)
    x_voxels = image.levels[1].voxel_size_mm[0] / level0.voxel_size_mm[0]
    assert coarse_plan.shape[2] == 20 / x_voxels  # level 1 halves x
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(coarse), image.read(1, coarse_plan.box))
    session.close()
    assert node.GetScene() is not None  # an exported volume belongs to the user, closing keeps it


def vtk_matrix_to_numpy(node):
    import vtk

    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    return np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])


def test_export_is_refused_with_the_reason_when_it_would_not_fit(store):
    path, _ = store
    views = _views()
    session = BigVolumeSession(views.scene, workers=1)
    image = session.open(path)
    limit = 400 * 1024  # level 0 takes 1344 KB, level 1 (x and y halved) 336 KB
    plan = session.plan_level(0, limit_bytes=limit)
    assert not plan.fits and plan.finest_fitting_level == 1
    assert "level 0 region of 112 x 96 x 64 voxels needs" in plan.reason and "level 1 or coarser fits" in plan.reason
    before = len(_volume_nodes(views.scene))
    with pytest.raises(RegionTooLarge, match="level 1 or coarser fits"):
        session.export_level(0, limit_bytes=limit)
    assert len(_volume_nodes(views.scene)) == before  # nothing half-made was left
    whole = session.export_level(1, limit_bytes=limit)
    assert whole.GetImageData().GetDimensions() == tuple(image.levels[1].volume_shape[::-1])
    outside = _roi(views.scene, (500, 500, 500), (510, 510, 510))
    assert session.plan_roi(outside, 0).reason == "the region lies outside the volume"
    with pytest.raises(RegionTooLarge, match="outside the volume"):
        session.export_roi(outside, 0)
    session.close()


def test_saved_scene_refers_to_the_store_and_reopens_it_where_the_views_were(store, tmp_path):
    path, _ = store
    views = _views()
    session = BigVolumeSession(views.scene, workers=1)
    session.open(path)
    _stream_until_complete(session)
    red = views.scene.GetSingletonNode("Red", "vtkMRMLSliceNode")
    red.SetFieldOfView(20.0, 17.5, 1.0)  # zoomed in: level 0
    red.GetSliceToRAS().SetElement(2, 3, 30.0)
    red.UpdateMatrices()
    _stream_until_complete(session)
    window = session.window_level
    mrml = tmp_path / "scene.mrml"
    views.scene.SetURL(str(mrml))
    assert views.scene.Commit()
    text = mrml.read_text()
    assert "BigVolumeStoreReference" in text and path in text
    assert re.findall(r"<Volume\w*", text) == []  # neither the proxies nor their display: no copy of the views
    session.close()

    reloaded = _views()
    reloaded.scene.SetURL(str(mrml))
    assert reloaded.scene.Import()
    restored = BigVolumeSession(reloaded.scene, workers=1)
    assert restored.restore()
    _stream_until_complete(restored)
    red = reloaded.scene.GetSingletonNode("Red", "vtkMRMLSliceNode")
    assert red.GetSliceToRAS().GetElement(2, 3) == pytest.approx(30.0)
    assert red.GetFieldOfView()[0] == pytest.approx(20.0)
    assert restored.levels()["Red"] == 0 and restored.window_level == pytest.approx(window)
    restored.close()
    assert not BigVolumeSession(_views().scene).restore()  # a scene without a store reference


def test_restore_names_a_store_that_moved(store, tmp_path):
    views = _views()
    scene_state.save_reference(views.scene, str(tmp_path / "moved.ome.zarr"))
    with pytest.raises(bigvolume.StoreError, match="moved.ome.zarr: no such file"):
        BigVolumeSession(views.scene).restore()


def test_recent_stores_and_conversion_text():
    from bigvolume.tools.background import ConversionState
    from BigVolumeLib.session import describe_conversion, remember_recent

    assert remember_recent(["b", "a", "c"], "a", limit=3) == ["a", "b", "c"]
    assert remember_recent(["a", "b", "c"], "d", limit=3) == ["d", "a", "b"]
    running = ConversionState(status="running", done=30, total=120, fraction=0.25, mb_per_s=150.0,
                              eta_seconds=95, elapsed_seconds=31)
    assert describe_conversion(running) == "25%, 150 MB/s, 0:31 elapsed, ETA 1:35"
    assert describe_conversion(ConversionState(status="running", elapsed_seconds=2)) == "0%, 0:02 elapsed"
    done = ConversionState(status="converted", output="core.ome.zarr", output_bytes=2.5e9, elapsed_seconds=3725)
    assert describe_conversion(done) == "Converted: core.ome.zarr (2,500 MB) in 1:02:05"
    assert describe_conversion(ConversionState(status="failed", error="x.tif: truncated")) == "Failed: x.tif: truncated"
    assert describe_conversion(ConversionState(status="cancelled")) == "Cancelled; nothing was left behind."
