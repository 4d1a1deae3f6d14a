"""Files that are replaced whole or not at all: write a temporary file beside the target, fsync, rename.

A reader (another thread, another process, or this one after a crash) sees
either the old file or the new one, never a torn one: `os.replace` is atomic
within a file system. `durable` also fsyncs the data before the rename, so the
new file survives a power cut once the call returns; the folder's entry is
made durable by `fsync_dir` (one call per folder after a batch of renames).
"""

import os
import threading

_serial = iter(range(1 << 62))
_serial_lock = threading.Lock()


def temporary_name(path):
    """A temporary file's name beside `path`, unique to this process and thread (and naming the process)."""
    with _serial_lock:
        n = next(_serial)
    return f"{path}.{os.getpid()}.{threading.get_ident()}.{n}.tmp"


def write_atomically(path, data, durable=True):
    """Replace `path` by `data` (bytes, or a list of bytes written one after another)."""
    temporary = temporary_name(path)
    try:
        with open(temporary, "wb") as handle:
            if isinstance(data, (list, tuple)):
                handle.writelines(data)
            else:
                handle.write(data)
            if durable:
                handle.flush()
                os.fdatasync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.remove(temporary)
        except FileNotFoundError:
            pass
        raise


def remove_stale_temporaries(folder):
    """Remove the temporaries that processes no longer running left in `folder` (killed mid-write); returns
    how many. A temporary of a live process (another writer at work) is left alone."""
    removed = 0
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return 0
    for name in names:
        parts = name.split(".")
        if not name.endswith(".tmp") or len(parts) < 5 or not parts[-4].isdigit():
            continue
        pid = int(parts[-4])
        if pid == os.getpid() or _running(pid):
            continue
        try:
            os.remove(os.path.join(folder, name))
            removed += 1
        except FileNotFoundError:
            pass
    return removed


def _running(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def fsync_file(path):
    """Make a file written without `durable` durable (after a batch of writes, before what depends on them)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(folder):
    """Make renames and removals in `folder` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
