"""Medical-format readers end to end, and the helpers their own test files share.

Oracle: SimpleITK writes each format with non-unit spacing, a non-zero origin
and an oblique (or flipped, left-handed) direction, and reads it back; our
readers must give the same voxels and the same geometry. The pyramid written
from a reader must put level 0 where SimpleITK's geometry says, in Slicer's RAS.
"""

import contextlib
import locale

import numpy as np
import pytest
import SimpleITK as sitk

import bigvolume
from bigvolume.ingest import dicom, metaimage, nifti, nrrd

SHAPE = (70, 9, 11)  # more planes than one 64-plane slab
SLABS = [(0, 64), (64, 70), (3, 17), (63, 66), (60, 70), (5, 7), (0, 0)]  # forward, across 64, then back


def rotation(ax=0.5, az=0.3):
    cx, sx, cz, sz = np.cos(ax), np.sin(ax), np.cos(az), np.sin(az)
    return np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]]) @ np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])


OBLIQUE = rotation()
FLIPPED = rotation(-0.4, 1.1) @ np.diag([1.0, 1.0, -1.0])  # left-handed: determinant -1


def voxels(dtype=np.int16, shape=SHAPE, seed=3):
    rng = np.random.default_rng(seed)
    info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else None
    if info is None:
        return (rng.standard_normal(shape) * 1000).astype(dtype)
    return rng.integers(max(info.min, -30000), min(info.max, 30000), shape, endpoint=True).astype(dtype)


def sitk_image(array, direction=OBLIQUE, spacing=(0.7, 0.55, 1.9), origin=(12.5, -30.25, 41.0)):
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(np.asarray(direction, dtype=float).ravel().tolist())
    return image


def assert_voxels(source, expected, slabs=SLABS):
    expected = np.asarray(expected)
    assert source.shape == expected.shape
    assert np.dtype(source.dtype) == expected.dtype
    np.testing.assert_array_equal(source[0:source.shape[0]], expected)
    for z0, z1 in slabs:
        np.testing.assert_array_equal(source[z0:z1], expected[z0:z1])


def assert_geometry(geometry, reference, atol=1e-6):
    """`reference`: a SimpleITK image."""
    np.testing.assert_allclose(geometry.spacing, reference.GetSpacing(), rtol=0, atol=atol)
    np.testing.assert_allclose(geometry.origin, reference.GetOrigin(), rtol=0, atol=atol)
    np.testing.assert_allclose(np.ravel(geometry.direction), reference.GetDirection(), rtol=0, atol=atol)


def assert_same_as_sitk(source, reference, slabs=SLABS):
    """Voxels and geometry of `source` equal those SimpleITK reads (`reference`: an image or a file path)."""
    if not isinstance(reference, sitk.Image):
        reference = sitk.ReadImage(str(reference))
    assert_voxels(source, sitk.GetArrayFromImage(reference), slabs)
    assert_geometry(source.geometry, reference)


def slicer_ijk_to_ras(reference):
    """IJK->RAS that SimpleITK's geometry implies: RAS = diag(-1, -1, 1) (origin + D diag(spacing) ijk)."""
    matrix = np.eye(4)
    direction = np.reshape(reference.GetDirection(), (3, 3))
    matrix[:3, :3] = np.diag([-1.0, -1.0, 1.0]) @ direction @ np.diag(reference.GetSpacing())
    matrix[:3, 3] = np.diag([-1.0, -1.0, 1.0]) @ np.asarray(reference.GetOrigin())
    return matrix


@contextlib.contextmanager
def keeping_locale():
    """SimpleITK's DICOM I/O switches the process's locale to "C", which makes later text files open as ASCII."""
    saved = locale.setlocale(locale.LC_ALL)
    try:
        yield
    finally:
        locale.setlocale(locale.LC_ALL, saved)


def write_dicom_series(image, folder, names=None, series_uid="1.2.826.0.1.3680043.2.1125.7.1", tags=None):
    """One file per z-plane with the tags that place it; `names` gives each plane's file name."""
    with keeping_locale():
        return _write_dicom_series(image, folder, names, series_uid, tags)


def _write_dicom_series(image, folder, names, series_uid, tags):
    folder.mkdir(parents=True, exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    direction = np.reshape(image.GetDirection(), (3, 3))
    orientation = "\\".join(f"{v:.10f}" for v in list(direction[:, 0]) + list(direction[:, 1]))
    paths = []
    for k in range(image.GetDepth()):
        plane = image[:, :, k]
        position = image.TransformIndexToPhysicalPoint((0, 0, k))
        for tag, value in {"0008|0060": "CT", "0020|000e": series_uid, "0020|0013": str(k + 1),
                           "0020|0032": "\\".join(f"{v:.10f}" for v in position), "0020|0037": orientation,
                           **(tags or {})}.items():
            plane.SetMetaData(tag, value)
        path = folder / (names[k] if names else f"slice{k:04d}.dcm")
        writer.SetFileName(str(path))
        writer.Execute(plane)
        paths.append(path)
    return paths


def read_dicom_series_with_sitk(folder, series_uid=None):
    with keeping_locale():
        reader = sitk.ImageSeriesReader()
        names = reader.GetGDCMSeriesFileNames(str(folder), series_uid) if series_uid else \
            reader.GetGDCMSeriesFileNames(str(folder))
        reader.SetFileNames(names)
        return reader.Execute()


def _nrrd(path, image):
    sitk.WriteImage(image, str(path / "v.nrrd"))
    return nrrd.open(path / "v.nrrd")


def _nhdr_gzip(path, image):
    sitk.WriteImage(image, str(path / "v.nhdr"), useCompression=True)
    return nrrd.open(path / "v.nhdr")


def _mha_zlib(path, image):
    sitk.WriteImage(image, str(path / "v.mha"), useCompression=True)
    return metaimage.open(path / "v.mha")


def _mhd(path, image):
    sitk.WriteImage(image, str(path / "v.mhd"))
    return metaimage.open(path / "v.mhd")


def _nii(path, image):
    sitk.WriteImage(image, str(path / "v.nii"))
    return nifti.open(path / "v.nii")


def _nii_gz(path, image):
    sitk.WriteImage(image, str(path / "v.nii.gz"))
    return nifti.open(path / "v.nii.gz")


def _dicom(path, image):
    write_dicom_series(image, path / "series")
    return dicom.open(path / "series")


@pytest.mark.parametrize("write_and_open", [_nrrd, _nhdr_gzip, _mha_zlib, _mhd, _nii, _nii_gz, _dicom])
@pytest.mark.parametrize("direction", [OBLIQUE, FLIPPED], ids=["oblique", "flipped"])
def test_pyramid_from_a_reader_lands_where_simpleitk_puts_the_file(tmp_path, write_and_open, direction):
    array = voxels(np.int16, shape=(20, 9, 11))
    image = sitk_image(array, direction)
    with write_and_open(tmp_path, image) as source:
        if write_and_open is _dicom:  # the series reader sorts slices along the normal: compare with its reading
            image = read_dicom_series_with_sitk(tmp_path / "series")
        bigvolume.write_pyramid(source, tmp_path / "x.ome.zarr")
    pyramid = bigvolume.open_image(tmp_path / "x.ome.zarr")
    np.testing.assert_allclose(pyramid.levels[0].ijk_to_ras, slicer_ijk_to_ras(image), rtol=0, atol=1e-6)
    stored = pyramid.read(0, [(0, n) for n in array.shape])
    np.testing.assert_array_equal(stored, sitk.GetArrayFromImage(image))


@pytest.mark.parametrize("module, name", [(nrrd, "v.nrrd"), (nrrd, "v.nhdr"), (metaimage, "v.mha"),
                                          (metaimage, "v.mhd"), (nifti, "v.nii"), (nifti, "v.nii.gz"),
                                          (nifti, "v.hdr")])
def test_each_probe_knows_its_own_files_only(tmp_path, module, name):
    sitk.WriteImage(sitk_image(voxels(shape=(3, 4, 5))), str(tmp_path / name))
    write_dicom_series(sitk_image(voxels(shape=(2, 4, 5))), tmp_path / "series")
    (tmp_path / "notes.txt").write_text("ObjectTyp NRRD000")
    mine = tmp_path / name
    assert module.probe(mine)
    others = [p for p in tmp_path.iterdir() if p.is_file() and p != mine and not _same_format(module, p)]
    assert others and not any(module.probe(p) for p in others)
    assert not module.probe(tmp_path / "missing.file")
    assert dicom.probe(tmp_path / "series") and dicom.probe(next((tmp_path / "series").iterdir()))
    assert not dicom.probe(tmp_path) and not dicom.probe(mine)


def _same_format(module, path):
    names = {nrrd: (".nrrd", ".nhdr"), metaimage: (".mha", ".mhd"), nifti: (".nii", ".nii.gz", ".hdr", ".img")}
    return path.name.endswith(names[module]) or (module is nrrd and path.suffix == ".raw")


def test_block_sources_pickle_for_worker_processes(tmp_path):
    """NRRD/MetaImage/NIfTI sources travel to worker processes without their open files and read the same there."""
    import pickle

    import SimpleITK as sitk

    from bigvolume.ingest import open_source

    voxels = np.random.default_rng(5).integers(0, 5000, (70, 20, 30), dtype=np.int16)
    for name in ("v.nrrd", "v.mha", "v.nii.gz"):
        path = tmp_path / name
        sitk.WriteImage(sitk.GetImageFromArray(voxels), str(path), useCompression=name.endswith(".gz"))
        source = open_source(path)
        source[0:10]  # a compressed stream has moved on in this process ...
        copy = pickle.loads(pickle.dumps(source))
        np.testing.assert_array_equal(copy[60:70], voxels[60:70])  # ... the copy reads on its own
        np.testing.assert_array_equal(copy[0:64], voxels[0:64])
        copy.close()
        source.close()
