"""One list of Python requirements: pyproject.toml's [project] dependencies.

The rule: a Slicer module's Resources/requirements.txt (what it installs on first use) names exactly those
packages with the same lower bounds. Lower bounds only, as Slicer's convention asks: an exact pin would fight
the versions Slicer and other extensions install. BigVolumeSegment has no file of its own: it installs
BigVolume's, as it runs on the same core.
"""

import glob
import os
import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from conftest import ROOT

MODULE_REQUIREMENTS = sorted(glob.glob(os.path.join(ROOT, "*", "Resources", "requirements.txt")))


def _specifiers(lines):
    """{package name: version specifiers} of requirement lines; comments and blank lines skipped."""
    requirements = [Requirement(line.split("#")[0]) for line in lines if line.split("#")[0].strip()]
    return {canonicalize_name(r.name): r.specifier for r in requirements}


def mismatches(dependencies, lines):
    """How requirement `lines` depart from pyproject's `dependencies` (empty if they agree)."""
    wanted, listed = _specifiers(dependencies), _specifiers(lines)
    return sorted([f"{name} is missing" for name in wanted.keys() - listed.keys()]
                  + [f"{name} is not a dependency in pyproject.toml" for name in listed.keys() - wanted.keys()]
                  + [f"{name}{listed[name]} is not pyproject's {name}{wanted[name]}"
                     for name in wanted.keys() & listed.keys() if listed[name] != wanted[name]])


@pytest.fixture(scope="module")
def dependencies():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)["project"]["dependencies"]


def test_dependencies_are_lower_bounds(dependencies):
    for name, specifier in _specifiers(dependencies).items():
        assert [s.operator for s in specifier] == [">="], f"{name}{specifier}: give one lower bound"


def test_bigvolume_installs_its_requirements_from_resources():
    # ensurePythonDependencies() reads this file.
    assert os.path.join(ROOT, "BigVolume", "Resources", "requirements.txt") in MODULE_REQUIREMENTS


@pytest.mark.parametrize("path", MODULE_REQUIREMENTS, ids=lambda path: os.path.relpath(path, ROOT))
def test_module_requirements_are_pyprojects_dependencies(dependencies, path):
    with open(path, encoding="utf-8") as f:
        assert mismatches(dependencies, f.read().splitlines()) == []


def test_the_check_catches_a_missing_an_extra_and_a_different_bound():
    dependencies = ["numpy>=1.26", "zarr>=3.0.8", "google-crc32c>=1.5"]
    lines = ["# comment", "numpy>=1.26  # why", "", "zarr==3.0.8", "google_crc32c>=1.5", "scipy>=1.11"]
    assert mismatches(dependencies, lines) == ["scipy is not a dependency in pyproject.toml",
                                               "zarr==3.0.8 is not pyproject's zarr>=3.0.8"]
    assert mismatches(dependencies, lines[:2]) == ["google-crc32c is missing", "zarr is missing"]
