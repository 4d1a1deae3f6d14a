"""MetaImage (.mha/.mhd) reader against SimpleITK."""

import zlib

import numpy as np
import pytest
import SimpleITK as sitk

from bigvolume.errors import InputError
from bigvolume.ingest import metaimage
from test_ingest_medical import FLIPPED, OBLIQUE, SHAPE, assert_same_as_sitk, sitk_image, voxels


@pytest.mark.parametrize("name", ["v.mha", "v.mhd"])
@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("dtype, direction", [(np.int16, OBLIQUE), (np.float64, OBLIQUE), (np.uint32, FLIPPED)])
def test_simpleitk_files(tmp_path, name, compress, dtype, direction):
    path = tmp_path / name
    sitk.WriteImage(sitk_image(voxels(dtype), direction), str(path), useCompression=compress)
    with metaimage.open(path) as source:
        assert_same_as_sitk(source, path)
        assert source.info.format == "metaimage"
        assert source.info.found["CompressedData"] == str(compress)
        assert source.info.found["AnatomicalOrientation"]  # recorded, and (as in ITK) not used


def _matrix_text(direction):
    return " ".join(repr(float(v)) for v in np.asarray(direction).T.ravel())  # column by column


def _write(tmp_path, lines, data, name="h.mhd", data_name="d.raw"):
    if data_name:
        (tmp_path / data_name).write_bytes(data)
        lines = {**lines, "ElementDataFile": data_name}
    path = tmp_path / name
    text = "".join(f"{k} = {v}\n" for k, v in lines.items())
    path.write_bytes(text.encode() + (b"" if data_name else data))
    return path


BASE = {"ObjectType": "Image", "NDims": 3, "DimSize": "11 9 70", "ElementType": "MET_SHORT",
        "ElementSpacing": "0.7 0.55 1.9", "Offset": "12.5 -30.25 41", "TransformMatrix": _matrix_text(OBLIQUE)}


@pytest.mark.parametrize("header_size, prefix", [(33, b"x" * 33), (-1, b"some other header" * 4)])
def test_header_size_skips_or_puts_data_at_the_end(tmp_path, header_size, prefix):
    path = _write(tmp_path, {**BASE, "HeaderSize": header_size}, prefix + voxels().tobytes())
    with metaimage.open(path) as source:
        assert_same_as_sitk(source, path)


def test_synonyms_big_endian_and_local_data(tmp_path):
    lines = {"NDims": 3, "DimSize": "11 9 70", "ElementType": "MET_USHORT", "ElementSize": "0.5 0.5 2",
             "Position": "1 2 3", "Orientation": _matrix_text(FLIPPED), "ElementByteOrderMSB": "True",
             "ElementDataFile": "LOCAL"}
    path = _write(tmp_path, lines, voxels(np.uint16).astype(">u2").tobytes(), name="h.mha", data_name=None)
    with metaimage.open(path) as source:
        assert source.dtype.isnative
        assert_same_as_sitk(source, path)
        assert any("unit" in text for text in source.info.assumed)


def test_compressed_external_data_file(tmp_path):
    array = voxels(np.float32)
    path = _write(tmp_path, {**BASE, "ElementType": "MET_FLOAT", "CompressedData": "True"},
                  zlib.compress(array.tobytes()))
    with metaimage.open(path) as source:
        assert_same_as_sitk(source, path)


def test_minimal_header_assumes_and_says_so(tmp_path):
    lines = {"NDims": 3, "DimSize": "11 9 70", "ElementType": "MET_UCHAR"}
    path = _write(tmp_path, lines, voxels(np.uint8).tobytes())
    with metaimage.open(path) as source:
        assert_same_as_sitk(source, path)
        assumed = " ".join(source.info.assumed)
        assert "spacing" in assumed and "origin" in assumed and "direction" in assumed


# --- errors ------------------------------------------------------------------------------------------------


def test_missing_data_file(tmp_path):
    path = tmp_path / "h.mhd"
    path.write_text("NDims = 3\nDimSize = 11 9 70\nElementType = MET_SHORT\nElementDataFile = gone.raw\n")
    with pytest.raises(InputError, match=r"h\.mhd: its data file .*gone\.raw is missing"):
        metaimage.open(path)


def test_truncated_data_says_how_many_bytes(tmp_path):
    needed = int(np.prod(SHAPE)) * 2
    path = _write(tmp_path, BASE, voxels().tobytes()[:-2])
    with pytest.raises(InputError, match=rf"d\.raw: truncated: the header needs {needed} bytes .* \(2 missing\)"):
        metaimage.open(path)
    local = _write(tmp_path, {**BASE, "ElementDataFile": "LOCAL"}, voxels().tobytes()[:-50], "h.mha", None)
    with pytest.raises(InputError, match=r"h\.mha: truncated: .* \(50 missing\)"):
        metaimage.open(local)


def test_truncated_compressed_data_fails_on_the_missing_planes(tmp_path):
    array = voxels()
    compressed = zlib.compress(array.tobytes())
    path = _write(tmp_path, {**BASE, "CompressedData": "True"}, compressed[: len(compressed) // 2])
    with metaimage.open(path) as source:
        np.testing.assert_array_equal(source[0:5], array[0:5])
        with pytest.raises(InputError, match="truncated: the compressed voxel data ends after"):
            source[60:70]


def test_corrupt_compressed_data(tmp_path):
    path = _write(tmp_path, {**BASE, "CompressedData": "True"}, b"not zlib at all" * 10)
    with metaimage.open(path) as source:
        with pytest.raises(InputError, match="compressed voxel data is corrupt"):
            source[0:1]


@pytest.mark.parametrize("changes, message", [
    ({"ElementType": "MET_SHORT_ARRAY"}, "unsupported ElementType MET_SHORT_ARRAY"),
    ({"NDims": 4, "DimSize": "11 9 70 2"}, "NDims = 4; only 3D"),
    ({"ElementNumberOfChannels": 3}, "3 channels per voxel"),
    ({"BinaryData": "False"}, "written as text"),
    ({"ObjectType": "Transform"}, "ObjectType Transform"),
    ({"DimSize": "11 9"}, "should be 3 numbers"),
    ({"DimSize": "11 0 70"}, "must be positive"),
    ({"ElementSpacing": "1 0 1"}, "must be positive"),
    ({"TransformMatrix": "1 0 0 1 1 0 0 0 1"}, "not orthogonal"),
    ({"CompressedData": "True", "HeaderSize": -1}, "needs CompressedDataSize"),
    ({"ElementType": None}, "no ElementType field"),
    ({"HeaderSize": "big"}, "'HeaderSize = big' should be 1 number"),
])
def test_header_errors(tmp_path, changes, message):
    lines = {k: v for k, v in {**BASE, **changes}.items() if v is not None}
    with pytest.raises(InputError, match=message):
        metaimage.open(_write(tmp_path, lines, voxels().tobytes()))


def test_several_data_files_or_no_data_field_are_refused(tmp_path):
    for data_file in ("LIST", "slice%03d.raw 1 70 1"):
        path = tmp_path / "h.mhd"
        path.write_text(f"NDims = 3\nDimSize = 11 9 70\nElementType = MET_SHORT\nElementDataFile = {data_file}\n")
        with pytest.raises(InputError, match="several files"):
            metaimage.open(path)
    path.write_text("NDims = 3\nDimSize = 11 9 70\n")
    with pytest.raises(InputError, match="no ElementDataFile field"):
        metaimage.open(path)
    path.write_text("NDims = 3\nthis line has no equals sign\n")
    with pytest.raises(InputError, match="is not 'Name = Value'"):
        metaimage.open(path)
    with pytest.raises(InputError, match="cannot open"):
        metaimage.open(tmp_path / "missing.mha")
    with pytest.raises(TypeError, match="unexpected keyword argument"):
        metaimage.open(path, origin=(0, 0, 0))


def test_compressed_data_at_the_end_found_from_its_size(tmp_path):
    array = voxels()
    compressed = zlib.compress(array.tobytes())
    path = _write(tmp_path, {**BASE, "CompressedData": "True", "HeaderSize": -1,
                             "CompressedDataSize": len(compressed)}, b"junk" * 9 + compressed)
    with metaimage.open(path) as source:
        np.testing.assert_array_equal(source[0:70], array)


def test_empty_data_file_name(tmp_path):
    path = tmp_path / "h.mhd"
    path.write_text("NDims = 3\nDimSize = 11 9 70\nElementType = MET_SHORT\nElementDataFile = \n")
    with pytest.raises(InputError, match="ElementDataFile is empty"):
        metaimage.open(path)
