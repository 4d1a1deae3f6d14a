"""BigVolumeSegment's panel, run with the Slicer application's parts stood in (slicer_app_stand_in)."""

import importlib.util
import inspect
import os
import sys
import types

import numpy as np
import slicer
import zarr

import bigvolume
from conftest import ROOT
from slicer_app_stand_in import load_module


def _load_segment(monkeypatch, tmp_path):
    """BigVolumeSegment.py and the BigVolume module it imports from, as Slicer loads them."""
    bigvolume_module, _ = load_module(monkeypatch, slicer.vtkMRMLScene(), tmp_path / "cache")
    spec = importlib.util.spec_from_file_location(
        "BigVolumeSegment", os.path.join(ROOT, "BigVolumeSegment", "BigVolumeSegment.py"))
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "BigVolumeSegment", module)
    spec.loader.exec_module(module)
    return bigvolume_module, module


def test_list_labels_button_ensures_the_dependencies_then_lists_the_labels(monkeypatch, tmp_path):
    bigvolume_module, segment = _load_segment(monkeypatch, tmp_path)
    ensure, calls = bigvolume_module.ensurePythonDependencies, []
    # The call is bound to the real signature but not run: it would pip-install what this environment lacks.
    monkeypatch.setattr(bigvolume_module, "ensurePythonDependencies",
                        lambda *args, **kwargs: calls.append(inspect.signature(ensure).bind(*args, **kwargs)))
    monkeypatch.setattr(slicer.app, "testingEnabled", lambda: True, raising=False)  # errors raise, no dialog
    path = tmp_path / "image.ome.zarr"
    bigvolume.write_pyramid(np.zeros((8, 8, 8), np.uint8), path)

    widget = segment.BigVolumeSegmentWidget.__new__(segment.BigVolumeSegmentWidget)  # setup() needs Qt's loader
    widget.logic = segment.BigVolumeSegmentLogic()
    # What Slicer's ScriptedLoadableModuleWidget provides, and the panel's two widgets the handler uses.
    widget.resourcePath = lambda relative: os.path.join(ROOT, "BigVolumeSegment", "Resources", relative)
    widget.ui = types.SimpleNamespace(storePathLineEdit=types.SimpleNamespace(currentPath=str(path)),
                                      labelsText=types.SimpleNamespace(plainText=""))
    widget.onListLabelsButton()
    assert len(calls) == 1 and widget.ui.labelsText.plainText == "(no label pyramids)"

    zarr.open_group(path, mode="r+").create_group("labels").attrs.put({"ome": {"version": "0.5", "labels": ["cells"]}})
    widget.onListLabelsButton()
    assert len(calls) == 2 and widget.ui.labelsText.plainText == "cells"
