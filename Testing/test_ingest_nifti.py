"""NIfTI-1/2 reader against SimpleITK, including headers SimpleITK does not write (qform only, codes, units)."""

import gzip
import struct

import numpy as np
import pytest
import SimpleITK as sitk

from bigvolume.errors import InputError
from bigvolume.ingest import nifti
from test_ingest_medical import (FLIPPED, OBLIQUE, SHAPE, assert_geometry, assert_same_as_sitk, assert_voxels,
                                 rotation, sitk_image, voxels)

# Every field of the NIfTI-1 header, in order (little endian, no padding): 348 bytes.
NIFTI1 = "i10s18sihcc8h3f4h8f3fhBB4f2i80s24s2h6f12f16s4s"
NIFTI2 = "i8s2h8q3d8dq6d2q80s24s2i6d12d3i16sc15s"
assert struct.calcsize("<" + NIFTI1) == 348 and struct.calcsize("<" + NIFTI2) == 540


@pytest.mark.parametrize("name", ["v.nii", "v.nii.gz", "v.hdr", "v.hdr.gz"])
@pytest.mark.parametrize("dtype, direction", [(np.int16, OBLIQUE), (np.uint8, FLIPPED), (np.float32, FLIPPED),
                                              (np.float64, OBLIQUE)])
def test_simpleitk_files(tmp_path, name, dtype, direction):
    path = tmp_path / name
    sitk.WriteImage(sitk_image(voxels(dtype), direction), str(path))
    with nifti.open(path) as source:
        assert_same_as_sitk(source, path)
        assert source.info.format == "nifti" and source.info.found["transform used"] == "sform"
        assert source.info.assumed == []


def test_pair_opens_from_the_image_file_too(tmp_path):
    sitk.WriteImage(sitk_image(voxels()), str(tmp_path / "v.hdr"))
    with nifti.open(tmp_path / "v.img") as source:
        assert_same_as_sitk(source, tmp_path / "v.hdr")


def _simpleitk_nifti(tmp_path, image, name="v.nii"):
    sitk.WriteImage(image, str(tmp_path / name))
    return bytearray((tmp_path / name).read_bytes())


def _save(tmp_path, data, name="h.nii"):
    (tmp_path / name).write_bytes(bytes(data))
    return tmp_path / name


def _nifti2(v1):
    """The same image as a NIfTI-2 file, fields copied from a little-endian NIfTI-1 file."""
    f = struct.unpack_from("<" + NIFTI1, v1)
    header = struct.pack("<" + NIFTI2, 540, b"n+2\0\r\n\x1a\n", f[19], f[20], *f[7:15], *f[15:18], *f[22:30], 544,
                         f[31], f[32], *f[36:40], f[21], f[33], f[42], f[43], f[44], f[45], *f[46:52], *f[52:64],
                         f[34], f[35], f[18], f[64], f[6], b"")
    return header + b"\0" * 4 + bytes(v1[int(f[30]):])


def test_nifti2_gives_what_simpleitk_reads_from_the_same_image_in_nifti1(tmp_path):
    v1 = _simpleitk_nifti(tmp_path, sitk_image(voxels(np.float32), FLIPPED))
    reference = sitk.ReadImage(str(tmp_path / "v.nii"))
    v2 = _nifti2(v1)
    (tmp_path / "v2.nii.gz").write_bytes(gzip.compress(v2))
    for path in (_save(tmp_path, v2, "v2.nii"), tmp_path / "v2.nii.gz"):
        with nifti.open(path) as source:
            assert source.info.found["version"] == "NIfTI-2"
            assert_same_as_sitk(source, reference)


def _put(data, fmt, offset, *values):
    struct.pack_into("<" + fmt, data, offset, *values)


def _splice_qform(tmp_path, target, donor_direction):
    """`target`'s header with the qform (quaternion, offset, qfac) of an image rotated by `donor_direction`."""
    donor = _simpleitk_nifti(tmp_path, sitk_image(voxels(shape=(2, 2, 2)), donor_direction, origin=(1, 2, 3)), "d.nii")
    target[256:280] = donor[256:280]
    target[76:80] = donor[76:80]  # pixdim[0]: qfac
    return target


@pytest.mark.parametrize("qform_code, sform_code, used", [
    (1, 0, "qform"),  # no sform: the qform
    (1, 2, "qform"),  # an aligned-space sform that disagrees with the qform: ITK takes the qform
    (2, 1, "sform"),  # a scanner sform wins whatever the qform says
    (0, 3, "sform"),  # no qform: the sform
])
def test_sform_or_qform_chosen_as_itk_chooses(tmp_path, qform_code, sform_code, used):
    data = _splice_qform(tmp_path, _simpleitk_nifti(tmp_path, sitk_image(voxels(), OBLIQUE)), FLIPPED)
    _put(data, "2h", 252, qform_code, sform_code)
    path = _save(tmp_path, data)
    with nifti.open(path) as source:
        assert source.info.found["transform used"] == used
        assert_same_as_sitk(source, path)


def test_nearly_equal_sform_and_qform_use_the_sform(tmp_path):
    data = _simpleitk_nifti(tmp_path, sitk_image(voxels(), rotation(0.2, -0.7)))
    _put(data, "2h", 252, 1, 2)
    path = _save(tmp_path, data)
    with nifti.open(path) as source:
        assert source.info.found["transform used"] == "sform"
        assert_same_as_sitk(source, path)


def test_no_transform_gives_identity_and_zero_origin(tmp_path):
    data = _simpleitk_nifti(tmp_path, sitk_image(voxels(), OBLIQUE))
    _put(data, "2h", 252, 0, 0)
    path = _save(tmp_path, data)
    with nifti.open(path) as source:
        assert_same_as_sitk(source, path)
        assert source.geometry.origin == (0.0, 0.0, 0.0) and source.info.found["transform used"] is None
        assert any("identity" in text for text in source.info.assumed)


@pytest.mark.parametrize("qform_code, sform_code", [(1, 0), (0, 1)])
def test_negative_pixdim_flips_its_axis(tmp_path, qform_code, sform_code):
    data = _simpleitk_nifti(tmp_path, sitk_image(voxels(), OBLIQUE))
    _put(data, "2h", 252, qform_code, sform_code)
    _put(data, "f", 80, -0.7)  # pixdim[1]
    path = _save(tmp_path, data)
    with nifti.open(path) as source:
        assert_same_as_sitk(source, path)
        assert source.geometry.spacing[0] == pytest.approx(0.7)


@pytest.mark.parametrize("units", [1, 3])  # meter, micron
def test_spatial_units_scale_to_millimetres(tmp_path, units):
    data = _simpleitk_nifti(tmp_path, sitk_image(voxels(), OBLIQUE))
    _put(data, "B", 123, units | 8)
    path = _save(tmp_path, data)
    with nifti.open(path) as source:
        assert_same_as_sitk(source, path)
        assert source.geometry.unit == "millimeter"


def test_big_endian_file(tmp_path):
    data = _simpleitk_nifti(tmp_path, sitk_image(voxels(np.int32), FLIPPED))
    fields = struct.unpack_from("<" + NIFTI1, data)
    offset = int(fields[30])
    swapped = struct.pack(">" + NIFTI1, *fields) + bytes(data[348:offset])
    swapped += np.frombuffer(bytes(data[offset:]), "<i4").astype(">i4").tobytes()
    path = _save(tmp_path, swapped)
    with nifti.open(path) as source:
        assert source.dtype == np.dtype(np.int32) and source.dtype.isnative
        assert_same_as_sitk(source, path)


def test_scaling_is_not_applied_and_that_is_said(tmp_path):
    array = voxels(np.int16)
    data = _simpleitk_nifti(tmp_path, sitk_image(array, OBLIQUE))
    _put(data, "2f", 112, 2.0, -5.0)
    path = _save(tmp_path, data)
    with nifti.open(path) as source:
        assert source.dtype == np.int16
        assert_voxels(source, array)
        assert any("raw stored values are kept" in text and "scl_slope = 2" in text for text in source.info.assumed)
        assert_geometry(source.geometry, sitk.ReadImage(str(path)))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(path))), array * 2.0 - 5.0)


def test_analyze_pair_has_identity_orientation(tmp_path):
    sitk.WriteImage(sitk_image(voxels(), OBLIQUE), str(tmp_path / "v.hdr"))
    header = bytearray((tmp_path / "v.hdr").read_bytes())
    header[344:348] = b"\0" * 4
    path = _save(tmp_path, header, "v.hdr")
    with nifti.open(path) as source:
        assert source.info.found["version"] == "Analyze 7.5"
        assert_same_as_sitk(source, path)


# --- errors ------------------------------------------------------------------------------------------------


def _broken(tmp_path, fmt, offset, *values, name="h.nii"):
    data = _simpleitk_nifti(tmp_path, sitk_image(voxels(), OBLIQUE))
    _put(data, fmt, offset, *values)
    return _save(tmp_path, data, name)


@pytest.mark.parametrize("fmt, offset, values, message", [
    ("8h", 40, (4, 11, 9, 70, 2, 1, 1, 1), r"dimensions \[11, 9, 70, 2\]; only 3D scalar"),
    ("8h", 40, (2, 11, 9, 1, 1, 1, 1, 1), r"dimensions \[11, 9\]; only 3D scalar"),
    ("8h", 40, (3, 11, 0, 70, 1, 1, 1, 1), "must be positive"),
    ("h", 40, 9, r"dim\[0\] = 9"),
    ("h", 70, 128, "unsupported datatype RGB24"),
    ("h", 70, 99, "unsupported datatype code 99"),
    ("4s", 344, b"ni1\0", "the magic says a .hdr/.img pair"),
    ("4s", 344, b"\0\0\0\0", "no NIfTI magic"),
    ("i", 0, 123, "not a NIfTI or Analyze header"),
])
def test_header_errors(tmp_path, fmt, offset, values, message):
    values = values if isinstance(values, tuple) else (values,)
    with pytest.raises(InputError, match=message):
        nifti.open(_broken(tmp_path, fmt, offset, *values))


def test_sheared_sform_without_qform(tmp_path):
    path = _broken(tmp_path, "2h12f", 252, 0, 1, 1, 0.5, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0)
    with pytest.raises(InputError, match="sform is sheared .* no qform"):
        nifti.open(path)


def test_truncated_files(tmp_path):
    data = _simpleitk_nifti(tmp_path, sitk_image(voxels(), OBLIQUE))
    needed = int(np.prod(SHAPE)) * 2
    with pytest.raises(InputError, match=rf"truncated: the header needs {needed} bytes .* \(1000 missing\)"):
        nifti.open(_save(tmp_path, data[:-1000]))
    (tmp_path / "t.nii.gz").write_bytes(gzip.compress(bytes(data[:-1000])))
    with nifti.open(tmp_path / "t.nii.gz") as source:
        source[0:10]
        with pytest.raises(InputError, match=r"truncated: .* ends after 12860 of the 13860 bytes"):
            source[10:70]
    with pytest.raises(InputError, match="truncated header"):
        nifti.open(_save(tmp_path, data[:200]))


def test_nifti2_size_without_its_magic(tmp_path):
    data = bytearray(_nifti2(_simpleitk_nifti(tmp_path, sitk_image(voxels(), OBLIQUE))))
    data[4:12] = b"\0" * 8
    with pytest.raises(InputError, match="without the NIfTI-2 magic"):
        nifti.open(_save(tmp_path, data))


def test_missing_image_file_and_unreadable_header(tmp_path):
    sitk.WriteImage(sitk_image(voxels(), OBLIQUE), str(tmp_path / "v.hdr"))
    (tmp_path / "v.img").unlink()
    with pytest.raises(InputError, match=r"v\.hdr: its image file .*v\.img is missing"):
        nifti.open(tmp_path / "v.hdr")
    (tmp_path / "bad.nii.gz").write_bytes(b"not gzip data at all")
    with pytest.raises(InputError, match="cannot read the header"):
        nifti.open(tmp_path / "bad.nii.gz")
    with pytest.raises(InputError, match="file not found"):
        nifti.open(tmp_path / "missing.nii")
    with pytest.raises(TypeError, match="unexpected keyword argument"):
        nifti.open(tmp_path / "v.hdr", spacing=(1, 1, 1))


def test_nii_gz_is_streamed_not_decompressed_whole(tmp_path):
    array = voxels(np.int16, (70, 96, 96))  # noise: the compressed file is nearly as large as the data
    path = tmp_path / "v.nii.gz"
    sitk.WriteImage(sitk_image(array), str(path))
    size = path.stat().st_size
    with nifti.open(path) as source:
        np.testing.assert_array_equal(source[0:2], array[0:2])
        assert source._file.tell() < size / 3  # only the start of the file was read for the first planes
        np.testing.assert_array_equal(source[64:70], array[64:70])
        assert source._file.tell() == size
