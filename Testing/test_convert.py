"""`convert`: one input or a batch, what was found and assumed, overrides, the summary table, the command line."""

import numpy as np
import pytest
import tifffile

import bigvolume
from bigvolume.tools.cli import main
from bigvolume.tools.convert import convert, convert_batch, output_name, summary_table
from bigvolume.errors import InputError, StoreError


def tiff_folder(folder, volume, spacing_um=2.0):
    folder.mkdir(parents=True)
    for i, plane in enumerate(volume):
        tifffile.imwrite(folder / f"rec_{i:04d}.tif", plane, imagej=True, resolution=(1 / spacing_um, 1 / spacing_um),
                         metadata={"spacing": spacing_um, "unit": "um"})
    return folder


@pytest.fixture
def volume():
    return np.random.default_rng(5).integers(1000, 30000, (40, 50, 60)).astype(np.uint16)


def test_a_tiff_folder_becomes_a_calibrated_pyramid(tmp_path, volume):
    folder = tiff_folder(tmp_path / "core", volume)
    seen = []
    result = convert(folder, tmp_path / "core.ome.zarr", coarsest=16, progress=lambda d, t, b: seen.append((d, t, b)))
    assert result.status == "converted" and result.input_bytes == volume.nbytes and result.output_bytes > 0
    assert "found spacing z: 2.0 micrometer (ImageJ spacing)" in result.report
    assert seen[-1][:2] == (seen[-1][1], seen[-1][1]) and seen[-1][2] == 50 * 60 * 2
    image = bigvolume.open_image(tmp_path / "core.ome.zarr")
    np.testing.assert_array_equal(image.read(0, [(0, 40), (0, 50), (0, 60)]), volume)
    assert image.levels[0].voxel_size_mm == pytest.approx((0.002, 0.002, 0.002))
    source = image.group.attrs["bigvolume"]["source"]
    assert source["format"] == "tiff-folder" and source["path"].endswith("core")


def test_overrides_fix_a_file_that_lies(tmp_path, volume):
    folder = tiff_folder(tmp_path / "lying", volume, spacing_um=0.002)  # slice distance stored 1000x too small
    result = convert(folder, tmp_path / "fixed.ome.zarr", spacing=(2.0, 2.0, 2.0), unit="micrometer")
    assert "overridden: spacing" in result.report
    assert bigvolume.open_image(tmp_path / "fixed.ome.zarr").levels[0].voxel_size_mm == pytest.approx((0.002,) * 3)


def test_labels_option_uses_the_mode(tmp_path):
    labels = np.zeros((32, 32, 32), np.uint16)
    labels[:, :, 16:] = 4
    labels[10:20, 10:20, 10:20] = 9
    path = tmp_path / "seg.tif"
    tifffile.imwrite(path, labels)
    convert(path, tmp_path / "seg.ome.zarr", labels=True, coarsest=8)
    image = bigvolume.open_image(tmp_path / "seg.ome.zarr")
    assert set(np.unique(image.read(2, [(0, 8)] * 3))) <= {0, 4, 9}


def test_output_names():
    assert output_name("/data/scan_01.ome.tif") == "scan_01.ome.zarr"
    assert output_name("/data/core_A/") == "core_A.ome.zarr"
    assert output_name("/data/head.nii.gz") == "head.ome.zarr"
    assert output_name("/data/core_B/rec_*.tif") == "core_B.ome.zarr"


def test_batch_goes_on_after_a_failure_and_tables_it(tmp_path, volume):
    good = tiff_folder(tmp_path / "well_1", volume[:20])
    other = tiff_folder(tmp_path / "well_2", volume[20:])
    broken = tmp_path / "well_3"
    broken.mkdir()
    (broken / "a.tif").write_bytes(b"II*\x00not really a tiff")
    results = convert_batch([good, broken, other], tmp_path / "out", coarsest=16)
    assert [r.status for r in results] == ["converted", "failed", "converted"]
    assert "a.tif: not a readable TIFF file" in results[1].error
    table = summary_table(results)
    assert "2 of 3 converted, 1 not" in table and "well_3: failed:" in table
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["well_1.ome.zarr", "well_2.ome.zarr"]
    again = convert_batch([good, other], tmp_path / "out", coarsest=16, resume=True)
    assert [r.status for r in again] == ["already complete", "already complete"]


def test_batch_refuses_two_inputs_with_one_output_name(tmp_path, volume):
    a = tiff_folder(tmp_path / "x" / "scan", volume[:2])
    b = tiff_folder(tmp_path / "y" / "scan", volume[:2])
    with pytest.raises(InputError, match="would both be written to"):
        convert_batch([a, b], tmp_path / "out")


def test_existing_output_is_kept(tmp_path, volume):
    folder = tiff_folder(tmp_path / "c", volume[:4])
    (tmp_path / "taken.ome.zarr").mkdir()
    with pytest.raises(StoreError, match="already exists"):
        convert(folder, tmp_path / "taken.ome.zarr")


def test_command_line_single_and_batch(tmp_path, volume, capsys):
    folder = tiff_folder(tmp_path / "core", volume)
    assert main(["convert", str(folder), str(tmp_path / "c.ome.zarr"), "--coarsest", "16", "--ngff", "0.4"]) == 0
    out = capsys.readouterr().out
    assert "found slices: 40" in out and "writing [" in out and "ETA" in out and "1 of 1 converted" in out
    assert bigvolume.open_image(tmp_path / "c.ome.zarr").version == "0.4"
    assert main(["convert", str(folder), str(tmp_path / "missing"), str(tmp_path / "batch"), "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "1 of 2 converted, 1 not" in out and "missing: failed: " in out and "no such file or folder" in out
    assert main(["convert", str(folder), str(tmp_path / "c.ome.zarr"), "--resume", "--coarsest", "16", "--ngff", "0.4"]) == 0
    assert "already complete" in capsys.readouterr().out


def test_command_line_raw_with_geometry(tmp_path, volume, capsys):
    raw = tmp_path / "scan.raw"
    volume.astype(">u2").tofile(raw)
    args = ["convert", str(raw), str(tmp_path / "r.ome.zarr"), "--raw-size", "60", "50", "40", "--raw-byte-order", "big",
            "--spacing", "0.5", "0.5", "1.5", "--unit", "mm", "--origin", "1", "2", "3", "--quiet"]
    assert main(args) == 0
    image = bigvolume.open_image(tmp_path / "r.ome.zarr")
    np.testing.assert_array_equal(image.read(0, [(0, 40), (0, 50), (0, 60)]), volume)
    assert image.levels[0].voxel_size_mm == pytest.approx((0.5, 0.5, 1.5))
    assert main(["convert", str(raw), str(tmp_path / "bad.ome.zarr"), "--direction", "1", "0", "0"]) == 2
    assert "--direction takes 9 numbers" in capsys.readouterr().err


@pytest.mark.parametrize("suffix, name", [(".nrrd", "nrrd"), (".nhdr", "nrrd"), (".mha", "metaimage"),
                                          (".mhd", "metaimage"), (".nii.gz", "nifti"), (".nii", "nifti")])
def test_the_registry_finds_every_medical_reader(tmp_path, suffix, name):
    import SimpleITK as sitk

    from bigvolume.ingest import detect_format, open_source

    volume = np.random.default_rng(9).integers(0, 3000, (6, 7, 8)).astype(np.int16)
    image = sitk.GetImageFromArray(volume)
    image.SetSpacing((0.5, 0.6, 2.0))
    path = tmp_path / f"scan{suffix}"
    sitk.WriteImage(image, str(path))
    assert detect_format(path) == name
    source = open_source(path, spacing=(1, 1, 1))
    np.testing.assert_array_equal(source[0:6], volume)
    assert source.geometry.spacing == (1.0, 1.0, 1.0) and source.info.overridden
    result = convert(path, tmp_path / "out.ome.zarr")
    assert result.status == "converted"


def test_unknown_input_lists_the_supported_formats(tmp_path):
    from bigvolume.ingest import open_source

    path = tmp_path / "notes.txt"
    path.write_text("not an image")
    with pytest.raises(InputError, match=r"(?s)notes.txt: not a format BigVolume reads .*\n  ome-zarr: .*\n  tiff: .*dicom"):
        open_source(path)
