"""A progress line with rate and ETA: one updating line on a terminal, a line per tenth of the work in a log."""

import sys
import time


def _clock(seconds):
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class ProgressBar:
    """Call as bar(done, total) in any unit; `unit_bytes` turns units into bytes for the MB and MB/s figures."""

    def __init__(self, label, out=None, unit_bytes=None, width=24):
        self.label = label
        self.out = out or sys.stdout
        self.unit_bytes = unit_bytes
        self.width = width
        self.start = time.perf_counter()
        self.interactive = hasattr(self.out, "isatty") and self.out.isatty()
        self.reported = -1
        self.first = None  # work already done when the bar started (a resumed write)

    def line(self, done, total):
        if self.first is None:
            self.first = done
        elapsed = time.perf_counter() - self.start
        fraction = done / total if total else 1.0
        fresh = done - self.first
        eta = elapsed / fresh * (total - done) if fresh > 0 else None
        filled = int(self.width * fraction)
        text = f"  {self.label} [{'#' * filled}{'.' * (self.width - filled)}] {100 * fraction:3.0f}%"
        if self.unit_bytes:
            text += f" {done * self.unit_bytes / 1e6:,.0f}/{total * self.unit_bytes / 1e6:,.0f} MB"
            if elapsed > 0 and fresh > 0:
                text += f" {fresh * self.unit_bytes / 1e6 / elapsed:,.0f} MB/s"
        text += f" {_clock(elapsed)} elapsed, ETA {_clock(eta) if eta is not None else '?'}"
        return text

    def __call__(self, done, total):
        tenth = 10 * done // total if total else 10
        if not self.interactive and tenth == self.reported:
            return
        self.reported = tenth
        text = self.line(done, total)
        if self.interactive:
            self.out.write("\r" + text + ("\n" if done >= total else ""))
        else:
            self.out.write(text + "\n")
        self.out.flush()
