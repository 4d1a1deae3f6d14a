"""What every benchmark shares: memory readings of this process and the JSON report."""

import json
import os
import platform
import subprocess
import sys
import time


def _status_mb(field):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb():
    """This process's peak resident memory (VmHWM; getrusage's ru_maxrss would include the parent's from before exec)."""
    return _status_mb("VmHWM")


def rss_mb():
    return _status_mb("VmRSS")


def write_report(path, benchmark, **fields):
    """Write {benchmark, date, machine, **fields} as JSON to `path` and say so."""
    report = {"benchmark": benchmark, "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
              **fields}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(report, f, indent=2)
    print(f"wrote {path}")
    return report


def run_measured(command):
    """Run `command`; return (seconds, peak RSS in MB of it and all its children sampled every 50 ms, stdout)."""
    import psutil

    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    root, peak = psutil.Process(process.pid), 0
    while process.poll() is None:
        total = 0
        try:
            for p in [root] + root.children(recursive=True):
                total += p.memory_info().rss
        except psutil.Error:
            pass
        peak = max(peak, total)
        time.sleep(0.05)
    seconds = time.perf_counter() - start
    out, err = process.communicate()
    if process.returncode != 0:
        raise RuntimeError((err.strip().splitlines() or ["failed"])[-1])
    return seconds, peak / 2**20, out


def run_child(script, arguments, what):
    """Run a benchmark's own measurement in a fresh process (`script` with `arguments`), so that its memory and
    caches are its own; the last line it prints is the JSON of its results, returned and printed here. A failure
    stops the benchmark with the child's error."""
    run = subprocess.run([sys.executable, script, *map(str, arguments)], capture_output=True, text=True)
    if run.returncode != 0:
        raise SystemExit(f"{what} failed:\n{run.stderr[-3000:]}")
    result = json.loads(run.stdout.strip().splitlines()[-1])
    print(json.dumps(result, indent=1), flush=True)
    return result


def frame_rate(frames):
    """Frames per second, median and 95th percentile frame time (ms) of a list of frame times in seconds."""
    import numpy as np

    frames = np.asarray(frames, dtype=float)
    return {"fps": float(len(frames) / frames.sum()), "frame_ms_median": float(np.median(frames) * 1e3),
            "frame_ms_p95": float(np.percentile(frames, 95) * 1e3)}
