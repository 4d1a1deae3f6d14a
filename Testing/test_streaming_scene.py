"""The streaming scene: several sources in the same views through one engine and cache; views that come and go;
one window per source, shared by its views and kept with the scene."""

import numpy as np
import pytest

import bigvolume
from BigVolumeLib import scene_state
from BigVolumeLib.offscreen.views import OffscreenScene
from BigVolumeLib.session import BigVolumeSession
from BigVolumeLib.streaming.streaming_scene import StreamingScene

CHUNK_BYTES = 16 * 16 * 16 * 2


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """Two images on the same grid: a ramp and its negative (so each view layer shows which source it holds)."""
    z, y, x = np.mgrid[0:48, 0:64, 0:80]
    ramp = (100 + 10 * x + 5 * y + 3 * z).astype(np.uint16)
    folder = tmp_path_factory.mktemp("two")
    paths = []
    for name, voxels in (("ramp", ramp), ("negative", (5000 - ramp).astype(np.uint16))):
        path = folder / f"{name}.ome.zarr"
        bigvolume.write_pyramid(voxels, path, bigvolume.VolumeGeometry(spacing=(0.5, 0.5, 0.5)),
                                chunks=(16, 16, 16), coarsest=16)
        paths.append((str(path), voxels))
    return paths


def _views(names=("Red", "Yellow")):
    scene = OffscreenScene()
    orientations = {"Red": "Axial", "Yellow": "Sagittal", "Green": "Coronal"}
    for name in names:
        scene.add_view(name, orientations[name], (96, 80))
    return scene


def _zoom(scene, name, factor):
    node = scene.scene.GetSingletonNode(name, "vtkMRMLSliceNode")
    fov = node.GetFieldOfView()
    node.SetFieldOfView(fov[0] / factor, fov[1] / factor, fov[2])


def test_two_sources_stream_into_the_same_views_through_one_engine_and_budget(stores):
    (ramp_path, ramp), (negative_path, negative) = stores
    views = _views()
    budget = 60 * CHUNK_BYTES  # the views' working set fits; under half of what the two pyramids hold
    streaming = StreamingScene(views.scene, cache_bytes=budget)
    background = streaming.add_image(bigvolume.open_image(ramp_path))
    foreground = streaming.add_image(bigvolume.open_image(negative_path), layer="foreground", fit=False)
    for name in ("Red", "Yellow"):
        _zoom(views, name, 2)  # level 0
    assert streaming.wait_complete(30)
    for streamed, voxels in ((background, ramp), (foreground, negative)):
        for streamer in streamed.streamers.values():
            assert streamer.level == 0 and streamer.complete
            (z0, z1), (y0, y1), (x0, x1) = streamer._plan.box
            np.testing.assert_array_equal(streamer.voxels, voxels[z0:z1, y0:y1, x0:x1])
    composite = views.composite("Red")
    assert composite.GetBackgroundVolumeID() == background.streamers[views.scene.GetSingletonNode("Red", "vtkMRMLSliceNode").GetID()].proxy.GetID()
    assert composite.GetForegroundVolumeID() != composite.GetBackgroundVolumeID()
    sources = {key[0] for key in streaming.cache.keys()}
    assert sources == {background.source.id, foreground.source.id}, "one cache holds both"
    red = views.scene.GetSingletonNode("Red", "vtkMRMLSliceNode")
    for step in range(12):  # browse: both sources keep to the one budget
        red.SetSliceOffset(red.GetSliceOffset() + 2.0)
        assert streaming.wait_complete(30)
        assert streaming.cache.nbytes <= budget
    assert streaming.cache.evictions > 0
    streaming.remove_source(foreground)
    assert not {key for key in streaming.cache.keys() if key[0] == foreground.source.id}
    assert composite.GetForegroundVolumeID() is None
    streaming.close()


def test_views_created_later_are_streamed_and_deleted_views_let_go(stores):
    (path, voxels), _ = stores
    views = _views(("Red",))
    streaming = StreamingScene(views.scene)
    streamed = streaming.add_image(bigvolume.open_image(path))
    assert streaming.wait_complete(30) and len(streamed.streamers) == 1
    green = views.add_view("Green", "Coronal", (64, 64))
    streaming.update()
    assert green.GetID() in streamed.streamers
    streaming.fit_views(streamed)
    assert streaming.wait_complete(30) and streamed.streamers[green.GetID()].complete
    proxy = streamed.streamers[green.GetID()].proxy
    views.scene.RemoveNode(green)
    streaming.update()
    assert green.GetID() not in streamed.streamers and proxy.GetScene() is None
    assert not streaming.engine.wants(f"slice:{green.GetID()}:{streamed.source.id}")
    streaming.close()


def test_dragging_the_window_in_one_view_moves_every_view_and_the_scene_keeps_it(stores, tmp_path):
    (path, _), _ = stores
    views = _views(("Red", "Yellow", "Green"))
    session = BigVolumeSession(views.scene, workers=1)
    session.open(path)
    assert session.streaming.wait_complete(30)
    session.update()
    chosen = session.window_level
    assert chosen is not None and scene_state.load_reference(views.scene)["window_level"] == pytest.approx(chosen)
    streamers = list(session.streamed.streamers.values())
    # What Slicer's window/level mouse mode does: set the window of the display node of the view it drags in.
    streamers[0].proxy.GetScalarVolumeDisplayNode().SetWindowLevel(321.0, 1234.0)
    for streamer in streamers:
        display = streamer.proxy.GetScalarVolumeDisplayNode()
        assert (display.GetWindow(), display.GetLevel()) == (321.0, 1234.0)
    assert session.window_level == (321.0, 1234.0)
    session.update()
    assert scene_state.load_reference(views.scene)["window_level"] == (321.0, 1234.0)
    mrml = tmp_path / "scene.mrml"
    views.scene.SetURL(str(mrml))
    assert views.scene.Commit()
    session.close()
    reloaded = _views(("Red", "Yellow", "Green"))
    reloaded.scene.SetURL(str(mrml))
    assert reloaded.scene.Import()
    restored = BigVolumeSession(reloaded.scene, workers=1)
    assert restored.restore() and restored.window_level == (321.0, 1234.0)
    assert restored.streaming.wait_complete(30)
    for streamer in restored.streamed.streamers.values():
        display = streamer.proxy.GetScalarVolumeDisplayNode()
        assert (display.GetWindow(), display.GetLevel()) == (321.0, 1234.0)
    restored.close()


@pytest.mark.parametrize("corrupt", ["one", "all"])
def test_a_corrupt_coarsest_chunk_does_not_keep_a_source_from_being_shown(tmp_path, corrupt):
    z, y, x = np.mgrid[0:64, 0:64, 0:64]
    voxels = (100 + 10 * x + 5 * y + 3 * z).astype(np.uint16)
    path = tmp_path / "c.ome.zarr"
    bigvolume.write_pyramid(voxels, path, chunks=(16, 16, 16), shard_chunks=None, coarsest=32)
    views = _views(("Red",))
    streaming = StreamingScene(views.scene)
    streamed = streaming.add_image(bigvolume.open_image(path))
    streamer = next(iter(streamed.streamers.values()))
    top = streamed.source.levels[-1]
    needed = streamer.plan().chunks[top.index]  # the coarsest chunks the first frame and the window need
    assert top.grid_shape == (2, 2, 2) and len(needed) > 1
    for coords in needed if corrupt == "all" else needed[:1]:
        (path / top.path / "c" / "/".join(map(str, coords))).write_bytes(b"not a chunk")
    streaming.wait_complete(30)
    if corrupt == "all":  # nothing to take a window from: the data type's whole range
        assert streamed.window_level == (65535.0, 32767.5)
    assert streamer.showing and streamed.window_level is not None, "shown, with a window from the chunks that came"
    assert streaming.engine.error_counts[streamed.source.id] >= 1
    streaming.close()


def test_two_sources_in_one_view_have_proxies_that_tell_them_apart(stores):
    (ramp_path, _), (negative_path, _) = stores
    views = _views(("Red",))
    streaming = StreamingScene(views.scene)
    background = streaming.add_image(bigvolume.open_image(ramp_path))
    foreground = streaming.add_image(bigvolume.open_image(negative_path), layer="foreground", fit=False)
    names = {s.proxy.GetName() for streamed in (background, foreground) for s in streamed.streamers.values()}
    assert names == {"BigVolume Red", "BigVolume Red foreground"}
    streaming.close()


def test_the_status_counts_from_the_open_of_the_store_it_shows(stores):
    (ramp_path, _), (negative_path, _) = stores
    views = _views(("Red",))
    session = BigVolumeSession(views.scene, workers=1)
    session.open(ramp_path)
    assert session.streaming.wait_complete(30)
    first = session.status()["chunks_read"]
    assert first > 0
    session.open(negative_path)  # the same streaming scene, engine and cache serve the next store
    assert session.status()["chunks_read"] == 0 and session.status()["error_count"] == 0
    assert session.streaming.wait_complete(30)
    assert 0 < session.status()["chunks_read"] and session.streaming.engine.chunks_read > session.status()["chunks_read"]
    session.close()
