"""Stores written by other OME-Zarr tools open where their metadata puts them, and ours open in theirs."""

import json
import warnings

import numpy as np
import pytest
import zarr

import bigvolume
from bigvolume import VolumeGeometry
from bigvolume.store.geometry import LPS_TO_RAS
from conftest import ramp_volume

SCALE_ZYX = (2.0, 0.5, 0.5)  # micrometres
SHAPE = (40, 48, 56)
FACTORS = [{"z": 1, "y": 2, "x": 2}, {"z": 2, "y": 4, "x": 4}]


def _metadata_matrix(scale_zyx_um, translation_zyx_um):
    """IJK->RAS (mm) straight from NGFF scale/translation, independent of our parser."""
    matrix = np.eye(4)
    matrix[:3, :3] = LPS_TO_RAS @ np.diag(scale_zyx_um[::-1]) / 1000.0
    matrix[:3, 3] = LPS_TO_RAS @ np.asarray(translation_zyx_um[::-1]) / 1000.0
    return matrix


def _datasets_from_json(path, version):
    meta = json.loads((path / ("zarr.json" if version == "0.5" else ".zattrs")).read_text())
    multiscales = (meta["attributes"]["ome"] if version == "0.5" else meta)["multiscales"][0]
    out = []
    for dataset in multiscales["datasets"]:
        transforms = {t["type"]: t for t in dataset["coordinateTransformations"]}
        out.append((transforms["scale"]["scale"], transforms.get("translation", {"translation": [0, 0, 0]})["translation"]))
    return out


def _check_store(path, version, translation0_um):
    """Matrices match the metadata, and a physical ramp's value at each level's centre voxel matches its position."""
    image = bigvolume.open_image(path)
    assert image.version == version and len(image.levels) == 3
    for level, (scale, translation) in zip(image.levels, _datasets_from_json(path, version)):
        np.testing.assert_allclose(level.ijk_to_ras, _metadata_matrix(scale, translation), atol=1e-12)
        centre = tuple(n // 2 for n in level.volume_shape)
        value = image.read(level.index, [(c, c + 1) for c in centre])[0, 0, 0]
        ras = level.ijk_to_ras @ np.array([centre[2], centre[1], centre[0], 1.0])
        lps_um = (LPS_TO_RAS @ ras[:3]) * 1000.0
        level0_index = (lps_um - np.asarray(translation0_um[::-1])) / np.asarray(SCALE_ZYX[::-1])
        assert value == pytest.approx(level0_index.sum(), abs=1e-3)


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_ngff_zarr_stores(tmp_path, version):
    import ngff_zarr as nz

    translation = (10.0, -3.0, 4.0)
    image = nz.to_ngff_image(ramp_volume(SHAPE, (1.0, 1.0, 1.0), 0.0), dims=["z", "y", "x"],
                             scale=dict(zip("zyx", SCALE_ZYX)), translation=dict(zip("zyx", translation)),
                             axes_units={d: "micrometer" for d in "zyx"})
    multiscales = nz.to_multiscales(image, scale_factors=FACTORS, method=nz.Methods.ITKWASM_GAUSSIAN)
    path = tmp_path / f"ngff_zarr_{version}.ome.zarr"
    nz.to_ngff_zarr(path, multiscales, version=version)
    _check_store(path, version, translation)


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_ome_zarr_py_stores(tmp_path, version):
    from ome_zarr.format import FormatV04, FormatV05
    from ome_zarr.writer import write_image

    path = tmp_path / f"ome_zarr_{version}.ome.zarr"
    group = zarr.open_group(path, mode="w", zarr_format=2 if version == "0.4" else 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write_image(ramp_volume(SHAPE, (1.0, 1.0, 1.0), 0.0), group, scale_factors=FACTORS,
                    fmt=FormatV04() if version == "0.4" else FormatV05(), axes=["z", "y", "x"],
                    scale=dict(zip("zyx", SCALE_ZYX)), axes_units={d: "micrometer" for d in "zyx"})
    _check_store(path, version, (0.0, 0.0, 0.0))  # coarse levels carry non-zero translations


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_our_stores_open_in_ome_zarr_py_and_validate(tmp_path, version):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    path = tmp_path / f"ours_{version}.ome.zarr"
    geometry = VolumeGeometry(spacing=(2, 2, 10), origin=(1, 2, 3), unit="micrometer")
    bigvolume.write_pyramid(np.zeros((40, 300, 300), np.uint16), path, geometry, coarsest=64, ngff_version=version)
    ours = bigvolume.open_image(path)

    node = list(Reader(parse_url(str(path)))())[0]
    theirs = node.metadata["coordinateTransformations"]
    assert [t[0]["scale"] for t in theirs] == [[10, 2, 2], [10, 4, 4], [10, 8, 8], [20, 16, 16]]
    assert [tuple(d.shape) for d in node.data] == [level.volume_shape for level in ours.levels]
    for level, transforms in zip(ours.levels, theirs):
        np.testing.assert_allclose(level.ijk_to_ras, _metadata_matrix(transforms[0]["scale"], transforms[1]["translation"]))

    if version == "0.5":
        from ome_zarr_models.v05.image import Image
    else:
        from ome_zarr_models.v04.image import Image
    model = Image.from_zarr(zarr.open_group(path, mode="r"))  # raises on any NGFF violation
    attributes = model.ome_attributes if version == "0.5" else model.attributes
    assert [d.path for d in attributes.multiscales[0].datasets] == ["0", "1", "2", "3"]
