"""Closed surface meshes of label segments, block by block: watertight, independent of the blocking, where the
voxels are in RAS, and the same surface as VTK's discrete flying edges and Slicer's closed-surface conversion."""

import os

import numpy as np
import pytest
import slicer
import vtk
from vtk.util import numpy_support

import bigvolume
from bigvolume.errors import BigVolumeError
from bigvolume.labels.editor import LabelEditor
from bigvolume.labels.label_store import create_labels
from bigvolume.labels.meshes import export_meshes, segment_mesh, segment_meshes, windowed_sinc, write_mesh
from bigvolume.labels.operations import Brush
from bigvolume.labels.segments import Segment
from bigvolume.tools.cli import main
from label_helpers import GEOMETRY, fill

pytestmark = pytest.mark.usefixtures("small_chunks")  # 8^3 label chunks

SHAPE = (22, 37, 41)  # z, y, x
BLOCK = 8  # one chunk: 3 x 5 x 6 blocks, so every shape below crosses block borders along every axis
WHOLE = 64  # one block holds the whole volume
AXIS_ALIGNED = bigvolume.VolumeGeometry(spacing=(0.4, 0.5, 0.7), origin=(3.0, -2.0, 1.0))
MIRRORED = bigvolume.VolumeGeometry(spacing=(0.4, 0.5, 0.7), origin=(3.0, -2.0, 1.0),
                                    direction=((1.0, 0.0, 0.0), (0.0, -1.0, 0.0), (0.0, 0.0, 1.0)))
BALL = ((10.5, 18.0, 20.0), 8.0)  # centre (z, y, x) and radius in voxels
BOX = (slice(0, 13), slice(0, 26), slice(30, 41))  # touches the volume's faces z = 0, y = 0 and x = 40
CORNER = (slice(15, 22), slice(30, 37), slice(0, 9))  # touches z = 21, y = 36 and x = 0
NOISE = (slice(2, 20), slice(2, 12), slice(2, 14))  # random voxels: diagonal contacts, holes, ambiguous faces
SEGMENTS = [Segment(1, "ball"), Segment(2, "box"), Segment(3, "corner piece/left"), Segment(4, "noise"),
            Segment(5, "empty")]


def label_volume():
    labels = np.zeros(SHAPE, dtype=np.uint8)
    z, y, x = np.indices(SHAPE)
    (cz, cy, cx), r = BALL
    labels[(z - cz) ** 2 + (y - cy) ** 2 + (x - cx) ** 2 <= r * r] = 1
    labels[BOX] = 2
    labels[CORNER] = 3
    noise = np.random.default_rng(4).random(labels[NOISE].shape) < 0.45
    labels[NOISE][noise] = 4
    return labels


def make_store(path, geometry=GEOMETRY):
    bigvolume.write_pyramid(np.zeros(SHAPE, dtype=np.uint16), path / "img.ome.zarr", geometry, coarsest=8,
                            chunks=(16, 16, 16))
    image = bigvolume.open_image(path / "img.ome.zarr")
    store = create_labels(image, "seg", segments=SEGMENTS)
    labels = label_volume()
    fill(store, labels)
    return store, labels


@pytest.fixture
def labelled(tmp_path):
    return make_store(tmp_path)


def assert_watertight(mesh):
    """Every edge borders exactly two triangles, once in each direction (consistent winding); no duplicate or
    unused vertex, no degenerate triangle; the normals point out (positive enclosed volume)."""
    t, n = mesh.triangles, len(mesh.vertices)
    directed = np.concatenate([t[:, [0, 1]], t[:, [1, 2]], t[:, [2, 0]]])
    undirected = np.sort(directed, axis=1)
    _, uses = np.unique(undirected[:, 0] * n + undirected[:, 1], return_counts=True)
    assert uses.min() == uses.max() == 2
    assert len(np.unique(directed[:, 0] * n + directed[:, 1])) == len(directed)
    assert len(np.unique(mesh.vertices, axis=0)) == n
    assert np.array_equal(np.unique(t), np.arange(n))
    assert np.all((t[:, 0] != t[:, 1]) & (t[:, 1] != t[:, 2]) & (t[:, 0] != t[:, 2]))
    assert mesh.volume_mm3 > 0
    assert np.allclose(np.linalg.norm(mesh.normals, axis=1), 1.0)


def canonical(triangles):
    """Triangles as a sorted array, each rotated to start at its smallest index (the winding kept)."""
    start = np.argmin(triangles, axis=1)
    rolled = np.stack([triangles[np.arange(len(triangles)), (start + k) % 3] for k in range(3)], axis=1)
    return rolled[np.lexsort(rolled.T[::-1])]


def box_mesh_volume(box):
    """Exact volume, in voxels, enclosed by the surface through the voxel-face centres of an a x b x c box of
    voxels: the box of their outer faces, less 1/8 voxel per voxel of length along its 12 edges between the
    corner voxels (the surface cuts the edge's corner off at the half-way points: a right triangle of legs 1/2),
    less 5/48 at each of its 8 corners (the corner octant, 1/8, keeps a tetrahedron of 1/48)."""
    a, b, c = (s.stop - s.start for s in box)
    return a * b * c - (a + b + c - 3) / 2.0 - 8 * 5 / 48


def voxel_mm3(store, level=0):
    return float(np.prod(store.levels[level].voxel_size_mm))


def to_ijk(store, level, points):
    return (store.levels[level].ras_to_ijk @ np.c_[points, np.ones(len(points))].T)[:3].T


# -- watertight, and blocks change nothing --------------------------------------------------------------------
def test_every_segment_is_watertight_across_blocks_and_outer_faces(labelled):
    store, labels = labelled
    # The two boxes touch all six outer faces of the volume between them (closed there by the padding).
    touching = {(axis, side) for box in (BOX, CORNER) for axis, s in enumerate(box)
                for side, at in ((0, s.start == 0), (1, s.stop == SHAPE[axis])) if at}
    assert touching == {(a, s) for a in range(3) for s in (0, 1)}
    meshes = segment_meshes(store, level=0, block=BLOCK)
    assert [m.name for m in meshes] == [s.name for s in SEGMENTS]
    for mesh in meshes[:4]:
        assert_watertight(mesh)
        ijk = to_ijk(store, 0, mesh.vertices)
        spans = [np.unique(np.floor(ijk[:, axis] / BLOCK)).size for axis in (2, 1, 0)]
        assert min(spans) >= 2, f"{mesh.name} must cross block borders along z, y and x"
    empty = meshes[4]
    assert len(empty.vertices) == len(empty.triangles) == 0 and empty.volume_mm3 == 0.0


def test_blocking_changes_nothing(labelled):
    store, _ = labelled
    for smoothing in (0.0, 0.5):
        blocks = []
        blocked = segment_meshes(store, [1, 2, 3, 4], smoothing=smoothing, block=BLOCK,
                                 progress=lambda done, total: blocks.append(total))
        single = segment_meshes(store, [1, 2, 3, 4], smoothing=smoothing, block=WHOLE,
                                progress=lambda done, total: blocks.append(total))
        assert (blocks[0], blocks[-1]) == (3 * 5 * 6, 1)
        for a, b in zip(blocked, single):
            # Same vertices in the same order (exactly before smoothing: welded by exact keys), same triangles.
            np.testing.assert_allclose(a.vertices, b.vertices, rtol=0, atol=1e-9 if smoothing else 0)
            assert np.array_equal(canonical(a.triangles), canonical(b.triangles))
    # Blocks of several chunks and of unequal sides mesh alike too.
    odd = segment_mesh(store, "noise", block=(16, 8, 24))
    whole = segment_mesh(store, "noise", block=WHOLE)
    assert np.array_equal(odd.vertices, whole.vertices)
    assert np.array_equal(canonical(odd.triangles), canonical(whole.triangles))


def test_blocks_meshed_on_worker_processes_and_on_dask_give_the_same_meshes(labelled):
    import distributed

    store, _ = labelled
    here = segment_meshes(store, [1, 2, 3, 4], block=BLOCK)
    pooled = segment_meshes(store, [1, 2, 3, 4], block=BLOCK, workers=2)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        done = []
        dasked = segment_meshes(store, [1, 2, 3, 4], block=BLOCK, scheduler=cluster.scheduler_address,
                                progress=lambda d, total: done.append(d))
    assert done[-1] == 3 * 5 * 6
    for other in (pooled, dasked):
        for a, b in zip(here, other):  # blocks arrive in any order: the weld gives the same vertices
            assert np.array_equal(a.vertices, b.vertices)
            assert np.array_equal(canonical(a.triangles), canonical(b.triangles))


def test_an_unreachable_dask_scheduler_is_named(labelled, monkeypatch):
    import distributed

    store, _ = labelled

    def unreachable(address, timeout=None):
        raise OSError(f"Timed out trying to connect to {address}")

    monkeypatch.setattr(distributed, "Client", unreachable)
    with pytest.raises(BigVolumeError, match="cannot reach the Dask scheduler at tcp://nowhere:8786"):
        segment_meshes(store, [1], block=BLOCK, scheduler="tcp://nowhere:8786")


def test_smoothing_keeps_the_welded_mesh_closed(labelled):
    store, _ = labelled
    plain = segment_mesh(store, "ball", block=BLOCK)
    smooth = segment_mesh(store, "ball", smoothing=0.5, block=BLOCK)
    assert_watertight(smooth)  # smoothing moves vertices only: the welded connectivity stays
    assert np.array_equal(smooth.triangles, plain.triangles)
    # Vertices move a fraction of a voxel; the staircase goes (less area), the volume stays (within 2%).
    moved = np.linalg.norm(to_ijk(store, 0, smooth.vertices) - to_ijk(store, 0, plain.vertices), axis=1)
    assert 0.05 < moved.mean() < 0.5 and moved.max() < 1.0
    assert smooth.area_mm2 < 0.95 * plain.area_mm2
    assert smooth.volume_mm3 == pytest.approx(plain.volume_mm3, rel=0.02)


# -- volume and placement -------------------------------------------------------------------------------------
def test_enclosed_volume(labelled):
    store, labels = labelled
    v = voxel_mm3(store)
    # Boxes: the surface passes half-way between inside and outside voxel centres, so it keeps the voxels' flat
    # faces and cuts their edges and corners; the volume it encloses is known exactly.
    for name, box in (("box", BOX), ("corner piece/left", CORNER)):
        mesh = segment_mesh(store, name, block=BLOCK)
        assert mesh.volume_mm3 == pytest.approx(box_mesh_volume(box) * v, rel=1e-9)
        assert mesh.volume_mm3 < labels[box].size * v
    # A ball: on its staircase of voxel faces, the convex edges the surface cuts and the concave ones it fills
    # nearly cancel; what stays is a loss at the ball's own curvature, which shrinks as 1 / radius (measured
    # -0.9% at radius 8, -0.4% at radius 12). Tolerance 1.5%: well above that, far below what a wrong voxel size
    # (20% or more here) would give; a hole at a block border is caught by the watertight test.
    ball = segment_mesh(store, "ball", block=BLOCK)
    count = int((labels == 1).sum())
    assert ball.volume_mm3 == pytest.approx(count * v, rel=0.015)
    # Cross-check of the divergence-theorem volume against VTK's.
    mass = vtk.vtkMassProperties()
    mass.SetInputData(polydata(ball.vertices, ball.triangles))
    mass.Update()
    assert mass.GetVolume() == pytest.approx(ball.volume_mm3, rel=1e-9)
    assert mass.GetSurfaceArea() == pytest.approx(ball.area_mm2, rel=1e-9)


@pytest.mark.parametrize("geometry", [AXIS_ALIGNED, MIRRORED], ids=["axis-aligned", "mirrored"])
def test_vertices_in_ras_by_the_level_geometry(tmp_path, geometry):
    store, labels = make_store(tmp_path, geometry)
    box = segment_mesh(store, "box", block=BLOCK)
    # The surface lies half a voxel outside the outer voxel centres: a box's bounds are its voxels' outer faces,
    # placed by the image's spacing, origin and direction (LPS), turned into RAS.
    (z0, z1), (y0, y1), (x0, x1) = ((s.start, s.stop) for s in BOX)
    corners = np.array([[x, y, z] for x in (x0 - 0.5, x1 - 0.5) for y in (y0 - 0.5, y1 - 0.5)
                        for z in (z0 - 0.5, z1 - 0.5)])
    lps = np.array(geometry.origin) + corners * np.array(geometry.spacing) @ np.array(geometry.direction).T
    ras = lps * np.array([-1.0, -1.0, 1.0])
    np.testing.assert_allclose(box.vertices.min(axis=0), ras.min(axis=0), atol=1e-9)
    np.testing.assert_allclose(box.vertices.max(axis=0), ras.max(axis=0), atol=1e-9)
    # A mirroring grid still gives outward normals and the same enclosed volume.
    assert_watertight(box)
    assert box.volume_mm3 == pytest.approx(box_mesh_volume(BOX) * voxel_mm3(store), rel=1e-9)
    assert np.linalg.det(store.levels[0].ijk_to_ras[:3, :3]) * (1 if geometry is AXIS_ALIGNED else -1) > 0


def test_oblique_and_coarser_levels_sit_on_their_own_grid(labelled):
    store, labels = labelled
    for level in (0, 1):
        level_labels = store.read_box(level, tuple((0, n) for n in store.levels[level].volume_shape))
        mesh = segment_mesh(store, "ball", level=level, block=BLOCK)
        assert_watertight(mesh)
        ijk = to_ijk(store, level, mesh.vertices)
        # Every vertex half-way between two voxel centres of that level (two coordinates whole, one half).
        doubled = ijk * 2
        assert np.allclose(doubled, np.round(doubled), atol=1e-6)
        assert np.all((np.abs(np.round(doubled)) % 2).sum(axis=1) == 1)
        k, j, i = np.nonzero(level_labels == 1)
        np.testing.assert_allclose(ijk.min(axis=0), [i.min() - 0.5, j.min() - 0.5, k.min() - 0.5], atol=1e-6)
        np.testing.assert_allclose(ijk.max(axis=0), [i.max() + 0.5, j.max() + 0.5, k.max() + 0.5], atol=1e-6)


# -- the same surface as VTK and Slicer -----------------------------------------------------------------------
def polydata(points, triangles):
    data = vtk.vtkPolyData()
    vtk_points = vtk.vtkPoints()
    vtk_points.SetData(numpy_support.numpy_to_vtk(np.ascontiguousarray(points, dtype=np.float64), deep=True))
    data.SetPoints(vtk_points)
    cells = vtk.vtkCellArray()
    cells.SetData(3, numpy_support.numpy_to_vtkIdTypeArray(np.ascontiguousarray(triangles.ravel(), dtype=np.int64),
                                                           deep=True))
    data.SetPolys(cells)
    return data


def arrays(data):
    points = numpy_support.vtk_to_numpy(data.GetPoints().GetData()).astype(np.float64)
    return points, numpy_support.vtk_to_numpy(data.GetPolys().GetConnectivityArray()).reshape(-1, 3)


def slicer_closed_surface(mask, ijk_to_ras, smoothing):
    """Slicer's binary labelmap -> closed surface conversion of a whole mask (the rule pads it by a voxel)."""
    factory = slicer.vtkSegmentationConverterFactory.GetInstance()
    if not any(rule.IsA("vtkBinaryLabelmapToClosedSurfaceConversionRule") for rule in factory.GetConverterRules()):
        factory.RegisterConverterRule(slicer.vtkBinaryLabelmapToClosedSurfaceConversionRule())
    image = slicer.vtkOrientedImageData()
    image.SetDimensions(mask.shape[2], mask.shape[1], mask.shape[0])
    image.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
    numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())[:] = mask.astype(np.uint8).ravel()
    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, ijk_to_ras[r, c])
    image.SetImageToWorldMatrix(matrix)
    segmentation = slicer.vtkSegmentation()
    segmentation.SetSourceRepresentationName("Binary labelmap")
    segment = slicer.vtkSegment()
    segment.AddRepresentation("Binary labelmap", image)
    segmentation.AddSegment(segment, "s")
    segmentation.SetConversionParameter("Smoothing factor", str(smoothing))
    segmentation.SetConversionParameter("Compute surface normals", "0")
    assert segmentation.CreateRepresentation("Closed surface")
    return arrays(segmentation.GetSegment("s").GetRepresentation("Closed surface"))


def vtk_flying_edges(mask):
    """vtkDiscreteFlyingEdges3D on the mask padded by a voxel; points in voxel indices (i, j, k)."""
    padded = np.pad(mask.astype(np.uint8), 1)
    image = vtk.vtkImageData()
    image.SetDimensions(padded.shape[2], padded.shape[1], padded.shape[0])
    image.SetOrigin(-1.0, -1.0, -1.0)
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(padded.ravel(), deep=True,
                                                               array_type=vtk.VTK_UNSIGNED_CHAR))
    surface = vtk.vtkDiscreteFlyingEdges3D()
    surface.SetInputData(image)
    surface.SetValue(0, 1)
    surface.ComputeNormalsOff()
    surface.ComputeGradientsOff()
    surface.ComputeScalarsOff()
    surface.Update()
    return arrays(surface.GetOutput())


def on_grid(ijk):
    """Voxel-index positions of unsmoothed vertices as exact integers on the doubled grid (half-way points),
    checking first that they are there (float32 points from VTK are within 1e-4)."""
    doubled = np.asarray(ijk) * 2.0
    assert np.abs(doubled - np.round(doubled)).max() < 1e-3
    return np.round(doubled).astype(np.int64)


def same_vertices(a_ijk, b_ijk):
    """The same set of vertex positions (in voxel indices), none twice."""
    a, b = on_grid(a_ijk), on_grid(b_ijk)
    return len(np.unique(b, axis=0)) == len(b) and np.array_equal(np.unique(a, axis=0), np.unique(b, axis=0))


def same_triangles(points, triangles, mesh, flip=(1.0, 1.0, 1.0)):
    """A mesh read back from a file: triangle for triangle at the same corners (float32 files: within 1e-4 mm)."""
    return len(triangles) == len(mesh.triangles) and np.allclose(
        points[triangles], mesh.vertices[mesh.triangles] * np.array(flip), rtol=0, atol=1e-4)


def volume_and_area(points, triangles):
    v = points[triangles]
    cross = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
    return (np.einsum("ij,ij->i", v[:, 0], np.cross(v[:, 1], v[:, 2])).sum() / 6.0,
            np.linalg.norm(cross, axis=1).sum() / 2.0)


def test_same_vertices_and_triangle_count_as_vtk_discrete_flying_edges(labelled):
    store, labels = labelled
    for value in (1, 2, 3, 4):
        mesh = segment_mesh(store, value, block=BLOCK)
        points, triangles = vtk_flying_edges(labels == value)
        assert same_vertices(to_ijk(store, 0, mesh.vertices), points)
        assert len(triangles) == len(mesh.triangles)


def test_every_cell_pattern_like_vtk(labelled):
    """Each of the 256 patterns of inside corners of a cell, as a 2 x 2 x 2 island three voxels from the next
    (some across block borders): per island the same vertices and as many triangles as VTK's."""
    store, _ = labelled
    islands = np.zeros(SHAPE, dtype=np.uint8)
    slots = [(z, y, x) for z in range(0, SHAPE[0] - 1, 3) for y in range(0, SHAPE[1] - 1, 3)
             for x in range(0, SHAPE[2] - 1, 3)][:256]
    for case, (z, y, x) in enumerate(slots):
        islands[z:z + 2, y:y + 2, x:x + 2] = np.array([(case >> c) & 1 for c in range(8)]).reshape(2, 2, 2)
    cases = create_labels(store.image, "cases", segments=[Segment(1, "islands")])
    fill(cases, islands)
    mesh = segment_mesh(cases, 1, block=BLOCK)
    assert_watertight(mesh)
    points, triangles = vtk_flying_edges(islands == 1)
    ijk = on_grid(to_ijk(cases, 0, mesh.vertices)) / 2.0
    assert same_vertices(ijk, points)

    def per_island(p, t):  # triangles counted by the island their centre lies in
        z, y, x = (np.floor((p[t].mean(axis=1)[:, axis] + 0.5) / 3).astype(int) for axis in (2, 1, 0))
        return np.bincount((z * 12 + y) * 14 + x, minlength=7 * 12 * 14)

    assert np.array_equal(per_island(ijk, mesh.triangles), per_island(points, triangles))


def test_matches_slicer_closed_surface_conversion(labelled):
    store, labels = labelled
    ijk_to_ras = store.levels[0].ijk_to_ras
    for value in (1, 2, 3, 4):
        mesh = segment_mesh(store, value, block=BLOCK)
        points, triangles = slicer_closed_surface(labels == value, ijk_to_ras, 0.0)
        # The same vertices and as many triangles.
        assert same_vertices(to_ijk(store, 0, mesh.vertices), to_ijk(store, 0, points))
        assert len(triangles) == len(mesh.triangles)
        if value == 4:
            continue  # noise: mostly cells whose polygons can be split several ways; compared above, not by volume
        volume, area = volume_and_area(points, triangles)
        # The two case tables may split a non-planar cell polygon (5 to 7 vertices) along different diagonals;
        # nothing else differs. Ours takes the least area, so its area is never above; measured: -0.1% (volume)
        # and -0.7% (area) for the ball, 1e-7 for the boxes (all their cell polygons are planar). Tolerances
        # 0.5% and 2%. The noise is left out: most of its cells are such polygons (volume -7.5%, area -1.1%).
        assert mesh.volume_mm3 == pytest.approx(volume, rel=0.005)
        assert area * 0.98 <= mesh.area_mm2 <= area * (1 + 1e-6)


def test_smoothing_like_slicer(labelled):
    store, labels = labelled
    ijk_to_ras = store.levels[0].ijk_to_ras
    mask = labels == 1
    mesh = segment_mesh(store, "ball", smoothing=0.5, block=BLOCK)
    points, triangles = slicer_closed_surface(mask, ijk_to_ras, 0.5)
    volume, area = volume_and_area(points, triangles)
    # Different diagonals in some cells give slightly different neighbourhoods, which smoothing evens out:
    # measured 0.001% (volume) and 0.02% (area) here, 0.4% and 1% on an elongated shape; tolerance 1%.
    assert mesh.volume_mm3 == pytest.approx(volume, rel=0.01)
    assert mesh.area_mm2 == pytest.approx(area, rel=0.01)
    # On Slicer's own unsmoothed mesh (same neighbourhoods), the filter lands where Slicer's smoothing does:
    # measured 0.085 of the smallest voxel side at most, 0.031 on average; tolerances 0.25 and 0.05.
    plain, plain_triangles = slicer_closed_surface(mask, ijk_to_ras, 0.0)
    smoothed = windowed_sinc(plain, plain_triangles.astype(np.int64), passband=10.0 ** (-4 * 0.5))
    distance = np.linalg.norm(smoothed - points, axis=1)
    side = min(store.levels[0].voxel_size_mm)
    assert distance.max() < 0.25 * side and distance.mean() < 0.05 * side


# -- editor, files, errors, command line ----------------------------------------------------------------------
def test_an_editor_is_waited_for(labelled):
    store, _ = labelled
    with LabelEditor(store) as editor:
        centre = (store.levels[0].ijk_to_ras @ [6, 30, 16, 1.0])[:3]
        editor.submit(Brush(5, points=[centre], radius_mm=2.0))
        mesh = segment_mesh(editor, "empty", block=BLOCK)
    assert len(mesh.triangles) > 0
    assert_watertight(mesh)


def read_back(path):
    reader = {"stl": vtk.vtkSTLReader, "obj": vtk.vtkOBJReader, "ply": vtk.vtkPLYReader}[path.rsplit(".", 1)[1]]()
    reader.SetFileName(path)
    reader.Update()
    return arrays(reader.GetOutput())


def slicer_loads(path):
    """Model points and triangles as Slicer places them (RAS) after reading the file with its own storage node."""
    scene = slicer.vtkMRMLScene()
    node = slicer.vtkMRMLModelNode()
    scene.AddNode(node)
    storage = slicer.vtkMRMLModelStorageNode()
    scene.AddNode(storage)
    storage.SetFileName(path)
    assert storage.ReadData(node)
    return arrays(node.GetPolyData())


@pytest.mark.parametrize("fmt", ["stl", "obj", "ply"])
@pytest.mark.parametrize("coordinates", ["RAS", "LPS"])
def test_files_read_back_where_slicer_puts_them(labelled, tmp_path, fmt, coordinates):
    store, _ = labelled
    mesh = segment_mesh(store, "ball", smoothing=0.3, block=BLOCK)
    path = write_mesh(mesh, str(tmp_path / f"ball.{fmt}"), coordinates=coordinates)
    points, triangles = read_back(path)
    assert len(points) == len(mesh.vertices)  # the STL reader merges the corners of its triangles back
    assert same_triangles(points, triangles, mesh, (1.0, 1.0, 1.0) if coordinates == "RAS" else (-1.0, -1.0, 1.0))
    # Slicer reads the SPACE= mark and puts either file at the mesh's RAS place.
    assert same_triangles(*slicer_loads(path), mesh)


def test_export_names_files_after_segments(labelled, tmp_path):
    store, _ = labelled
    store.set_segments(SEGMENTS + [Segment(6, "corner piece:left"), Segment(7, "..")])
    results = export_meshes(store, tmp_path / "out", format="obj", block=BLOCK)
    by_name = {r.name: r for r in results}
    assert os.path.basename(by_name["corner piece/left"].path) == "corner_piece_left.obj"
    assert by_name["corner piece:left"].path is None and by_name[".."].path is None  # no voxels: no file
    assert by_name["empty"].path is None and by_name["empty"].triangles == 0
    assert sorted(os.listdir(tmp_path / "out")) == ["ball.obj", "box.obj", "corner_piece_left.obj", "noise.obj"]
    # Names that become the same file name are told apart by their label value.
    store.set_segments([Segment(1, "a b"), Segment(2, "a/b")])
    results = export_meshes(store, tmp_path / "same", block=BLOCK)
    assert [os.path.basename(r.path) for r in results] == ["a_b.stl", "a_b_2.stl"]
    # One segment into a file of its own.
    [one] = export_meshes(store, tmp_path / "one.ply", ["a/b"], block=BLOCK)
    assert one.path == str(tmp_path / "one.ply") and read_back(one.path)[1].shape[0] == one.triangles


def test_errors(labelled, tmp_path):
    store, _ = labelled
    with pytest.raises(BigVolumeError, match="no segment 'nope'"):
        segment_mesh(store, "nope")
    with pytest.raises(BigVolumeError, match="mesh format 'vtk' is not one of stl, obj, ply"):
        export_meshes(store, tmp_path / "out", format="vtk")
    with pytest.raises(BigVolumeError, match="extension does not match the format 'obj'"):
        export_meshes(store, tmp_path / "ball.stl", ["ball"], format="obj")
    with pytest.raises(BigVolumeError, match="a single file holds one segment's mesh"):
        export_meshes(store, tmp_path / "both.stl", ["ball", "box"])
    with pytest.raises(BigVolumeError, match="level 9 does not exist"):
        segment_mesh(store, "ball", level=9)
    with pytest.raises(BigVolumeError, match="smoothing 2"):
        segment_mesh(store, "ball", smoothing=2)
    (tmp_path / "a_file").write_text("")
    with pytest.raises(BigVolumeError, match="cannot create the folder"):
        export_meshes(store, tmp_path / "a_file" / "meshes", ["ball"])


def test_a_failed_write_leaves_no_file(labelled, tmp_path, monkeypatch):
    store, _ = labelled
    mesh = segment_mesh(store, "ball", block=BLOCK)
    target = tmp_path / "ball.stl"
    target.write_bytes(b"the previous export")

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fdatasync", disk_full)
    with pytest.raises(BigVolumeError, match="No space left on device.*no file was written"):
        write_mesh(mesh, target)
    with pytest.raises(BigVolumeError, match="No space left on device"):
        export_meshes(store, tmp_path / "new", ["ball"], block=BLOCK)
    assert target.read_bytes() == b"the previous export"  # the old file stays whole, no temporary beside it
    assert os.listdir(tmp_path / "new") == [] and sorted(os.listdir(tmp_path)) == ["ball.stl", "img.ome.zarr", "new"]


def test_command_line_writes_files_vtk_reads(labelled, tmp_path, capsys):
    store, _ = labelled
    image = str(tmp_path / "img.ome.zarr")
    out = tmp_path / "meshes"
    assert main(["labels", "mesh", image, "seg", str(out), "--format", "ply", "--segment", "ball",
                 "--segment", "2", "--segment", "empty", "--smoothing", "0.3", "--block", "8", "--quiet"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"wrote {out / 'ball.ply'}: ") and lines[1].startswith(f"wrote {out / 'box.ply'}: ")
    assert lines[2] == "empty: no voxels at level 0, no file written"
    expected = {m.name: m for m in segment_meshes(store, ["ball", "box"], smoothing=0.3, block=BLOCK)}
    for name in ("ball", "box"):
        points, triangles = read_back(str(out / f"{name}.ply"))
        assert same_triangles(points, triangles, expected[name])
        assert f"{len(triangles):,} triangles" in lines[0 if name == "ball" else 1]
    assert main(["labels", "mesh", image, "seg", str(tmp_path / "box.stl"), "--segment", "box", "--level", "1",
                 "--quiet"]) == 0
    assert read_back(str(tmp_path / "box.stl"))[1].shape[0] > 0
    assert main(["labels", "mesh", image, "seg", str(out), "--segment", "nope", "--quiet"]) == 2
    assert "no segment 'nope'" in capsys.readouterr().err
