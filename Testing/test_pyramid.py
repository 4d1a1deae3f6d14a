import json
import os
import tracemalloc

import numpy as np
import pytest

import bigvolume
from bigvolume import IncompleteStoreError, StoreError, VolumeGeometry
from bigvolume.store.geometry import LPS_TO_RAS
from conftest import ramp_volume


def physical_lps(level, index_zyx):
    """LPS position (mm) of a voxel centre of a level, from its IJK->RAS matrix."""
    k, j, i = index_zyx
    ras = level.ijk_to_ras @ np.array([i, j, k, 1.0])
    return LPS_TO_RAS @ ras[:3]


@pytest.mark.parametrize("ngff_version", ["0.5", "0.4"])
def test_every_level_voxel_sits_where_its_matrix_says(tmp_path, ngff_version):
    """A linear ramp in physical space survives the filter, so each coarse voxel's value tells its true centre."""
    shape = (70, 90, 110)
    spacing_xyz = (0.4, 0.4, 1.0)  # anisotropic: z coarser
    origin_xyz = (-12.0, 30.5, 7.25)
    geometry = VolumeGeometry(spacing=spacing_xyz, origin=origin_xyz, unit="millimeter")
    volume = ramp_volume(shape, coefficients=(1.0, 1.0, 1.0), offset=0.0)

    def value_at(lps):  # the ramp as a function of physical position
        x, y, z = (np.asarray(lps) - origin_xyz) / spacing_xyz
        return z + y + x

    bigvolume.write_pyramid(volume, tmp_path / "ramp.ome.zarr", geometry, coarsest=16, ngff_version=ngff_version)
    image = bigvolume.open_image(tmp_path / "ramp.ome.zarr")
    assert len(image.levels) >= 4
    assert image.version == ngff_version
    for level in image.levels:
        data = image.read(level.index, [(0, n) for n in level.volume_shape])
        interior = tuple(n // 2 for n in level.volume_shape)
        assert data[interior] == pytest.approx(value_at(physical_lps(level, interior)), abs=1e-3)
    np.testing.assert_array_equal(image.read(0, [(0, n) for n in shape]), volume)


def test_level_plan_and_metadata_are_what_ngff_readers_expect(tmp_path):
    geometry = VolumeGeometry(spacing=(2.0, 2.0, 10.0), origin=(0, 0, 0), unit="micrometer")
    shapes = bigvolume.write_pyramid(np.zeros((40, 300, 300), np.uint16), tmp_path / "a.ome.zarr", geometry, coarsest=64)
    assert shapes == [(40, 300, 300), (40, 150, 150), (40, 75, 75), (20, 38, 38)]
    attrs = json.loads((tmp_path / "a.ome.zarr" / "zarr.json").read_text())["attributes"]
    multiscales = attrs["ome"]["multiscales"][0]
    assert attrs["ome"]["version"] == "0.5"
    assert [a["name"] for a in multiscales["axes"]] == ["z", "y", "x"]
    assert {a["unit"] for a in multiscales["axes"]} == {"micrometer"}
    scales = [d["coordinateTransformations"][0]["scale"] for d in multiscales["datasets"]]
    translations = [d["coordinateTransformations"][1]["translation"] for d in multiscales["datasets"]]
    assert scales == [[10, 2, 2], [10, 4, 4], [10, 8, 8], [20, 16, 16]]
    # Each coarser voxel centre moves by half of the extra voxel size.
    assert translations == [[0, 0, 0], [0, 1, 1], [0, 3, 3], [5, 7, 7]]
    assert attrs["bigvolume"]["write"]["state"] == "complete"


def test_labels_use_mode_and_keep_dtype(tmp_path):
    labels = np.zeros((64, 64, 64), np.uint8)
    labels[:, :, 32:] = 5
    labels[20:40, 20:40, 20:40] = 9
    bigvolume.write_pyramid(labels, tmp_path / "l.ome.zarr", labels=True, coarsest=16)
    image = bigvolume.open_image(tmp_path / "l.ome.zarr")
    for level in image.levels:
        assert level.dtype == np.uint8
        values = set(np.unique(image.read(level.index, [(0, n) for n in level.volume_shape])).tolist())
        assert values <= {0, 5, 9}
    coarse = image.read(1, [(0, 32)] * 3)
    assert coarse[15, 15, 15] == 9 and coarse[2, 2, 30] == 5 and coarse[2, 2, 2] == 0


def test_chunking_sharding_and_format_options(tmp_path):
    vol = np.random.default_rng(1).integers(0, 4000, (50, 70, 90), dtype=np.uint16)
    bigvolume.write_pyramid(vol, tmp_path / "s.ome.zarr", chunks=(16, 16, 16), shard_chunks=(1, 2, 2), coarsest=32)
    level0 = bigvolume.open_image(tmp_path / "s.ome.zarr").levels[0]
    assert level0.chunks == (16, 16, 16) and level0.shards == (16, 32, 32)
    bigvolume.write_pyramid(vol, tmp_path / "v2.ome.zarr", ngff_version="0.4", chunks=(16, 16, 16))
    image = bigvolume.open_image(tmp_path / "v2.ome.zarr")
    assert image.zarr_format == 2 and image.levels[0].shards is None
    assert os.path.exists(tmp_path / "v2.ome.zarr" / "0" / "0" / "0" / "0")  # NGFF 0.4 wants "/" separators
    np.testing.assert_array_equal(image.read(0, [(0, 50), (0, 70), (0, 90)]), vol)


def test_direction_is_kept_in_our_attribute_and_honoured(tmp_path):
    angle = np.deg2rad(30)
    direction = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    geometry = VolumeGeometry(spacing=(0.5, 0.5, 2.0), origin=(10, -20, 5), direction=direction)
    bigvolume.write_pyramid(np.zeros((8, 40, 40), np.int16), tmp_path / "d.ome.zarr", geometry, coarsest=16)
    image = bigvolume.open_image(tmp_path / "d.ome.zarr")
    expected = np.eye(4)
    expected[:3, :3] = LPS_TO_RAS @ direction @ np.diag([0.5, 0.5, 2.0])
    expected[:3, 3] = LPS_TO_RAS @ np.array([10, -20, 5])
    np.testing.assert_allclose(image.levels[0].ijk_to_ras, expected, atol=1e-12)
    # Level 1 (xy halved): its voxel (0,0,0) centre is level 0's voxel (0.5, 0.5, 0), rotated with the image.
    np.testing.assert_allclose(image.levels[1].ijk_to_ras @ [0, 0, 0, 1], expected @ [0.5, 0.5, 0, 1], atol=1e-12)


def test_progress_is_reported_up_to_the_total(tmp_path):
    calls = []
    bigvolume.write_pyramid(np.zeros((130, 20, 20), np.uint8), tmp_path / "p.ome.zarr", coarsest=256,  # one level
                            progress=lambda done, total: calls.append((done, total)))
    assert calls == [(64, 130), (128, 130), (130, 130)]
    calls.clear()  # with coarser levels, the planes of every stage count
    bigvolume.write_pyramid(np.zeros((130, 20, 20), np.uint8), tmp_path / "q.ome.zarr",
                            progress=lambda done, total: calls.append((done, total)))
    assert calls[-1][0] == calls[-1][1] > 130 and all(a[0] <= b[0] for a, b in zip(calls, calls[1:]))


class FailingSource:
    """Reads fine for a while, then fails like a truncated file."""

    def __init__(self, volume, fail_at):
        self.volume, self.fail_at = volume, fail_at
        self.shape, self.dtype = volume.shape, volume.dtype

    def __getitem__(self, key):
        if key.stop > self.fail_at:
            raise OSError("unexpected end of file")
        return self.volume[key]


def test_an_interrupted_write_is_never_taken_for_a_complete_store(tmp_path):
    path = tmp_path / "broken.ome.zarr"
    with pytest.raises(OSError, match="unexpected end of file"):
        bigvolume.write_pyramid(FailingSource(np.ones((200, 32, 32), np.uint16), fail_at=150), path)
    assert (path / "0").exists()  # some chunks were written ...
    with pytest.raises(IncompleteStoreError, match="did not finish"):
        bigvolume.open_image(path)  # ... but the store says it is incomplete


def test_existing_output_is_never_replaced_unless_asked(tmp_path):
    path = tmp_path / "keep.ome.zarr"
    path.mkdir()
    (path / "precious.txt").write_text("user data")
    with pytest.raises(StoreError, match="already exists"):
        bigvolume.write_pyramid(np.zeros((4, 4, 4), np.uint8), path)
    assert (path / "precious.txt").read_text() == "user data"
    with pytest.raises(StoreError, match="does not exist"):
        bigvolume.write_pyramid(np.zeros((4, 4, 4), np.uint8), tmp_path / "no" / "such" / "x.ome.zarr")


def test_source_returning_wrong_shape_is_reported(tmp_path):
    class Short:
        shape, dtype = (10, 8, 8), np.dtype(np.uint8)

        def __getitem__(self, key):
            return np.zeros((key.stop - key.start, 8, 7), np.uint8)

    with pytest.raises(StoreError, match="source returned shape"):
        bigvolume.write_pyramid(Short(), tmp_path / "w.ome.zarr")


class CountingSource:
    """Counts how often each plane is read."""

    def __init__(self, volume):
        self.volume = volume
        self.shape, self.dtype = volume.shape, volume.dtype
        self.reads = np.zeros(volume.shape[0], int)

    def __getitem__(self, key):
        self.reads[key] += 1
        return self.volume[key]


def test_each_source_plane_is_read_once(tmp_path):
    source = CountingSource(np.zeros((300, 16, 16), np.uint8))
    bigvolume.write_pyramid(source, tmp_path / "c.ome.zarr", coarsest=8)
    assert source.reads.tolist() == [1] * 300


def _peak_bytes(tmp_path, depth):
    class Lazy:
        shape, dtype = (depth, 256, 256), np.dtype(np.uint16)

        def __getitem__(self, key):
            z = np.arange(key.start, key.stop, dtype=np.uint16)[:, None, None]
            return np.broadcast_to(z, (key.stop - key.start, 256, 256)).copy()

    tracemalloc.start()
    try:
        bigvolume.write_pyramid(Lazy(), tmp_path / f"m{depth}.ome.zarr", coarsest=32)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_peak_memory_does_not_grow_with_the_number_of_slices(tmp_path):
    plane = 256 * 256 * 2
    small, large = _peak_bytes(tmp_path, 128), _peak_bytes(tmp_path, 1024)  # 16 MB and 128 MB of input
    assert large < 1.25 * small
    # The documented bound: under nine slabs of level 0 (a slab is 64 planes, one chunk deep).
    assert large < 9 * 64 * plane
