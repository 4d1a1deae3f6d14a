"""BigVolumeLogic (what the panel, the reader plugin, Sample Data and the console call) against real MRML
scenes, and the README's console example run as written."""

import os
import re

import numpy as np
import pytest
import tifffile

import bigvolume
from bigvolume.tools.synthetic import SyntheticRockCore
from BigVolumeLib.offscreen.views import OffscreenScene
from conftest import ROOT
from slicer_app_stand_in import Settings, load_module


def _scene():
    views = OffscreenScene()
    for name, orientation in (("Red", "Axial"), ("Yellow", "Sagittal"), ("Green", "Coronal")):
        views.add_view(name, orientation, (128, 128))
    return views


def _stream(logic):
    for _ in range(400):
        logic._timer.tick()
        if all(s.complete for s in logic.session.streamed.streamers.values()):
            return
        logic.session.streaming.engine.wait_idle(5)
    raise AssertionError("views did not complete")


@pytest.fixture
def demo_folder(tmp_path):
    """What `bigvolume demo --size small` leaves behind: TIFF slices and their store, in bigvolume-demo/."""
    core = SyntheticRockCore((160, 128, 128), seed=0)
    slices = tmp_path / "bigvolume-demo" / "rock-core-slices"
    slices.mkdir(parents=True)
    for z in range(core.shape[0]):
        tifffile.imwrite(slices / f"rock-core_{z:03d}.tif", core[z:z + 1][0])
    bigvolume.write_pyramid(core, tmp_path / "bigvolume-demo" / "rock-core.ome.zarr", workers=1)
    return tmp_path


def test_readme_console_example_runs_as_written(monkeypatch, demo_folder, capsys):
    import slicer

    readme = open(os.path.join(ROOT, "README.md")).read()
    section = readme.split("## Python console", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    views = _scene()
    _, logic = load_module(monkeypatch, views.scene, demo_folder / "cache")
    monkeypatch.chdir(demo_folder)
    namespace = {"slicer": slicer}
    exec(compile(code, "README.md (Python console)", "exec"), namespace)
    printed = capsys.readouterr().out
    assert "'Red':" in printed and "(64, 256, 256) uint16" in printed  # the box reaches outside: filled
    assert "level 0: 100 x 100 x 100 voxels, 1.9 MB" in printed
    assert "converted" in printed and "rock-core-copy.ome.zarr" in printed
    volume = namespace["volume"]
    assert volume.GetImageData().GetDimensions() == (100, 100, 100)
    assert not logic.isOpen() and Settings.store["BigVolume/CacheBudgetMB"] == 2048
    assert bigvolume.open_image(demo_folder / "rock-core-copy.ome.zarr").levels[0].voxel_size_mm == \
        pytest.approx((0.02, 0.02, 0.02))


def test_readme_streaming_example_runs_as_written(monkeypatch, demo_folder, capsys):
    import slicer

    readme = open(os.path.join(ROOT, "README.md")).read()
    section = readme.split("## Streaming slice views", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    views = _scene()
    monkeypatch.setattr(slicer, "mrmlScene", views.scene, raising=False)
    monkeypatch.chdir(demo_folder)
    exec(compile(code, "README.md (Streaming slice views)", "exec"), {"slicer": slicer})
    printed = capsys.readouterr().out
    assert "'Red':" in printed and "'Green':" in printed
    assert views.scene.GetNodesByClass("vtkMRMLScalarVolumeNode").GetNumberOfItems() == 0  # closed: proxies gone


def test_logic_open_select_settings_export_and_close(monkeypatch, tmp_path):
    path = tmp_path / "core.ome.zarr"
    core = SyntheticRockCore((64, 96, 96), seed=1)
    bigvolume.write_pyramid(core, path, coarsest=16, chunks=(16, 16, 16), workers=1)
    views = _scene()
    module, logic = load_module(monkeypatch, views.scene, tmp_path / "cache")
    changes = []
    logic.storeObservers.append(lambda: changes.append(logic.isOpen()))
    assert logic.statusText() == "No store open."
    image = logic.open(str(path))
    assert changes == [True] and logic._timer.active and logic._timer.interval == logic.streamIntervalMs
    _stream(logic)
    assert logic.levelCount() == len(image.levels) and logic.axisSizes() == (1, 1)
    assert set(logic.levels()) == {"Red", "Yellow", "Green"} and len(logic.proxyNodeIDs()) == 3
    assert logic.recentStores() == [image.location]
    np.testing.assert_array_equal(logic.read(0, [(0, 8), (0, 8), (0, 8)]), core[0:8][:, 0:8, 0:8])

    logic.setWorkers(1)
    logic.setBudget(256 * 1024**2)
    assert Settings.store == {"BigVolume/RecentStores": [image.location], "BigVolume/FetchThreads": 1,
                              "BigVolume/CacheBudgetMB": 256}
    assert logic.workers == 1 and logic.budgetBytes == 256 * 1024**2
    assert logic.session.streaming.engine.workers == 1

    for level in (-1, logic.levelCount()):  # -1 would silently be the coarsest level through list indexing
        with pytest.raises(ValueError, match=f"Level {level} does not exist: the store has levels 0 to"):
            logic.planExport(None, level)
        with pytest.raises(ValueError, match="does not exist"):
            logic.export(None, level)
    whole = logic.planExport(None, 1)
    assert whole.fits and whole.box == ((0, 32), (0, 48), (0, 48))
    volume = logic.export(None, 1)
    np.testing.assert_array_equal(volume.GetImageData().GetDimensions(), (48, 48, 32))
    assert logic.proposedOutput("/data/scans/core_A") == "/data/scans/core_A.ome.zarr"
    assert logic.proposedOutput("/data/stack.ome.tif") == "/data/stack.ome.zarr"

    logic.close()
    assert changes == [True, False] and not logic._timer.active and logic.proxyNodeIDs() == []
    assert volume.GetScene() is not None


def test_reader_plugin_claims_only_image_roots_and_opens_them(monkeypatch, tmp_path):
    path = tmp_path / "core.ome.zarr"
    bigvolume.write_pyramid(SyntheticRockCore((32, 48, 48), seed=1), path, coarsest=16, chunks=(16, 16, 16), workers=1)
    views = _scene()
    module, logic = load_module(monkeypatch, views.scene, tmp_path / "cache")
    messages = []
    user_messages = type("Messages", (), {"AddMessage": lambda self, event, text: messages.append(text)})()
    parent = type("Parent", (), {"loadedNodes": [], "userMessages": lambda self: user_messages})()
    reader = module.BigVolumeFileReader(parent)
    assert reader.fileType() == "BigVolumeOMEZarr"
    assert reader.canLoadFileConfidence(str(path / "zarr.json")) > 0.55  # above the generic JSON readers
    assert reader.canLoadFileConfidence(str(path / "0" / "zarr.json")) == 0.0  # a level array
    assert reader.canLoadFileConfidence(str(tmp_path)) == 0.0
    assert reader.load({"fileName": str(path / "zarr.json")})
    assert logic.isOpen() and os.path.samefile(logic.image.location, path)
    assert parent.loadedNodes == logic.proxyNodeIDs() and len(parent.loadedNodes) == 3
    assert not reader.load({"fileName": str(tmp_path / "missing" / "zarr.json")})
    assert logic.isOpen()  # a failed load leaves the open store streaming
    assert len(messages) == 1 and "missing/zarr.json: no such file" in messages[0]  # Add Data shows why
    logic.close()


def test_dropping_an_image_folder_opens_it(monkeypatch, tmp_path):
    QtCore = pytest.importorskip("PySide6.QtCore")
    path = tmp_path / "core.ome.zarr"
    bigvolume.write_pyramid(SyntheticRockCore((32, 48, 48), seed=1), path, coarsest=16, chunks=(16, 16, 16), workers=1)
    views = _scene()
    module, logic = load_module(monkeypatch, views.scene, tmp_path / "cache")

    class SlicerFileDialog:  # what qSlicerScriptedFileDialog gives the Python class
        Read = 0

        def __init__(self, urls):
            self.data = QtCore.QMimeData()
            self.data.setUrls([QtCore.QUrl.fromLocalFile(str(u)) for u in urls])
            self.accepted = None

        def mimeData(self):
            return self.data

        def acceptMimeData(self, accept):
            self.accepted = accept

    import slicer
    monkeypatch.setattr(slicer, "qSlicerFileDialog", SlicerFileDialog, raising=False)
    for urls, accepted in (([path], True), ([path / "zarr.json"], True), ([tmp_path], False),
                           ([path / "0"], False), ([tmp_path / "notes.txt", path], True)):
        host = SlicerFileDialog(urls)
        dialog = module.BigVolumeFileDialog(host)
        dialog.isMimeDataAccepted()
        assert host.accepted is accepted, urls
    dialog.dropEvent()
    assert logic.isOpen() and os.path.samefile(logic.image.location, path)
    logic.close()


def test_scene_import_reopens_the_store_and_sample_data_generates_the_core(monkeypatch, tmp_path):
    views = _scene()
    module, logic = load_module(monkeypatch, views.scene, tmp_path / "cache")
    image = module.loadSampleRockCore(shape=(48, 64, 64))
    assert image.levels[0].volume_shape == (48, 64, 64) and image.name == "synthetic rock core"
    assert image.location.startswith(str(tmp_path / "cache" / "BigVolume"))
    _stream(logic)
    mrml = tmp_path / "scene.mrml"
    views.scene.SetURL(str(mrml))
    assert views.scene.Commit()
    logic.close()

    reloaded = _scene()
    _, logic = load_module(monkeypatch, reloaded.scene, tmp_path / "cache")
    reloaded.scene.SetURL(str(mrml))
    reloaded.scene.Import()
    module.onSceneEndImport(reloaded.scene, None)  # what the module's observer of EndImportEvent runs
    assert logic.isOpen() and logic.image.location == image.location
    logic.close()


def test_cancelling_the_sample_write_leaves_nothing_and_opens_nothing(monkeypatch, tmp_path):
    import slicer

    views = _scene()
    module, logic = load_module(monkeypatch, views.scene, tmp_path / "cache")

    class CancelledDialog:
        value = 0
        wasCanceled = True  # the user pressed Cancel in the progress dialog

        def close(self):
            pass

    monkeypatch.setattr(slicer.util, "createProgressDialog", lambda **kwargs: CancelledDialog())
    assert module.loadSampleRockCore(shape=(128, 64, 64)) is None
    assert not logic.isOpen()
    folder = tmp_path / "cache" / "BigVolume"
    assert not folder.exists() or list(folder.iterdir()) == []  # the cancelled write removed what it created
