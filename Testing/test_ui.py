"""Every .ui file loads in a real Qt (PySide6, offscreen) and has every widget the module code uses."""

import ast
import os
import re
import xml.etree.ElementTree as ET

import pytest

from conftest import ROOT

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
QtWidgets = pytest.importorskip("PySide6.QtWidgets")
QtUiTools = pytest.importorskip("PySide6.QtUiTools")
QtCore = pytest.importorskip("PySide6.QtCore")

MODULES = ("BigVolume", "BigVolumeSegment")


@pytest.fixture(scope="module")
def app():
    return QtWidgets.QApplication.instance() or QtWidgets.QApplication([])


def _ui_path(module):
    return os.path.join(ROOT, module, "Resources", "UI", f"{module}.ui")


def _load(path):
    """Load a .ui file; Slicer's own widgets (qMRML*, ctk*) are stood in for by their declared Qt base class."""
    loader = QtUiTools.QUiLoader()
    for custom in ET.parse(path).getroot().iter("customwidget"):
        name, base = custom.findtext("class"), custom.findtext("extends")
        loader.registerCustomWidget(type(name, (getattr(QtWidgets, base),), {}))
    ui_file = QtCore.QFile(path)
    assert ui_file.open(QtCore.QIODevice.ReadOnly)
    widget = loader.load(ui_file)
    ui_file.close()
    assert widget is not None, loader.errorString()
    return widget


def _widget_names(path):
    return {w.get("name") for w in ET.parse(path).getroot().iter("widget")}


@pytest.mark.parametrize("module", MODULES)
def test_ui_loads_and_has_every_widget_the_module_uses(app, module):
    path = _ui_path(module)
    widget = _load(path)
    assert widget.objectName() == module
    source = open(os.path.join(ROOT, module, f"{module}.py")).read()
    used = set(re.findall(r"self\.ui\.(\w+)", source))
    assert used, "the module uses no widget of its .ui"
    for name in sorted(used):
        assert widget.findChild(QtCore.QObject, name) is not None, f"{module}.ui has no widget named {name!r}"
    widget.deleteLater()


def _parameter_fields(module):
    tree = ast.parse(open(os.path.join(ROOT, module, f"{module}.py")).read())
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and any(getattr(d, "id", None) == "parameterNodeWrapper" for d in node.decorator_list):
            return {stmt.target.id for stmt in node.body if isinstance(stmt, ast.AnnAssign)}
    return set()


@pytest.mark.parametrize("module", MODULES)
def test_parameter_names_in_ui_match_the_parameter_node(module):
    root = ET.parse(_ui_path(module)).getroot()
    bound = {prop.findtext("string") for prop in root.iter("property") if prop.get("name") == "SlicerParameterName"}
    assert bound <= _parameter_fields(module), f"{module}.ui binds parameters the parameter node lacks"


def test_ui_check_detects_a_missing_widget(app, tmp_path):
    path = tmp_path / "Broken.ui"
    path.write_text(open(_ui_path("BigVolume")).read().replace('name="openButton"', 'name="renamedButton"'))
    widget = _load(str(path))
    assert widget.findChild(QtCore.QObject, "openButton") is None
    assert "openButton" not in _widget_names(str(path))
