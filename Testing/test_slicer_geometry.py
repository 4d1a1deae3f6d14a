"""The strongest oracle: Slicer's own NRRD reader (slicer-core's MRML classes) must put the same data at the same RAS."""

import numpy as np
import pytest
import SimpleITK as sitk
import slicer
import vtk

import bigvolume
from bigvolume import VolumeGeometry
from bigvolume.store.geometry import ras_corners
from BigVolumeLib import read_region_into_volume_node, region_ijk_to_ras


def _rotation(ax, ay, az):
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


@pytest.fixture
def sitk_image():
    voxels = np.random.default_rng(7).integers(0, 3000, (36, 44, 52), dtype=np.int16)
    image = sitk.GetImageFromArray(voxels)  # numpy z, y, x -> ITK x, y, z
    image.SetSpacing((0.7, 0.9, 2.5))
    image.SetOrigin((-30.2, 14.1, 55.0))
    image.SetDirection(_rotation(0.3, -0.2, 0.7).flatten().tolist())
    return image, voxels


def _load_with_slicer(path):
    scene = slicer.vtkMRMLScene()
    node = slicer.vtkMRMLScalarVolumeNode()
    scene.AddNode(node)
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    scene.AddNode(storage)
    storage.SetFileName(str(path))
    assert storage.ReadData(node), f"Slicer could not read {path}"
    return scene, node


def _matrix(node):
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def test_sitk_to_ome_zarr_lands_where_slicer_puts_the_nrrd(tmp_path, sitk_image):
    image, voxels = sitk_image
    sitk.WriteImage(image, str(tmp_path / "volume.nrrd"))
    scene, nrrd_node = _load_with_slicer(tmp_path / "volume.nrrd")

    bigvolume.write_pyramid(voxels, tmp_path / "volume.ome.zarr", VolumeGeometry.from_sitk(image), coarsest=16)
    pyramid = bigvolume.open_image(tmp_path / "volume.ome.zarr")
    level0 = pyramid.levels[0]

    # What SimpleITK's image implies, written out by hand: RAS = diag(-1,-1,1) (origin + D diag(spacing) ijk).
    direction = np.reshape(image.GetDirection(), (3, 3))
    implied = np.eye(4)
    implied[:3, :3] = np.diag([-1, -1, 1]) @ direction @ np.diag(image.GetSpacing())
    implied[:3, 3] = np.diag([-1, -1, 1]) @ np.asarray(image.GetOrigin())
    np.testing.assert_allclose(level0.ijk_to_ras, implied, atol=1e-9)
    np.testing.assert_allclose(level0.ijk_to_ras, _matrix(nrrd_node), atol=1e-6)
    np.testing.assert_allclose(ras_corners(level0.ijk_to_ras, level0.volume_shape),
                               ras_corners(_matrix(nrrd_node), voxels.shape), atol=1e-6)

    # A full-resolution region loaded into a node: same voxels and same RAS as Slicer's own reader.
    region = read_region_into_volume_node(scene, pyramid, 0, [(5, 20), (10, 30), (3, 40)])
    nrrd_voxels = slicer.util.arrayFromVolume(nrrd_node)
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(region), nrrd_voxels[5:20, 10:30, 3:40])
    np.testing.assert_allclose(_matrix(region), _matrix(nrrd_node) @ _translation_ijk(3, 10, 5), atol=1e-6)


def _translation_ijk(i, j, k):
    matrix = np.eye(4)
    matrix[:3, 3] = (i, j, k)
    return matrix


def test_coarse_levels_cover_the_same_ras_box_as_full_resolution(tmp_path):
    """Voxel edges of every level coincide (dimensions divisible by 2**level): no half-voxel shift between levels."""
    geometry = VolumeGeometry(spacing=(0.5, 0.5, 1.5), origin=(12.0, -7.0, 3.0), direction=_rotation(0.1, 0.2, -0.4))
    voxels = np.zeros((32, 64, 96), np.uint16)
    bigvolume.write_pyramid(voxels, tmp_path / "box.ome.zarr", geometry, coarsest=16)
    pyramid = bigvolume.open_image(tmp_path / "box.ome.zarr")
    scene = slicer.vtkMRMLScene()
    bounds = []
    for level in pyramid.levels:
        node = read_region_into_volume_node(scene, pyramid, level.index, [(0, n) for n in level.volume_shape])
        b = [0.0] * 6
        node.GetRASBounds(b)
        bounds.append(b)
    assert len(bounds) == 4
    for b in bounds[1:]:
        np.testing.assert_allclose(b, bounds[0], atol=1e-9)


def test_region_matrix_shifts_origin_only():
    class FakeLevel:
        ijk_to_ras = np.array([[-2.0, 0, 0, 5], [0, -2.0, 0, 6], [0, 0, 3.0, 7], [0, 0, 0, 1]])

    matrix = region_ijk_to_ras(FakeLevel, [(1, 2), (3, 4), (5, 6)])
    np.testing.assert_allclose(matrix[:3, :3], FakeLevel.ijk_to_ras[:3, :3])
    np.testing.assert_allclose(matrix[:3, 3], [5 - 10, 6 - 6, 7 + 3])
