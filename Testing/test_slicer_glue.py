"""The Slicer glue follows the interfaces Slicer calls by name (checked on the source: Slicer itself is not here)."""

import ast
import os

import pytest

from conftest import ROOT

MODULE = os.path.join(ROOT, "BigVolume", "BigVolume.py")


def _classes(path):
    tree = ast.parse(open(path).read())
    return {node.name: {f.name for f in node.body if isinstance(f, ast.FunctionDef)}
            for node in tree.body if isinstance(node, ast.ClassDef)}


def test_file_reader_has_what_qslicerscriptedfilereader_calls():
    # qSlicerScriptedLoadableModule registers a class named <module>FileReader; qSlicerScriptedFileReader
    # calls description, fileType, extensions, load and canLoadFile or canLoadFileConfidence.
    methods = _classes(MODULE)["BigVolumeFileReader"]
    assert {"__init__", "description", "fileType", "extensions", "load"} <= methods
    assert methods & {"canLoadFile", "canLoadFileConfidence"}


def test_file_dialog_has_what_qslicerscriptedfiledialog_calls():
    # qSlicerScriptedLoadableModule registers <module>FileDialog; drops call isMimeDataAccepted and dropEvent.
    assert {"__init__", "execDialog", "isMimeDataAccepted", "dropEvent"} <= _classes(MODULE)["BigVolumeFileDialog"]


def test_the_module_needs_no_package_before_the_user_agrees_to_install_them():
    # Settings, file reader checks and output names run before ensurePythonDependencies(): with zarr,
    # tensorstore and tifffile missing they must still import (Slicer bundles numpy).
    import subprocess
    import sys

    code = ("import sys\n"
            "for name in ('zarr', 'tensorstore', 'tifffile', 'numcodecs'): sys.modules[name] = None\n"
            "import bigvolume.streaming.cache, bigvolume.store.locate, bigvolume.tools.naming, bigvolume.errors\n"
            "bigvolume.streaming.cache.default_budget_bytes(); bigvolume.tools.naming.output_name('/a/b.tif')\n"
            "try:\n    bigvolume.open_image\nexcept ImportError:\n    print('lazy')\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": os.path.join(ROOT, "BigVolume")})
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "lazy"  # the zarr-backed parts load on first use, not at package import


def test_module_has_the_scripted_module_classes():
    classes = _classes(MODULE)
    for suffix in ("", "Widget", "Logic", "Test"):
        assert f"BigVolume{suffix}" in classes
    tests = {name for name in classes["BigVolumeTest"] if name.startswith("test_")}
    run_test = ast.unparse(next(f for f in ast.walk(ast.parse(open(MODULE).read()))
                                if isinstance(f, ast.FunctionDef) and f.name == "runTest"))
    assert all(f"self.{name}" in run_test for name in tests), "runTest must run every self-test"


def test_python_dependencies_are_not_installed_at_import_time():
    tree = ast.parse(open(MODULE).read())
    top_level_calls = [node for node in tree.body if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)]
    assert top_level_calls == []
    imports = {alias.name.split(".")[0] for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))
               for alias in node.names} | {node.module.split(".")[0] for node in tree.body
                                           if isinstance(node, ast.ImportFrom) and node.module}
    assert not imports & {"bigvolume", "zarr", "numpy", "tensorstore", "BigVolumeLib"}


@pytest.mark.parametrize("module", ["BigVolume", "BigVolumeSegment"])
def test_every_module_resource_is_installed(module):
    import re

    cmake = open(os.path.join(ROOT, module, "CMakeLists.txt")).read()
    block = re.search(r"set\(MODULE_PYTHON_RESOURCES(.*?)\)", cmake, re.S).group(1)
    listed = {line.strip().replace("${MODULE_NAME}", module) for line in block.splitlines() if line.strip()}
    resources = os.path.join(ROOT, module, "Resources")
    present = {os.path.relpath(os.path.join(d, f), os.path.join(ROOT, module))
               for d, _, files in os.walk(resources) for f in files}
    assert present <= listed, f"not installed with the module: {sorted(present - listed)}"
    assert listed <= present, f"listed but missing: {sorted(listed - present)}"


def test_everything_the_panel_asks_of_the_logic_is_defined_by_the_logic():
    # The widget relies on the logic's own methods (e.g. getParameterNode returning the wrapper, not the base
    # class's raw node); a name the logic lacks would only fail inside Slicer.
    tree = ast.parse(open(MODULE).read())
    classes = {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}
    used = {node.attr for node in ast.walk(classes["BigVolumeWidget"])
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
            and node.value.attr == "logic" and isinstance(node.value.value, ast.Name) and node.value.value.id == "self"}
    logic = classes["BigVolumeLogic"]
    defined = {f.name for f in logic.body if isinstance(f, ast.FunctionDef)} | \
              {t.id for stmt in logic.body if isinstance(stmt, ast.Assign) for t in stmt.targets if isinstance(t, ast.Name)}
    defined |= {t.attr for node in ast.walk(logic) if isinstance(node, ast.Assign) for t in node.targets
                if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self"}
    assert "getParameterNode" in used and used <= defined, f"the logic lacks {sorted(used - defined)}"
