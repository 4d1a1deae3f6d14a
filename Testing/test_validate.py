"""`validate`: conformance of our stores and peers', and the faults it must catch."""

import json
import os

import numpy as np
import pytest

import bigvolume
from bigvolume.tools.cli import main
from bigvolume.store.validate import validate


@pytest.fixture
def store(tmp_path):
    path = tmp_path / "v.ome.zarr"
    volume = np.random.default_rng(0).integers(0, 4000, (40, 64, 64)).astype(np.uint16)
    bigvolume.write_pyramid(volume, path, chunks=(16, 16, 16), shard_chunks=(1, 2, 2), coarsest=16)
    return path


def _edit_root(path, change):
    meta = json.loads((path / "zarr.json").read_text())
    change(meta["attributes"])
    (path / "zarr.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("version", ["0.5", "0.4"])
def test_our_stores_are_valid_and_agree_with_ome_zarr_models(tmp_path, version):
    path = tmp_path / "s.ome.zarr"
    bigvolume.write_pyramid(np.ones((20, 40, 40), np.uint8), path, ngff_version=version, coarsest=16)
    report = validate(path, deep=True)
    assert report.valid, report.text()
    assert report.facts["OME-NGFF"] == version and report.facts["levels"] == 3
    models = pytest.importorskip("ome_zarr_models")
    import zarr

    module = models.v05 if version == "0.5" else models.v04
    module.Image.from_zarr(zarr.open_group(path, mode="r"))  # raises if not conformant


def test_peer_store_is_valid(tmp_path):
    import dask.array as da
    from ome_zarr.format import FormatV05
    from ome_zarr.writer import write_image
    import zarr

    group = zarr.open_group(tmp_path / "peer.zarr", mode="w", zarr_format=3)
    write_image(da.zeros((16, 32, 32), dtype=np.uint8, chunks=16), group, fmt=FormatV05(), axes=["z", "y", "x"],
                scale_factors=[{"z": 2, "y": 2, "x": 2}])
    assert validate(tmp_path / "peer.zarr").valid, validate(tmp_path / "peer.zarr").text()


@pytest.mark.parametrize("version", ["0.1", "0.2", "0.3"])
def test_an_older_version_is_valid_only_as_far_as_checked(tmp_path, version):
    path = tmp_path / "old.ome.zarr"
    bigvolume.write_pyramid(np.ones((20, 40, 40), np.uint8), path, ngff_version="0.4", coarsest=16)
    attrs = json.loads((path / ".zattrs").read_text())
    multiscale = attrs["multiscales"][0]
    multiscale["version"] = version
    if version == "0.3":
        multiscale["axes"] = ["z", "y", "x"]
    else:
        del multiscale["axes"]
    for dataset in multiscale["datasets"]:
        del dataset["coordinateTransformations"]  # from 0.4 on
    (path / ".zattrs").write_text(json.dumps(attrs))
    report = validate(path)
    assert report.valid and report.text().startswith(f"{path}: valid as far as checked - OME-NGFF {version}")
    assert f"NGFF {version} is checked only for its datasets" in report.warnings[0]


def test_unfinished_store(store):
    _edit_root(store, lambda a: a["bigvolume"]["write"].update(state="in-progress"))
    report = validate(store)
    assert not report.valid and "incomplete: the write did not finish" in report.text()


def test_missing_level(store):
    import shutil

    shutil.rmtree(store / "1")
    assert "dataset 1 ('1'): no array at this path (missing level)" in validate(store).text()


def test_axes_in_the_wrong_order_and_bad_units(store):
    def change(attrs):
        axes = attrs["ome"]["multiscales"][0]["axes"]
        axes[2]["type"] = "channel"  # z, y, c: the space axes are not last
        axes[1]["unit"] = "parsecs-ish"
    _edit_root(store, change)
    text = validate(store).text()
    assert "space axes must come last" in text
    assert "'parsecs-ish' is not a UDUNITS-2 length unit" in text


@pytest.mark.parametrize("axis, kind, unit, message", [
    (0, "space", "second", "'second' is not a UDUNITS-2 length unit"),
    (0, "time", "micrometer", "'micrometer' is not a UDUNITS-2 time unit"),
])
def test_a_unit_that_does_not_fit_its_axis_type_is_a_warning(store, axis, kind, unit, message):
    _edit_root(store, lambda a: a["ome"]["multiscales"][0]["axes"][axis].update(type=kind, unit=unit))
    report = validate(store)
    assert report.valid, report.text()  # the spec says SHOULD
    assert any(message in w for w in report.warnings)


def test_a_space_axis_in_seconds_is_valid_but_bigvolume_cannot_open_it(store):
    _edit_root(store, lambda a: a["ome"]["multiscales"][0]["axes"][0].update(unit="second"))
    assert any(w.startswith("BigVolume cannot open it: ") and "'second'" in w for w in validate(store).warnings)


def test_scale_and_translation_values_are_json_numbers(store):
    def change(attrs):
        datasets = attrs["ome"]["multiscales"][0]["datasets"]
        datasets[1]["coordinateTransformations"][0]["scale"] = [True, 2.0, 2.0]
        datasets[2]["coordinateTransformations"][1]["translation"] = ["1.5", 1.5, 1.5]
    _edit_root(store, change)
    assert validate(store).errors == ["dataset 1 ('1'): scale [True, 2.0, 2.0] must be 3 positive numbers",
                                      "dataset 2 ('2'): translation ['1.5', 1.5, 1.5] must be 3 numbers"]


def test_a_transformation_that_is_not_an_object_is_an_error_not_a_crash(store):
    _edit_root(store, lambda a: a["ome"]["multiscales"][0]["datasets"][0].update(coordinateTransformations=["scale"]))
    assert "dataset 0 ('0'): coordinateTransformations must be a non-empty list of objects" in validate(store).text()


def test_multiscales_transformations(store):
    _edit_root(store, lambda a: a["ome"]["multiscales"][0].update(coordinateTransformations=[{"type": "rotation"}]))
    assert validate(store).errors == ["multiscales: coordinateTransformations must be one scale, optionally followed "
                                      "by one translation; got ['rotation']"]


@pytest.mark.parametrize("axes, message", [
    ("zyx", "axes must be a list of 2 to 5 entries, got 'zyx'"),
    ([{"name": "z"}, {"type": "space"}, {"name": "x"}], "axis {'type': 'space'} is not an object with a name"),
])
def test_rejected_axes_leave_no_follow_on_messages_with_a_count(store, axes, message):
    def change(attrs):
        attrs["ome"]["multiscales"][0]["axes"] = axes
        attrs["ome"]["multiscales"][0]["datasets"][1]["coordinateTransformations"][0]["scale"] = [2.0, -2.0, 2.0]
    _edit_root(store, change)
    assert validate(store).errors == [message, "dataset 1 ('1'): scale [2.0, -2.0, 2.0] must be positive numbers"]


def test_transforms_and_level_order(store):
    def change(attrs):
        datasets = attrs["ome"]["multiscales"][0]["datasets"]
        datasets[2]["coordinateTransformations"].reverse()
        datasets[1]["coordinateTransformations"][0]["scale"] = [0.5, 0.5, 0.5]
    _edit_root(store, change)
    text = validate(store).text()
    assert "dataset 2 ('2'): coordinateTransformations must be one scale, optionally followed by one translation" in text
    assert "dataset 1 ('1'): scale [0.5, 0.5, 0.5] is finer than the level before" in text


def test_a_dataset_path_must_be_a_string(store):
    _edit_root(store, lambda a: a["ome"]["multiscales"][0]["datasets"][0].update(path=0))
    assert validate(store).errors == ["dataset 0 (0): path must be a string, got 0"]


def test_a_dataset_without_a_path(store):
    _edit_root(store, lambda a: a["ome"]["multiscales"][0]["datasets"][1].pop("path"))
    assert validate(store).errors == ["dataset 1 has no 'path'"]


def _channel(**change):
    channel = {"active": True, "color": "0000FF", "label": "LaminB1",
               "window": {"min": 0, "max": 65535, "start": 0, "end": 1500}}
    return {**channel, **change}


def test_omero_channels(store):
    _edit_root(store, lambda a: a["ome"].update(omero={"channels": [
        _channel(),
        _channel(color=255, label=7, active="yes"),
        _channel(window={"min": 0, "max": 65535, "start": 0}),
        _channel(window={"min": 0, "max": 65535, "start": True, "end": 1500}),
        "red",
    ]}))
    assert validate(store).errors == [
        "omero channel 1: color 255 must be 6 hexadecimal digits (RRGGBB)",
        "omero channel 1: label 7 must be a string",
        "omero channel 1: active 'yes' must be true or false",
        "omero channel 2: window {'min': 0, 'max': 65535, 'start': 0} must be an object with numbers min, max, start "
        "and end",
        "omero channel 3: window {'min': 0, 'max': 65535, 'start': True, 'end': 1500} must be an object with numbers "
        "min, max, start and end",
        "omero channel 4 is not an object",
    ]


def test_omero_without_a_list_of_channels(store):
    _edit_root(store, lambda a: a["ome"].update(omero={"channels": _channel()}))
    assert validate(store).errors == ["omero metadata must be an object with a 'channels' list"]


@pytest.mark.parametrize("version", ["0.5", "0.4"])
def test_omero_color_not_in_hexadecimal_digits(tmp_path, version):
    path = tmp_path / "s.ome.zarr"
    bigvolume.write_pyramid(np.ones((20, 40, 40), np.uint8), path, ngff_version=version, coarsest=16)
    attributes_file = path / ("zarr.json" if version == "0.5" else ".zattrs")
    meta = json.loads(attributes_file.read_text())
    attrs = meta["attributes"]["ome"] if version == "0.5" else meta
    attrs["omero"] = {"channels": [_channel(color="#0000FF")]}
    attributes_file.write_text(json.dumps(meta))
    report = validate(path)
    message = "omero channel 0: color '#0000FF' must be 6 hexadecimal digits (RRGGBB)"
    assert message in (report.errors if version == "0.5" else report.warnings)  # a MUST only from 0.5 on


def test_deep_check_names_a_corrupt_shard(store):
    shard = store / "0" / "c" / "1" / "0" / "0"
    shard.write_bytes(shard.read_bytes()[:-7])
    assert validate(store).valid  # metadata alone looks fine
    report = validate(store, deep=True)
    assert not report.valid and "chunk 0/c/1/0/0 cannot be decoded" in report.text()


def test_command_line(store, tmp_path, capsys):
    assert main(["validate", str(store)]) == 0
    assert "valid - OME-NGFF 0.5, levels 3" in capsys.readouterr().out
    os.makedirs(tmp_path / "plain")
    assert main(["validate", str(tmp_path / "plain"), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["errors"] == ["not a Zarr group (no zarr.json or .zgroup)"]
