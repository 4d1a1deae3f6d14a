import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import bigvolume
from bigvolume import VolumeGeometry
from bigvolume.tools.cli import main
from bigvolume.tools.convert import convert
from bigvolume.tools.progress import ProgressBar


@pytest.fixture
def store(tmp_path):
    path = tmp_path / "cli.ome.zarr"
    bigvolume.write_pyramid(np.zeros((20, 100, 120), np.uint8), path,
                            VolumeGeometry(spacing=(4, 4, 8), origin=(1, 2, 3), unit="micrometer"), coarsest=32)
    return path


def test_info_json_has_matrices_and_array_order_shapes(store, capsys):
    assert main(["info", str(store), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert [level["shape"] for level in info["levels"]] == [[20, 100, 120], [20, 50, 60], [10, 25, 30]]
    matrix = np.array(info["levels"][1]["ijk_to_ras"])
    assert matrix.shape == (4, 4)
    np.testing.assert_allclose(matrix @ [0, 0, 0, 1], [-0.001 - 0.002, -0.002 - 0.002, 0.003, 1])
    assert info["levels"][0]["voxel_size_mm"] == [0.004, 0.004, 0.008]


def test_info_text_says_every_size_in_x_y_z_order(store, capsys):
    assert main(["info", str(store)]) == 0
    out = capsys.readouterr().out
    assert "OME-NGFF 0.5 on Zarr v3" in out and "physical size (x, y, z): 0.48 x 0.4 x 0.16 mm" in out
    assert "shape (x, y, z)  chunks (x, y, z)  shards (x, y, z)       voxel size (x, y, z) mm" in out
    assert "0              120x100x20          64x64x20        128x128x20           0.004, 0.004, 0.008" in out


def test_errors_are_one_line_with_exit_code_2(tmp_path, capsys):
    assert main(["info", str(tmp_path / "missing.zarr")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bigvolume: error: ") and "no such file or directory" in err and "Traceback" not in err


def test_demo_writes_a_pyramid_and_replaces_only_its_own_output(tmp_path, capsys):
    out = tmp_path / "demo" / "core.ome.zarr"
    assert main(["demo", "--shape", "40", "300", "300", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Synthetic rock-core CT: 300 x 300 x 40 voxels" in printed and "Wrote" in printed
    image = bigvolume.open_image(out)
    assert [level.volume_shape for level in image.levels] == [(40, 300, 300), (20, 150, 150), (10, 75, 75), (5, 38, 38)]
    assert image.levels[0].voxel_size_mm == pytest.approx((0.02, 0.02, 0.02))
    assert main(["demo", "--shape", "40", "300", "300", "--output", str(out)]) == 0  # its own: replaced
    other = tmp_path / "user.ome.zarr"
    other.mkdir()
    assert main(["demo", "--size", "small", "--output", str(other)]) == 2
    assert "was not written by 'bigvolume demo'" in capsys.readouterr().err


def test_module_entry_point(store):
    result = subprocess.run([sys.executable, "-m", "bigvolume", "info", str(store), "--json"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)["levels"]) == 3


class Clock:
    """A timer for ProgressBar that moves only when told."""

    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_shows_no_rate_from_a_moment_and_the_end_once():
    timer = Clock()
    bar = ProgressBar("writing", io.StringIO(), unit_bytes=1_000_000, timer=timer)
    bar.line(0, 100)
    timer.now += 1e-6
    assert "MB/s" not in bar.line(5, 100) and "ETA ?" in bar.line(5, 100)
    timer.now += 2
    assert "3 MB/s" in bar.line(6, 100) and "ETA 0:31" in bar.line(6, 100)
    assert " 99%" in bar.line(996, 1000)  # rounded down: 100% only when done
    for out in (io.StringIO(), Terminal()):
        bar = ProgressBar("writing", out, timer=timer)
        for done in (0, 50, 100, 100):  # the writer reports the end twice
            bar(done, 100)
        assert out.getvalue().count("100%") == 1, out.getvalue()


def test_an_empty_input_folder_is_said_to_be_empty(tmp_path, capsys):
    (tmp_path / "scans").mkdir()
    assert main(["convert", str(tmp_path / "scans"), str(tmp_path / "out.ome.zarr")]) == 2
    err = capsys.readouterr().err
    assert err == f"bigvolume: error: {tmp_path / 'scans'}: the folder is empty\n"


def test_info_says_the_sizes_of_time_and_channel_axes(tmp_path, capsys):
    import zarr

    path = tmp_path / "tczyx.ome.zarr"
    root = zarr.open_group(path, mode="w", zarr_format=3)
    root.create_array("0", data=np.zeros((2, 3, 4, 5, 6), np.uint8), dimension_names=list("tczyx"))
    root.attrs.put({"ome": {"version": "0.5", "multiscales": [{
        "axes": [{"name": "t", "type": "time"}, {"name": "c", "type": "channel"}]
        + [{"name": n, "type": "space", "unit": "micrometer"} for n in "zyx"],
        "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1, 1, 2, 1, 1]}]}]}]}})
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "axes: t (time, size 2), c (channel, size 3), z (space, micrometer)" in out and " 6x5x4 " in out


@pytest.fixture
def raw(tmp_path):
    path = tmp_path / "scan.raw"
    np.arange(32 * 32 * 32, dtype=np.uint16).tofile(path)
    return path


def convert_args(*paths):
    return ["convert", "--raw-size", "32", "32", "32", "--workers", "1", *map(str, paths)]


def test_an_existing_output_is_refused_in_the_words_of_the_command_line(raw, tmp_path, capsys):
    taken = tmp_path / "out" / "scan.ome.zarr"
    taken.mkdir(parents=True)
    with pytest.raises(bigvolume.StoreError, match=r"pass overwrite=True"):  # Python callers: the keyword
        convert(raw, taken, reader_options={"size": (32, 32, 32), "dtype": "uint16"}, workers=1)
    assert main(convert_args(raw, taken)) == 2
    assert capsys.readouterr().err == f"bigvolume: error: {taken}: already exists; choose another output or pass " \
                                      f"--overwrite to replace it\n"
    other = tmp_path / "other.raw"
    other.write_bytes(raw.read_bytes())
    assert main(convert_args(raw, other, tmp_path / "out")) == 1  # a batch: in its report and its summary
    out = capsys.readouterr().out
    assert out.count("pass --overwrite to replace it") == 2 and "=True" not in out


def test_validate_deep_says_how_many_chunks_it_read(store, capsys):
    assert main(["validate", str(store)]) == 0
    assert "chunks read" not in capsys.readouterr().out
    assert main(["validate", "--deep", str(store)]) == 0
    assert "chunks read 6," in capsys.readouterr().out  # 2 x 2 + 1 + 1
    assert main(["validate", "--deep", "--json", str(store)]) == 0
    assert json.loads(capsys.readouterr().out)["facts"]["chunks read"] == 6


def run_into_a_closed_pipe(*args):
    """The command line with stdout a pipe its reader has closed, as `| head` does once it has its lines."""
    read, write = os.pipe()
    os.close(read)
    # stdout block-buffered, as usual on a pipe: what breaks is a later flush (a progress line, the last one)
    env = {name: value for name, value in os.environ.items() if name != "PYTHONUNBUFFERED"}
    try:
        return subprocess.run([sys.executable, "-m", "bigvolume", *args], stdout=write, stderr=subprocess.PIPE,
                              text=True, env=env, timeout=120)
    finally:
        os.close(write)


def test_a_closed_stdout_ends_info_quietly(store):
    result = run_into_a_closed_pipe("info", "--json", str(store))
    assert (result.returncode, result.stderr) == (141, "")


def test_a_conversion_stopped_by_a_closed_stdout_says_how_to_resume(raw, tmp_path):
    other = tmp_path / "other.raw"
    other.write_bytes(raw.read_bytes())
    for paths, unfinished in (([raw, tmp_path / "one.ome.zarr"], tmp_path / "one.ome.zarr"),
                              ([raw, other, tmp_path / "batch"], tmp_path / "batch" / "scan.ome.zarr")):
        result = run_into_a_closed_pipe(*convert_args(*paths))
        assert result.returncode == 141
        assert result.stderr == "bigvolume: output closed, conversion stopped; run the same command with --resume " \
                                "to continue where it stopped\n"
        with pytest.raises(bigvolume.IncompleteStoreError):
            bigvolume.open_image(unfinished)
    assert not (tmp_path / "batch" / "other.ome.zarr").exists()  # the batch stopped too
    assert main(convert_args(raw, other, tmp_path / "batch", "--resume")) == 0
    assert bigvolume.open_image(tmp_path / "batch" / "scan.ome.zarr").levels[0].volume_shape == (32, 32, 32)
