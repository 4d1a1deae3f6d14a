"""What every benchmark shares: memory readings of this process and the JSON report."""

import json
import os
import platform
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
