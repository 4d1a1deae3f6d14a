"""Bad input gets a clear error naming what is wrong and where."""

import json

import numpy as np
import pytest
import zarr

import bigvolume
from bigvolume import CorruptChunkError, MetadataError, StoreError


@pytest.fixture
def store(tmp_path):
    path = tmp_path / "img.ome.zarr"
    volume = np.arange(40 * 48 * 56, dtype=np.uint16).reshape(40, 48, 56)
    bigvolume.write_pyramid(volume, path, chunks=(16, 16, 16), shard_chunks=None, coarsest=16)
    return path, volume


def test_missing_path(tmp_path):
    with pytest.raises(StoreError, match="no such file or directory"):
        bigvolume.open_image(tmp_path / "nope.ome.zarr")


def test_a_file_or_a_plain_folder_is_not_a_store(tmp_path):
    (tmp_path / "scan.tif").write_bytes(b"II*\x00")
    with pytest.raises(StoreError, match="is a file, not a Zarr store"):
        bigvolume.open_image(tmp_path / "scan.tif")
    with pytest.raises(StoreError, match="not a Zarr store"):
        bigvolume.open_image(tmp_path)


def test_opening_by_its_metadata_file_works(store):
    path, _ = store
    assert len(bigvolume.open_image(path / "zarr.json").levels) == 3


def test_an_array_is_not_an_image(store):
    path, _ = store
    with pytest.raises(StoreError, match="is a Zarr array, not a group"):
        bigvolume.open_image(path / "0")


def test_group_without_multiscales(tmp_path):
    zarr.open_group(tmp_path / "g.zarr", mode="w")
    with pytest.raises(MetadataError, match="without OME-NGFF 'multiscales' metadata"):
        bigvolume.open_image(tmp_path / "g.zarr")


def _edit_attrs(path, edit):
    meta_file = path / "zarr.json"
    meta = json.loads(meta_file.read_text())
    edit(meta["attributes"])
    meta_file.write_text(json.dumps(meta))


def test_missing_level(store):
    path, _ = store
    _edit_attrs(path, lambda a: a["ome"]["multiscales"][0]["datasets"][2].update(path="7"))
    with pytest.raises(MetadataError, match=r"level 2 \(path '7'\) is listed .* missing"):
        bigvolume.open_image(path)


def test_level_shape_contradicting_its_scale(store):
    path, _ = store

    def edit(attrs):
        attrs["ome"]["multiscales"][0]["datasets"][1]["coordinateTransformations"][0]["scale"] = [8, 8, 8]

    _edit_attrs(path, edit)
    with pytest.raises(MetadataError, match=r"level 1 .* scale implies about"):
        bigvolume.open_image(path)


def test_malformed_transformations(store):
    path, _ = store
    _edit_attrs(path, lambda a: a["ome"]["multiscales"][0]["datasets"][0]["coordinateTransformations"][0].update(scale=[1, 1]))
    with pytest.raises(MetadataError, match="one value per axis"):
        bigvolume.open_image(path)


def test_unknown_unit(store):
    path, _ = store
    _edit_attrs(path, lambda a: [axis.update(unit="furlong") for axis in a["ome"]["multiscales"][0]["axes"]])
    with pytest.raises(MetadataError, match="unknown space unit 'furlong'"):
        bigvolume.open_image(path)


def test_corrupt_chunk_is_named(store):
    path, volume = store
    image = bigvolume.open_image(path)
    assert np.array_equal(image.read(0, [(0, 40), (0, 48), (0, 56)]), volume)
    chunk = path / "0" / "c" / "1" / "2" / "0"
    chunk.write_bytes(b"\x00garbage" * 10)
    image = bigvolume.open_image(path)
    with pytest.raises(CorruptChunkError, match=r"chunk 0/c/1/2/0 of level 0 cannot be read") as info:
        image.read(0, [(0, 40), (0, 48), (0, 56)])
    assert info.value.chunk_key == "0/c/1/2/0"
    # Chunks elsewhere still read.
    assert np.array_equal(image.read(0, [(0, 16), (0, 16), (0, 16)]), volume[:16, :16, :16])


def test_boxes_outside_the_volume_are_filled(store):
    path, volume = store
    image = bigvolume.open_image(path)
    box = image.read(0, [(-5, 5), (40, 60), (50, 70)], fill_value=7)
    assert box.shape == (10, 20, 20)
    np.testing.assert_array_equal(box[5:, :8, :6], volume[:5, 40:48, 50:56])
    assert (box[:5] == 7).all() and (box[:, 8:] == 7).all() and (box[:, :, 6:] == 7).all()
    assert (image.read(1, [(100, 102), (0, 2), (0, 2)]) == 0).all()
    with pytest.raises(ValueError, match="three"):
        image.read(0, [(0, 1), (0, 1)])


def test_time_and_channel_selection(tmp_path):
    """A 5D t, c, z, y, x store: the volume view picks one time point and channel."""
    path = tmp_path / "tczyx.ome.zarr"
    root = zarr.open_group(path, mode="w", zarr_format=3)
    data = np.arange(2 * 3 * 4 * 5 * 6, dtype=np.uint16).reshape(2, 3, 4, 5, 6)
    root.create_array("0", data=data, chunks=(1, 1, 4, 5, 6), dimension_names=list("tczyx"))
    root.attrs.put({"ome": {"version": "0.5", "multiscales": [{
        "axes": [{"name": "t", "type": "time", "unit": "second"}, {"name": "c", "type": "channel"}]
        + [{"name": n, "type": "space", "unit": "micrometer"} for n in "zyx"],
        "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1, 1, 2, 0.5, 0.5]}]}]}]}})
    image = bigvolume.open_image(path, t=1, c=2)
    np.testing.assert_array_equal(image.read(0, [(0, 4), (0, 5), (0, 6)]), data[1, 2])
    assert image.levels[0].voxel_size_mm == (0.0005, 0.0005, 0.002)
    with pytest.raises(ValueError, match="channel index 3 is outside"):
        bigvolume.open_image(path, c=3)
