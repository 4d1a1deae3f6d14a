"""Closed surface meshes of a label pyramid's segments, built block by block: the labels in memory are one block.

Extraction. Marching cubes on the segment's mask, with every vertex half-way
between an inside and an outside voxel centre: the surface that Slicer's
default closed-surface conversion (vtkDiscreteFlyingEdges3D; flying edges is a
faster traversal of the same marching-cubes cases) makes before smoothing. It
is written here in numpy rather than called from VTK because the core imports
no VTK at all (Testing/test_layout.py), so meshes export from the command line
without the `views` extra. The tests check it vertex for vertex and triangle
count for triangle count against vtkDiscreteFlyingEdges3D and Slicer's
conversion. vtkSurfaceNets3D was not the model: where two voxels touch along
an edge only, its surface has edges of four triangles (checked: VTK 9.6, with
and without its smoothing), which a watertight export must not have.

The case table is generated, not copied: for each of the 256 patterns of
inside corners, each face of the cube pairs its crossing edges (on a face whose
two inside corners are diagonal, each is cut off alone, as VTK's discrete
flying edges does), the pairs are chained into loops and each loop is split
into the triangles of least area whose inner edges do not lie in a cube face.
A face's pairing depends on that face only, so the two cubes that share it cut
it alike: no cracks, every edge in exactly two triangles. Where a loop is not
flat, VTK's table may take other diagonals: same vertices, as many triangles,
slightly different area.

Blocks and welding. Blocks are whole label chunks (about `block` voxels a side)
read with one voxel more on their upper sides, so each cell between eight voxel
centres is meshed by exactly one block; the volume is padded with background
by one voxel at its outer faces, so segments touching them close. A vertex is
named by its position on the doubled voxel grid (an exact integer), so the
vertices that two blocks make on their shared face are the same key and
become one vertex: no tolerance, and the mesh does not depend on the blocking.
Only blocks whose read box touches a stored chunk are read (the rest are
background). Blocks are meshed in this process, on local worker processes
(`workers`) or on a Dask cluster (`scheduler`, as the conversion runs there):
a worker opens the labels by name and returns its block's triangles as
vertex keys, and this process welds them. The mesh itself (vertices,
triangles) is held whole: it is what is returned or written.

Smoothing. Taubin's windowed sinc (a Chebyshev expansion of a low-pass filter
of the umbrella Laplacian, Hamming window), like Slicer's "Smoothing factor",
runs on the whole welded mesh, after welding, so block borders cannot reopen.
Decimation is not offered.

Files. STL (binary), OBJ and PLY (binary), written to a temporary file and
renamed into place, so an interrupted export leaves no file under the final
name. Coordinates are RAS millimetres (or LPS on request), marked SPACE=RAS /
SPACE=LPS in the header as Slicer writes and reads it.
"""

import functools
import io
import os
import re
from dataclasses import dataclass

import numpy as np

from ..errors import BigVolumeError
from ..writing.atomic import fsync_dir, write_atomically

FORMATS = ("stl", "obj", "ply")
# Voxels a side of a block. Measured on a 256^3 segment of 64^3 chunks: as fast as one 256^3 block, with a quarter
# of the memory while reading (36 MB against 145 MB above the start); the welded mesh needs more than either.
DEFAULT_BLOCK = 128
SMOOTHING_ITERATIONS = 20  # Slicer's closed-surface conversion uses 20 windowed-sinc iterations
_CELL_BATCH = 1 << 20  # surface cells turned into triangles at once (bounds the temporaries of a noisy block)


# -- the case table ---------------------------------------------------------------------------------------------
# Corner c of a cell (bit c of its case) sits at x = c & 1, y = c >> 1 & 1, z = c >> 2 & 1 from its lowest voxel.
_CORNERS = np.array([(c & 1, c >> 1 & 1, c >> 2 & 1) for c in range(8)])
_EDGES = [(a, b) for a in range(8) for b in range(a + 1, 8) if bin(a ^ b).count("1") == 1]
_EDGE_INDEX = {pair: e for e, pair in enumerate(_EDGES)}
# Twice an edge's midpoint (x, y, z) from the cell's lowest voxel: an integer, and a vertex's exact name.
_EDGE_DOUBLED = np.array([_CORNERS[a] + _CORNERS[b] for a, b in _EDGES])


def _face_rings():
    """Each cube face's four corners in cyclic order, with the face's outward normal."""
    rings = []
    for axis in range(3):
        u, v = [a for a in range(3) if a != axis]
        for side in (0, 1):
            ring = []
            for pu, pv in ((0, 0), (1, 0), (1, 1), (0, 1)):
                position = [0, 0, 0]
                position[axis], position[u], position[v] = side, pu, pv
                ring.append(int(position[0] + 2 * position[1] + 4 * position[2]))
            normal = np.zeros(3)
            normal[axis] = 1.0 if side else -1.0
            rings.append((ring, normal))
    return rings


def _case_loops(case):
    """The loops of edges (outward-oriented) that the surface of one cell pattern follows on the cube's faces."""
    inside = [(case >> c) & 1 for c in range(8)]
    following = {}
    for ring, normal in _face_rings():
        edges = [_EDGE_INDEX[tuple(sorted((ring[k], ring[(k + 1) % 4])))] for k in range(4)]
        crossing = [k for k in range(4) if inside[ring[k]] != inside[ring[(k + 1) % 4]]]
        if len(crossing) == 2:
            corner = next(c for c in ring if inside[c])
            pairs = [(edges[crossing[0]], edges[crossing[1]], corner)]
        elif len(crossing) == 4:  # two diagonal inside corners: each cut off alone (VTK's choice)
            pairs = [(edges[k - 1], edges[k], ring[k]) for k in range(4) if inside[ring[k]]]
        else:
            pairs = []
        for first, second, corner in pairs:
            p, q = _EDGE_DOUBLED[first] / 2, _EDGE_DOUBLED[second] / 2
            # Seen from outside the cube, the segment runs clockwise around the inside corner: then the loop's
            # triangles face away from the inside (the tests check every mesh encloses a positive volume).
            if np.dot(np.cross(q - p, _CORNERS[corner] - p), normal) > 0:
                first, second = second, first
            assert first not in following, "face pairings must chain into loops"
            following[first] = second
    loops = []
    while following:
        start = min(following)
        loop, edge = [start], following.pop(start)
        while edge != start:
            loop.append(edge)
            edge = following.pop(edge)
        loops.append(loop)
    return loops


def _faces_of(edge):
    """The two cube faces, as (axis, side), that an edge lies on."""
    a, b = _EDGES[edge]
    return {(axis, int(_CORNERS[a][axis])) for axis in range(3) if _CORNERS[a][axis] == _CORNERS[b][axis]}


def _triangulations(polygon):
    """Every triangulation of a polygon (a list of edges) without new vertices, as lists of triangles."""
    if len(polygon) < 3:
        yield []
        return
    first, last = polygon[0], polygon[-1]
    for k in range(1, len(polygon) - 1):
        for left in _triangulations(polygon[:k + 1]):
            for right in _triangulations(polygon[k:]):
                yield left + [(first, polygon[k], last)] + right


def _triangulate(loop):
    """The loop's triangles with the least total area (the flattest surface) among those whose inner edges join
    vertices on no common cube face: such an edge would lie in the face, where the neighbouring cell could
    draw it too, and it would then border four triangles."""
    sides = {frozenset((loop[i], loop[(i + 1) % len(loop)])) for i in range(len(loop))}
    best = None
    for triangles in _triangulations(loop):
        inner = {frozenset(pair) for t in triangles for pair in ((t[0], t[1]), (t[1], t[2]), (t[0], t[2]))} - sides
        if any(_faces_of(a) & _faces_of(b) for a, b in map(tuple, inner)):
            continue
        p = _EDGE_DOUBLED[np.array(triangles)] / 2.0
        area = np.linalg.norm(np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]), axis=1).sum()
        if best is None or area < best[0] - 1e-9:
            best = (area, triangles)
    assert best is not None, f"loop {loop} has no triangulation inside the cell"
    return best[1]


@functools.cache
def _case_table():
    """(triangles of edges per case, padded; triangle count per case), made on first use (a fifth of a second)."""
    cases = [[t for loop in _case_loops(case) for t in _triangulate(loop)] for case in range(256)]
    width = max(len(c) for c in cases)
    table = np.zeros((256, width, 3), dtype=np.int8)
    for case, triangles in enumerate(cases):
        if triangles:
            table[case, :len(triangles)] = triangles
    return table, np.array([len(c) for c in cases])


# -- meshing blocks -------------------------------------------------------------------------------------------
def _key_strides(volume_shape):
    """Strides (z, y, x) that pack a doubled-grid position (2 * voxel index + 2, so the padding voxel -1 is 0)
    into one int64."""
    dims = [2 * n + 4 for n in volume_shape]
    if float(dims[0]) * dims[1] * dims[2] >= 2.0 ** 63:
        raise BigVolumeError(f"a level of {volume_shape} voxels is too large to name its mesh vertices in 64 bits")
    return np.array([dims[1] * dims[2], dims[2], 1], dtype=np.int64)


def _block_triangles(mask, origin, strides):
    """Triangles (rows of three vertex keys) of the cells of `mask` (a block with its overlap and padding; voxel
    [0, 0, 0] is global voxel `origin`, z, y, x), each cell spanning eight neighbouring voxels."""
    cells = tuple(n - 1 for n in mask.shape)
    if min(cells) <= 0:
        return np.zeros((0, 3), dtype=np.int64)
    bits = mask.view(np.uint8)
    case = np.zeros(cells, dtype=np.uint8)
    for c, (x, y, z) in enumerate(_CORNERS):
        case |= bits[z:z + cells[0], y:y + cells[1], x:x + cells[2]] << c
    surface = np.flatnonzero((case != 0) & (case != 255))
    table, triangle_count = _case_table()
    edge_keys = _EDGE_DOUBLED[:, ::-1] @ strides  # the edge's offset from its cell's key
    out = []
    for start in range(0, len(surface), _CELL_BATCH):
        flat = surface[start:start + _CELL_BATCH]
        cases = case.ravel()[flat]
        zyx = np.stack(np.unravel_index(flat, cells), axis=1).astype(np.int64)
        cell_keys = (2 * (zyx + origin) + 2) @ strides
        used = triangle_count[cases][:, None] > np.arange(table.shape[1])
        keys = cell_keys[:, None, None] + edge_keys[table[cases]]
        out.append(keys[used])
    return np.concatenate(out) if out else np.zeros((0, 3), dtype=np.int64)


def _label_store(store_or_editor):
    """The LabelStore; a LabelEditor is first waited for, so every acknowledged edit is on disk and meshed."""
    if hasattr(store_or_editor, "wait") and hasattr(store_or_editor, "store"):
        store_or_editor.wait()
        return store_or_editor.store
    return store_or_editor


def _block_shape(lvl, block):
    """Block side per axis (z, y, x): whole chunks, about `block` voxels (an int, or three)."""
    sizes = (block,) * 3 if np.isscalar(block) else tuple(block)
    if len(sizes) != 3 or any(int(s) < 1 for s in sizes):
        raise BigVolumeError(f"block {block!r} must be a positive number of voxels (or three, z, y, x)")
    return tuple(max(1, int(s) // c) * c for s, c in zip(sizes, lvl.chunk_shape))


def _blocks(lvl, block_shape):
    ranges = [[(a, min(a + s, n)) for a in range(0, n, s)] for s, n in zip(block_shape, lvl.volume_shape)]
    return [(z, y, x) for z in ranges[0] for y in ranges[1] for x in ranges[2]]


def _mesh_keys(store, level, values, block, progress=None, workers=None, scheduler=None):
    """{value: triangles as vertex keys} for each label value of `values`, every block read once: here, on
    `workers` local processes, or on the Dask cluster at `scheduler` (only names travel to a worker)."""
    lvl = store.levels[level]
    strides = _key_strides(lvl.volume_shape)
    stored = set(store.stored_chunks(level))
    blocks = _blocks(lvl, _block_shape(lvl, block))
    # Only blocks whose read box touches a stored chunk can hold a surface (the rest are background).
    wanted = [box for box in blocks if not stored.isdisjoint(lvl.chunks_in_box(_read_box(box, lvl)))]
    found = {v: [] for v in values}
    done = len(blocks) - len(wanted)
    for result in _map_blocks(store, level, list(values), wanted, strides, workers, scheduler):
        for value, triangles in result.items():
            found[value].append(triangles)
        done += 1
        if progress:
            progress(done, len(blocks))
    return {v: np.concatenate(t) if t else np.zeros((0, 3), dtype=np.int64) for v, t in found.items()}


def _read_box(box, lvl):
    """A block with one voxel more on its upper sides (the cells across its border)."""
    return tuple((a, min(b + 1, n)) for (a, b), n in zip(box, lvl.volume_shape))


def _block_keys(store, level, values, box, strides):
    """{value: triangles as vertex keys} of one block, for the values present in it."""
    lvl = store.levels[level]
    read = _read_box(box, lvl)
    labels = store.read_box(level, read)
    present = _present(labels, values)
    if not present:
        return {}
    # Pad outside the volume with background: one voxel below the first block and above the last, so surfaces
    # close there.
    pad = [(1 if a == 0 else 0, b + 1 - r1) for (a, b), (_, r1) in zip(box, read)]
    origin = np.array([a - before for (a, _), (before, _) in zip(box, pad)], dtype=np.int64)
    labels = np.pad(labels, pad)
    found = {}
    for value in present:
        triangles = _block_triangles(labels == value, origin, strides)
        if len(triangles):
            found[value] = triangles
    return found


def _store_address(store):
    """What opens the same label store elsewhere: the image's location, the labels' name, their separate store."""
    root = None if store.root == str(store.image.location) else store.root
    return str(store.image.location), store.name, root


@functools.lru_cache(maxsize=4)
def _open_store(location, name, root):
    from ..store.multiscale import open_image
    from .label_store import LabelStore

    return LabelStore(open_image(location), name, store=root)


def _remote_block(address, level, values, box, strides):
    """A block meshed in a worker process or on a Dask worker, the labels opened there."""
    return _block_keys(_open_store(*address), level, values, box, strides)


def _map_blocks(store, level, values, blocks, strides, workers, scheduler):
    """The blocks' results, in any order, from where they run."""
    if scheduler is not None:
        try:
            from distributed import Client, as_completed
        except ImportError as error:
            raise BigVolumeError("meshing on a Dask cluster needs the 'distributed' package: "
                                 "pip install distributed (or bigvolume[distributed])") from error
        try:
            client = Client(scheduler, timeout="20s")
        except (OSError, TimeoutError) as error:
            raise BigVolumeError(f"cannot reach the Dask scheduler at {scheduler}: {error}") from error
        try:
            address = _store_address(store)
            futures = [client.submit(_remote_block, address, level, values, box, strides, pure=False)
                       for box in blocks]
            for future in as_completed(futures):
                yield future.result()
        finally:
            client.close()
    elif workers and workers > 1 and len(blocks) > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        # Spawned, as the conversion's pool: no thread or zarr event loop is forked.
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            address = _store_address(store)
            futures = [pool.submit(_remote_block, address, level, values, box, strides) for box in blocks]
            for future in as_completed(futures):
                yield future.result()
    else:
        for box in blocks:
            yield _block_keys(store, level, values, box, strides)


def _present(labels, values):
    if labels.dtype.itemsize <= 2:  # a histogram is cheaper than a sort for 8 and 16 bit labels
        counts = np.bincount(labels.ravel(), minlength=max(values, default=0) + 1)
        return [v for v in values if counts[v]]
    found = set(np.unique(labels).tolist())
    return [v for v in values if v in found]


# -- the welded mesh ------------------------------------------------------------------------------------------
@dataclass
class SegmentMesh:
    """A closed triangle mesh of one segment: vertices in RAS millimetres, triangles counter-clockwise seen from
    outside (outward normals), unit outward vertex normals."""

    value: int
    name: str
    level: int
    vertices: np.ndarray  # (n, 3) float64, RAS mm
    triangles: np.ndarray  # (m, 3) int64 indices into vertices
    normals: np.ndarray  # (n, 3) float64

    @property
    def volume_mm3(self):
        """Enclosed volume (divergence theorem: positive for outward normals)."""
        corner = self.vertices[self.triangles[:, 0]]
        return float(np.einsum("ij,ij->", corner, _face_normals(self.vertices, self.triangles)) / 6.0)

    @property
    def area_mm2(self):
        return float(np.linalg.norm(_face_normals(self.vertices, self.triangles), axis=1).sum() / 2.0)


def _face_normals(vertices, triangles):
    """Each triangle's outward normal, twice its area long (corners gathered one at a time: a third of the memory
    of gathering all three)."""
    first = vertices[triangles[:, 0]]
    return np.cross(vertices[triangles[:, 1]] - first, vertices[triangles[:, 2]] - first)


def _decode(keys, strides):
    """Voxel index (i, j, k) of each vertex key: exact, half-way between two voxel centres."""
    z, rest = np.divmod(keys, strides[0])
    y, x = np.divmod(rest, strides[1])
    return (np.stack([x, y, z], axis=1) - 2) / 2.0


def _sinc_weights(passband, iterations):
    """Weights of the Chebyshev terms T_0..T_N of the windowed-sinc filter (Hamming window).

    The ideal low-pass filter passes the frequencies theta below theta_pb (cos theta = 1 - k / 2, k an eigenvalue
    of the Laplacian I - W). Truncated to N terms and windowed, its response at the passband edge falls to about
    one half, and a shape's own low frequencies, just inside the passband, would shrink; so the cut-off is moved
    up to the first angle where the response at the passband edge is 1 (within 1e-3), as VTK's filter also
    does. Finally the weights are scaled to pass a constant exactly (frequency 0), which keeps the mesh in
    place. The tests compare the result with Slicer's smoothing on the same mesh."""
    theta_pb = np.arccos(1.0 - 0.5 * passband)
    h = np.arange(iterations + 1)
    window = 0.54 + 0.46 * np.cos(h * np.pi / (iterations + 1))

    def weights(cutoff):
        return window * np.where(h == 0, cutoff / np.pi, 2.0 * np.sin(h * cutoff) / (np.pi * np.maximum(h, 1)))

    def at_edge(cutoff):  # the response at the passband edge: T_h(cos theta_pb) = cos(h theta_pb)
        return float(weights(cutoff) @ np.cos(h * theta_pb))

    grid = np.linspace(theta_pb, np.pi, 4001)
    low = high = np.pi  # a cut-off of pi passes everything exactly
    for a, b in zip(grid[:-1], grid[1:]):
        if at_edge(b) >= 1.0 - 1e-3:
            low, high = a, b
            break
    for _ in range(40):  # bisection of the grid step down to rounding
        middle = 0.5 * (low + high)
        low, high = (middle, high) if at_edge(middle) < 1.0 - 1e-3 else (low, middle)
    result = weights(high)
    return result / result.sum()


def windowed_sinc(points, triangles, passband, iterations=SMOOTHING_ITERATIONS):
    """Smoothed vertex positions of a closed mesh: Taubin's windowed-sinc low-pass filter (Taubin, Zhang and Golub,
    "Optimal surface smoothing as filter design", 1996), a sum of Chebyshev polynomials of the operator
    (I + W) / 2, W the mean of a vertex's edge neighbours. `passband` is in the units of
    vtkWindowedSincPolyDataFilter's (0..2; smaller smooths more). The operator depends on connectivity only and
    the weights sum to 1, so smoothing commutes with the voxel-to-RAS map."""
    n = len(points)
    pairs = np.sort(triangles[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    pairs = np.unique(pairs[:, 0] * np.int64(n) + pairs[:, 1])
    a, b = np.divmod(pairs, n)
    source, target = np.concatenate([a, b]), np.concatenate([b, a])
    degree = np.bincount(source, minlength=n).astype(np.float64)
    degree[degree == 0] = 1.0

    def half_step(p):  # ((I + W) / 2) p
        mean = np.stack([np.bincount(source, weights=p[target, c], minlength=n) for c in range(3)], axis=1)
        return 0.5 * (p + mean / degree[:, None])

    weights = _sinc_weights(passband, iterations)
    previous, current = points, half_step(points)
    result = weights[0] * previous + weights[1] * current
    for k in range(2, iterations + 1):
        previous, current = current, 2.0 * half_step(current) - previous
        result += weights[k] * current
    return result


def _vertex_normals(vertices, triangles):
    """Area-weighted mean of the incident triangles' outward normals, unit length."""
    face = _face_normals(vertices, triangles)
    normals = np.stack([np.bincount(triangles.ravel(), weights=np.repeat(face[:, c], 3), minlength=len(vertices))
                        for c in range(3)], axis=1)
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    return normals / np.where(length > 0, length, 1.0)


def _check_smoothing(smoothing):
    if not 0.0 <= float(smoothing) <= 1.0:
        raise BigVolumeError(f"smoothing {smoothing} must be in 0..1 (0: none; Slicer's default is 0.5)")
    return float(smoothing)


def _welded(keys, lvl, value, name, level, smoothing):
    """The SegmentMesh of triangles given as vertex keys: equal keys become one vertex (the weld), then
    smoothing, then the level's IJK->RAS map."""
    strides = _key_strides(lvl.volume_shape)
    unique, inverse = np.unique(keys.ravel(), return_inverse=True)
    triangles = inverse.reshape(-1, 3).astype(np.int64, copy=False)
    del keys  # the caller's copy was popped: freed before smoothing and normals need their memory
    ijk = _decode(unique, strides)
    if smoothing > 0 and len(triangles):
        # Slicer's mapping of its smoothing factor onto the passband.
        ijk = windowed_sinc(ijk, triangles, passband=10.0 ** (-4.0 * smoothing))
    matrix = np.asarray(lvl.ijk_to_ras, dtype=float)
    vertices = ijk @ matrix[:3, :3].T + matrix[:3, 3]
    if np.linalg.det(matrix[:3, :3]) < 0:  # a mirroring grid turns the winding inside out
        triangles = triangles[:, ::-1].copy()
    return SegmentMesh(value=value, name=name, level=level, vertices=vertices, triangles=triangles,
                       normals=_vertex_normals(vertices, triangles))


def _resolve(store, level, segments):
    """The segments asked for (each once), after checking the level."""
    if not 0 <= level < len(store.levels):
        raise BigVolumeError(f"{store.path}: level {level} does not exist (levels 0..{len(store.levels) - 1})")
    if isinstance(segments, (str, int)):
        segments = [segments]
    chosen = store.segments if segments is None else [store.segment(key) for key in segments]
    return list({s.value: s for s in chosen}.values())


def segment_meshes(store_or_editor, segments=None, level=0, smoothing=0.0, block=DEFAULT_BLOCK, progress=None,
                   workers=None, scheduler=None):
    """Closed meshes (SegmentMesh, one per segment, in order) of `segments` (label values, IDs or names; None:
    every segment of the store) at `level`, every block read once for all of them.

    smoothing: 0 (none) .. 1, Slicer's closed-surface "Smoothing factor" scale.
    block: voxels a side of the blocks read at once (rounded to whole label chunks): the labels in memory.
    progress: called with (blocks done, blocks) as blocks are meshed.
    workers: mesh blocks on that many local processes; scheduler: on the Dask cluster at that address (workers
    that see the same files), as `bigvolume convert --scheduler` does. Welding stays here.
    A LabelEditor is waited for first, so pending edits are meshed.
    """
    store = _label_store(store_or_editor)
    chosen = _resolve(store, level, segments)
    return list(_meshes(store, chosen, level, _check_smoothing(smoothing), block, progress, workers, scheduler))


def _meshes(store, chosen, level, smoothing, block, progress, workers=None, scheduler=None):
    """The welded mesh of each chosen segment in turn, from one pass over the blocks."""
    keys = _mesh_keys(store, level, [s.value for s in chosen], block, progress, workers, scheduler)
    for s in chosen:
        yield _welded(keys.pop(s.value), store.levels[level], s.value, s.name, level, smoothing)


def segment_mesh(store_or_editor, segment, level=0, smoothing=0.0, block=DEFAULT_BLOCK):
    """The closed mesh of one segment (label value, ID or name) at `level`: see `segment_meshes`."""
    return segment_meshes(store_or_editor, [segment], level=level, smoothing=smoothing, block=block)[0]


# -- files ------------------------------------------------------------------------------------------------------
def safe_file_name(name, fallback):
    """A segment name as a file name: letters, digits, '-', '_' and '.' kept, anything else '_'."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")
    return cleaned or fallback


def _format_of(path, format):
    if format is None:
        format = os.path.splitext(path)[1].lstrip(".")
    format = str(format).lower()
    if format not in FORMATS:
        raise BigVolumeError(f"mesh format {format!r} is not one of {', '.join(FORMATS)}")
    return format


def _in_space(mesh, coordinates):
    if coordinates == "RAS":
        return mesh.vertices, mesh.normals
    flip = np.array([-1.0, -1.0, 1.0])  # a half turn about S: the winding stays outward
    return mesh.vertices * flip, mesh.normals * flip


def _stl(mesh, vertices, normals, space):
    face = _face_normals(vertices, mesh.triangles)
    length = np.linalg.norm(face, axis=1, keepdims=True)
    record = np.zeros(len(face), dtype=[("normal", "<f4", 3), ("points", "<f4", (3, 3)), ("attribute", "<u2")])
    record["normal"] = face / np.where(length > 0, length, 1.0)
    for corner in range(3):
        record["points"][:, corner] = vertices[mesh.triangles[:, corner]]
    # Never "solid" first (readers would take the file for ASCII STL); SPACE= as Slicer writes it.
    header = f"BigVolume SPACE={space} segment {mesh.name}".encode("utf-8", "replace")[:80].ljust(80, b" ")
    return [header, np.uint32(len(record)).tobytes(), record.tobytes()]


def _obj(mesh, vertices, normals, space):
    out = io.BytesIO()
    name = " ".join(mesh.name.split())  # on one comment line
    out.write(f"# SPACE={space}\n# BigVolume segment {name} (label value {mesh.value}), level {mesh.level}, "
              f"millimetres\no {safe_file_name(mesh.name, 'segment')}\n".encode("utf-8", "replace"))
    np.savetxt(out, vertices, fmt="v %.9g %.9g %.9g")
    np.savetxt(out, normals, fmt="vn %.6g %.6g %.6g")
    one_based = mesh.triangles + 1
    np.savetxt(out, np.repeat(one_based, 2, axis=1), fmt="f %d//%d %d//%d %d//%d")
    return [out.getvalue()]


def _ply(mesh, vertices, normals, space):
    header = (f"ply\nformat binary_little_endian 1.0\ncomment SPACE={space}\n"
              f"comment BigVolume segment {safe_file_name(mesh.name, 'segment')} (label value {mesh.value})\n"
              f"element vertex {len(vertices)}\nproperty float x\nproperty float y\nproperty float z\n"
              f"property float nx\nproperty float ny\nproperty float nz\n"
              f"element face {len(mesh.triangles)}\nproperty list uchar int vertex_indices\nend_header\n")
    points = np.concatenate([vertices, normals], axis=1).astype("<f4")
    faces = np.zeros(len(mesh.triangles), dtype=[("count", "u1"), ("indices", "<i4", 3)])
    faces["count"] = 3
    faces["indices"] = mesh.triangles
    return [header.encode("ascii"), points.tobytes(), faces.tobytes()]


_WRITERS = {"stl": _stl, "obj": _obj, "ply": _ply}


def _check_coordinates(coordinates):
    if coordinates not in ("RAS", "LPS"):
        raise BigVolumeError(f"coordinates {coordinates!r} must be 'RAS' or 'LPS'")


def write_mesh(mesh, path, format=None, coordinates="RAS", durable=True):
    """Write one SegmentMesh to `path` (format from its extension unless given) atomically: a temporary file
    beside it, renamed into place; on failure nothing is left under `path`."""
    path = os.fspath(path)
    format = _format_of(path, format)
    _check_coordinates(coordinates)
    vertices, normals = _in_space(mesh, coordinates)
    try:
        write_atomically(path, _WRITERS[format](mesh, vertices, normals, coordinates), durable=durable)
    except OSError as error:
        raise BigVolumeError(f"{path}: cannot write the mesh of segment {mesh.name!r} "
                             f"({error.strerror or error}); no file was written") from error
    return path


@dataclass
class MeshFile:
    value: int
    name: str
    path: str  # None: the segment has no voxels at that level, and no file was written
    vertices: int
    triangles: int
    volume_mm3: float
    area_mm2: float


def export_meshes(store_or_editor, out, segments=None, level=0, format=None, smoothing=0.0, *,
                  coordinates="RAS", block=DEFAULT_BLOCK, progress=None, workers=None, scheduler=None):
    """Write a closed mesh file per segment (label values, IDs or names; None: every segment) at `level`.

    out: a folder (created if missing), where each segment becomes `<name>.<format>` (names made file-safe,
    made unique with the label value); or, for one segment, a file path ending in .stl, .obj or .ply.
    format: "stl", "obj" or "ply"; None: a file path's extension, STL in a folder.
    workers, scheduler: where blocks are meshed (see `segment_meshes`).
    Returns a MeshFile per segment, path None for a segment without voxels (no file written).
    """
    store = _label_store(store_or_editor)
    out = os.fspath(out)
    chosen = _resolve(store, level, segments)
    smoothing = _check_smoothing(smoothing)
    _check_coordinates(coordinates)
    if os.path.splitext(out)[1].lower().lstrip(".") in FORMATS:
        if len(chosen) != 1:
            raise BigVolumeError(f"{out}: a single file holds one segment's mesh; give a folder for "
                                 f"{len(chosen)} segments")
        extension = _format_of(out, None)
        if format is not None and _format_of(out, format) != extension:
            raise BigVolumeError(f"{out}: the extension does not match the format {format!r}")
        format = extension
        folder, paths = os.path.dirname(os.path.abspath(out)), {chosen[0].value: out}
    else:
        format = _format_of("", format or "stl")
        folder = out
        paths, taken = {}, set()
        for s in chosen:
            stem = safe_file_name(s.name, f"segment_{s.value}")
            while stem.lower() in taken:  # case-insensitive: file systems that ignore case would merge them
                stem = f"{stem}_{s.value}"
            taken.add(stem.lower())
            paths[s.value] = os.path.join(folder, f"{stem}.{format}")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as error:
        raise BigVolumeError(f"{folder}: cannot create the folder for the meshes "
                             f"({error.strerror or error})") from error
    if not os.access(folder, os.W_OK):
        raise BigVolumeError(f"{folder}: the folder cannot be written")
    results = []
    for mesh in _meshes(store, chosen, level, smoothing, block, progress, workers, scheduler):  # one at a time
        path = None
        if len(mesh.triangles):
            path = write_mesh(mesh, paths[mesh.value], format, coordinates=coordinates, durable=True)
        results.append(MeshFile(value=mesh.value, name=mesh.name, path=path, vertices=len(mesh.vertices),
                                triangles=len(mesh.triangles), volume_mm3=mesh.volume_mm3 if path else 0.0,
                                area_mm2=mesh.area_mm2 if path else 0.0))
    if any(r.path for r in results):
        fsync_dir(folder)  # the renames survive a power cut
    return results


__all__ = ["FORMATS", "MeshFile", "SegmentMesh", "export_meshes", "safe_file_name", "segment_mesh",
           "segment_meshes", "windowed_sinc", "write_mesh"]
