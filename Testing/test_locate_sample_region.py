"""Recognising a dropped store, the built-in sample, region sizes, and opening a store over HTTP."""

import functools
import http.server
import json
import threading

import numpy as np
import pytest
import zarr

import bigvolume
from bigvolume.store.locate import image_root
from bigvolume.store.region import box_from_ras, plan_region
from bigvolume.tools.sample import sample_store


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("locate")
    volume = np.arange(40 * 48 * 56, dtype=np.uint16).reshape(40, 48, 56)
    bigvolume.write_pyramid(volume, root / "v3.ome.zarr", coarsest=16, chunks=(16, 16, 16))
    bigvolume.write_pyramid(volume, root / "v2.ome.zarr", coarsest=16, chunks=(16, 16, 16), ngff_version="0.4")
    zarr.open_group(root / "plain.zarr", mode="w").create_array("a", shape=(4,), dtype="u1")
    return root, volume


def test_image_root_claims_the_image_folder_and_its_root_metadata_only(stores):
    root, _ = stores
    v3, v2 = root / "v3.ome.zarr", root / "v2.ome.zarr"
    assert image_root(v3) == str(v3) and image_root(v3 / "zarr.json") == str(v3)
    assert image_root(v2) == str(v2) and image_root(v2 / ".zattrs") == str(v2) and image_root(v2 / ".zgroup") == str(v2)
    assert image_root(v3 / "0" / "zarr.json") is None  # a level array
    assert image_root(v2 / "0" / ".zarray") is None
    assert image_root(root / "plain.zarr") is None and image_root(root / "plain.zarr" / "zarr.json") is None
    assert image_root(root / "missing.ome.zarr") is None and image_root(root) is None
    broken = root / "broken.zarr"
    broken.mkdir()
    (broken / "zarr.json").write_text("{not json")
    assert image_root(broken / "zarr.json") is None


def test_box_from_ras_takes_the_voxel_centres_inside(stores):
    root, _ = stores
    image = bigvolume.open_image(root / "v3.ome.zarr")
    level = image.levels[0]
    centre = lambda i, j, k: (level.ijk_to_ras @ [i, j, k, 1.0])[:3]  # noqa: E731
    a, b = centre(3, 4, 5), centre(10, 20, 30)
    assert box_from_ras(level, np.minimum(a, b), np.maximum(a, b)) == ((5, 31), (4, 21), (3, 11))
    nudge = 0.01 * np.asarray(level.voxel_size_mm)
    assert box_from_ras(level, np.minimum(a, b) + nudge, np.maximum(a, b) - nudge) == ((6, 30), (5, 20), (4, 10))
    assert box_from_ras(level, np.minimum(a, b) - 1e3, np.maximum(a, b) + 1e3) == ((0, 40), (0, 48), (0, 56))
    assert box_from_ras(level, [1e4] * 3, [1e4 + 1] * 3) is None
    plan = plan_region(image, 0, np.minimum(a, b), np.maximum(a, b), limit_bytes=10**9)
    assert plan.fits and plan.nbytes == 26 * 17 * 8 * 2 and plan.describe() == "level 0: 8 x 17 x 26 voxels, 0.0 MB"


def test_plan_region_refuses_a_level_outside_the_image(stores):
    root, _ = stores
    image = bigvolume.open_image(root / "v3.ome.zarr")
    last = len(image.levels) - 1
    for level in (-1, last + 1):  # -1 would otherwise plan the coarsest level
        with pytest.raises(ValueError, match=rf"level {level} does not exist: the image has levels 0\.\.{last}$"):
            plan_region(image, level, *image.bounds_ras(0, edges=True), limit_bytes=10**9)


def test_sample_is_written_on_first_use_then_reused(tmp_path):
    calls = []
    path = sample_store(tmp_path, shape=(48, 40, 40), progress=lambda done, total: calls.append(done))
    image = bigvolume.open_image(path)
    assert image.levels[0].volume_shape == (48, 40, 40) and image.name == "synthetic rock core"
    assert calls and calls[-1] == 48
    calls.clear()
    assert sample_store(tmp_path, shape=(48, 40, 40), progress=lambda done, total: calls.append(done)) == path
    assert calls == []  # already there: nothing written again
    foreign = tmp_path / "BigVolumeSampleRockCore-8x8x8.ome.zarr"
    zarr.open_group(foreign, mode="w")
    with pytest.raises(bigvolume.StoreError, match="not the BigVolume sample"):
        sample_store(tmp_path, shape=(8, 8, 8))
    assert json.loads((foreign / "zarr.json").read_text())["node_type"] == "group"  # left untouched


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_a_store_opens_and_reads_over_http(stores):
    root, volume = stores
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v3.ome.zarr"
        image = bigvolume.open_image(url)
        assert len(image.levels) == len(bigvolume.open_image(root / "v3.ome.zarr").levels)
        np.testing.assert_array_equal(image.read(0, [(3, 20), (5, 40), (7, 50)]), volume[3:20, 5:40, 7:50])
    finally:
        server.shutdown()
        server.server_close()
