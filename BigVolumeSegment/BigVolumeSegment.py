import logging
import os

import vtk

import slicer
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.ScriptedLoadableModule import *
from slicer.util import VTKObservationMixin


#
# BigVolumeSegment
#


class BigVolumeSegment(ScriptedLoadableModule):
    """Segmentation of volumes far larger than memory: label pyramids beside BigVolume images."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("BigVolume Segment")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = ["BigVolume"]
        self.parent.contributors = ["BigVolume developers"]
        self.parent.helpText = _("""
Segmentation of BigVolume images, stored as OME-Zarr label pyramids beside the image.
This version has no editing tools yet: it shows which label pyramids an image has.
""")
        self.parent.acknowledgementText = _("""
BigVolume builds on zarr-python, numpy and the OME-NGFF specification.
""")


#
# BigVolumeSegmentWidget
#


class BigVolumeSegmentWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/BigVolumeSegment.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = BigVolumeSegmentLogic()
        self.ui.listLabelsButton.connect("clicked(bool)", self.onListLabelsButton)

    def cleanup(self) -> None:
        self.removeObservers()

    def onListLabelsButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to read the store."), waitCursor=True):
            from BigVolume import ensurePythonDependencies

            ensurePythonDependencies()  # BigVolume's requirements: this module runs on the same core
            names = self.logic.labelNames(self.ui.storePathLineEdit.currentPath)
            self.ui.labelsText.plainText = "\n".join(names) if names else _("(no label pyramids)")


#
# BigVolumeSegmentLogic
#


class BigVolumeSegmentLogic(ScriptedLoadableModuleLogic):
    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)

    def labelNames(self, location):
        """Names of the OME-NGFF label images stored beside the image at `location`."""
        from bigvolume.labels.label_store import label_names

        return label_names(location)


#
# BigVolumeSegmentTest
#


class BigVolumeSegmentTest(ScriptedLoadableModuleTest):
    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_LabelNames()

    def test_LabelNames(self):
        import tempfile

        import numpy as np
        import zarr

        import bigvolume

        self.delayDisplay("Writing an image without labels")
        path = os.path.join(tempfile.mkdtemp(), "image.ome.zarr")
        bigvolume.write_pyramid(np.zeros((8, 8, 8), np.uint8), path)
        logic = BigVolumeSegmentLogic()
        self.assertEqual(logic.labelNames(path), [])

        self.delayDisplay("Adding a labels group")
        zarr.open_group(path, mode="r+").create_group("labels").attrs.put({"ome": {"version": "0.5", "labels": ["cells"]}})
        self.assertEqual(logic.labelNames(path), ["cells"])
        self.delayDisplay("Test passed")
