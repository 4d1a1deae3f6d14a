"""The extension is laid out as Slicer's templates lay it out, and the layers stay apart."""

import ast
import os
import re
import tomllib

import pytest

from conftest import ROOT

MODULES = ("BigVolume", "BigVolumeSegment")


def _cmake_list(text, variable):
    match = re.search(r"set\(" + variable + r"\s+(.*?)\)", text, re.S)
    assert match, f"{variable} is not set"
    return [item.replace("${MODULE_NAME}", "{module}") for item in match.group(1).split()]


def _module_python_files(module):
    files = []
    for folder, dirs, names in os.walk(os.path.join(ROOT, module)):
        dirs[:] = [d for d in dirs if d not in ("Testing", "__pycache__")]
        files += [os.path.relpath(os.path.join(folder, n), os.path.join(ROOT, module)) for n in names if n.endswith(".py")]
    return sorted(files)


def missing_from_scripts(module):
    """Python files of a module that its CMakeLists.txt SCRIPTS list forgets (they would vanish from the build)."""
    text = open(os.path.join(ROOT, module, "CMakeLists.txt"), encoding="utf-8").read()
    listed = {s.format(module=module) for s in _cmake_list(text, "MODULE_PYTHON_SCRIPTS")}
    return sorted(set(_module_python_files(module)) - listed), listed


@pytest.mark.parametrize("module", MODULES)
def test_every_python_file_is_in_scripts(module):
    missing, listed = missing_from_scripts(module)
    assert missing == []
    for script in listed:  # and nothing listed is absent
        assert os.path.isfile(os.path.join(ROOT, module, script)), script


def test_the_scripts_check_catches_a_forgotten_file(tmp_path, monkeypatch):
    module = tmp_path / "Mod"
    (module / "ModLib").mkdir(parents=True)
    (module / "Mod.py").write_text("")
    (module / "ModLib" / "extra.py").write_text("")
    (module / "CMakeLists.txt").write_text("set(MODULE_NAME Mod)\nset(MODULE_PYTHON_SCRIPTS\n  ${MODULE_NAME}.py\n  )\n")
    monkeypatch.setattr(__import__("test_layout"), "ROOT", str(tmp_path))
    assert missing_from_scripts("Mod")[0] == ["ModLib/extra.py"]


@pytest.mark.parametrize("module", MODULES)
def test_module_follows_the_scripted_template(module):
    text = open(os.path.join(ROOT, module, "CMakeLists.txt"), encoding="utf-8").read()
    assert f"set(MODULE_NAME {module})" in text
    assert "slicerMacroBuildScriptedModule(" in text and "WITH_GENERIC_TESTS" in text
    assert "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in text
    for resource in _cmake_list(text, "MODULE_PYTHON_RESOURCES"):
        assert os.path.isfile(os.path.join(ROOT, module, resource.format(module=module))), resource
    source = open(os.path.join(ROOT, module, f"{module}.py"), encoding="utf-8").read()
    for cls in ("", "Widget", "Logic", "Test"):
        assert re.search(rf"^class {module}{cls}\(", source, re.M), f"class {module}{cls} missing"
    assert os.path.isfile(os.path.join(ROOT, module, f"{module}Lib", "__init__.py"))


def test_extension_cmakelists_follows_the_extension_template():
    text = open(os.path.join(ROOT, "CMakeLists.txt"), encoding="utf-8").read()
    for variable in ("HOMEPAGE", "CONTRIBUTORS", "DESCRIPTION", "ICONURL", "SCREENSHOTURLS", "DEPENDS"):
        assert re.search(rf'set\(EXTENSION_{variable} "[^"]+"\)', text), variable
    assert "find_package(Slicer REQUIRED)" in text and "include(${Slicer_USE_FILE})" in text
    assert "include(${Slicer_EXTENSION_GENERATE_CONFIG})" in text and "include(${Slicer_EXTENSION_CPACK})" in text
    for module in MODULES:
        assert f"add_subdirectory({module})" in text
    for name in ("README.md", "LICENSE.txt", "pyproject.toml"):
        assert os.path.isfile(os.path.join(ROOT, name))


# Calls that import the module their first argument names: a layer reached through a string is still reached
# (resolve_name loads a "module:attribute" string, an entry point's value without the entry point).
IMPORTING_CALLS = {"import_module", "__import__", "resolve_name"}


def _imports(path):
    """Top-level names of the modules a file imports, by statement or by an importing call with a string."""
    tree = ast.parse(open(path, encoding="utf-8").read())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and node.args:
            function = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
            name = node.args[0]
            if isinstance(name, ast.JoinedStr) and name.values:  # f"pkg.{x}": the name begins with its constant head
                name = name.values[0]
            if function in IMPORTING_CALLS and isinstance(name, ast.Constant) and isinstance(name.value, str):
                names.add(re.split(r"[.:]", name.value)[0])
    return names


def layer_violations(package, forbidden):
    """The modules of `package`, subpackages included, that import one of `forbidden`, with what they import."""
    folder = os.path.join(ROOT, package)
    violations = []
    for parent, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(n for n in names if n.endswith(".py")):
            path = os.path.join(parent, name)
            if imported := _imports(path) & forbidden:
                violations.append((os.path.relpath(path, folder), sorted(imported)))
    return violations


QT = {"qt", "ctk", "PythonQt"}
# The core runs without Slicer, VTK or Qt, and reaches the MRML layers only through entry points.
CORE_FORBIDDEN = QT | {"vtk", "slicer", "slicer_core", "MRMLCorePython", "BigVolumeLib", "BigVolumeSegmentLib"}


@pytest.mark.parametrize("package, forbidden", [
    ("BigVolume/bigvolume", CORE_FORBIDDEN),
    ("BigVolume/BigVolumeLib", QT),
    ("BigVolumeSegment/BigVolumeSegmentLib", QT),
])
def test_layers_depend_downward_only(package, forbidden):
    assert layer_violations(package, forbidden) == []


def test_the_layers_check_reads_subpackages_and_importing_calls(tmp_path, monkeypatch):
    core = tmp_path / "BigVolume" / "bigvolume"
    (core / "ingest").mkdir(parents=True)
    (core / "__init__.py").write_text("import importlib\n\nimportlib.import_module('.store', __name__)\n")
    (core / "ingest" / "views.py").write_text("import importlib\n\n\ndef views():\n"
                                              "    return importlib.import_module('BigVolumeLib.x')\n")
    (core / "ingest" / "more.py").write_text("from importlib import import_module\nfrom pkgutil import resolve_name\n"
                                             "__import__('vtk.util')\nimport_module(f'qt.{1}')\n"
                                             "resolve_name('BigVolumeSegmentLib.y:z')\n")
    monkeypatch.setattr(__import__("test_layout"), "ROOT", str(tmp_path))
    assert layer_violations("BigVolume/bigvolume", CORE_FORBIDDEN) == [
        ("ingest/more.py", ["BigVolumeSegmentLib", "qt", "vtk"]), ("ingest/views.py", ["BigVolumeLib"])]


def test_no_file_refers_to_a_design_document_the_repository_lacks():
    document = "DESIGN.md"
    files = []
    for parent, dirs, names in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in (".git", ".venv")]
        files += [os.path.join(parent, n) for n in names]
    if any(os.path.basename(f) == document for f in files):
        return
    referring = [os.path.relpath(f, ROOT) for f in files if f.endswith((".py", ".md")) and f != __file__
                 and document in open(f, encoding="utf-8", errors="replace").read()]  # this file names it to look
    assert referring == [], f"the repository has no {document}"


def test_console_command_is_declared():
    project = tomllib.load(open(os.path.join(ROOT, "pyproject.toml"), "rb"))["project"]
    assert project["scripts"]["bigvolume"] == "bigvolume.tools.cli:main"
    import bigvolume.tools.cli

    assert callable(bigvolume.tools.cli.main)
