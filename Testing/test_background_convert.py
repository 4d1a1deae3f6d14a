"""`BackgroundConversion`: the command line in a child process, followed through its JSON events; cancel; failures.

Tests that need the child to be at a given point use a `sitecustomize` module put on the child's
PYTHONPATH (test code only): it wraps the writer's cancel check, so that the child waits at its first
slab for the parent's cancel (or ignores it), whatever the speed of the machine.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tifffile

import bigvolume
from bigvolume.tools.background import STATUSES, BackgroundConversion, ConversionState
from bigvolume.errors import IncompleteStoreError
from bigvolume.tools.progress import rate_and_eta

SHAPE = (80, 96, 96)
TIMEOUT = 120  # seconds; only a safety net against a hung child, never reached when the test passes


@pytest.fixture(scope="module")
def volume():
    return np.random.default_rng(7).integers(0, 60000, SHAPE).astype(np.uint16)


@pytest.fixture
def slices(tmp_path, volume):
    """A folder of TIFF slices with ImageJ calibration: 2 micrometre voxels."""
    folder = tmp_path / "core"
    folder.mkdir()
    for i, plane in enumerate(volume):
        tifffile.imwrite(folder / f"rec_{i:04d}.tif", plane, imagej=True, resolution=(0.5, 0.5),
                         metadata={"spacing": 2.0, "unit": "um"})
    return folder


def child_hook(tmp_path, body):
    """An environment whose Python runs `body` at start-up (as sitecustomize) in the child only."""
    folder = tmp_path / "hook"
    folder.mkdir()
    (folder / "sitecustomize.py").write_text(textwrap.dedent(body))
    return dict(os.environ, PYTHONPATH=str(folder))


# The first slab's cancel check waits until the cancel has arrived: the write cannot finish first.
HELD_UNTIL_CANCELLED = """
    import bigvolume.writing.pyramid as pyramid

    _should_stop = pyramid._should_stop

    def held(cancel):
        stop = _should_stop(cancel)

        def check():
            cancel.wait(120)
            return stop()
        return check

    pyramid._should_stop = held
"""

# The child never gets past its first slab, cancel or not.
IGNORES_CANCEL = """
    import time
    import bigvolume.writing.pyramid as pyramid

    def stuck(cancel):
        return lambda: time.sleep(600)

    pyramid._should_stop = stuck
"""

CRASHES = """
    import bigvolume.writing.pyramid as pyramid

    def crash(cancel):
        def check():
            raise RuntimeError("simulated crash in the writer")
        return check

    pyramid._should_stop = crash
"""


def follow(job):
    """Poll until the end, keeping every snapshot (as a GUI timer would)."""
    states = [job.poll()]
    while not states[-1].finished:
        job.wait(0.02)
        states.append(job.poll())
    return states


def test_a_tiff_folder_converts_in_a_child_process(tmp_path, slices, volume):
    output = tmp_path / "core.ome.zarr"
    job = BackgroundConversion(slices, output, workers=1).start()
    states = follow(job)
    final = states[-1]
    assert final.status == "converted" and final.ok and final.finished and final.error is None, final.log
    assert final.total >= SHAPE[0] and final.done == final.total and final.fraction == 1.0
    assert final.eta_seconds == 0.0 and final.output == str(output) and final.output_bytes > 0
    assert "found spacing z: 2.0 micrometer (ImageJ spacing)" in final.report
    for before, after in zip(states, states[1:]):  # snapshots never go back
        assert after.done >= before.done and after.fraction >= before.fraction
        assert after.elapsed_seconds >= before.elapsed_seconds
        assert STATUSES.index(after.status) >= STATUSES.index(before.status)
    assert {s.status for s in states} <= {"starting", "running", "converted"}
    image = bigvolume.open_image(output)
    assert image.levels[0].volume_shape == SHAPE
    assert image.levels[0].voxel_size_mm == pytest.approx((0.002, 0.002, 0.002))
    np.testing.assert_array_equal(image.read(0, [(0, 80), (0, 96), (0, 96)]), volume)


def test_spacing_override_as_a_context_manager(tmp_path, slices):
    output = tmp_path / "fixed.ome.zarr"
    with BackgroundConversion(slices, output, spacing=(1, 1, 3), unit="micrometer", workers=1) as job:
        state = job.wait(TIMEOUT)
    assert state.status == "converted", state.log
    assert "overridden: spacing" in state.report
    assert bigvolume.open_image(output).levels[0].voxel_size_mm == pytest.approx((0.001, 0.001, 0.003))


def test_cancel_right_after_start_leaves_nothing_behind(tmp_path, slices):
    env = child_hook(tmp_path, HELD_UNTIL_CANCELLED)
    job = BackgroundConversion(slices, tmp_path / "core.ome.zarr", workers=1, env=env).start()
    job.cancel()
    state = job.wait(TIMEOUT)
    assert state.status == "cancelled" and not state.ok and state.finished, state.log
    assert "removed" in state.error and "cancel requested" in state.log
    assert sorted(os.listdir(tmp_path)) == ["core", "hook"]
    assert len(os.listdir(slices)) == SHAPE[0]


def test_a_child_that_ignores_the_cancel_is_terminated(tmp_path, slices):
    env = child_hook(tmp_path, IGNORES_CANCEL)
    output = tmp_path / "core.ome.zarr"
    job = BackgroundConversion(slices, output, workers=1, env=env)
    job.cancel_grace_seconds = 0.5
    with job:
        job.cancel()
        state = job.wait(TIMEOUT)
    assert state.status == "cancelled", state.log
    assert "terminated" in state.error and "resume" in state.error
    if output.exists():  # what it had started stays unfinished: never opened as complete
        with pytest.raises(IncompleteStoreError):
            bigvolume.open_image(output)
    assert len(os.listdir(slices)) == SHAPE[0]


def test_a_crashing_child_fails_with_its_exit_code_and_error(tmp_path, slices):
    env = child_hook(tmp_path, CRASHES)
    state = BackgroundConversion(slices, tmp_path / "core.ome.zarr", workers=1, env=env).start().wait(TIMEOUT)
    assert state.status == "failed"
    assert "exit code 1" in state.error and "simulated crash in the writer" in state.error
    assert any("Traceback" in line for line in state.log)


def test_a_wrong_input_path_fails_naming_it(tmp_path):
    missing = tmp_path / "no-such-scan"
    state = BackgroundConversion(missing, tmp_path / "out.ome.zarr", workers=1).start().wait(TIMEOUT)
    assert state.status == "failed" and str(missing) in state.error
    assert not (tmp_path / "out.ome.zarr").exists()


def test_an_existing_output_is_refused_and_untouched(tmp_path, slices):
    output = tmp_path / "core.ome.zarr"
    output.mkdir()
    (output / "notes.txt").write_text("the user's")
    state = BackgroundConversion(slices, output, workers=1).start().wait(TIMEOUT)
    assert state.status == "failed" and "already exists" in state.error and str(output) in state.error
    assert os.listdir(output) == ["notes.txt"] and (output / "notes.txt").read_text() == "the user's"


def test_a_python_that_cannot_start_fails():
    state = BackgroundConversion("in", "out.ome.zarr", python="/no/such/python").start().wait(TIMEOUT)
    assert state.status == "failed" and "/no/such/python" in state.error


def test_options_become_command_line_flags():
    job = BackgroundConversion("-scan.raw", "out.ome.zarr", spacing=(0.5, 0.5, 2), unit="micrometer", format="raw",
                               workers=2, resume=True, reader_options={"size": (4, 5, 6), "dtype": "uint8",
                                                                       "pattern": None}, python="py")
    assert job.command == ["py", "-m", "bigvolume", "convert", "--progress-format", "json", "--spacing", "0.5", "0.5",
                           "2.0", "--unit", "micrometer", "--format", "raw", "--workers", "2", "--resume",
                           "--raw-size", "4", "5", "6", "--raw-dtype", "uint8", "--", "-scan.raw", "out.ome.zarr"]
    with pytest.raises(ValueError, match="unknown reader option 'colour'"):
        BackgroundConversion("a", "b", reader_options={"colour": 1})
    state = job.poll()
    assert isinstance(state, ConversionState) and state.status == "starting" and state.eta_seconds is None


def test_cancel_before_start():
    job = BackgroundConversion("in", "out.ome.zarr")
    job.cancel()
    assert job.wait().status == "cancelled"
    with pytest.raises(RuntimeError):
        job.start()


def test_rate_and_eta_exclude_work_done_before_the_start():
    assert rate_and_eta(60, 100, 20, 8.0) == (5.0, 8.0)
    assert rate_and_eta(20, 100, 20, 8.0) == (None, None)


def run_json(args):
    """The command line with --progress-format json; stdin stays open (its end would cancel) until stdout ends."""
    process = subprocess.Popen([sys.executable, "-m", "bigvolume", "convert", *args, "--progress-format", "json"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out = process.stdout.read()
    process.stdin.close()
    err = process.stderr.read()
    return process.wait(TIMEOUT), [json.loads(line) for line in out.splitlines()], err


def test_command_line_json_events(tmp_path, slices):
    output = str(tmp_path / "core.ome.zarr")
    code, events, err = run_json([str(slices), output, "--workers", "1"])
    assert code == 0, err
    kinds = [e["event"] for e in events]
    assert kinds[:2] == ["start", "opened"] and kinds[-1] == "done" and set(kinds[2:-1]) == {"progress"}
    assert events[1]["shape"] == list(SHAPE) and "ImageJ spacing" in events[1]["report"]
    progress = [e for e in events if e["event"] == "progress"]
    assert [e["done"] for e in progress] == sorted(e["done"] for e in progress)
    assert progress[-1]["done"] == progress[-1]["total"] and progress[-1]["bytes_per_unit"] == 96 * 96 * 2
    assert events[-1]["status"] == "converted" and events[-1]["output"] == output
    assert events[-1]["output_bytes"] > 0 and events[-1]["seconds"] >= 0

    code, events, err = run_json([str(slices), output, "--workers", "1"])  # exists now
    assert code == 2 and events[-1]["event"] == "error" and "already exists" in events[-1]["message"]
    assert err.startswith("bigvolume: error: ")


def test_command_line_cancels_when_its_stdin_closes(tmp_path, slices):
    """The parent dying closes the child's stdin: the child cancels and removes what it created."""
    env = child_hook(tmp_path, HELD_UNTIL_CANCELLED)
    env["PYTHONPATH"] += os.pathsep + os.path.dirname(os.path.dirname(bigvolume.__file__))
    result = subprocess.run([sys.executable, "-m", "bigvolume", "convert", str(slices), str(tmp_path / "c.ome.zarr"),
                             "--workers", "1", "--progress-format", "json"],
                            input="", capture_output=True, text=True, env=env, timeout=TIMEOUT)
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert result.returncode == 1 and events[-1]["event"] == "done" and events[-1]["status"] == "cancelled"
    assert sorted(os.listdir(tmp_path)) == ["core", "hook"]
