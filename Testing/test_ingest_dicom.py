"""DICOM series reader against SimpleITK's series reader; files written by SimpleITK or, for the cases it does not
write (explicit VR, big endian, sequences, rescale, missing positions, broken files), by a small writer here."""

import struct

import numpy as np
import pytest
import SimpleITK as sitk

from bigvolume.errors import InputError
from bigvolume.ingest import dicom
from test_ingest_medical import (FLIPPED, OBLIQUE, assert_geometry, assert_same_as_sitk, assert_voxels,
                                 read_dicom_series_with_sitk, sitk_image, voxels, write_dicom_series)

IMPLICIT_LE, EXPLICIT_LE, EXPLICIT_BE = "1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
SERIES = "1.2.826.0.1.3680043.2.1125.7.2"
LONG_VRS = {"OB", "OW", "SQ", "UN", "UT"}
SHORT = (20, 9, 11)
SHORT_SLABS = [(0, 20), (3, 9), (18, 20), (1, 2), (0, 0)]


def _value(vr, value, order):
    if vr == "US":
        return struct.pack(order + "H", value)
    if isinstance(value, bytes):
        return value
    if isinstance(value, (list, tuple)):
        value = "\\".join(repr(float(v)) for v in value)
    text = str(value).encode()
    return text + (b"\0" if vr == "UI" else b" ") * (len(text) % 2)


def _element(tag, vr, value, order, explicit):
    group, number = tag >> 16, tag & 0xFFFF
    if vr == "SQ":  # items of undefined length, the sequence too
        body = b"".join(struct.pack(order + "HHI", 0xFFFE, 0xE000, 0xFFFFFFFF) + _dataset(item, order, explicit)
                        + struct.pack(order + "HHI", 0xFFFE, 0xE00D, 0) for item in value)
        body += struct.pack(order + "HHI", 0xFFFE, 0xE0DD, 0)
        length = 0xFFFFFFFF
    else:
        body = _value(vr, value, order)
        length = len(body)
    if not explicit:
        return struct.pack(order + "HHI", group, number, length) + body
    if vr in LONG_VRS:
        return struct.pack(order + "HH2s2xI", group, number, vr.encode(), length) + body
    return struct.pack(order + "HH2sH", group, number, vr.encode(), length) + body


def _dataset(elements, order, explicit):
    return b"".join(_element(tag, vr, value, order, explicit) for tag, (vr, value) in sorted(elements.items()))


def write_slice(path, pixels, position=None, orientation=None, spacing=(0.55, 0.7), syntax=EXPLICIT_LE,
                instance=None, series=SERIES, extra=None):
    """A minimal single-frame CT file: the tags that place and describe one plane of `pixels`."""
    order, explicit = {IMPLICIT_LE: ("<", False), EXPLICIT_LE: ("<", True), EXPLICIT_BE: (">", True)}.get(
        syntax, ("<", True))
    elements = {
        0x00080016: ("UI", CT_IMAGE), 0x00080018: ("UI", f"{series}.{abs(hash(str(path))) % 10**9}"),
        0x00080060: ("CS", "CT"), 0x0020000D: ("UI", series + ".9"), 0x0020000E: ("UI", series),
        0x00280002: ("US", 1), 0x00280004: ("CS", "MONOCHROME2"), 0x00280010: ("US", pixels.shape[0]),
        0x00280011: ("US", pixels.shape[1]), 0x00280030: ("DS", list(spacing)),
        0x00280100: ("US", pixels.dtype.itemsize * 8), 0x00280101: ("US", pixels.dtype.itemsize * 8),
        0x00280102: ("US", pixels.dtype.itemsize * 8 - 1), 0x00280103: ("US", int(pixels.dtype.kind == "i")),
        0x7FE00010: ("OB" if pixels.dtype.itemsize == 1 else "OW",
                     pixels.astype(pixels.dtype.newbyteorder(order)).tobytes()),
    }
    if position is not None:
        elements[0x00200032] = ("DS", list(position))
    if orientation is not None:
        elements[0x00200037] = ("DS", list(orientation))
    if instance is not None:
        elements[0x00200013] = ("IS", instance)
    elements.update(extra or {})
    meta = {0x00020001: ("OB", b"\0\1"), 0x00020002: ("UI", CT_IMAGE), 0x00020003: ("UI", elements[0x00080018][1]),
            0x00020010: ("UI", syntax)}
    meta_bytes = _dataset(meta, "<", True)
    meta_bytes = _element(0x00020000, "UL", struct.pack("<I", len(meta_bytes)), "<", True) + meta_bytes
    path.write_bytes(b"\0" * 128 + b"DICM" + meta_bytes + _dataset(elements, order, explicit))
    return path


def write_volume(folder, array, direction=OBLIQUE, origin=(12.5, -30.25, 41.0), slice_spacing=1.9, positions=None,
                 names=None, **options):
    folder.mkdir(parents=True, exist_ok=True)
    direction = np.asarray(direction)
    orientation = list(direction[:, 0]) + list(direction[:, 1])
    normal = np.cross(direction[:, 0], direction[:, 1])
    positions = np.arange(len(array)) * slice_spacing if positions is None else positions
    paths = []
    for k, plane in enumerate(array):
        name = names[k] if names else f"s{k:03d}.dcm"
        paths.append(write_slice(folder / name, plane, np.asarray(origin) + positions[k] * normal, orientation,
                                 instance=k + 1, **options))
    return paths


def _shuffled_names(count, seed=5):
    order = np.random.default_rng(seed).permutation(count)
    names = [f"IM{int(i):05d}.dcm" for i in order]
    assert names != sorted(names)
    return names


@pytest.mark.parametrize("dtype, direction", [(np.int16, OBLIQUE), (np.uint16, FLIPPED)])
def test_simpleitk_series_with_shuffled_file_names(tmp_path, dtype, direction):
    image = sitk_image(voxels(dtype), direction)
    write_dicom_series(image, tmp_path / "s", names=_shuffled_names(image.GetDepth()))
    with dicom.open(tmp_path / "s") as source:
        assert_same_as_sitk(source, read_dicom_series_with_sitk(tmp_path / "s"))
        assert source.info.format == "dicom" and source.info.found["files"] == 70
        assert source.info.assumed == []


@pytest.mark.parametrize("syntax", [IMPLICIT_LE, EXPLICIT_LE, EXPLICIT_BE])
@pytest.mark.parametrize("dtype", [np.int16, np.uint8, np.int32])
def test_transfer_syntaxes_and_sequences_are_parsed(tmp_path, syntax, dtype):
    sequence = {0x00081140: ("SQ", [{0x00081150: ("UI", CT_IMAGE), 0x00081155: ("UI", "1.2.3")},
                                    {0x00089215: ("SQ", [{0x00080100: ("SH", "121311")}])}])}
    private = {0x00291010: ("UN", b"\1\2\3\4" * 40), 0x00091001: ("LO", "private text")}
    array = voxels(dtype, SHORT)
    write_volume(tmp_path / "s", array, FLIPPED, names=_shuffled_names(len(array)), syntax=syntax,
                 extra={**sequence, **private})
    reference = read_dicom_series_with_sitk(tmp_path / "s")
    with dicom.open(tmp_path / "s") as source:
        assert source.dtype.isnative
        assert_voxels(source, array, SHORT_SLABS)  # slices written in the order of their positions
        assert_geometry(source.geometry, reference)
        if not (syntax == EXPLICIT_BE and dtype == np.int32):  # GDCM reads big-endian 32-bit pixels as swapped halves
            assert_voxels(source, sitk.GetArrayFromImage(reference), SHORT_SLABS)
        assert source.info.found["transfer syntax"] == syntax


def test_the_largest_series_is_read_and_others_are_mentioned(tmp_path):
    folder = tmp_path / "s"
    write_dicom_series(sitk_image(voxels(shape=SHORT)), folder, series_uid=SERIES + ".1")
    small = write_dicom_series(sitk_image(voxels(shape=(4, 5, 6)), FLIPPED), folder,
                               names=[f"other{k}.dcm" for k in range(4)], series_uid=SERIES + ".2")
    (folder / "README.txt").write_text("not an image")
    with dicom.open(folder) as source:
        assert source.shape == SHORT and source.info.found["SeriesInstanceUID"] == SERIES + ".1"
        assert source.info.found["other series"] == {SERIES + ".2": 4} and source.info.found["other files"] == 1
        assert any("1 other series" in text for text in source.info.assumed)
    reference = read_dicom_series_with_sitk(folder, SERIES + ".2")
    for opened in (dicom.open(folder, series_uid=SERIES + ".2"), dicom.open(small[2])):
        with opened as source:
            assert_same_as_sitk(source, reference, [(0, 4), (1, 3)])
    with pytest.raises(InputError, match=r"no images of series 9\.9 \(series found: "):
        dicom.open(folder, series_uid="9.9")


def test_sub_folders_only_when_asked(tmp_path):
    write_dicom_series(sitk_image(voxels(shape=SHORT)), tmp_path / "a" / "b")
    with pytest.raises(InputError, match=r"no DICOM images found \(0 other files\); sub-folders were not searched"):
        dicom.open(tmp_path / "a")
    with dicom.open(tmp_path / "a", recursive=True) as source:
        assert source.shape == SHORT


def test_rescale_is_not_applied_and_that_is_said(tmp_path):
    array = voxels(np.int16, SHORT)
    write_volume(tmp_path / "s", array, extra={0x00281052: ("DS", -1024), 0x00281053: ("DS", 2)})
    with dicom.open(tmp_path / "s") as source:
        assert_voxels(source, array, SHORT_SLABS)
        assert any("raw stored values are kept" in text and "RescaleSlope 2" in text for text in source.info.assumed)
        reference = read_dicom_series_with_sitk(tmp_path / "s")
        assert_geometry(source.geometry, reference)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(reference), array * 2.0 - 1024)


def test_rescale_varying_between_slices_is_said(tmp_path):
    array = voxels(np.int16, (3, 4, 5))
    for k in range(3):
        write_volume(tmp_path / "s", array[k:k + 1], positions=[k * 2.0], names=[f"s{k}"],
                     extra={0x00281053: ("DS", k + 1)})
    with dicom.open(tmp_path / "s") as source:
        assert_voxels(source, array, [(0, 3)])
        assert any("vary between slices" in text for text in source.info.assumed)


def test_irregular_slice_distances_are_said(tmp_path):
    array = voxels(np.int16, (6, 9, 11))
    write_volume(tmp_path / "s", array, positions=[0.0, 1.9, 3.8, 5.7, 9.5, 11.4])  # one slice missing
    with dicom.open(tmp_path / "s") as source:
        assert any("slice distances vary from 1.9 to 3.8" in text for text in source.info.assumed)
        assert source.geometry.spacing[2] == pytest.approx(11.4 / 5)
        assert_same_as_sitk(source, read_dicom_series_with_sitk(tmp_path / "s"), [(0, 6)])


def test_tilted_gantry_is_said(tmp_path):
    array = voxels(np.int16, (5, 9, 11))
    folder = tmp_path / "s"
    folder.mkdir()
    for k, plane in enumerate(array):  # each slice also moves 0.5 mm along the rows
        write_slice(folder / f"s{k}", plane, (0.5 * k, 0.0, 2.0 * k), (1, 0, 0, 0, 1, 0), instance=k + 1)
    with dicom.open(folder) as source:
        assert any("tilted gantry" in text for text in source.info.assumed)
        assert source.geometry.spacing[2] == pytest.approx(2.0)


def test_without_positions_slices_follow_instance_numbers(tmp_path):
    array = voxels(np.int16, (5, 9, 11))
    folder = tmp_path / "s"
    folder.mkdir()
    for k, name in zip(range(5), ["e", "b", "d", "a", "c"]):
        write_slice(folder / name, array[k], instance=k + 1, extra={0x00180050: ("DS", 2.5)})
    with dicom.open(folder) as source:
        assert_voxels(source, array, [(0, 5), (2, 4)])
        assert source.geometry.spacing == (0.7, 0.55, 2.5) and source.geometry.origin == (0.0, 0.0, 0.0)
        assert any("ordered by InstanceNumber" in text for text in source.info.assumed)
        assert any("SliceThickness" in text for text in source.info.assumed)
    for name in "ebdac":
        (folder / name).unlink()
    for k in range(3):
        write_slice(folder / f"n{k}", array[k], spacing=(0, 0))
    with dicom.open(folder) as source:
        assert_voxels(source, array[:3], [(0, 3)])
        assumed = " ".join(source.info.assumed)
        assert "ordered by file name" in assumed and "1 x 1 assumed" in assumed and "not given; 1 assumed" in assumed


def test_single_file_series_takes_its_thickness(tmp_path):
    array = voxels(np.int16, (1, 9, 11))
    write_volume(tmp_path / "s", array, extra={0x00180088: ("DS", 3.25)})
    with dicom.open(tmp_path / "s") as source:
        assert source.geometry.spacing[2] == 3.25
        assert_voxels(source, array, [(0, 1)])


def test_monochrome1_is_kept_as_stored_and_said(tmp_path):
    array = voxels(np.uint16, (3, 4, 5))
    write_volume(tmp_path / "s", array, extra={0x00280004: ("CS", "MONOCHROME1")})
    with dicom.open(tmp_path / "s") as source:
        assert_voxels(source, array, [(0, 3)])
        assert any("MONOCHROME1" in text for text in source.info.assumed)


def test_header_parsing_reads_only_headers(tmp_path, monkeypatch):
    """Opening a series reads each header once and no pixel data; a slab then reads its own files only."""
    array = voxels(np.int16, SHORT)
    write_volume(tmp_path / "s", array)
    reads = []
    real_read_header = dicom.read_header
    monkeypatch.setattr(dicom, "read_header", lambda path: reads.append(path) or real_read_header(path))
    source = dicom.open(tmp_path / "s")
    assert len(reads) == 20 and len(set(reads)) == 20
    opened = []
    real_open = dicom.io.open
    monkeypatch.setattr(dicom.io, "open", lambda path, *a, **k: opened.append(str(path)) or real_open(path, *a, **k))
    np.testing.assert_array_equal(source[4:7], array[4:7])
    assert [p.rsplit("/", 1)[-1] for p in opened] == ["s004.dcm", "s005.dcm", "s006.dcm"]


# --- errors ------------------------------------------------------------------------------------------------


def test_inconsistent_slice_sizes(tmp_path):
    paths = write_volume(tmp_path / "s", voxels(np.int16, (4, 9, 11)))
    write_slice(paths[2], voxels(np.int16, (1, 8, 11))[0], (0, 0, 99), (1, 0, 0, 0, 1, 0))
    with pytest.raises(InputError, match=r"s002\.dcm: slice of 8 x 11, 16 bits, differs from .* \(9 x 11, 16 bits\)"):
        dicom.open(tmp_path / "s")


def test_truncated_pixel_data_says_how_many_bytes(tmp_path):
    paths = write_volume(tmp_path / "s", voxels(np.int16, (4, 9, 11)))
    paths[3].write_bytes(paths[3].read_bytes()[:-10])
    with pytest.raises(InputError, match=r"s003\.dcm: truncated pixel data: 9 x 11 x 2 bytes = 198 expected, 188 pre"):
        dicom.open(tmp_path / "s")


def test_file_shortened_after_opening_fails_on_its_plane(tmp_path):
    paths = write_volume(tmp_path / "s", voxels(np.int16, (4, 9, 11)))
    with dicom.open(tmp_path / "s") as source:
        paths[3].write_bytes(paths[3].read_bytes()[:-10])
        source[0:3]
        with pytest.raises(InputError, match=r"s003\.dcm: truncated pixel data: 198 bytes expected, 188 present"):
            source[2:4]


@pytest.mark.parametrize("extra, message", [
    ({0x00280008: ("IS", 2)}, "2 frames in one file"),
    ({0x00280002: ("US", 3)}, "3 samples per pixel"),
    ({0x00280100: ("US", 12)}, "BitsAllocated 12"),
])
def test_unsupported_images(tmp_path, extra, message):
    write_volume(tmp_path / "s", voxels(np.int16, (2, 9, 11)), extra=extra)
    with pytest.raises(InputError, match=message):
        dicom.open(tmp_path / "s")


def test_compressed_transfer_syntax_is_refused_clearly(tmp_path):
    folder = tmp_path / "s"
    folder.mkdir()
    encapsulated = struct.pack("<HHI", 0xFFFE, 0xE000, 0) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    path = write_slice(folder / "j", voxels(np.int16, (1, 9, 11))[0], syntax="1.2.840.10008.1.2.4.70")
    data = path.read_bytes()
    cut = data.rindex(struct.pack("<HH", 0x7FE0, 0x0010))
    path.write_bytes(data[:cut] + struct.pack("<HH2s2xI", 0x7FE0, 0x0010, b"OB", 0xFFFFFFFF) + encapsulated)
    with pytest.raises(InputError, match=r"transfer syntax 1\.2\.840\.10008\.1\.2\.4\.70 is compressed .* decompress"):
        dicom.open(folder)


def test_mixed_transfer_syntaxes_are_refused(tmp_path):
    paths = write_volume(tmp_path / "s", voxels(np.int16, (3, 9, 11)))
    write_slice(paths[1], voxels(np.int16, (1, 9, 11))[0], syntax=EXPLICIT_BE)
    with pytest.raises(InputError, match="transfer syntax 1.2.840.10008.1.2.2 differs"):
        dicom.open(tmp_path / "s")


def test_several_volumes_in_one_series_are_refused(tmp_path):
    write_volume(tmp_path / "s", voxels(np.int16, (3, 9, 11)), positions=[0.0, 1.0, 1.0])
    with pytest.raises(InputError, match="lie at the same position: the series holds several volumes"):
        dicom.open(tmp_path / "s")


def test_different_orientations_are_refused(tmp_path):
    paths = write_volume(tmp_path / "s", voxels(np.int16, (3, 9, 11)))
    write_slice(paths[1], voxels(np.int16, (1, 9, 11))[0], (0, 0, 1), (1, 0, 0, 0, 0, 1))
    with pytest.raises(InputError, match="ImageOrientationPatient differs"):
        dicom.open(tmp_path / "s")


def test_missing_empty_and_foreign_inputs(tmp_path):
    with pytest.raises(InputError, match="no such file or folder"):
        dicom.open(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no DICOM images found"):
        dicom.open(tmp_path / "empty")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match="not a DICOM file"):
        dicom.open(tmp_path / "notes.txt")


def test_malformed_header(tmp_path):
    folder = tmp_path / "s"
    path = write_volume(folder, voxels(np.int16, (1, 9, 11)),
                        extra={0x00081140: ("SQ", [{0x00081150: ("UI", CT_IMAGE)}])})[0]
    data = path.read_bytes()
    path.write_bytes(data[:data.index(CT_IMAGE.encode(), 300) + 4])  # the file ends inside the sequence
    with pytest.raises(InputError, match=r"s000\.dcm: unreadable DICOM header \(file ends inside"):
        dicom.open(folder)


def test_deflated_files_are_refused_clearly(tmp_path):
    path = write_slice(tmp_path / "d.dcm", voxels(np.int16, (1, 9, 11))[0], syntax="1.2.840.10008.1.2.1.99")
    with pytest.raises(InputError, match=r"transfer syntax 1\.2\.840\.10008\.1\.2\.1\.99 is compressed or deflated"):
        dicom.open(path)


def test_files_without_preamble_are_read(tmp_path):
    array = voxels(np.int16, (3, 9, 11))
    paths = write_volume(tmp_path / "s", array, syntax=IMPLICIT_LE)
    for path in paths:  # a bare data set: no preamble, no file meta group
        data = path.read_bytes()
        path.write_bytes(data[data.index(struct.pack("<HH", 0x0008, 0x0016)):])
    with dicom.open(tmp_path / "s") as source:
        assert_voxels(source, array, [(0, 3)])
        assert source.geometry.spacing == pytest.approx((0.7, 0.55, 1.9))


def test_encapsulated_pixel_data_under_an_uncompressed_syntax(tmp_path):
    path = write_slice(tmp_path / "e.dcm", voxels(np.int16, (1, 9, 11))[0])
    data = path.read_bytes()
    cut = data.rindex(struct.pack("<HH", 0x7FE0, 0x0010))
    path.write_bytes(data[:cut] + struct.pack("<HH2s2xI", 0x7FE0, 0x0010, b"OB", 0xFFFFFFFF)
                     + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0))
    with pytest.raises(InputError, match=r"e\.dcm: encapsulated \(compressed\) pixel data is not supported"):
        dicom.open(path)


def test_reading_a_deleted_file_or_after_close(tmp_path):
    paths = write_volume(tmp_path / "s", voxels(np.int16, (3, 9, 11)))
    source = dicom.open(tmp_path / "s")
    paths[1].unlink()
    with pytest.raises(InputError, match=r"s001\.dcm: cannot read its pixel data"):
        source[0:3]
    source.close()
    with pytest.raises(InputError, match="the source was closed"):
        source[0:1]


def test_stray_file_that_looks_like_a_bare_data_set_is_skipped(tmp_path):
    array = voxels(np.int16, (3, 9, 11))
    write_volume(tmp_path / "s", array)
    (tmp_path / "s" / "stray.bin").write_bytes(b"\x08\x00\x10\x00" + b"\xff" * 50)  # a tag, then nonsense
    with dicom.open(tmp_path / "s") as source:
        assert_voxels(source, array, [(0, 3)])
        assert source.info.found["other files"] == 1
