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


def _imports(path):
    tree = ast.parse(open(path, encoding="utf-8").read())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package, forbidden", [
    ("BigVolume/bigvolume", {"vtk", "slicer", "qt", "ctk", "PythonQt", "MRMLCorePython"}),
    ("BigVolume/BigVolumeLib", {"qt", "ctk", "PythonQt"}),
    ("BigVolumeSegment/BigVolumeSegmentLib", {"qt", "ctk", "PythonQt"}),
])
def test_layers_depend_downward_only(package, forbidden):
    folder = os.path.join(ROOT, package)
    for name in os.listdir(folder):
        if name.endswith(".py"):
            assert not (_imports(os.path.join(folder, name)) & forbidden), f"{package}/{name} imports {forbidden}"


def test_console_command_is_declared():
    project = tomllib.load(open(os.path.join(ROOT, "pyproject.toml"), "rb"))["project"]
    assert project["scripts"]["bigvolume"] == "bigvolume.tools.cli:main"
    import bigvolume.tools.cli

    assert callable(bigvolume.tools.cli.main)
