"""Extension Manager packaging: CMake metadata, ExtensionsIndex entry, images, license and changelog.

The rules are Slicer's: the extension template
(Utilities/Templates/Extensions/Default/CMakeLists.txt), the catalog entry
schema (Schemas/slicer-extension-catalog-entry-schema-v1.0.2.json, the one
the ExtensionsIndex validates against), the ExtensionsIndex checks
(scripts/check_description_files.py: CMake regular expressions, LF line
endings, license file) and the Developer Guide (128 x 128 PNG icon).
"""

import json
import os
import re
import struct

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAME = "BigVolume"
REPOSITORY = "https://github.com/bigvolume/SlicerBigVolume"
RAW = "https://raw.githubusercontent.com/bigvolume/SlicerBigVolume/main/"
ENTRY = os.path.join(ROOT, "Resources", "ExtensionsIndex", NAME + ".json")
METADATA = ("HOMEPAGE", "CONTRIBUTORS", "DESCRIPTION", "ICONURL", "SCREENSHOTURLS", "DEPENDS")
SCREENSHOT_SIZE = (3 * 360 + 2 * 4, 6 + 360)  # Resources/make_screenshots.py: three 360-pixel views, bars, gaps
THUMBNAIL_SIZE = (280, 260)  # Slicer's SampleData thumbnails: about 260 x 280 to 288 x 261
MAX_SCREENSHOT_BYTES = 300_000

# The catalog entry schema v1.0.2 (draft-07): required keys, properties and their constraints.
SCHEMA_URL = "https://raw.githubusercontent.com/Slicer/Slicer/main/Schemas/slicer-extension-catalog-entry-schema-v1.0.2.json#"
REQUIRED = ("$schema", "category", "scm_url")
PROPERTIES = {
    "$schema": str, "category": str, "scm_url": str, "scm_revision": str, "scm_type": str,
    "build_dependencies": list, "dicom_support_rule": str, "build_subdirectory": str, "enabled": bool, "tier": int,
}


def catalog_entry_errors(entry):
    """What makes `entry` invalid against the catalog entry schema v1.0.2 (empty if valid)."""
    if not isinstance(entry, dict):
        return ["not an object"]
    errors = [f"missing {key}" for key in REQUIRED if key not in entry]
    errors += [f"unknown property {key}" for key in entry if key not in PROPERTIES]
    for key, kind in PROPERTIES.items():
        if key in entry and (not isinstance(entry[key], kind) or (kind is int and isinstance(entry[key], bool))):
            errors.append(f"{key} is not a {kind.__name__}")
    if entry.get("scm_type", "git") not in ("git", "local"):
        errors.append("scm_type is neither git nor local")
    if isinstance(entry.get("tier"), int) and not 1 <= entry["tier"] <= 5:
        errors.append("tier is not in 1..5")
    if isinstance(entry.get("build_dependencies"), list) and not all(isinstance(d, str) for d in entry["build_dependencies"]):
        errors.append("build_dependencies has an item that is not a string")
    return errors


def read(path):
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        return f.read()


def png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


@pytest.fixture(scope="module")
def cmake():
    text = read("CMakeLists.txt")
    values = dict(re.findall(r'^set\(EXTENSION_(\w+) "([^"]*)"\)', text, re.MULTILINE))
    values["project"] = re.search(r"^project\((\w+)\)", text, re.MULTILINE).group(1)
    return values


@pytest.fixture(scope="module")
def entry():
    with open(ENTRY, encoding="utf-8") as f:
        return json.load(f)


def repository_path(url):
    assert url.startswith(RAW), f"{url} is not a raw file of {REPOSITORY} on main"
    return os.path.join(ROOT, *url[len(RAW):].split("/"))


def test_cmake_metadata_is_complete(cmake):
    assert cmake["project"] == NAME
    for key in METADATA:
        assert cmake.get(key, "").strip(), f"EXTENSION_{key} is missing or empty"
    assert cmake["HOMEPAGE"].startswith(REPOSITORY)
    assert "Firstname" not in cmake["CONTRIBUTORS"] and "example" not in cmake["ICONURL"]  # not the template's
    assert len(cmake["DESCRIPTION"]) < 400 and "\n" not in cmake["DESCRIPTION"]  # one line


def test_icon_and_screenshot_urls_are_images_in_the_repository(cmake):
    icon = repository_path(cmake["ICONURL"])
    assert png_size(icon) == (128, 128)
    screenshots = cmake["SCREENSHOTURLS"].split()
    assert screenshots
    for url in screenshots:
        path = repository_path(url)
        assert png_size(path) == SCREENSHOT_SIZE
        assert os.path.getsize(path) < MAX_SCREENSHOT_BYTES


def test_sample_data_thumbnail():
    path = os.path.join(ROOT, "BigVolume", "Resources", "Icons", "BigVolumeSampleRockCore.png")
    assert png_size(path) == THUMBNAIL_SIZE


def test_catalog_entry_is_valid(entry):
    assert catalog_entry_errors(entry) == []
    assert entry["$schema"] == SCHEMA_URL


@pytest.mark.parametrize("change, error", [
    ({"category": None}, "missing category"),
    ({"scm_url": None}, "missing scm_url"),
    ({"homepage": "https://example.org"}, "unknown property homepage"),
    ({"tier": 6}, "tier is not in 1..5"),
    ({"tier": "1"}, "tier is not a int"),
    ({"enabled": 1}, "enabled is not a bool"),
    ({"scm_type": "svn"}, "scm_type is neither git nor local"),
    ({"build_dependencies": "NA"}, "build_dependencies is not a list"),
    ({"build_dependencies": [1]}, "build_dependencies has an item that is not a string"),
])
def test_catalog_entry_check_rejects(entry, change, error):
    changed = {**entry, **change}
    changed = {key: value for key, value in changed.items() if value is not None}
    assert error in catalog_entry_errors(changed)


def test_catalog_entry_matches_cmake(cmake, entry):
    assert os.path.basename(ENTRY) == cmake["project"] + ".json"
    assert entry["scm_url"] == REPOSITORY + ".git"
    assert entry.get("scm_revision") == "main"  # the branch the icon and screenshot URLs name
    depends = [] if cmake["DEPENDS"] == "NA" else cmake["DEPENDS"].split()
    assert entry.get("build_dependencies", []) == depends
    module_category = re.search(r'categories = \[translate\("qSlicerAbstractCoreModule", "([^"]+)"\)\]',
                                read(os.path.join("BigVolume", "BigVolume.py"))).group(1)
    assert entry["category"] == module_category


def test_catalog_entry_is_formatted_like_the_index():
    with open(ENTRY, "rb") as f:
        raw = f.read()
    assert b"\r" not in raw  # the index rejects CR line endings
    text = raw.decode("utf-8")
    assert text == json.dumps(json.loads(text), indent=2, ensure_ascii=False) + "\n"


def test_license_and_changelog():
    assert read("LICENSE.txt").lstrip().startswith("Apache License")
    changelog = read("CHANGELOG.md")
    headings = re.findall(r"^## \[([^\]]+)\]", changelog, re.MULTILINE)
    assert headings[0] == "Unreleased"
    from bigvolume import __version__

    assert __version__ in headings
    assert re.search(rf"^## \[{re.escape(__version__)}\] - \d{{4}}-\d{{2}}-\d{{2}}$", changelog, re.MULTILINE)
