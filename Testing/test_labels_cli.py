"""`bigvolume labels`: create, threshold, status, undo, list, through the command line's own entry point."""

import json

import numpy as np

from bigvolume.labels.label_store import open_labels
from bigvolume.tools.cli import main
from label_helpers import make_image


def test_create_threshold_status_and_undo(tmp_path, capsys):
    image, volume = make_image(tmp_path / "img.ome.zarr")
    path = str(tmp_path / "img.ome.zarr")
    assert main(["labels", "create", path, "seg", "--segment", "pores", "--segment", "grains"]) == 0
    assert "1=pores, 2=grains" in capsys.readouterr().out
    assert main(["labels", "threshold", path, "seg", "--segment", "grains", "--range", "300", "800", "--quiet"]) == 0
    assert "written into segment 'grains' at every level" in capsys.readouterr().out
    store = open_labels(image, "seg")
    assert np.array_equal(store.read_box(0, tuple((0, n) for n in volume.shape)) == 2, (volume >= 300) & (volume <= 800))
    assert main(["labels", "status", path, "seg"]) == 0
    assert "0 unfinished operation(s), 1 undo and 0 redo steps" in capsys.readouterr().out
    assert main(["labels", "undo", path, "seg"]) == 0
    assert not store.read_box(0, tuple((0, n) for n in volume.shape)).any()
    assert main(["labels", "undo", path, "seg"]) == 1
    assert main(["labels", "list", path]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "seg"
    assert main(["labels", "threshold", path, "seg", "--segment", "nope", "--range", "0", "1"]) == 2
    assert "no segment 'nope'" in capsys.readouterr().err


def test_export_and_import_round_trip(tmp_path, capsys):
    image, volume = make_image(tmp_path / "img.ome.zarr")
    path = str(tmp_path / "img.ome.zarr")
    assert main(["labels", "create", path, "seg", "--segment", "grains"]) == 0
    assert main(["labels", "threshold", path, "seg", "--segment", "grains", "--range", "300", "800", "--quiet"]) == 0
    out = str(tmp_path / "seg.seg.nrrd")
    assert main(["labels", "export", path, "seg", out, "--quiet"]) == 0
    assert "41 x 37 x 22 voxels" in capsys.readouterr().out
    assert main(["labels", "import", path, "copy", out]) == 0
    assert "copied voxel for voxel" in capsys.readouterr().out
    whole = tuple((0, n) for n in volume.shape)
    assert np.array_equal(open_labels(image, "copy").read_box(0, whole), open_labels(image, "seg").read_box(0, whole))
    assert main(["labels", "stats", path, "copy", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats[0]["name"] == "grains" and stats[0]["voxel_count"] == int(((volume >= 300) & (volume <= 800)).sum())
