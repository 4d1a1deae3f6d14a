"""An existing OME-Zarr as input: same geometry, re-pyramided, 0.4 -> 0.5, labels kept as labels."""

import json

import numpy as np
import pytest

import bigvolume
from bigvolume import VolumeGeometry
from bigvolume.tools.convert import convert
from bigvolume.errors import InputError
from bigvolume.ingest import detect_format, open_source


def _rotation(degrees):
    a = np.deg2rad(degrees)
    return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])


def test_a_0_4_store_becomes_0_5_with_the_same_geometry_and_data(tmp_path):
    volume = np.random.default_rng(3).integers(0, 4000, (40, 70, 90)).astype(np.uint16)
    geometry = VolumeGeometry(spacing=(4, 4, 10), origin=(1, -2, 30), direction=_rotation(20), unit="micrometer")
    old = tmp_path / "old.ome.zarr"
    bigvolume.write_pyramid(volume, old, geometry, ngff_version="0.4", chunks=(16, 16, 16), coarsest=32)
    assert detect_format(old) == "ome-zarr"
    source = open_source(old)
    assert source.geometry.unit == "micrometer"
    np.testing.assert_allclose(source.geometry.spacing, (4, 4, 10))
    np.testing.assert_allclose(source.geometry.direction, _rotation(20), atol=1e-12)
    new = tmp_path / "new.ome.zarr"
    convert(old, new, coarsest=16)
    before, after = bigvolume.open_image(old), bigvolume.open_image(new)
    assert after.version == "0.5" and after.zarr_format == 3 and after.levels[0].chunks == (40, 64, 64)
    np.testing.assert_array_equal(after.read(0, [(0, 40), (0, 70), (0, 90)]), volume)
    np.testing.assert_allclose(after.levels[0].ijk_to_ras, before.levels[0].ijk_to_ras, atol=1e-9)
    assert len(after.levels) > len(before.levels)  # re-pyramided to the new coarsest size


def test_label_images_stay_labels(tmp_path):
    labels = np.zeros((32, 32, 32), np.uint8)
    labels[8:24, 8:24, 8:24] = 7
    store = tmp_path / "seg.ome.zarr"
    bigvolume.write_pyramid(labels, store, labels=True, coarsest=16)
    meta = json.loads((store / "zarr.json").read_text())
    meta["attributes"]["ome"]["image-label"] = {"version": "0.5"}
    (store / "zarr.json").write_text(json.dumps(meta))
    source = open_source(store)
    assert source.labels and "labels" in source.info.found
    out = tmp_path / "again.ome.zarr"
    convert(store, out, coarsest=8)
    coarse = bigvolume.open_image(out).read(1, [(0, 16)] * 3)
    assert set(np.unique(coarse)) == {0, 7}


def test_unfinished_store_and_output_inside_the_input(tmp_path):
    store = tmp_path / "a.ome.zarr"
    bigvolume.write_pyramid(np.zeros((8, 8, 8), np.uint8), store)
    with pytest.raises(InputError, match="inside the input store"):
        convert(store, store / "b.ome.zarr")
    with pytest.raises(InputError, match="the output is the input itself"):
        convert(store, store)
    meta = json.loads((store / "zarr.json").read_text())
    meta["attributes"]["bigvolume"]["write"]["state"] = "in-progress"
    (store / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="did not finish"):
        open_source(store)
