"""A deterministic synthetic industrial CT of a rock core, generated slab by slab.

A cylinder of rock along z in air: a matrix with grains of several mineral
densities, pores, one inclined fracture, mild beam-hardening cupping and
Gaussian noise. Any z-range can be generated on its own and is identical to
the same planes of the whole volume (noise is seeded per plane), so the
source can be read lazily in slabs of any depth, like a TIFF stack.
"""

import numpy as np

from ..store.geometry import VolumeGeometry

AIR = 1200.0
MATRIX = 21000.0
MINERALS = (17500.0, 26000.0, 31000.0, 47000.0)  # clay-rich, quartz, feldspar, heavy mineral
PORE = 2500.0
NOISE_SIGMA = 900.0


class SyntheticRockCore:
    """Lazy (z, y, x) uint16 volume: `core[z0:z1]` generates those planes."""

    dtype = np.dtype(np.uint16)

    def __init__(self, shape=(640, 512, 512), seed=0, voxel_size_um=20.0):
        self.shape = tuple(int(n) for n in shape)
        if len(self.shape) != 3 or min(self.shape) < 8:
            raise ValueError(f"shape must be three sizes of at least 8 voxels, got {shape!r}")
        self.seed = int(seed)
        nz, ny, nx = self.shape
        self.geometry = VolumeGeometry(spacing=(voxel_size_um,) * 3, origin=(0.0, 0.0, 0.0), unit="micrometer")
        self.center = ((ny - 1) / 2.0, (nx - 1) / 2.0)
        self.radius = 0.46 * min(ny, nx)
        rng = np.random.default_rng(self.seed)
        scale = min(ny, nx) / 512.0
        self.grains = self._spheres(rng, fill=0.22, r_min=3 * scale, r_max=14 * scale, values=MINERALS)
        self.pores = self._spheres(rng, fill=0.03, r_min=1.5 * scale, r_max=6 * scale, values=(PORE,))
        normal = rng.normal(size=3)
        normal[0] = abs(normal[0]) + 1.5  # steep, crossing many slices
        self.fracture_normal = normal / np.linalg.norm(normal)
        self.fracture_offset = float(self.fracture_normal @ np.array([nz / 2.0, *self.center]))
        self.fracture_half_width = max(1.0, 1.2 * scale)

    def _spheres(self, rng, fill, r_min, r_max, values):
        nz = self.shape[0]
        mean_volume = 4.0 / 3.0 * np.pi * ((r_min + r_max) / 2.0) ** 3
        count = max(1, int(fill * np.pi * self.radius**2 * nz / mean_volume))
        radius = rng.uniform(r_min, r_max, count)
        rho = self.radius * np.sqrt(rng.uniform(0, 1, count))
        phi = rng.uniform(0, 2 * np.pi, count)
        spheres = np.empty((count, 5))
        spheres[:, 0] = rng.uniform(0, nz - 1, count)
        spheres[:, 1] = self.center[0] + rho * np.sin(phi)
        spheres[:, 2] = self.center[1] + rho * np.cos(phi)
        spheres[:, 3] = radius
        spheres[:, 4] = rng.choice(values, count)
        return spheres[np.argsort(spheres[:, 0])]

    def __len__(self):
        return self.shape[0]

    def __getitem__(self, key):
        if not isinstance(key, slice) or key.step not in (None, 1):
            raise TypeError("SyntheticRockCore supports contiguous z slices only, e.g. core[10:74]")
        z0, z1, _ = key.indices(self.shape[0])
        return self._planes(z0, max(z0, z1))

    def _planes(self, z0, z1):
        nz, ny, nx = self.shape
        depth = z1 - z0
        y = np.arange(ny, dtype=np.float32)[:, None] - np.float32(self.center[0])
        x = np.arange(nx, dtype=np.float32)[None, :] - np.float32(self.center[1])
        r2 = y * y + x * x
        inside = r2 <= self.radius**2
        out = np.full((depth, ny, nx), MATRIX, dtype=np.float32)
        for spheres in (self.grains, self.pores):
            self._paint(out, z0, z1, spheres)
        # Fracture: a thin inclined slab of air.
        zz = np.arange(z0, z1, dtype=np.float32)[:, None, None]
        n = self.fracture_normal.astype(np.float32)
        distance = n[0] * zz + n[1] * (y[None] + np.float32(self.center[0])) + n[2] * (x[None] + np.float32(self.center[1]))
        out[np.abs(distance - np.float32(self.fracture_offset)) <= self.fracture_half_width] = PORE
        # Beam-hardening cupping: the rim reads brighter than the centre.
        out *= (1.0 + 0.06 * r2 / np.float32(self.radius**2))[None]
        out[:, ~inside] = AIR
        for k in range(depth):
            plane_rng = np.random.default_rng((self.seed, z0 + k))
            out[k] += plane_rng.standard_normal((ny, nx), dtype=np.float32) * np.float32(NOISE_SIGMA)
        np.clip(out, 0, 65535, out=out)
        return np.rint(out).astype(np.uint16)

    @staticmethod
    def _paint(out, z0, z1, spheres):
        # Spheres are sorted by centre z; only those whose centre is within the
        # largest radius of the slab can touch it.
        reach = spheres[:, 3].max()
        lo, hi = np.searchsorted(spheres[:, 0], [z0 - reach, z1 + reach])
        for cz, cy, cx, r, value in spheres[lo:hi]:
            zs = np.arange(max(z0, int(np.ceil(cz - r))), min(z1, int(np.floor(cz + r)) + 1))
            ys = np.arange(max(0, int(np.ceil(cy - r))), min(out.shape[1], int(np.floor(cy + r)) + 1))
            xs = np.arange(max(0, int(np.ceil(cx - r))), min(out.shape[2], int(np.floor(cx + r)) + 1))
            if not (len(zs) and len(ys) and len(xs)):
                continue
            d2 = (zs[:, None, None] - cz) ** 2 + (ys[None, :, None] - cy) ** 2 + (xs[None, None, :] - cx) ** 2
            region = out[zs[0] - z0: zs[-1] - z0 + 1, ys[0]: ys[-1] + 1, xs[0]: xs[-1] + 1]
            region[d2 <= r * r] = value
