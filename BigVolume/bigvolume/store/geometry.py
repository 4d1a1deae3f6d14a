"""Geometry: voxel index to physical position, the way ITK and Slicer define it.

Conventions:

- Store x, y, z are ITK physical space (LPS). RAS = diag(-1, -1, 1) @ LPS.
- Vectors here are in x, y, z order (ITK and Slicer order); arrays are z, y, x.
- Slicer's IJK: I along x (the last, fastest array axis), J along y, K along z.
- A level's NGFF scale and translation give the voxel centre in the store's
  axis frame: a = scale * index + translation.
- Direction cosines that NGFF 0.5 cannot express are stored by BigVolume in
  its own attribute and rotate the image about level 0's voxel (0, 0, 0), so a
  reader that ignores them still finds the image where it starts:
  b = D @ (a - a0) + a0.
- RFC-4 anatomical orientation, when present, maps the axis frame onto LPS by
  a signed permutation O: lps = O @ b.
"""

from dataclasses import dataclass, field

import numpy as np

from .units import canonical_space_unit

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])

# RFC-4 values that name an LPS axis: value -> (LPS axis index, sign).
_ANATOMICAL_TO_LPS = {
    "right-to-left": (0, 1.0),
    "left-to-right": (0, -1.0),
    "anterior-to-posterior": (1, 1.0),
    "posterior-to-anterior": (1, -1.0),
    "inferior-to-superior": (2, 1.0),
    "superior-to-inferior": (2, -1.0),
}

# What BigVolume writes: the store's x, y, z are LPS.
LPS_ORIENTATION = {"x": "right-to-left", "y": "anterior-to-posterior", "z": "inferior-to-superior"}


@dataclass(frozen=True)
class VolumeGeometry:
    """Where a volume's level-0 voxels are, in ITK terms (x, y, z order, LPS).

    spacing and origin are in `unit`; origin is the centre of voxel (0, 0, 0);
    direction holds the LPS direction of the x, y and z index axes as columns.
    """

    spacing: tuple = (1.0, 1.0, 1.0)
    origin: tuple = (0.0, 0.0, 0.0)
    direction: tuple = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))
    unit: str = "millimeter"

    def __post_init__(self):
        spacing = tuple(float(s) for s in self.spacing)
        if len(spacing) != 3 or not all(np.isfinite(spacing)) or min(spacing) <= 0:
            raise ValueError(f"spacing must be three positive numbers (x, y, z), got {self.spacing!r}")
        origin = tuple(float(o) for o in self.origin)
        if len(origin) != 3 or not all(np.isfinite(origin)):
            raise ValueError(f"origin must be three finite numbers (x, y, z), got {self.origin!r}")
        direction = np.asarray(self.direction, dtype=float)
        if direction.shape != (3, 3) or not np.allclose(direction.T @ direction, np.eye(3), atol=1e-6):
            raise ValueError(f"direction must be an orthonormal 3x3 matrix, got {self.direction!r}")
        object.__setattr__(self, "spacing", spacing)
        object.__setattr__(self, "origin", origin)
        object.__setattr__(self, "direction", tuple(tuple(row) for row in direction.tolist()))
        object.__setattr__(self, "unit", canonical_space_unit(self.unit))

    @property
    def has_identity_direction(self):
        return np.allclose(self.direction, np.eye(3), atol=1e-12)

    @classmethod
    def from_sitk(cls, image, unit="millimeter"):
        """Geometry of a 3D SimpleITK image (its direction is row-major, as SimpleITK returns it)."""
        return cls(image.GetSpacing(), image.GetOrigin(), np.reshape(image.GetDirection(), (3, 3)), unit)


def orientation_matrix(orientations):
    """Signed permutation taking the store's (x, y, z) frame to LPS.

    `orientations` maps axis name to an RFC-4 value or None. Returns
    (matrix, warning): identity and no warning when no axis carries an
    orientation; identity and a warning when the orientation cannot be mapped
    to LPS (non-human terms, a repeated or missing axis).
    """
    values = [orientations.get(name) for name in ("x", "y", "z")]
    if all(v is None for v in values):
        return np.eye(3), None
    matrix = np.zeros((3, 3))
    for column, value in enumerate(values):
        if value not in _ANATOMICAL_TO_LPS:
            return np.eye(3), f"anatomical orientation {values} cannot be mapped to LPS; assumed x, y, z are L, P, S"
        row, sign = _ANATOMICAL_TO_LPS[value]
        matrix[row, column] = sign
    if not np.allclose(np.abs(matrix).sum(axis=0), 1) or not np.allclose(np.abs(matrix).sum(axis=1), 1):
        return np.eye(3), f"anatomical orientation {values} names an axis twice; assumed x, y, z are L, P, S"
    return matrix, None


@dataclass(frozen=True)
class AxisFrame:
    """How a store's axis frame maps to LPS millimetres.

    mm_per_unit: millimetres per store unit along x, y, z (axes may use different units).
    pivot: level 0's voxel (0, 0, 0) in the axis frame, millimetres.
    """

    mm_per_unit: np.ndarray = field(default_factory=lambda: np.ones(3))
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))
    pivot: np.ndarray = field(default_factory=lambda: np.zeros(3))
    orientation: np.ndarray = field(default_factory=lambda: np.eye(3))

    def ijk_to_ras(self, scale_xyz, translation_xyz):
        """4x4 IJK->RAS matrix (millimetres) of a level with this NGFF scale and translation (store units)."""
        scale_mm = np.asarray(scale_xyz, dtype=float) * self.mm_per_unit
        translation_mm = np.asarray(translation_xyz, dtype=float) * self.mm_per_unit
        to_ras = LPS_TO_RAS @ self.orientation
        matrix = np.eye(4)
        matrix[:3, :3] = to_ras @ self.direction @ np.diag(scale_mm)
        matrix[:3, 3] = to_ras @ (self.direction @ (translation_mm - self.pivot) + self.pivot)
        return matrix


def ras_corners(ijk_to_ras, shape_zyx, edges=False):
    """RAS positions of the 8 outermost voxel centres of a volume (or, with `edges`, of its outer voxel faces), (8, 3)."""
    nz, ny, nx = shape_zyx
    lo, hi = (-0.5, 0.5) if edges else (0, 1)
    corners = np.array([[i, j, k, 1.0] for k in (lo, nz - hi) for j in (lo, ny - hi) for i in (lo, nx - hi)])
    return (np.asarray(ijk_to_ras) @ corners.T).T[:, :3]
