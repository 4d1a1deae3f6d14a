"""NRRD/NHDR reader (and the block source MetaImage and NIfTI share) against SimpleITK."""

import bz2
import gzip

import numpy as np
import pytest
import SimpleITK as sitk

from bigvolume import VolumeGeometry
from bigvolume.errors import InputError
from bigvolume.ingest import SourceInfo, nrrd
from test_ingest_medical import FLIPPED, OBLIQUE, SHAPE, assert_same_as_sitk, assert_voxels, sitk_image, voxels


@pytest.mark.parametrize("name, compress", [("v.nrrd", False), ("v.nrrd", True), ("v.nhdr", False), ("v.nhdr", True)])
@pytest.mark.parametrize("dtype", [np.int16, np.float32, np.uint8])
def test_simpleitk_files(tmp_path, name, compress, dtype):
    path = tmp_path / name
    sitk.WriteImage(sitk_image(voxels(dtype), OBLIQUE), str(path), useCompression=compress)
    with nrrd.open(path) as source:
        assert_same_as_sitk(source, path)
        assert source.info.format == "nrrd" and source.info.found["encoding"] == ("gzip" if compress else "raw")


def test_flipped_direction(tmp_path):
    path = tmp_path / "v.nrrd"
    sitk.WriteImage(sitk_image(voxels(np.uint16), FLIPPED), str(path))
    with nrrd.open(path) as source:
        assert_same_as_sitk(source, path)
        assert np.linalg.det(source.geometry.direction) < 0


def _header(fields, magic="NRRD0004"):
    return magic + "\n# written by a test\n" + "".join(f"{k}: {v}\n" for k, v in fields.items())


def _orthogonal_space():
    columns = OBLIQUE @ np.diag([0.7, 0.55, 1.9])
    return " ".join("(" + ",".join(repr(float(v)) for v in column) + ")" for column in columns.T)


GEOMETRY = {"type": "short", "dimension": 3, "space": "left-posterior-superior", "sizes": "11 9 70", "endian": "little",
            "space directions": _orthogonal_space(), "space origin": "(12.5,-30.25,41)"}


def _write(tmp_path, fields, data, name="h.nhdr", data_name="d.bin"):
    (tmp_path / data_name).write_bytes(data)
    path = tmp_path / name
    path.write_text(_header({**fields, "data file": data_name}))
    return path


def test_byte_skip_minus_one_puts_the_data_at_the_end_of_the_file(tmp_path):
    array = voxels()
    fields = {**GEOMETRY, "space": "left-posterior-superior",
              "encoding": "raw", "byte skip": -1}
    path = _write(tmp_path, fields, b"a header of another format\n" * 3 + array.tobytes())
    with nrrd.open(path) as source:
        assert_same_as_sitk(source, path)


def test_gzip_with_byte_skip_minus_one(tmp_path):
    array = voxels()
    fields = {**GEOMETRY, "space": "LPS", "encoding": "gzip", "byte skip": -1}
    path = _write(tmp_path, fields, gzip.compress(b"x" * 1000 + array.tobytes()))
    with nrrd.open(path) as source:
        assert_same_as_sitk(source, path)


def test_line_skip_then_byte_skip_into_a_gzip_stream(tmp_path):
    array = voxels(np.float32)
    fields = {**GEOMETRY, "type": "float", "space": "left-posterior-superior",
              "encoding": "gz", "line skip": 2, "byte skip": 7}
    path = _write(tmp_path, fields, b"first line\nsecond\n" + gzip.compress(b"skip me" + array.tobytes()))
    with nrrd.open(path) as source:
        assert_same_as_sitk(source, path)


def test_bzip2_big_endian_attached(tmp_path):
    """ITK's NRRD reader has no bzip2: the same header with raw data is its oracle."""
    array = voxels(np.int32)
    fields = {**GEOMETRY, "type": "int32", "endian": "big"}
    twin = _write(tmp_path, {**fields, "encoding": "raw"}, array.astype(">i4").tobytes())
    path = tmp_path / "a.nrrd"
    compressed = bz2.compress(array.astype(">i4").tobytes())
    path.write_bytes(_header({**fields, "encoding": "bzip2"}).encode() + b"\n" + compressed)
    with nrrd.open(path) as source:
        assert source.dtype == np.dtype(np.int32) and source.dtype.isnative
        assert_same_as_sitk(source, twin)


@pytest.mark.parametrize("space", ["right-anterior-superior", "RAS", "left-anterior-superior", "scanner-xyz"])
def test_ras_and_other_spaces_are_turned_into_lps_as_itk_does(tmp_path, space):
    fields = {**GEOMETRY, "space": space, "encoding": "raw",
              "space units": '"mm" "mm" "mm"'}
    path = _write(tmp_path, fields, voxels().tobytes())
    with nrrd.open(path) as source:
        assert_same_as_sitk(source, path)
        assert source.geometry.unit == "millimeter"
        if space == "scanner-xyz":
            assert any("taken as LPS" in text for text in source.info.assumed)


def test_ras_origin_and_directions_change_sign(tmp_path):
    fields = {**GEOMETRY, "space": "RAS", "space directions": "(2,0,0) (0,3,0) (0,0,4)", "space origin": "(10,20,30)",
              "encoding": "raw"}
    with nrrd.open(_write(tmp_path, fields, voxels().tobytes())) as source:
        assert source.geometry.origin == (-10.0, -20.0, 30.0)
        assert source.geometry.spacing == (2.0, 3.0, 4.0)
        assert np.allclose(source.geometry.direction, np.diag([-1, -1, 1]))


def test_orientation_free_header_with_spacings_and_axis_mins(tmp_path):
    fields = {"type": "ushort", "dimension": 3, "sizes": "11 9 70", "endian": "little", "encoding": "raw",
              "spacings": "0.5 0.25 2", "axis mins": "1 2 3", "centers": "cell node cell"}
    path = _write(tmp_path, fields, voxels(np.uint16).tobytes())
    with nrrd.open(path) as source:
        assert_same_as_sitk(source, path)
        assert any("identity" in text for text in source.info.assumed)


def test_minimal_header_assumes_and_says_so(tmp_path):
    path = _write(tmp_path, {"type": "uchar", "dimension": 3, "sizes": "11 9 70", "encoding": "raw"},
                  voxels(np.uint8).tobytes())
    with nrrd.open(path) as source:
        assert_same_as_sitk(source, path)
        assumed = " ".join(source.info.assumed)
        assert "spacing" in assumed and "origin" in assumed and "direction" in assumed


def test_key_value_pairs_and_fields_are_reported(tmp_path):
    fields = {**GEOMETRY, "space": "LPS", "encoding": "raw"}
    path = _write(tmp_path, fields, voxels().tobytes())
    path.write_text(path.read_text() + "modality:=CT\n")
    with nrrd.open(path) as source:
        assert source.info.found["key/value pairs"] == {"modality": "CT"}
        assert source.info.found["type"] == "short" and source.info.found["data file"].endswith("d.bin")


def test_slightly_inexact_directions_are_made_orthonormal(tmp_path):
    fields = {**GEOMETRY, "space": "LPS", "space directions": "(0.7071,0.7072,0) (-0.7071,0.7071,0) (0,0,1)",
              "encoding": "raw"}
    with nrrd.open(_write(tmp_path, fields, voxels().tobytes())) as source:
        direction = np.asarray(source.geometry.direction)
        assert np.allclose(direction.T @ direction, np.eye(3), atol=1e-12)
        assert any("nearest rotation" in text for text in source.info.assumed)


# --- errors ------------------------------------------------------------------------------------------------


def _raw(tmp_path, data=None, **changes):
    fields = {**GEOMETRY, "space": "LPS", "encoding": "raw", **changes}
    fields = {k: v for k, v in fields.items() if v is not None}
    return _write(tmp_path, fields, voxels().tobytes() if data is None else data)


def test_missing_data_file(tmp_path):
    path = tmp_path / "h.nhdr"
    path.write_text(_header({**GEOMETRY, "encoding": "raw", "data file": "gone.raw"}))
    with pytest.raises(InputError, match=r"h\.nhdr: its data file .*gone\.raw is missing"):
        nrrd.open(path)


def test_truncated_raw_data_says_how_many_bytes(tmp_path):
    needed = int(np.prod(SHAPE)) * 2
    path = _raw(tmp_path, voxels().tobytes()[:-100])
    with pytest.raises(InputError, match=rf"the header needs {needed} bytes .* has {needed - 100} \(100 missing\)"):
        nrrd.open(path)
    path = _raw(tmp_path, b"short", **{"byte skip": -1})
    with pytest.raises(InputError, match=r"at the end of the file, the file has 5"):
        nrrd.open(path)


def test_truncated_gzip_data_fails_on_the_missing_planes(tmp_path):
    array = voxels()
    compressed = gzip.compress(array.tobytes())
    path = _raw(tmp_path, compressed[: len(compressed) * 2 // 3], encoding="gzip")
    with nrrd.open(path) as source:
        np.testing.assert_array_equal(source[0:10], array[0:10])  # what is there reads fine
        with pytest.raises(InputError, match=r"truncated: the compressed voxel data ends after \d+ of the 13860 bytes"):
            source[0:70]


def test_corrupt_gzip_data(tmp_path):
    compressed = bytearray(gzip.compress(voxels().tobytes()))
    compressed[40:60] = b"\xff" * 20
    with nrrd.open(_raw(tmp_path, bytes(compressed), encoding="gzip")) as source:
        with pytest.raises(InputError, match="compressed voxel data is corrupt"):
            source[0:70]


def test_gzip_stream_longer_than_its_trailer_says_is_refused(tmp_path):
    array = voxels()
    data = gzip.compress(b"junk" * 100) + gzip.compress(array.tobytes())  # the trailer counts the last member only
    with nrrd.open(_raw(tmp_path, data, encoding="gzip", **{"byte skip": -1})) as source:
        with pytest.raises(InputError, match="longer than its trailer says"):
            source[0:70]


@pytest.mark.parametrize("changes, message", [
    ({"encoding": "ascii"}, "unsupported encoding 'ascii'"),
    ({"encoding": "hex"}, "unsupported encoding 'hex'"),
    ({"type": "block"}, "unsupported type 'block'"),
    ({"dimension": 4, "sizes": "11 9 70 2"}, "dimension 4; only 3D scalar"),
    ({"dimension": 2}, "dimension 2; only 3D scalar"),
    ({"kinds": "RGB-color domain domain"}, "non-spatial axis"),
    ({"space directions": "none (0,1,0) (0,0,1)"}, "should be three vectors"),
    ({"space directions": "(1,0,0) (1,1,0) (0,0,1)"}, "not orthogonal"),
    ({"space directions": "(0,0,0) (0,1,0) (0,0,1)"}, "zero length"),
    ({"space origin": "(1,2)"}, "should be 3 numbers"),
    ({"space": "right-anterior-superior-time"}, "not a 3D space"),
    ({"space units": '"mm" "mm" "um"'}, "differ between axes"),
    ({"sizes": "11 9"}, "should be 3 numbers"),
    ({"sizes": "11 0 70"}, "must be positive"),
    ({"endian": None}, "no valid 'endian' field"),
    ({"type": None}, "no 'type' field"),
    ({"encoding": "bzip2", "byte skip": -1}, "supported for raw and gzip data only"),
    ({"byte skip": -2}, "byte skip -2 is invalid"),
    ({"line skip": 5}, "passes the end of"),
    ({"byte skip": "many"}, "'byte skip: many' should be 1 number"),
])
def test_header_errors(tmp_path, changes, message):
    data = b"\n" * 3 if "line skip" in changes else None
    path = _raw(tmp_path, data, **changes)
    with pytest.raises(InputError, match=message):
        nrrd.open(path)


def test_several_data_files_are_refused(tmp_path):
    for data_file in ("LIST", "slice%03d.raw 1 70 1 2"):
        path = tmp_path / "h.nhdr"
        path.write_text(_header({**GEOMETRY, "encoding": "raw", "data file": data_file}))
        with pytest.raises(InputError, match="several files"):
            nrrd.open(path)


def test_not_nrrd_and_malformed_headers(tmp_path):
    path = tmp_path / "x.nrrd"
    path.write_text("P5\n11 9\n")
    with pytest.raises(InputError, match="not a NRRD file"):
        nrrd.open(path)
    path.write_text("NRRD0004\ntype short\n")
    with pytest.raises(InputError, match="is not 'field: value'"):
        nrrd.open(path)
    path.write_text("NRRD0004\ntype: short\ndimension: 3\nsizes: 1 1 1\nencoding: raw\nendian: little\n")
    with pytest.raises(InputError, match="no 'data file' field and no data"):
        nrrd.open(path)
    with pytest.raises(InputError, match="cannot open"):
        nrrd.open(tmp_path / "missing.nrrd")
    with pytest.raises(TypeError, match="unexpected keyword argument"):
        nrrd.open(path, spacing=(1, 1, 1))


def test_reading_after_close_fails_clearly(tmp_path):
    source = nrrd.open(_raw(tmp_path))
    source.close()
    with pytest.raises(InputError, match="closed"):
        source[0:1]


def test_block_source_reads_only_the_planes_asked_for(tmp_path, monkeypatch):
    """A slab's raw read asks the file for exactly its bytes; a compressed stream is not restarted going forward."""
    array = voxels()
    with nrrd.open(_raw(tmp_path, array.tobytes())) as source:
        sizes = []
        monkeypatch.setattr(source, "_file", _Spy(source._file, sizes))
        assert_voxels(source, array, slabs=[(64, 70)])
        assert sizes[-1] == 6 * 9 * 11 * 2
    path = _raw(tmp_path, gzip.compress(array.tobytes()), encoding="gzip")
    with nrrd.open(path) as source:
        opened = []
        restart = source._open_stream
        monkeypatch.setattr(source, "_open_stream", lambda: (opened.append(1), restart())[1])
        for z0 in range(0, 70, 64):
            np.testing.assert_array_equal(source[z0:z0 + 64], array[z0:z0 + 64])
        assert len(opened) == 1
        np.testing.assert_array_equal(source[1:2], array[1:2])  # going back restarts the stream
        assert len(opened) == 2


class _Spy:
    def __init__(self, file, sizes):
        self._file, self._sizes = file, sizes

    def readinto(self, view):
        self._sizes.append(len(view))
        return self._file.readinto(view)

    def __getattr__(self, name):
        return getattr(self._file, name)


def test_stream_ending_before_the_asked_planes(tmp_path):
    compressed = gzip.compress(voxels().tobytes())
    with nrrd.open(_raw(tmp_path, compressed[: len(compressed) // 3], encoding="gzip")) as source:
        with pytest.raises(InputError, match=r"truncated: the compressed voxel data ends after \d+ of the 13860"):
            source[65:70]  # the stream ends while skipping to plane 65


def test_file_shortened_after_opening(tmp_path):
    path = _raw(tmp_path)
    with nrrd.open(path) as source:
        (tmp_path / "d.bin").write_bytes(b"\0" * 100)
        with pytest.raises(InputError, match="became shorter while being read"):
            source[60:70]


def test_block_source_errors(tmp_path):
    geometry, info = VolumeGeometry(), SourceInfo("nrrd", "x")
    with pytest.raises(InputError, match=r"missing\.raw: cannot open the voxel data"):
        nrrd.BlockSource(tmp_path / "missing.raw", (1, 1, 1), "u1", geometry, info)
    with pytest.raises(ValueError, match="unknown encoding 'lz4'"):
        nrrd.BlockSource(tmp_path / "missing.raw", (1, 1, 1), "u1", geometry, info, encoding="lz4")


def test_header_field_edge_cases(tmp_path):
    path = _raw(tmp_path, **{"space origin": "(1,2,3) (4,5,6)"})
    with pytest.raises(InputError, match="should be one vector"):
        nrrd.open(path)
    with nrrd.open(_raw(tmp_path, **{"space units": '"pixel" "pixel" "pixel"'})) as source:
        assert source.geometry.unit == "millimeter"
        assert any("not recognised; millimeter assumed" in text for text in source.info.assumed)
    endless = tmp_path / "endless.nrrd"
    endless.write_text("NRRD0004\n" + "# comment\n" * 10001)
    with pytest.raises(InputError, match="no end of header within 10000 lines"):
        nrrd.open(endless)
