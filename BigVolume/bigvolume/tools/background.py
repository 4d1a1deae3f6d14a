"""Convert in a child process and follow it without blocking: for a GUI such as Slicer's module panel.

Why a child process and not a thread or a multiprocessing pool of the GUI's process: inside Slicer,
multiprocessing's spawn hangs (`sys.executable` is the PythonSlicer launcher, Slicer issue #7445), and
a conversion thread would compete with the GUI for the GIL. So the child is the command line itself,
`<python> -m bigvolume convert ... --progress-format json` (in Slicer, `sys.executable` is the right
interpreter to launch); daemon threads read its events, and `poll()` returns a snapshot at any time.

    job = BackgroundConversion("scans/core_A", "core_A.ome.zarr", spacing=(20, 20, 20), unit="micrometer")
    job.start()
    ...                                   # on a GUI timer:
    state = job.poll()                    # status, fraction, mb_per_s, eta_seconds, report, error, log
    job.cancel()                          # the child removes only what it created
    state = job.wait()

Cancelling writes "cancel" to the child's stdin; the child stops at its next slab and removes what it
created. If it has not ended `cancel_grace_seconds` later, it is terminated (with its worker processes),
which can leave an unfinished output that `resume` continues; the state says so. If the parent dies,
the child's stdin closes and the child cancels itself.
"""

import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field, replace

from .progress import rate_and_eta

STATUSES = ("starting", "running", "converted", "already complete", "failed", "cancelled")
FINAL_STATUSES = ("converted", "already complete", "failed", "cancelled")

# reader_options (as convert() takes them) -> the command line's flags
_READER_FLAGS = {"pattern": "--pattern", "channel": "--channel", "time": "--time", "level": "--level",
                 "size": "--raw-size", "dtype": "--raw-dtype", "byte_order": "--raw-byte-order",
                 "header_bytes": "--raw-header"}


@dataclass
class ConversionState:
    """A snapshot of a background conversion; `poll()` returns a new one each time."""

    status: str = "starting"  # one of STATUSES
    done: int = 0  # level-0 planes written (coarser levels counted in level-0 planes of work)
    total: int = 0
    fraction: float = 0.0
    mb_per_s: float = None
    eta_seconds: float = None  # None while unknown
    elapsed_seconds: float = 0.0
    report: str = ""  # what the reader found, assumed and what was overridden
    error: str = None  # why it failed, or what a cancel left behind
    output: str = None
    output_bytes: int = 0
    log: list = field(default_factory=list)  # text lines: the report, messages of the child, cancel and exit

    @property
    def finished(self):
        return self.status in FINAL_STATUSES

    @property
    def ok(self):
        return self.status in ("converted", "already complete")


def _package_parent():
    """The folder that holds the `bigvolume` package: the child imports it from there, installed or not."""
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class BackgroundConversion:
    """`bigvolume convert INPUT OUTPUT` in a child process, followed by daemon threads.

    Options are those of `convert()`; `python` is the interpreter to run (default `sys.executable`);
    `env` the child's environment (default this process's), with the package's folder put first on
    PYTHONPATH. If OUTPUT is an existing plain folder, the input is converted into it as
    <name>.ome.zarr, as on the command line; `state.output` then names the store written.
    """

    cancel_grace_seconds = 30.0  # a cancelled child still removes its partial output, which takes a while
    log_lines = 2000

    def __init__(self, input_path, output, *, spacing=None, unit=None, format=None, workers=None, resume=False,
                 overwrite=False, reader_options=None, python=None, env=None):
        self.input_path = os.fspath(input_path)
        self.output = os.fspath(output)
        self.python = python or sys.executable
        self.env = env
        self.command = [self.python, "-m", "bigvolume", "convert", "--progress-format", "json"]
        self.command += self._options(spacing, unit, format, workers, resume, overwrite, reader_options)
        self.command += ["--", self.input_path, self.output]  # "--": paths starting with "-" are not options

        self._lock = threading.Lock()
        self._ended = threading.Event()
        self._state = ConversionState(output=self.output)
        self._process = None
        self._started_at = None
        self._ended_at = None
        self._first_progress = None  # (time, done): the rate counts work from here, as ProgressBar does
        self._last_progress_at = None
        self._bytes_per_unit = 0
        self._result_event = None  # the child's "done" or "error" event
        self._stderr_tail = []
        self._cancel_requested = False
        self._terminated = False

    @staticmethod
    def _options(spacing, unit, format, workers, resume, overwrite, reader_options):
        options = []
        if spacing is not None:
            spacing = [float(v) for v in spacing]
            if len(spacing) != 3:
                raise ValueError(f"spacing takes 3 numbers (x, y, z), not {len(spacing)}")
            options += ["--spacing"] + [repr(v) for v in spacing]
        if unit:
            options += ["--unit", str(unit)]
        if format:
            options += ["--format", str(format)]
        if workers is not None:
            options += ["--workers", str(int(workers))]
        if resume:
            options.append("--resume")
        if overwrite:
            options.append("--overwrite")
        for key, value in (reader_options or {}).items():
            if key not in _READER_FLAGS:
                raise ValueError(f"unknown reader option {key!r}; known: {', '.join(_READER_FLAGS)}")
            if value is None:
                continue
            values = [str(v) for v in value] if key == "size" else [str(value)]
            options += [_READER_FLAGS[key]] + values
        return options

    # -- running ------------------------------------------------------------------------------------
    def start(self):
        """Launch the child and return self at once; a launch that fails ends in status "failed"."""
        if self._started_at is not None or self._state.finished:
            raise RuntimeError("this conversion was already started or cancelled; make a new BackgroundConversion")
        env = dict(os.environ if self.env is None else self.env)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_package_parent(), env.get("PYTHONPATH")) if p)
        env.setdefault("PYTHONIOENCODING", "utf-8")  # stderr may carry non-ASCII paths
        if os.name == "nt":  # no console window pops up; the child gets its own group, as on POSIX
            platform = {"creationflags": subprocess.CREATE_NO_WINDOW | subprocess.CREATE_NEW_PROCESS_GROUP}
        else:  # its own process group: terminating it reaches its worker processes too
            platform = {"start_new_session": True}
        self._started_at = time.monotonic()
        self._log("$ " + (subprocess.list2cmdline(self.command) if os.name == "nt" else shlex.join(self.command)))
        try:
            self._process = subprocess.Popen(self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                             stderr=subprocess.PIPE, env=env, **platform)
        except OSError as error:
            self._end(status="failed", error=f"cannot start the conversion process ({self.python}): {error}")
            return self
        threading.Thread(target=self._follow, name="bigvolume-background", daemon=True).start()
        return self

    def poll(self):
        """A snapshot (ConversionState) of where the conversion is; never blocks."""
        with self._lock:
            now = self._ended_at or time.monotonic()
            state = replace(self._state, log=list(self._state.log))
            if self._started_at is not None:
                state.elapsed_seconds = now - self._started_at
            if state.total:
                state.fraction = min(1.0, state.done / state.total)
            if self._first_progress is not None:
                # Measured between progress events (not up to now): the rate holds still between events
                # and after the end, and the ETA counts down from the last estimate.
                since, first = self._first_progress
                rate, eta = rate_and_eta(state.done, state.total, first, self._last_progress_at - since)
                state.mb_per_s = rate * self._bytes_per_unit / 1e6 if rate is not None else None
                if not state.finished and eta is not None:
                    state.eta_seconds = max(0.0, eta - (now - self._last_progress_at))
            return state

    def cancel(self):
        """Ask the child to stop (it removes only what it created); terminate it if it has not ended in time."""
        with self._lock:
            if self._state.finished or self._cancel_requested:
                return
            self._cancel_requested = True
            process = self._process
        if process is None:  # never started: nothing ran, nothing to remove
            self._end(status="cancelled", error="cancelled before it started")
            return
        self._log("cancel requested")
        try:
            process.stdin.write(b"cancel\n")
            process.stdin.flush()
        except (OSError, ValueError):  # the child has already ended
            pass
        threading.Thread(target=self._terminate_after_grace, name="bigvolume-cancel", daemon=True).start()

    def wait(self, timeout=None):
        """Wait until the conversion ends (or `timeout` seconds) and return the state."""
        if self._started_at is not None:
            self._ended.wait(timeout)
        return self.poll()

    def __enter__(self):
        if self._started_at is None:
            self.start()
        return self

    def __exit__(self, *exc):
        if not self.poll().finished:
            self.cancel()
            self.wait()
        return False

    # -- following the child --------------------------------------------------------------------------
    def _follow(self):
        process = self._process
        readers = [threading.Thread(target=self._read_stdout, args=(process.stdout,), daemon=True),
                   threading.Thread(target=self._read_stderr, args=(process.stderr,), daemon=True)]
        for reader in readers:
            reader.start()
        returncode = process.wait()
        for reader in readers:
            reader.join(2.0)
        if any(reader.is_alive() for reader in readers):
            # The child's worker processes outlived it and hold its pipes open: end them.
            self._signal_group(process, signal.SIGTERM if os.name != "nt" else None)
            for reader in readers:
                reader.join(2.0)
        for pipe in (process.stdin, process.stdout, process.stderr):
            try:
                pipe.close()
            except OSError:
                pass
        self._end(returncode=returncode)

    def _read_stdout(self, pipe):
        for raw in iter(pipe.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            try:
                event = json.loads(line) if line.startswith("{") else None
            except ValueError:
                event = None
            if isinstance(event, dict) and "event" in event:
                self._on_event(event)
            elif line:
                self._log(line)

    def _read_stderr(self, pipe):
        for raw in iter(pipe.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if line:
                with self._lock:
                    self._stderr_tail = (self._stderr_tail + [line])[-20:]
                self._log(line)

    def _on_event(self, event):
        kind = event["event"]
        with self._lock:
            state = self._state
            if kind == "start":
                state.output = event.get("output") or state.output
            elif kind == "opened":
                state.status = "running"
                state.report = event.get("report") or ""
            elif kind == "progress":
                now = time.monotonic()
                state.done, state.total = int(event["done"]), int(event["total"])
                self._bytes_per_unit = int(event.get("bytes_per_unit") or 0)
                if self._first_progress is None:
                    self._first_progress = (now, state.done)
                self._last_progress_at = now
            elif kind in ("done", "error"):
                self._result_event = event
                if kind == "done":
                    state.output = event.get("output") or state.output
                    state.output_bytes = int(event.get("output_bytes") or 0)
        if kind == "opened" and event.get("report"):
            self._log(*event["report"].splitlines())
        elif kind == "done":
            detail = f": {event['error']}" if event.get("error") else ""
            self._log(f"{event.get('status')} in {event.get('seconds', 0):.1f} s{detail}")

    def _end(self, status=None, error=None, returncode=None):
        """Settle the final state: from the child's last event, or from how it ended."""
        with self._lock:
            state, event = self._state, self._result_event
            if status is None:
                status, error = self._outcome(event, returncode)
            state.status, state.error = status, error
            if state.ok:
                state.done = state.total = max(state.total, state.done)
                state.fraction, state.eta_seconds = 1.0, 0.0
            else:
                state.eta_seconds = None
            self._ended_at = time.monotonic()
        if error and (event is None or event["event"] != "done"):  # a "done" event was logged as it came
            self._log(f"{status}: {error}")
        self._ended.set()

    def _outcome(self, event, returncode):
        if event is not None and event["event"] == "done":
            status = event.get("status")
            if status not in FINAL_STATUSES:  # e.g. "interrupted"
                return "failed", event.get("error") or f"the conversion ended as {status!r}"
            return status, event.get("error")
        if event is not None:  # an "error" event: the command line's one-line message
            return "failed", event.get("message") or "the conversion failed"
        if self._terminated:
            return "cancelled", (f"the conversion process did not stop within {self.cancel_grace_seconds:g} s of "
                                 f"the cancel and was terminated; an unfinished output may remain at "
                                 f"{self._state.output}: continue it with resume, or delete it")
        if self._cancel_requested:
            return "cancelled", f"the conversion process ended with exit code {returncode} after the cancel"
        last = self._stderr_tail[-1] if self._stderr_tail else None
        return "failed", (f"the conversion process ended with exit code {returncode} without a result"
                          + (f": {last}" if last else ""))

    def _terminate_after_grace(self):
        if self._ended.wait(self.cancel_grace_seconds):
            return
        with self._lock:
            self._terminated = True
        self._log(f"not stopped {self.cancel_grace_seconds:g} s after the cancel: terminating the conversion process")
        self._signal_group(self._process, signal.SIGTERM if os.name != "nt" else None)
        if not self._ended.wait(5.0):
            self._signal_group(self._process, signal.SIGKILL if os.name != "nt" else None)

    @staticmethod
    def _signal_group(process, signum):
        """Signal the child's process group (it and its workers); on Windows, end the child itself."""
        try:
            if signum is None:
                process.kill()
            else:
                os.killpg(process.pid, signum)
        except (OSError, ProcessLookupError):  # already gone
            pass

    def _log(self, *lines):
        with self._lock:
            log = self._state.log
            log.extend(lines)
            del log[:-self.log_lines]


__all__ = ["BackgroundConversion", "ConversionState"]
