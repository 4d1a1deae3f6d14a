"""TIFF inputs: folders of slices, multi-page, BigTIFF, OME-TIFF, ImageJ hyperstacks; their metadata and their faults."""

import pickle

import numpy as np
import pytest
import tifffile

from bigvolume.errors import InputError
from bigvolume.ingest import detect_format, open_source
from bigvolume.ingest import tiff


def write_slices(folder, volume, names=None, **kwargs):
    folder.mkdir(parents=True, exist_ok=True)
    names = names or [f"slice_{i}.tif" for i in range(len(volume))]
    for name, plane in zip(names, volume):
        tifffile.imwrite(folder / name, plane, **kwargs)
    return folder


@pytest.fixture
def volume():
    return np.random.default_rng(0).integers(0, 60000, (12, 30, 41)).astype(np.uint16)


def test_folder_is_read_in_natural_order_with_imagej_calibration(tmp_path, volume):
    folder = write_slices(tmp_path / "scan", volume, imagej=True, resolution=(1 / 0.5, 1 / 0.5),
                          metadata={"spacing": 2.5, "unit": "um"})
    source = open_source(folder)
    assert detect_format(folder) == "tiff"
    assert source.shape == (12, 30, 41) and source.dtype == np.uint16
    np.testing.assert_array_equal(source[0:12], volume)  # slice_10 after slice_9, not after slice_1
    np.testing.assert_array_equal(source[3:5], volume[3:5])
    assert source.geometry.spacing == pytest.approx((0.5, 0.5, 2.5)) and source.geometry.unit == "micrometer"
    assert "ImageJ spacing" in source.info.found["spacing z"]
    assert any("orientation" in text for text in source.info.assumed)
    assert all(location is not None for location in source.locations)  # uncompressed: read in place


def test_natural_sort_key():
    names = ["a_10.tif", "a_9.tif", "a_100.tif", "A_1.tif"]
    assert sorted(names, key=tiff.natural_key) == ["A_1.tif", "a_9.tif", "a_10.tif", "a_100.tif"]


def test_pattern_option_and_glob_input_select_slices(tmp_path, volume):
    folder = write_slices(tmp_path / "mixed", volume[:4], names=["rec_0.tif", "rec_1.tif", "preview_0.tif", "rec_2.tif"])
    assert open_source(folder, pattern="rec_*.tif").shape[0] == 3
    globbed = open_source(str(folder / "rec_*.tif"))
    np.testing.assert_array_equal(globbed[0:3], volume[[0, 1, 3]])


def test_missing_calibration_is_assumed_and_said(tmp_path, volume):
    source = open_source(write_slices(tmp_path / "plain", volume[:3]))
    assert source.geometry.spacing == (1.0, 1.0, 1.0)
    assert any("pixel size" in text for text in source.info.assumed)
    assert any("slice distance" in text for text in source.info.assumed)


def test_resolution_tags_in_centimetres(tmp_path, volume):
    folder = write_slices(tmp_path / "cm", volume[:3], resolution=(1000.0, 1000.0), resolutionunit="CENTIMETER")
    source = open_source(folder)
    assert source.geometry.spacing[:2] == pytest.approx((0.001, 0.001)) and source.geometry.unit == "centimeter"


def test_imagej_hyperstack_channel_and_time(tmp_path):
    data = np.random.default_rng(1).integers(0, 4000, (2, 7, 3, 20, 25)).astype(np.uint16)
    path = tmp_path / "hyper.tif"
    tifffile.imwrite(path, data, imagej=True, resolution=(4.0, 4.0), metadata={"axes": "TZCYX", "spacing": 0.75, "unit": "um"})
    source = open_source(path, channel=2, time=1)
    assert source.shape == (7, 20, 25) and source.contiguous is not None  # memory-mapped
    np.testing.assert_array_equal(source[0:7], data[1, :, 2])
    np.testing.assert_array_equal(source[2:4], data[1, 2:4, 2])
    assert source.geometry.spacing == pytest.approx((0.25, 0.25, 0.75))
    default = open_source(path)
    assert any("channel 0 of 3" in text for text in default.info.assumed)
    with pytest.raises(InputError, match="outside 0..2"):
        open_source(path, channel=5)


def test_ome_tiff_compressed_with_per_axis_units(tmp_path, volume):
    path = tmp_path / "scan.ome.tif"
    tifffile.imwrite(path, volume, ome=True, compression="zlib",
                     metadata={"axes": "ZYX", "PhysicalSizeX": 0.3, "PhysicalSizeY": 0.3, "PhysicalSizeZ": 0.0015,
                               "PhysicalSizeZUnit": "mm"})
    source = open_source(path)
    assert source.info.format == "OME-TIFF" and source.contiguous is None
    np.testing.assert_array_equal(source[0:12], volume)
    assert source.geometry.spacing == pytest.approx((0.3, 0.3, 1.5)) and source.geometry.unit == "micrometer"


def test_bigtiff_big_endian_and_pickled_reader(tmp_path, volume):
    path = tmp_path / "light-sheet.btf"
    tifffile.imwrite(path, volume, bigtiff=True, byteorder=">")
    source = open_source(path)
    assert source.info.format == "BigTIFF" and source.dtype == np.dtype("=u2")
    np.testing.assert_array_equal(source[5:9], volume[5:9])
    copy = pickle.loads(pickle.dumps(source))  # what worker processes receive: it re-opens the file
    np.testing.assert_array_equal(copy[0:12], volume)


def test_overrides_replace_what_the_file_says(tmp_path, volume):
    path = tmp_path / "lies.ome.tif"  # PhysicalSizeZ stored a thousand times too small
    tifffile.imwrite(path, volume, ome=True, metadata={"axes": "ZYX", "PhysicalSizeX": 0.3, "PhysicalSizeY": 0.3,
                                                         "PhysicalSizeZ": 0.0015})
    source = open_source(path, spacing=(0.3, 0.3, 1.5))
    assert source.geometry.spacing == (0.3, 0.3, 1.5)
    assert source.info.overridden and "1.5" in source.info.overridden[0]


# -- faults: each names the file and what is wrong ------------------------------------
def test_missing_path(tmp_path):
    with pytest.raises(InputError, match="no such file or folder"):
        open_source(tmp_path / "nothing.tif")


def test_truncated_file(tmp_path, volume):
    path = tmp_path / "cut.tif"
    tifffile.imwrite(path, volume)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"cut.tif: .*truncated|cut.tif: not a readable TIFF"):
        open_source(path)


def test_truncated_slice_in_folder(tmp_path, volume):
    folder = write_slices(tmp_path / "stack", volume[:4])
    data = (folder / "slice_2.tif").read_bytes()
    (folder / "slice_2.tif").write_bytes(data[:-100])
    with pytest.raises(InputError, match=r"slice_2.tif: .*truncated"):
        open_source(folder)


def test_slices_of_different_sizes(tmp_path, volume):
    folder = write_slices(tmp_path / "stack", volume[:3])
    tifffile.imwrite(folder / "slice_3.tif", np.zeros((30, 40), np.uint16))
    with pytest.raises(InputError, match=r"slice_3.tif: slice is 40 x 30 uint16, but .*slice_0.tif is 41 x 30"):
        open_source(folder)


def test_slices_of_different_types(tmp_path, volume):
    folder = write_slices(tmp_path / "stack", volume[:2])
    tifffile.imwrite(folder / "slice_2.tif", volume[2].astype(np.float32))
    with pytest.raises(InputError, match=r"slice_2.tif: .*float32"):
        open_source(folder)


def test_unsupported_compression_names_the_package(tmp_path, volume):
    path = tmp_path / "lzw.tif"
    tifffile.imwrite(path, volume[0])
    with tifffile.TiffFile(path) as tif:  # turn the Compression tag into LZW (5)
        offset = tif.pages[0].tags["Compression"].valueoffset
    data = bytearray(path.read_bytes())
    data[offset:offset + 2] = (5).to_bytes(2, "little")
    path.write_bytes(bytes(data))
    try:
        import imagecodecs  # noqa: F401
        pytest.skip("imagecodecs is installed: LZW is supported")
    except ImportError:
        pass
    with pytest.raises(InputError, match=r"lzw.tif: compression LZW is not supported .*imagecodecs"):
        open_source(path)


def test_colour_and_multi_page_files_in_a_folder(tmp_path, volume):
    folder = write_slices(tmp_path / "rgb", np.zeros((2, 10, 12, 3), np.uint8), photometric="rgb")
    with pytest.raises(InputError, match=r"slice_0.tif: a 3-sample \(colour\) image"):
        open_source(folder)
    folder = tmp_path / "pages"
    folder.mkdir()
    tifffile.imwrite(folder / "a.tif", volume[:3], photometric="minisblack")
    with pytest.raises(InputError, match=r"a.tif: holds 3 pages"):
        open_source(folder)


def test_empty_folder_and_unmatched_pattern(tmp_path, volume):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="the folder is empty"):
        open_source(tmp_path / "empty")
    folder = write_slices(tmp_path / "stack", volume[:2])
    with pytest.raises(InputError, match=r"no TIFF slices found matching 'rec_\*'"):
        open_source(folder, pattern="rec_*")


def test_options_a_reader_does_not_take(tmp_path, volume):
    folder = write_slices(tmp_path / "stack", volume[:2])
    with pytest.raises(InputError, match="the tiff reader does not take option"):
        open_source(folder, size=(1, 2, 3))
    with pytest.raises(InputError, match="unknown format 'jpeg'"):
        open_source(folder, format="jpeg")
