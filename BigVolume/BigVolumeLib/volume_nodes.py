"""Ordinary Slicer volume nodes made from a level of a multiscale image."""

import numpy as np
import vtk
from vtk.util import numpy_support


def vtk_matrix(matrix):
    """A vtkMatrix4x4 of a 4x4 `matrix` (numpy or nested lists)."""
    result = vtk.vtkMatrix4x4()
    for row in range(4):
        for column in range(4):
            result.SetElement(row, column, float(matrix[row][column]))
    return result


def numpy_matrix(matrix):
    """A 4x4 numpy array of a vtkMatrix4x4."""
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def set_ijk_to_ras(volume_node, matrix):
    """Give `volume_node` the 4x4 IJK->RAS `matrix` (numpy or nested lists)."""
    volume_node.SetIJKToRASMatrix(vtk_matrix(matrix))


def region_ijk_to_ras(level, box):
    """IJK->RAS of a sub-volume of `level` starting at voxel (z0, y0, x0) of `box`."""
    (z0, _), (y0, _), (x0, _) = box
    matrix = np.array(level.ijk_to_ras, dtype=float)
    matrix[:3, 3] = (matrix @ np.array([x0, y0, z0, 1.0]))[:3]
    return matrix


def read_region_into_volume_node(scene, image, level, box, name=None, volume_node=None):
    """Read `box` ((z0, z1), (y0, y1), (x0, x1)) of `level` into a scalar volume node.

    The node lands exactly where the region lies in RAS, so it overlays the
    full-resolution data. A new node is added to `scene` unless `volume_node`
    is given.
    """
    voxels = np.ascontiguousarray(image.read(level, box))
    lvl = image.levels[level]
    if volume_node is None:
        volume_node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name or f"{image.name or 'BigVolume'} level {level}")
    image_data = vtk.vtkImageData()
    image_data.SetDimensions(voxels.shape[2], voxels.shape[1], voxels.shape[0])
    scalars = numpy_support.numpy_to_vtk(voxels.reshape(-1), deep=True)
    scalars.SetName("ImageScalars")
    image_data.GetPointData().SetScalars(scalars)
    volume_node.SetAndObserveImageData(image_data)
    set_ijk_to_ras(volume_node, region_ijk_to_ras(lvl, box))
    return volume_node


def level_nbytes(image, level):
    """Bytes a whole level takes in memory."""
    lvl = image.levels[level]
    return int(np.prod(lvl.volume_shape)) * lvl.dtype.itemsize
