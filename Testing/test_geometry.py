"""Geometry details: RFC-4 orientation, units per axis, direction validation, parallel chunk fetches."""

import asyncio
import json

import numpy as np
import pytest
from zarr.storage import LocalStore, WrapperStore

import bigvolume
from bigvolume import VolumeGeometry
from bigvolume.store.geometry import orientation_matrix


def _write(tmp_path, **kwargs):
    path = tmp_path / "g.ome.zarr"
    bigvolume.write_pyramid(np.zeros((16, 16, 16), np.uint8), path, VolumeGeometry(spacing=(1, 2, 3), origin=(10, 20, 30)), **kwargs)
    return path


def _edit_axes(path, edit):
    meta = json.loads((path / "zarr.json").read_text())
    for axis in meta["attributes"]["ome"]["multiscales"][0]["axes"]:
        edit(axis)
    (path / "zarr.json").write_text(json.dumps(meta))


def test_rfc4_orientation_is_written_as_lps_and_honoured_when_flipped(tmp_path):
    path = _write(tmp_path)
    axes = json.loads((path / "zarr.json").read_text())["attributes"]["ome"]["multiscales"][0]["axes"]
    assert {a["name"]: a["orientation"]["value"] for a in axes} == {
        "x": "right-to-left", "y": "anterior-to-posterior", "z": "inferior-to-superior"}
    lps = bigvolume.open_image(path).levels[0].ijk_to_ras
    np.testing.assert_allclose(lps[:3, :3], np.diag([-1, -2, 3]))
    np.testing.assert_allclose(lps[:3, 3], [-10, -20, 30])

    # A store whose x axis runs left-to-right is RAS-like along x: Slicer's R grows with x.
    _edit_axes(path, lambda a: a.update(orientation={"type": "anatomical", "value": "left-to-right"}) if a["name"] == "x" else None)
    flipped = bigvolume.open_image(path).levels[0].ijk_to_ras
    np.testing.assert_allclose(flipped[:3, :3], np.diag([1, -2, 3]))
    np.testing.assert_allclose(flipped[:3, 3], [10, -20, 30])


def test_permuted_orientation():
    matrix, warning = orientation_matrix({"x": "anterior-to-posterior", "y": "superior-to-inferior", "z": "right-to-left"})
    assert warning is None
    np.testing.assert_array_equal(matrix, [[0, 0, 1], [1, 0, 0], [0, -1, 0]])


def test_orientation_that_cannot_map_to_lps_warns_and_falls_back(tmp_path):
    path = _write(tmp_path)
    _edit_axes(path, lambda a: a.update(orientation={"type": "anatomical", "value": "dorsal-to-ventral"}))
    image = bigvolume.open_image(path)
    assert image.warnings and "cannot be mapped to LPS" in image.warnings[0]
    np.testing.assert_allclose(image.levels[0].ijk_to_ras[:3, :3], np.diag([-1, -2, 3]))
    _, warning = orientation_matrix({"x": "right-to-left", "y": "left-to-right", "z": "inferior-to-superior"})
    assert "names an axis twice" in warning


def test_each_axis_may_use_its_own_unit(tmp_path):
    path = _write(tmp_path)
    units = {"z": "micrometer", "y": "nanometer", "x": "nanometer"}
    _edit_axes(path, lambda a: a.update(unit=units[a["name"]]))
    level = bigvolume.open_image(path).levels[0]
    np.testing.assert_allclose(level.voxel_size_mm, (1e-6, 2e-6, 3e-3))
    np.testing.assert_allclose(level.ijk_to_ras[:3, 3], [-10e-6, -20e-6, 30e-3])


def test_geometry_rejects_nonsense():
    with pytest.raises(ValueError, match="spacing must be three positive"):
        VolumeGeometry(spacing=(1, 0, 1))
    with pytest.raises(ValueError, match="orthonormal"):
        VolumeGeometry(direction=((1, 0, 0), (0, 2, 0), (0, 0, 1)))
    with pytest.raises(bigvolume.MetadataError, match="unknown space unit"):
        VolumeGeometry(unit="cubit")
    assert VolumeGeometry(unit="µm").unit == "micrometer"


def test_bad_direction_attribute_is_reported(tmp_path):
    path = _write(tmp_path)
    meta = json.loads((path / "zarr.json").read_text())
    meta["attributes"]["bigvolume"]["direction"] = [[1, 0, 0], [0, 1, 0]]
    (path / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(bigvolume.MetadataError, match="bigvolume.direction' is not an orthonormal"):
        bigvolume.open_image(path)


class ConcurrencyProbe(WrapperStore):
    """Counts chunk reads in flight at once; each read takes a little while, like a disk or a server."""

    in_flight = 0
    most = 0

    async def get(self, key, prototype, byte_range=None):
        if "/c/" not in "/" + key:
            return await self._store.get(key, prototype, byte_range)
        ConcurrencyProbe.in_flight += 1
        ConcurrencyProbe.most = max(ConcurrencyProbe.most, ConcurrencyProbe.in_flight)
        try:
            await asyncio.sleep(0.02)
            return await self._store.get(key, prototype, byte_range)
        finally:
            ConcurrencyProbe.in_flight -= 1


def test_read_fetches_chunks_in_parallel(tmp_path):
    path = tmp_path / "p.ome.zarr"
    volume = np.random.default_rng(0).integers(0, 100, (32, 64, 64), dtype=np.uint8)
    bigvolume.write_pyramid(volume, path, chunks=(16, 16, 16), shard_chunks=None)
    image = bigvolume.open_image(ConcurrencyProbe(LocalStore(str(path), read_only=True)))
    np.testing.assert_array_equal(image.read(0, [(0, 32), (0, 64), (0, 64)]), volume)
    assert ConcurrencyProbe.most > 1  # 32 chunks requested together, not one after another
