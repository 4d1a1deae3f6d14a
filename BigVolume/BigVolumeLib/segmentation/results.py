"""Full-resolution results of a label pyramid as ordinary Slicer nodes: a statistics table (the columns of
Slicer's Segment Statistics for labelmap and scalar volume measurements) and segment meshes as model nodes."""

import numpy as np
import vtk
from vtk.util import numpy_support

# Column name, unit, and how to get the value from a SegmentStatistics.
STATISTICS_COLUMNS = (
    ("Segment", "", lambda s: s.name),
    ("Label value", "", lambda s: s.value),
    ("Voxel count", "voxels", lambda s: s.voxel_count),
    ("Volume", "mm3", lambda s: s.volume_mm3),
    ("Minimum", "", lambda s: s.intensity_min),
    ("Maximum", "", lambda s: s.intensity_max),
    ("Mean", "", lambda s: s.intensity_mean),
    ("Standard deviation", "", lambda s: s.intensity_std),
)


def statistics_table(scene, stats, name="BigVolume segment statistics", table_node=None):
    """A vtkMRMLTableNode of `segment_statistics` results, one row per segment (empty cells where a value is
    unknown, as for a segment with no voxels)."""
    table_node = table_node or scene.AddNewNodeByClass("vtkMRMLTableNode", name)
    table = table_node.GetTable()
    table.Initialize()
    for title, unit, get in STATISTICS_COLUMNS:
        column = vtk.vtkStringArray() if title == "Segment" else vtk.vtkDoubleArray()
        column.SetName(title)
        for s in stats:
            value = get(s)
            if title == "Segment":
                column.InsertNextValue(value)
            else:
                column.InsertNextValue(np.nan if value is None else float(value))
        table.AddColumn(column)
        if unit:
            table_node.SetColumnUnitLabel(title, unit)
    table_node.Modified()
    return table_node


def mesh_polydata(mesh):
    """A SegmentMesh (vertices in RAS, outward triangles, normals) as vtkPolyData."""
    points = vtk.vtkPoints()
    points.SetData(numpy_support.numpy_to_vtk(np.ascontiguousarray(mesh.vertices, dtype=np.float64), deep=True))
    cells = vtk.vtkCellArray()
    offsets = np.arange(0, 3 * len(mesh.triangles) + 1, 3, dtype=np.int64)
    connectivity = np.ascontiguousarray(mesh.triangles, dtype=np.int64).reshape(-1)
    cells.SetData(numpy_support.numpy_to_vtkIdTypeArray(offsets, deep=True),
                  numpy_support.numpy_to_vtkIdTypeArray(connectivity, deep=True))
    polydata = vtk.vtkPolyData()
    polydata.SetPoints(points)
    polydata.SetPolys(cells)
    normals = numpy_support.numpy_to_vtk(np.ascontiguousarray(mesh.normals, dtype=np.float32), deep=True)
    normals.SetName("Normals")
    polydata.GetPointData().SetNormals(normals)
    return polydata


def mesh_model_node(scene, mesh, color=(0.5, 0.68, 0.5), name=None):
    """A model node holding a segment's mesh, in the segment's colour."""
    node = scene.AddNewNodeByClass("vtkMRMLModelNode", name or mesh.name)
    node.SetAndObservePolyData(mesh_polydata(mesh))
    node.CreateDefaultDisplayNodes()
    node.GetDisplayNode().SetColor(*color)
    return node
