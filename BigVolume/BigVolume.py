import logging
import os
from pathlib import Path

import vtk

import slicer
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.ScriptedLoadableModule import *
from slicer.util import VTKObservationMixin
from slicer.parameterNodeWrapper import parameterNodeWrapper


#
# BigVolume
#


class BigVolume(ScriptedLoadableModule):
    """Browse, render and segment volumes far larger than memory, through multiscale OME-Zarr."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("BigVolume")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Utilities")]
        self.parent.dependencies = []
        self.parent.contributors = ["BigVolume developers"]
        self.parent.helpText = _("""
Open multiscale OME-Zarr images far larger than memory and load any level of them.
See the <a href="https://github.com/bigvolume/SlicerBigVolume#readme">documentation</a>.
""")
        self.parent.acknowledgementText = _("""
BigVolume builds on zarr-python, numpy and the OME-NGFF specification.
""")


#
# Python dependencies
#


def ensurePythonDependencies(requirementsPath: str, requester: str) -> None:
    """Install the packages of a requirements file on first use, after asking the user (never at import time)."""
    try:
        import slicer.packaging
    except ImportError:  # Slicer before 5.12
        ensurePythonDependenciesWithPipInstall(requirementsPath, requester)
        return
    slicer.packaging.pip_ensure(slicer.packaging.load_requirements(requirementsPath), requester=requester)


def ensurePythonDependenciesWithPipInstall(requirementsPath: str, requester: str) -> None:
    import importlib.util

    with open(requirementsPath) as f:
        requirements = [line.split("#")[0].strip() for line in f if line.split("#")[0].strip()]
    names = [r.split(">")[0].split("=")[0].split("<")[0].strip() for r in requirements]
    if all(importlib.util.find_spec(name) is not None for name in names):
        return
    message = _("{requester} needs these Python packages: {packages}. Install them now?").format(
        requester=requester, packages=", ".join(requirements))
    if not slicer.util.confirmOkCancelDisplay(message):
        raise RuntimeError(_("{requester} cannot run without its Python packages.").format(requester=requester))
    slicer.util.pip_install(requirements)


#
# BigVolumeParameterNode
#


@parameterNodeWrapper
class BigVolumeParameterNode:
    """
    storePath - the OME-Zarr image folder.
    level - the pyramid level to load (0 is full resolution).
    """

    storePath: Path
    level: int = 0


#
# BigVolumeWidget
#


class BigVolumeWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Thin GUI glue: everything it does is in BigVolumeLogic."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._image = None
        self._streamTimer = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/BigVolume.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = BigVolumeLogic()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.openButton.connect("clicked(bool)", self.onOpenButton)
        self.ui.loadLevelButton.connect("clicked(bool)", self.onLoadLevelButton)

        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.removeObservers()
        self.stopStreaming()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None

    def onSceneStartClose(self, caller, event) -> None:
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())

    def setParameterNode(self, inputParameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)

    def onOpenButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to open the store."), waitCursor=True):
            ensurePythonDependencies(self.resourcePath("requirements.txt"), requester="BigVolume")
            self.stopStreaming()
            self._image = self.logic.open(str(self._parameterNode.storePath))
            self.ui.infoText.plainText = self.logic.describe(self._image)
            self.ui.levelSpinBox.maximum = len(self._image.levels) - 1
            self.ui.loadLevelButton.enabled = True
            self.logic.startStreaming(self._image)
            # Views catch up with their slice nodes and arriving chunks between Qt events.
            import qt

            self._streamTimer = qt.QTimer()
            self._streamTimer.setInterval(self.logic.streamIntervalMs)
            self._streamTimer.connect("timeout()", self.logic.updateViews)
            self._streamTimer.start()

    def stopStreaming(self) -> None:
        if self._streamTimer is not None:
            self._streamTimer.stop()
            self._streamTimer = None
        if self.logic:
            self.logic.stopStreaming()

    def onLoadLevelButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to load the level."), waitCursor=True):
            volumeNode = self.logic.loadLevel(self._image, self._parameterNode.level)
            slicer.util.setSliceViewerLayers(background=volumeNode, fit=True)


#
# BigVolumeLogic
#


class BigVolumeLogic(ScriptedLoadableModuleLogic):
    """Slicer-facing logic; the work is done by the Qt-free `bigvolume` core and `BigVolumeLib`."""

    # A whole level is loaded only when it fits comfortably in memory.
    maxLoadBytes = 2 * 1024**3
    # How often streamed views catch up (ms): cheap when nothing changed.
    streamIntervalMs = 15

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self.views = None

    def startStreaming(self, image, scene=None, cacheBytes=None):
        """Stream `image` into every slice view of the scene (each at the level its zoom needs)."""
        from BigVolumeLib.streaming_views import StreamingViews

        self.stopStreaming()
        self.views = StreamingViews(scene or slicer.mrmlScene, image, cache_bytes=cacheBytes)
        return self.views

    def updateViews(self) -> bool:
        return self.views.update() if self.views else False

    def stopStreaming(self) -> None:
        """Stop streaming, remove the views' proxy volumes and free the chunk cache."""
        if self.views is not None:
            self.views.close()
            self.views = None

    def getParameterNode(self):
        return BigVolumeParameterNode(super().getParameterNode())

    def open(self, location):
        import bigvolume

        image = bigvolume.open_image(location)
        logging.info(f"BigVolume: opened {location} with {len(image.levels)} levels")
        return image

    def describe(self, image) -> str:
        import io

        from bigvolume.cli import print_info

        text = io.StringIO()
        print_info(image, out=text)
        return text.getvalue()

    def loadLevel(self, image, level: int, scene=None):
        """Load a whole pyramid level as an ordinary scalar volume node (refused if it is too large)."""
        from BigVolumeLib import level_nbytes, read_region_into_volume_node

        nbytes = level_nbytes(image, level)
        if nbytes > self.maxLoadBytes:
            raise ValueError(_("Level {level} needs {size:.1f} GB; choose a coarser level (at most {limit:.1f} GB).").format(
                level=level, size=nbytes / 1024**3, limit=self.maxLoadBytes / 1024**3))
        shape = image.levels[level].volume_shape
        return read_region_into_volume_node(scene or slicer.mrmlScene, image, level, [(0, n) for n in shape])


#
# BigVolumeTest
#


class BigVolumeTest(ScriptedLoadableModuleTest):
    """Runs inside Slicer (Developer mode > Reload and Test, or the SelfTests module)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_OpenAndLoadLevel()
        self.setUp()
        self.test_Streaming()

    def test_OpenAndLoadLevel(self):
        import tempfile

        import numpy as np

        import bigvolume
        from bigvolume.synthetic import SyntheticRockCore

        self.delayDisplay("Writing a small synthetic pyramid")
        core = SyntheticRockCore((96, 80, 80), seed=1)
        path = os.path.join(tempfile.mkdtemp(), "core.ome.zarr")
        bigvolume.write_pyramid(core, path, coarsest=32)

        logic = BigVolumeLogic()
        image = logic.open(path)
        self.assertGreater(len(image.levels), 1)
        self.assertIn("OME-NGFF 0.5", logic.describe(image))

        self.delayDisplay("Loading level 0 and the coarsest level")
        full = logic.loadLevel(image, 0)
        np.testing.assert_array_equal(slicer.util.arrayFromVolume(full), core[0:96])
        coarse = logic.loadLevel(image, len(image.levels) - 1)
        # Both levels cover the same physical extent (voxel edges), so their RAS bounds agree.
        fullBounds, coarseBounds = [0.0] * 6, [0.0] * 6
        full.GetRASBounds(fullBounds)
        coarse.GetRASBounds(coarseBounds)
        np.testing.assert_allclose(fullBounds, coarseBounds, atol=1e-6)
        self.delayDisplay("Test passed")

    def test_Streaming(self):
        import tempfile
        import time

        import bigvolume
        from bigvolume.synthetic import SyntheticRockCore

        self.delayDisplay("Streaming a synthetic pyramid into the slice views")
        path = os.path.join(tempfile.mkdtemp(), "core.ome.zarr")
        bigvolume.write_pyramid(SyntheticRockCore((128, 160, 160), seed=4), path, coarsest=32)
        logic = BigVolumeLogic()
        views = logic.startStreaming(logic.open(path))
        deadline = time.time() + 30
        while time.time() < deadline and not all(s.complete for s in views.streamers.values()):
            logic.updateViews()
            slicer.app.processEvents()
        self.assertTrue(all(s.complete for s in views.streamers.values()))
        red = slicer.app.layoutManager().sliceWidget("Red").sliceLogic()
        self.assertEqual(red.GetSliceCompositeNode().GetBackgroundVolumeID(),
                         views.streamers[red.GetSliceNode().GetID()].proxy.GetID())
        logic.stopStreaming()
        self.assertEqual(slicer.mrmlScene.GetNodesByClass("vtkMRMLScalarVolumeNode").GetNumberOfItems(), 0)
        self.delayDisplay("Test passed")
