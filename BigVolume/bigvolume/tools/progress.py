"""A progress line with rate and ETA: one updating line on a terminal, a line per tenth of the work in a log."""

import sys
import time


def clock(seconds):
    """Seconds as m:ss, or h:mm:ss from an hour on."""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def rate_and_eta(done, total, first, elapsed):
    """(units per second, seconds left) from the work done in `elapsed` seconds; None where not known yet.

    `first` is the work already done when the clock started (a resumed write): it is excluded, or a
    resumed write would look fast at first and its estimate would be far too short.
    """
    fresh = done - first
    if fresh <= 0:
        return None, None
    rate = fresh / elapsed if elapsed > 0 else None
    return rate, elapsed / fresh * (total - done)


class ProgressBar:
    """Call as bar(done, total) in any unit; `unit_bytes` turns units into bytes for the MB and MB/s figures.

    `timer` (seconds, like time.perf_counter) is there for tests.
    """

    MIN_RATE_SECONDS = 1.0  # rate and ETA from a shorter time are noise (a first slab done in a microsecond)

    def __init__(self, label, out=None, unit_bytes=None, width=24, timer=time.perf_counter):
        self.label = label
        self.out = out or sys.stdout
        self.unit_bytes = unit_bytes
        self.width = width
        self.timer = timer
        self.start = timer()
        self.interactive = hasattr(self.out, "isatty") and self.out.isatty()
        self.reported = -1
        self.first = None  # work already done when the bar started (a resumed write)

    def line(self, done, total):
        if self.first is None:
            self.first = done
        elapsed = self.timer() - self.start
        fraction = done / total if total else 1.0
        rate, eta = rate_and_eta(done, total, self.first, elapsed) if elapsed >= self.MIN_RATE_SECONDS else (None, None)
        filled = int(self.width * fraction)
        # Rounded down: 99.6% shows 99%, so that 100% means done and is printed once.
        text = f"  {self.label} [{'#' * filled}{'.' * (self.width - filled)}] {int(100 * fraction):3d}%"
        if self.unit_bytes:
            text += f" {done * self.unit_bytes / 1e6:,.0f}/{total * self.unit_bytes / 1e6:,.0f} MB"
            if rate is not None:
                text += f" {rate * self.unit_bytes / 1e6:,.0f} MB/s"
        text += f" {clock(elapsed)} elapsed"
        if done < total:
            text += f", ETA {clock(eta) if eta is not None else '?'}"
        return text

    def __call__(self, done, total):
        tenth = 10 * done // total if total else 10
        if tenth == self.reported and (tenth == 10 or not self.interactive):  # a writer may report the end twice
            return
        self.reported = tenth
        text = self.line(done, total)
        if self.interactive:
            self.out.write("\r" + text + ("\n" if done >= total else ""))
        else:
            self.out.write(text + "\n")
        self.out.flush()
