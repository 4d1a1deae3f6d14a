"""Raw voxel files: shape, type and byte order from the options; sizes that do not add up are refused."""

import numpy as np
import pytest

from bigvolume.errors import InputError
from bigvolume.ingest import detect_format, open_source


@pytest.fixture
def volume():
    return np.random.default_rng(2).integers(0, 60000, (6, 9, 11)).astype(np.uint16)


@pytest.mark.parametrize("order", ["little", "big"])
def test_reads_both_byte_orders_after_a_header(tmp_path, volume, order):
    path = tmp_path / "scan.raw"
    path.write_bytes(b"H" * 32 + volume.astype("<u2" if order == "little" else ">u2").tobytes())
    source = open_source(path, size=(11, 9, 6), dtype="uint16", byte_order=order, header_bytes=32)
    assert detect_format(path) == "raw"
    assert source.shape == (6, 9, 11) and source.dtype == np.dtype("=u2")
    np.testing.assert_array_equal(source[0:6], volume)
    np.testing.assert_array_equal(source[4:6], volume[4:6])
    assert any("raw files carry no geometry" in text for text in source.info.assumed)


def test_geometry_comes_from_the_options(tmp_path, volume):
    path = tmp_path / "scan.raw"
    volume.tofile(path)
    source = open_source(path, size=(11, 9, 6), dtype="uint16", spacing=(0.1, 0.1, 0.4), unit="mm")
    assert source.geometry.spacing == (0.1, 0.1, 0.4) and source.geometry.unit == "millimeter"


def test_raw_needs_size_and_type(tmp_path, volume):
    path = tmp_path / "scan.raw"
    volume.tofile(path)
    with pytest.raises(InputError, match=r"scan.raw: a raw file has no header: give its size"):
        open_source(path)


def test_truncated_and_oversized_files(tmp_path, volume):
    path = tmp_path / "scan.raw"
    path.write_bytes(volume.tobytes()[:-10])
    with pytest.raises(InputError, match=r"scan.raw: truncated: 11 x 9 x 6 uint16 .* need 1188 bytes, the file has 1178"):
        open_source(path, size=(11, 9, 6), dtype="uint16")
    path.write_bytes(volume.tobytes() + b"extra")
    with pytest.raises(InputError, match="larger than expected"):
        open_source(path, size=(11, 9, 6), dtype="uint16")


def test_bad_type_and_byte_order(tmp_path, volume):
    path = tmp_path / "scan.raw"
    volume.tofile(path)
    with pytest.raises(InputError, match="unknown data type 'uint12'"):
        open_source(path, size=(11, 9, 6), dtype="uint12")
    with pytest.raises(InputError, match="byte order must be"):
        open_source(path, size=(11, 9, 6), dtype="uint16", byte_order="middle")
