import logging
import os
from pathlib import Path
from typing import Annotated

import vtk

import slicer
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.ScriptedLoadableModule import *
from slicer.util import VTKObservationMixin
from slicer.parameterNodeWrapper import Choice, Decimals, Minimum, WithinRange, parameterNodeWrapper

from slicer import vtkMRMLMarkupsROINode


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
Open multiscale OME-Zarr images far larger than memory: every slice view streams the region it shows at the
level that matches its zoom. Convert TIFF stacks, DICOM series, NRRD, NIfTI and more into OME-Zarr in the
background, export regions into ordinary volumes.
See the <a href="https://github.com/bigvolume/SlicerBigVolume#readme">documentation</a>.
""")
        self.parent.acknowledgementText = _("""
BigVolume builds on zarr-python, tensorstore, numpy, tifffile and the OME-NGFF specification.
""")
        slicer.app.connect("startupCompleted()", onStartupCompleted)


def onStartupCompleted():
    registerSampleData()
    # A loaded scene that refers to a store reopens it (the panel stops streaming when a scene closes).
    slicer.mrmlScene.AddObserver(slicer.mrmlScene.EndImportEvent, onSceneEndImport)


def onSceneEndImport(caller, event):
    from BigVolumeLib.scene_state import load_reference

    if load_reference(slicer.mrmlScene) is None:
        return
    message = _("BigVolume could not reopen the store this scene refers to.")
    with slicer.util.tryWithErrorDisplay(message):
        ensurePythonDependencies()
    with slicer.util.tryWithErrorDisplay(message, waitCursor=True):
        slicer.util.getModuleLogic("BigVolume").restoreFromScene()


#
# Sample data: the synthetic rock core, generated on first use (no download)
#


SAMPLE_NAME = "BigVolumeRockCore"


def registerSampleData():
    import SampleData

    iconsPath = os.path.join(os.path.dirname(__file__), "Resources", "Icons")
    if hasattr(SampleData.SampleDataLogic, "registerCustomSampleDataCategory"):  # Slicer 5.12+
        SampleData.SampleDataLogic.registerCustomSampleDataCategory("BigVolume", title=_("BigVolume"))
    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        category="BigVolume",
        sampleName=SAMPLE_NAME,
        thumbnailFileName=os.path.join(iconsPath, "BigVolumeSampleRockCore.png"),
        uris=[],
        fileNames=[],
        nodeNames=[],
        # Only the Sample Data panel's button calls this; scripts call BigVolume.loadSampleRockCore().
        customDownloader=lambda source: onSampleDataButton(),
    )


def onSampleDataButton():
    with slicer.util.tryWithErrorDisplay(_("BigVolume could not generate or open the sample.")):
        loadSampleRockCore()


_sampleBeingWritten = False


def loadSampleRockCore(shape=None):
    """Write the synthetic rock-core pyramid into Slicer's cache folder if it is not there, then stream it."""
    global _sampleBeingWritten
    if _sampleBeingWritten:  # the progress dialog processes events: a second click must not start another write
        return None
    ensurePythonDependencies()
    from bigvolume.tools.sample import SAMPLE_SHAPE, sample_store

    folder = os.path.join(slicer.app.cachePath, "BigVolume")
    progress = slicer.util.createProgressDialog(
        labelText=_("Generating the synthetic rock core (once)..."), maximum=100, windowTitle=_("BigVolume sample"))

    def onProgress(done, total):
        progress.value = int(100 * done / total) if total else 100
        slicer.app.processEvents()

    from bigvolume.errors import WriteCancelled

    _sampleBeingWritten = True
    try:
        # Cancelling removes what this write created; the next click starts afresh.
        path = sample_store(folder, shape=shape or SAMPLE_SHAPE, progress=onProgress, cancel=lambda: progress.wasCanceled)
    except WriteCancelled:
        return None
    finally:
        _sampleBeingWritten = False
        progress.close()
    return slicer.util.getModuleLogic("BigVolume").open(path)


#
# Reader plugin: drag-and-drop and Add Data of an OME-Zarr folder or its zarr.json / .zattrs
# (registered by Slicer because of its name, <moduleName>FileReader)
#


class BigVolumeFileReader:
    def __init__(self, parent):
        self.parent = parent

    def description(self):
        return _("BigVolume OME-Zarr image")

    def fileType(self):
        return "BigVolumeOMEZarr"

    def extensions(self):
        return [_("OME-Zarr image") + " (*zarr.json *.zattrs *.zgroup)"]

    def canLoadFileConfidence(self, filePath):
        # Slicer asks about every file it considers (all files of a dropped folder): image_root answers from
        # the file name for anything but root metadata, and needs none of the packages installed on first use.
        from bigvolume.store.locate import image_root

        # Above the generic JSON readers (about 0.55): this is the root of a multiscale image.
        return 0.7 if image_root(filePath) else 0.0

    def load(self, properties):
        try:
            ensurePythonDependencies()
            from bigvolume.store.locate import image_root

            root = image_root(properties["fileName"]) or properties["fileName"]
            logic = slicer.util.getModuleLogic("BigVolume")
            logic.open(root)
        except Exception as error:
            message = _("BigVolume could not open {path}: {error}").format(path=properties["fileName"], error=error)
            logging.error(message)
            self.parent.userMessages().AddMessage(vtk.vtkCommand.ErrorEvent, message)  # shown by Add Data
            return False
        self.parent.loadedNodes = logic.proxyNodeIDs()
        return True


#
# Drag-and-drop of an OME-Zarr image folder (Slicer registers <moduleName>FileDialog): the generic Add Data
# dialog would list every chunk file of the store, so a dropped image folder is opened directly.
#


class BigVolumeFileDialog:
    def __init__(self, qSlicerFileDialog):
        self.qSlicerFileDialog = qSlicerFileDialog
        qSlicerFileDialog.fileType = "BigVolumeOMEZarrFolder"
        qSlicerFileDialog.description = _("Open OME-Zarr image with BigVolume")
        qSlicerFileDialog.action = slicer.qSlicerFileDialog.Read
        self.imageRoots = []

    def execDialog(self):
        """Not used: a drop opens the image directly."""
        return False

    def isMimeDataAccepted(self):
        self.imageRoots = self.droppedImageRoots(self.qSlicerFileDialog.mimeData())
        self.qSlicerFileDialog.acceptMimeData(len(self.imageRoots) > 0)

    @staticmethod
    def droppedImageRoots(mimeData):
        from bigvolume.store.locate import image_root

        if not mimeData.hasFormat("text/uri-list"):
            return []
        roots = [image_root(url.toLocalFile()) for url in mimeData.urls() if url.isLocalFile()]
        return [root for root in roots if root]

    def dropEvent(self):
        roots, self.imageRoots = self.imageRoots, []
        if not roots:
            return
        with slicer.util.tryWithErrorDisplay(_("BigVolume could not open the dropped image.")):
            ensurePythonDependencies()
        with slicer.util.tryWithErrorDisplay(_("BigVolume could not open the dropped image."), waitCursor=True):
            slicer.util.getModuleLogic("BigVolume").open(roots[0])  # one image streams at a time


#
# Python dependencies
#


def ensurePythonDependencies() -> None:
    """Install the packages of Resources/requirements.txt on first use, after asking the user (never at import time)."""
    requirementsPath = os.path.join(os.path.dirname(__file__), "Resources", "requirements.txt")
    try:
        import slicer.packaging
    except ImportError:  # Slicer before 5.12
        ensurePythonDependenciesWithPipInstall(requirementsPath, "BigVolume")
        return
    slicer.packaging.pip_ensure(slicer.packaging.load_requirements(requirementsPath), requester="BigVolume")


def ensurePythonDependenciesWithPipInstall(requirementsPath: str, requester: str) -> None:
    import importlib.util

    with open(requirementsPath) as f:
        requirements = [line.split("#")[0].strip() for line in f if line.split("#")[0].strip()]
    modules = {"google-crc32c": "google_crc32c"}
    names = [r.split(">")[0].split("=")[0].split("<")[0].strip() for r in requirements]
    if all(importlib.util.find_spec(modules.get(name, name)) is not None for name in names):
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
    storePath - the OME-Zarr image folder to open.
    storeUrl - or its address on a web server or object store (used when set).
    roi - the region to export (none: the whole level).
    exportLevel - the pyramid level to export at (0 is full resolution).
    convertInput, convertOutput - what to convert into which OME-Zarr image.
    overrideSpacing, spacingX/Y/Z, spacingUnit - a voxel size to use instead of the input's.
    openWhenConverted - open the result when the conversion is done.
    """

    storePath: Path
    storeUrl: str = ""
    roi: vtkMRMLMarkupsROINode
    exportLevel: Annotated[int, Minimum(0)] = 0
    convertInput: Path
    convertOutput: Path
    overrideSpacing: bool = False
    spacingX: Annotated[float, WithinRange(0.0001, 1e6), Decimals(4)] = 1.0
    spacingY: Annotated[float, WithinRange(0.0001, 1e6), Decimals(4)] = 1.0
    spacingZ: Annotated[float, WithinRange(0.0001, 1e6), Decimals(4)] = 1.0
    spacingUnit: Annotated[str, Choice(["micrometer", "millimeter", "nanometer"])] = "micrometer"
    openWhenConverted: bool = True


#
# BigVolumeWidget
#


class BigVolumeWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Thin GUI glue: the work is done by BigVolumeLogic (and below it the Qt-free BigVolumeLib session)."""

    statusIntervalMs = 500
    conversionPollMs = 200

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._statusTimer = None
        self._conversionTimer = None
        self._conversion = None

    def setup(self) -> None:
        import qt

        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/BigVolume.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = BigVolumeLogic()
        self.logic.storeObservers.append(self.onStoreChanged)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.budgetSpinBox.value = self.logic.budgetBytes // 1024**2
        self.ui.workersSpinBox.value = self.logic.workers
        volume = self.logic.volumeOptions
        self.ui.volumeStreamingCheckBox.checked = volume["enabled"]
        self.ui.gpuBudgetSpinBox.value = (volume["gpu_voxel_budget"] or 0) // 10**6
        self.ui.volumeQualitySpinBox.value = volume["quality"]
        self.updateRecentStores()

        self.ui.openButton.connect("clicked(bool)", self.onOpenButton)
        self.ui.closeButton.connect("clicked(bool)", self.onCloseButton)
        self.ui.recentComboBox.connect("activated(int)", self.onRecentStore)
        self.ui.channelSpinBox.connect("valueChanged(int)", self.onChannelOrTimeChanged)
        self.ui.timeSpinBox.connect("valueChanged(int)", self.onChannelOrTimeChanged)
        self.ui.exportButton.connect("clicked(bool)", self.onExportButton)
        self.ui.inputFolderButton.connect("clicked(bool)", self.onInputFolderButton)
        self.ui.inputPathLineEdit.connect("currentPathChanged(QString)", self.onConvertInputChanged)
        self.ui.convertButton.connect("clicked(bool)", self.onConvertButton)
        self.ui.cancelConvertButton.connect("clicked(bool)", self.onCancelConvertButton)
        self.ui.budgetSpinBox.connect("valueChanged(int)", self.onBudgetChanged)
        self.ui.workersSpinBox.connect("valueChanged(int)", self.onWorkersChanged)
        self.ui.volumeStreamingCheckBox.connect("toggled(bool)", self.onVolumeOptionsChanged)
        self.ui.gpuBudgetSpinBox.connect("valueChanged(int)", self.onVolumeOptionsChanged)
        self.ui.volumeQualitySpinBox.connect("valueChanged(int)", self.onVolumeOptionsChanged)

        self._statusTimer = qt.QTimer()
        self._statusTimer.setInterval(self.statusIntervalMs)
        self._statusTimer.connect("timeout()", self.updateStatus)
        self._conversionTimer = qt.QTimer()
        self._conversionTimer.setInterval(self.conversionPollMs)
        self._conversionTimer.connect("timeout()", self.updateConversion)

        self._proposedOutput = None  # the output last proposed from the input (replaced when the input changes)
        self.initializeParameterNode()
        self.onStoreChanged()

    def cleanup(self) -> None:
        self.removeObservers()
        self._statusTimer.stop()
        self._conversionTimer.stop()
        if self._conversion is not None and not self._conversion.poll().finished:
            self._conversion.cancel()
        self.logic.storeObservers.remove(self.onStoreChanged)
        self.logic.stopStreaming()

    def enter(self) -> None:
        self.initializeParameterNode()
        self._statusTimer.start()

    def exit(self) -> None:
        self._statusTimer.stop()
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanExport)

    def onSceneStartClose(self, caller, event) -> None:
        self.setParameterNode(None)
        self.logic.close()  # the scene removes the streamed volumes; the panel shows no store

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())

    def setParameterNode(self, inputParameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanExport)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanExport)
            self._updateLevelRange()  # connecting sets the spin box's range from the parameter's annotation
            self._checkCanExport()

    # -- store ------------------------------------------------------------
    def onOpenButton(self) -> None:
        location = self._parameterNode.storeUrl.strip() or pathOrEmpty(self._parameterNode.storePath)
        if not location:
            slicer.util.errorDisplay(_("Choose the folder of an OME-Zarr image, or type its URL."))
            return
        self._open(location)

    def onRecentStore(self, index) -> None:
        location = self.ui.recentComboBox.itemData(index)
        if location:
            self._open(location)

    def _open(self, location) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to open the store.")):
            ensurePythonDependencies()  # may ask the user: not under a wait cursor
        with slicer.util.tryWithErrorDisplay(_("Failed to open the store."), waitCursor=True):
            self.logic.open(location)

    def onCloseButton(self) -> None:
        self.logic.close()

    def onChannelOrTimeChanged(self, value) -> None:
        if not self.logic.isOpen() or not self.ui.channelSpinBox.enabled and not self.ui.timeSpinBox.enabled:
            return
        with slicer.util.tryWithErrorDisplay(_("Failed to switch channel or time point."), waitCursor=True):
            self.logic.select(channel=self.ui.channelSpinBox.value, timePoint=self.ui.timeSpinBox.value)

    def onStoreChanged(self) -> None:
        """The logic opened, switched or closed a store (from this panel, a reader, a scene or the console)."""
        isOpen = self.logic.isOpen()
        self.ui.closeButton.enabled = isOpen
        channels, timePoints = self.logic.axisSizes() if isOpen else (1, 1)
        for spinBox, count, current in ((self.ui.channelSpinBox, channels, self.logic.channel()),
                                        (self.ui.timeSpinBox, timePoints, self.logic.timePoint())):
            wasBlocking = spinBox.blockSignals(True)
            spinBox.maximum = max(0, count - 1)
            spinBox.value = current if isOpen else 0
            spinBox.enabled = count > 1
            spinBox.blockSignals(wasBlocking)
        self._updateLevelRange()
        self.updateRecentStores()
        self.updateStatus()
        self._checkCanExport()

    def updateRecentStores(self) -> None:
        combo = self.ui.recentComboBox
        wasBlocking = combo.blockSignals(True)
        combo.clear()
        combo.addItem(_("(choose a recent store)"), "")
        for location in self.logic.recentStores():
            combo.addItem(location, location)
        combo.blockSignals(wasBlocking)

    def updateStatus(self) -> None:
        text = self.logic.statusText()
        if text != self.ui.statusText.plainText:  # unchanged text keeps the user's selection and scroll
            self.ui.statusText.plainText = text
        self._checkCanExport()

    def _updateLevelRange(self) -> None:
        self.ui.exportLevelSpinBox.minimum = 0
        self.ui.exportLevelSpinBox.maximum = self.logic.levelCount() - 1 if self.logic.isOpen() else 0

    # -- export -----------------------------------------------------------
    def _checkCanExport(self, caller=None, event=None) -> None:
        if not self._parameterNode or not self.logic.isOpen():
            self.ui.exportButton.enabled = False
            self.ui.regionSizeLabel.text = "-"
            return
        try:
            plan = self.logic.planExport(self._parameterNode.roi, self._parameterNode.exportLevel)
        except ValueError as error:  # an ROI not placed yet
            self.ui.exportButton.enabled = False
            self.ui.regionSizeLabel.text = str(error)
            return
        self.ui.regionSizeLabel.text = plan.describe() if plan.fits else _("Too large: {reason}").format(reason=plan.reason)
        self.ui.exportButton.enabled = plan.fits

    def onExportButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to load the region."), waitCursor=True):
            volumeNode = self.logic.export(self._parameterNode.roi, self._parameterNode.exportLevel)
            slicer.util.setSliceViewerLayers(foreground=volumeNode, foregroundOpacity=0.5)

    # -- conversion -------------------------------------------------------
    def onInputFolderButton(self) -> None:
        import qt

        folder = qt.QFileDialog.getExistingDirectory(
            self.parent, _("Folder of TIFF slices or DICOM files"), pathOrEmpty(self._parameterNode.convertInput))
        if folder:
            self._parameterNode.convertInput = Path(folder)

    def onConvertInputChanged(self, path) -> None:
        # The path changes with every key typed: propose an output only for an input that exists, and
        # replace only an output that is empty or was proposed before (never one the user chose).
        if not pathOrEmpty(path) or not os.path.exists(path):
            return
        output = pathOrEmpty(self._parameterNode.convertOutput)
        if not output or output == self._proposedOutput:
            self._proposedOutput = self.logic.proposedOutput(path)
            self._parameterNode.convertOutput = Path(self._proposedOutput)

    def onConvertButton(self) -> None:
        p = self._parameterNode
        inputPath, outputPath = pathOrEmpty(p.convertInput), pathOrEmpty(p.convertOutput)
        if not inputPath or not outputPath:
            slicer.util.errorDisplay(_("Choose what to convert and the OME-Zarr image to write."))
            return
        with slicer.util.tryWithErrorDisplay(_("Failed to start the conversion.")):
            ensurePythonDependencies()
        with slicer.util.tryWithErrorDisplay(_("Failed to start the conversion."), waitCursor=True):
            spacing = (p.spacingX, p.spacingY, p.spacingZ) if p.overrideSpacing else None
            self._conversion = self.logic.convert(inputPath, outputPath, spacing=spacing,
                                                  unit=p.spacingUnit if p.overrideSpacing else None)
            self.ui.convertButton.enabled = False
            self.ui.cancelConvertButton.enabled = True
            self.ui.convertProgressBar.value = 0
            self._conversionTimer.start()

    def onCancelConvertButton(self) -> None:
        if self._conversion is not None:
            self._conversion.cancel()
            self.ui.convertStatusLabel.text = _("Cancelling...")

    def updateConversion(self) -> None:
        state = self._conversion.poll()
        self.ui.convertProgressBar.value = int(round(100 * state.fraction))
        self.ui.convertStatusLabel.text = self.logic.describeConversion(state)
        if not state.finished:
            return
        self._conversionTimer.stop()
        self.ui.convertButton.enabled = True
        self.ui.cancelConvertButton.enabled = False
        if state.ok and self._parameterNode.openWhenConverted:
            with slicer.util.tryWithErrorDisplay(_("Failed to open the converted store."), waitCursor=True):
                self.logic.open(state.output)
        elif state.status == "failed":
            slicer.util.errorDisplay(_("The conversion failed: {error}").format(error=state.error),
                                     detailedText="\n".join(state.log))

    # -- settings ---------------------------------------------------------
    def onBudgetChanged(self, megabytes) -> None:
        self.logic.setBudget(megabytes * 1024**2)

    def onWorkersChanged(self, workers) -> None:
        if workers != self.logic.workers:
            self.logic.setWorkers(workers)

    def onVolumeOptionsChanged(self, _=None) -> None:
        megavoxels = self.ui.gpuBudgetSpinBox.value
        self.logic.setVolumeOptions(enabled=self.ui.volumeStreamingCheckBox.checked,
                                    gpu_voxel_budget=megavoxels * 10**6 if megavoxels else None,
                                    quality=self.ui.volumeQualitySpinBox.value)


def threeDViewSize(viewNode):
    """Pixels of the 3D view widget showing `viewNode` (what the 3D streamer plans its level for)."""
    layoutManager = slicer.app.layoutManager()
    for index in range(layoutManager.threeDViewCount if layoutManager else 0):
        widget = layoutManager.threeDWidget(index)
        if widget.mrmlViewNode() is viewNode or widget.mrmlViewNode().GetID() == viewNode.GetID():
            return tuple(widget.threeDView().renderWindow().GetSize())
    return (512, 512)


def pathOrEmpty(path) -> str:
    """The path as text, or "" when unset (a parameter node's Path defaults to '.')."""
    text = str(path or "").strip()
    return "" if text in ("", ".") else text


#
# BigVolumeLogic
#


class BigVolumeLogic(ScriptedLoadableModuleLogic):
    """What the panel, the reader, the sample and the Python console call.

    The work is done by BigVolumeLib's Qt-free session (tested with the MRML
    classes outside Slicer); this class adds what needs the application: the
    timer that lets views catch up, settings kept between sessions, and the
    conversion child process. From the console:
    `logic = slicer.util.getModuleLogic("BigVolume")`.
    """

    # How often streamed views catch up (ms): cheap when nothing changed.
    streamIntervalMs = 15
    settingsGroup = "BigVolume"
    maxRecentStores = 10

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self._session = None
        self._timer = None
        # Called after a store opened, switched channel or time point, or closed (the panel updates itself).
        self.storeObservers = []

    def _storeChanged(self):
        for callback in list(self.storeObservers):
            callback()

    def getParameterNode(self):
        return BigVolumeParameterNode(super().getParameterNode())

    # -- settings -------------------------------------------------------------
    @staticmethod
    def _settings():
        import qt

        return qt.QSettings()

    @property
    def budgetBytes(self) -> int:
        from bigvolume.streaming.cache import default_budget_bytes

        value = self._settings().value(f"{self.settingsGroup}/CacheBudgetMB")
        return int(value) * 1024**2 if value else default_budget_bytes()

    @property
    def workers(self) -> int:
        value = self._settings().value(f"{self.settingsGroup}/FetchThreads")
        return int(value) if value else 2

    @property
    def session(self):
        """The BigVolumeLib session streaming into slicer.mrmlScene."""
        if self._session is None:
            from BigVolumeLib.session import BigVolumeSession

            self._session = BigVolumeSession(slicer.mrmlScene, cache_bytes=self.budgetBytes, workers=self.workers,
                                             view_size=threeDViewSize, volume_options=self.volumeOptions)
        return self._session

    def setBudget(self, nbytes: int) -> None:
        """Memory for decoded chunks, in bytes; applies at once and is remembered."""
        self._settings().setValue(f"{self.settingsGroup}/CacheBudgetMB", int(nbytes) // 1024**2)
        self.session.set_budget(nbytes)

    def setWorkers(self, workers: int) -> None:
        """Reader threads; applies in place (nothing shown or cached is lost) and the choice is remembered."""
        self._settings().setValue(f"{self.settingsGroup}/FetchThreads", int(workers))
        self.session.set_workers(workers)

    @property
    def volumeOptions(self) -> dict:
        """3D streaming settings, remembered between sessions (gpu_voxel_budget None: from the view's GPU memory)."""
        settings = self._settings()
        enabled = settings.value(f"{self.settingsGroup}/VolumeStreaming")
        budget = settings.value(f"{self.settingsGroup}/GPUVoxelBudget")
        quality = settings.value(f"{self.settingsGroup}/VolumeQuality")
        return {"enabled": str(enabled).lower() != "false" if enabled is not None else True,
                "gpu_voxel_budget": int(budget) if budget and int(budget) > 0 else None,
                "quality": int(quality) if quality else 0}

    def setVolumeOptions(self, **options) -> None:
        """Change 3D streaming settings (enabled, gpu_voxel_budget, quality); applies at once and is remembered."""
        names = {"enabled": "VolumeStreaming", "gpu_voxel_budget": "GPUVoxelBudget", "quality": "VolumeQuality"}
        for name, value in options.items():
            self._settings().setValue(f"{self.settingsGroup}/{names[name]}", value if value is not None else 0)
        self.session.set_volume_options(**options)

    def recentStores(self) -> list:
        value = self._settings().value(f"{self.settingsGroup}/RecentStores")
        if not value:
            return []
        return [value] if isinstance(value, str) else list(value)

    def _rememberStore(self, location) -> None:
        from BigVolumeLib.session import remember_recent

        self._settings().setValue(f"{self.settingsGroup}/RecentStores",
                                  remember_recent(self.recentStores(), location, self.maxRecentStores))

    # -- opening ----------------------------------------------------------------
    def open(self, location, channel: int = 0, timePoint: int = 0, fit: bool = True):
        """Open an OME-Zarr image (folder or URL) and stream it into every slice view; returns the image."""
        image = self.session.open(location, channel=channel, time_point=timePoint, fit=fit)
        logging.info(f"BigVolume: opened {image.location} ({len(image.levels)} levels)")
        self._rememberStore(image.location)
        self._startTimer()
        self._storeChanged()
        return image

    def restoreFromScene(self) -> bool:
        """Reopen the store the current scene refers to (called when a scene is loaded)."""
        if not self.session.restore():
            return False
        self._startTimer()
        self._storeChanged()
        return True

    def select(self, channel=None, timePoint=None):
        """Show another channel and/or time point; the views keep their place."""
        image = self.session.select(channel=channel, time_point=timePoint)
        self._storeChanged()
        return image

    def close(self) -> None:
        """Stop streaming, remove the streamed views' volumes and free the chunk cache."""
        self.stopStreaming()
        self._storeChanged()

    def stopStreaming(self) -> None:
        if self._timer is not None:
            self._timer.stop()
        if self._session is not None:
            self._session.close()

    def _startTimer(self) -> None:
        import qt

        if self._timer is None:
            self._timer = qt.QTimer()
            self._timer.setInterval(self.streamIntervalMs)
            self._timer.connect("timeout()", self.updateViews)
        self._timer.start()

    def updateViews(self) -> bool:
        return self.session.update()

    # -- questions --------------------------------------------------------------
    def isOpen(self) -> bool:
        return self._session is not None and self._session.is_open

    @property
    def image(self):
        return self.session.image

    def levelCount(self) -> int:
        return len(self.session.image.levels)

    def axisSizes(self):
        """(channels, time points) of the open image."""
        return self.session.axis_sizes()

    def channel(self) -> int:
        return self.session.channel

    def timePoint(self) -> int:
        return self.session.time_point

    def levels(self) -> dict:
        """The pyramid level each view shows (slice views and 3D views), by view name."""
        return self.session.levels()

    def status(self) -> dict:
        return self.session.status()

    def statusText(self) -> str:
        return self.session.status_text() if self._session is not None else _("No store open.")

    def proxyNodeIDs(self) -> list:
        streamed = self.session.streamed
        return [s.proxy.GetID() for s in streamed.streamers.values()] if streamed else []

    # -- data -------------------------------------------------------------------
    def read(self, level: int, box):
        """Voxels of a level inside ((z0, z1), (y0, y1), (x0, x1)) as a numpy array."""
        return self.session.read(level, box)

    def planExport(self, roiNode, level: int):
        """What exporting would load (shape, bytes, whether it fits): an ROI, or the whole level if roiNode is None."""
        if not 0 <= level < self.levelCount():
            raise ValueError(_("Level {level} does not exist: the store has levels 0 to {last}.").format(
                level=level, last=self.levelCount() - 1))
        if roiNode is None:
            return self.session.plan_level(level)
        return self.session.plan_roi(roiNode, level)

    def export(self, roiNode, level: int, name=None):
        """Load the voxels of `level` inside a Markups ROI (or the whole level) into a new volume node."""
        return self.session.export_plan(self.planExport(roiNode, level), name=name)

    # -- conversion ---------------------------------------------------------------
    @staticmethod
    def proposedOutput(inputPath) -> str:
        """`scans/core_A` -> `scans/core_A.ome.zarr`, beside the input."""
        from bigvolume.tools.naming import output_name

        return os.path.join(os.path.dirname(os.path.normpath(str(inputPath))), output_name(str(inputPath)))

    def convert(self, inputPath, outputPath, spacing=None, unit=None, **options):
        """Convert in a child process (Slicer stays responsive); returns a BackgroundConversion to poll or cancel."""
        from bigvolume.tools.background import BackgroundConversion

        conversion = BackgroundConversion(inputPath, outputPath, spacing=spacing, unit=unit, **options)
        conversion.start()
        return conversion

    @staticmethod
    def describeConversion(state) -> str:
        from BigVolumeLib.session import describe_conversion

        return describe_conversion(state)


#
# BigVolumeTest
#


class BigVolumeTest(ScriptedLoadableModuleTest):
    """Runs inside Slicer (Developer mode > Reload and Test, or the SelfTests module)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        import importlib.util

        # In testing mode Slicer's packaging helpers do not install anything: the packages must be there.
        missing = [name for name in ("zarr", "tensorstore", "tifffile") if importlib.util.find_spec(name) is None]
        if missing:
            self.skipTest(f"BigVolume's Python packages are not installed ({', '.join(missing)}); open the module once")
        for test in (self.test_OpenStreamAndExport, self.test_Panel, self.test_ReaderPlugin,
                     self.test_SceneSaveAndRestore, self.test_SampleData, self.test_ConvertInBackground):
            self.setUp()
            test()

    def _writeCore(self, shape=(128, 160, 160)):
        import tempfile

        import bigvolume
        from bigvolume.tools.synthetic import SyntheticRockCore

        path = os.path.join(tempfile.mkdtemp(), "core.ome.zarr")
        bigvolume.write_pyramid(SyntheticRockCore(shape, seed=4), path, coarsest=32, workers=1)
        return path

    def _waitForViews(self, logic, seconds=30):
        import time

        deadline = time.time() + seconds
        while time.time() < deadline and not all(s.complete for s in logic.session.streamed.streamers.values()):
            slicer.app.processEvents()
        self.assertTrue(all(s.complete for s in logic.session.streamed.streamers.values()))

    def test_OpenStreamAndExport(self):
        import numpy as np

        ensurePythonDependencies()
        self.delayDisplay("Streaming a synthetic pyramid into the slice views")
        path = self._writeCore()
        logic = slicer.util.getModuleLogic("BigVolume")
        image = logic.open(path)
        self._waitForViews(logic)
        red = slicer.app.layoutManager().sliceWidget("Red").sliceLogic()
        self.assertIn(red.GetSliceCompositeNode().GetBackgroundVolumeID(), logic.proxyNodeIDs())
        self.assertLessEqual({"Red", "Yellow", "Green"}, set(logic.levels()))

        self.delayDisplay("Volume rendering the visible region in the 3D view")
        viewNode = slicer.app.layoutManager().threeDWidget(0).mrmlViewNode()
        streamer = logic.session.streamed.streamers[viewNode.GetID()]
        self.assertIsNotNone(streamer.render_node)
        self.assertTrue(streamer.render_node.GetVisibility())
        self.assertEqual(logic.levels()[viewNode.GetName()], streamer.shown_plan.level)
        self.assertIn("3D ", logic.statusText())

        self.delayDisplay("Exporting an ROI and a whole level")
        roi = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsROINode")
        lo, hi = image.bounds_ras(0)
        roi.SetCenter(*((lo + hi) / 2))
        roi.SetSize(*((hi - lo) / 4))
        region = logic.export(roi, 0)
        plan = logic.planExport(roi, 0)
        np.testing.assert_array_equal(slicer.util.arrayFromVolume(region), image.read(0, plan.box))
        coarsest = logic.export(None, len(image.levels) - 1)
        self.assertEqual(coarsest.GetImageData().GetDimensions(), tuple(image.levels[-1].volume_shape[::-1]))

        logic.close()
        self.assertEqual(logic.proxyNodeIDs(), [])
        self.assertIsNotNone(region.GetScene())  # exported volumes stay
        self.delayDisplay("Test passed")

    def test_Panel(self):
        self.delayDisplay("Opening, reporting and closing from the module panel")
        path = self._writeCore((96, 128, 128))
        slicer.util.selectModule("BigVolume")
        widget = slicer.modules.BigVolumeWidget
        widget._parameterNode.storePath = Path(path)
        widget.ui.openButton.click()
        self._waitForViews(widget.logic)
        widget.updateStatus()
        self.assertIn("levels; level 0: 128 x 128 x 96 voxels", widget.ui.statusText.plainText)
        self.assertTrue(widget.ui.closeButton.enabled)
        self.assertEqual(widget.ui.exportLevelSpinBox.maximum, widget.logic.levelCount() - 1)
        self.assertEqual(widget.ui.recentComboBox.itemData(1), widget.logic.image.location)
        widget.ui.closeButton.click()
        self.assertFalse(widget.ui.closeButton.enabled)
        self.assertIn("No store open", widget.ui.statusText.plainText)
        self.delayDisplay("Test passed")

    def test_ReaderPlugin(self):
        self.delayDisplay("Loading an OME-Zarr image by its zarr.json (as drag-and-drop does)")
        path = self._writeCore((64, 96, 96))
        self.assertGreater(slicer.app.ioManager().registeredFileReaderCount("BigVolumeOMEZarr"), 0)
        node = slicer.util.loadNodeFromFile(os.path.join(path, "zarr.json"), "BigVolumeOMEZarr")
        self.assertIsNotNone(node)
        logic = slicer.util.getModuleLogic("BigVolume")
        self.assertEqual(os.path.normpath(logic.image.location), os.path.normpath(path))
        logic.close()
        self.delayDisplay("Test passed")

    def test_SceneSaveAndRestore(self):
        import tempfile

        self.delayDisplay("Saving a scene refers to the store; loading it streams again")
        path = self._writeCore((64, 96, 96))
        logic = slicer.util.getModuleLogic("BigVolume")
        logic.open(path)
        self._waitForViews(logic)
        sceneFile = os.path.join(tempfile.mkdtemp(), "scene.mrml")
        self.assertTrue(slicer.util.saveScene(sceneFile))
        logic.close()
        slicer.mrmlScene.Clear()
        slicer.util.loadScene(sceneFile)
        self.assertTrue(logic.isOpen())
        self.assertEqual(os.path.normpath(logic.image.location), os.path.normpath(path))
        self._waitForViews(logic)
        logic.close()
        self.delayDisplay("Test passed")

    def test_SampleData(self):
        import SampleData

        self.delayDisplay("The synthetic rock core is registered with Sample Data")
        source = SampleData.SampleDataLogic().sourceForSampleName(SAMPLE_NAME)
        self.assertIsNotNone(source)
        image = loadSampleRockCore(shape=(64, 96, 96))
        self.assertEqual(image.levels[0].volume_shape, (64, 96, 96))
        slicer.util.getModuleLogic("BigVolume").close()
        self.delayDisplay("Test passed")

    def test_ConvertInBackground(self):
        import tempfile

        import numpy as np
        import tifffile

        self.delayDisplay("Converting a TIFF stack in the background")
        folder = os.path.join(tempfile.mkdtemp(), "slices")
        os.mkdir(folder)
        for z in range(40):
            tifffile.imwrite(os.path.join(folder, f"slice_{z:03d}.tif"), np.full((64, 80), z, dtype=np.uint16))
        logic = slicer.util.getModuleLogic("BigVolume")
        output = logic.proposedOutput(folder)  # beside the slices, in the test's own folder
        conversion = logic.convert(folder, output, spacing=(0.5, 0.5, 2.0), unit="micrometer")
        state = conversion.wait(timeout=120)
        self.assertTrue(state.ok, state.error)
        image = logic.open(output)
        self.assertEqual(image.levels[0].volume_shape, (40, 64, 80))
        logic.close()
        self.delayDisplay("Test passed")
