"""Convert inputs (TIFF, raw, OME-Zarr, NRRD, MetaImage, NIfTI, DICOM) into OME-Zarr pyramids, one or a batch.

`convert(input, output)` opens the input with its reader (`ingest.open_source`),
applies the user's geometry overrides, and writes the pyramid with
`write_pyramid`: resumable, cancellable, on all cores or a Dask cluster.
`convert_batch(inputs, folder)` converts many inputs into one folder, goes on
after a failure, and returns one result per input for `summary_table`.

Nothing the user had is deleted: an existing output is refused unless
`overwrite` (and even then only replaced once the new one is complete), a
cancelled conversion removes only what it created, and the output may not
be the input or lie inside an OME-Zarr input.
"""

import os
import time
from dataclasses import dataclass, field

from ..writing.cascade import WriteCancelled
from ..errors import BigVolumeError, InputError
from ..writing.execution import prestart
from ..ingest import open_source
from .naming import output_name
from ..writing.pyramid import DEFAULT_CHUNKS, DEFAULT_SHARD_CHUNKS, write_pyramid


@dataclass
class ConversionResult:
    input: str
    output: str
    status: str = "pending"  # converted, already complete, failed, cancelled, interrupted, not started
    error: str = None
    input_bytes: int = 0
    output_bytes: int = 0
    seconds: float = 0.0
    report: str = ""  # what the reader found, assumed and what was overridden
    stats: dict = field(default_factory=dict)

    @property
    def ok(self):
        return self.status in ("converted", "already complete")


def store_bytes(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files) \
        if os.path.isdir(path) else 0


def _check_paths(input_path, output):
    source, target = os.path.realpath(input_path), os.path.realpath(output)
    if target == source:
        raise InputError(f"{output}: the output is the input itself; choose another output")
    if os.path.isdir(source) and target.startswith(source + os.sep) and \
            any(os.path.exists(os.path.join(source, n)) for n in ("zarr.json", ".zgroup")):
        raise InputError(f"{output}: lies inside the input store {input_path}; choose an output outside it")


def _labels(source, labels):
    if labels is not None:
        return bool(labels)
    return bool(getattr(source, "labels", False))


def convert(input_path, output, *, format=None, reader_options=None, spacing=None, origin=None, direction=None,
            unit=None, labels=None, ngff_version="0.5", chunks=DEFAULT_CHUNKS, shard_chunks=DEFAULT_SHARD_CHUNKS,
            coarsest=None, resume=False, overwrite=False, workers=None, scheduler=None, progress=None, cancel=None,
            on_open=None, name=None):
    """Convert one input into the OME-Zarr image `output`; returns a ConversionResult (raises on failure).

    reader_options: options of the input's reader (pattern, channel, time, level, size, dtype, ...).
    spacing, origin (x, y, z, in `unit`), direction (3x3, columns), unit: override what the file says.
    labels: None = as the input says (e.g. an OME-Zarr label image), True = mode, False = filter.
    progress: called as progress(done, total, bytes_per_unit) while writing.
    on_open: called with the opened source before writing (to print what was found).
    """
    result = ConversionResult(os.fspath(input_path), os.fspath(output))
    start = time.perf_counter()
    _check_paths(input_path, output)
    if scheduler is None and workers != 1:
        prestart(workers)  # worker processes start while the input's headers are read
    source = open_source(input_path, format=format, spacing=spacing, origin=origin, direction=direction, unit=unit,
                         **(reader_options or {}))
    try:
        result.input_bytes = source.nbytes
        result.report = source.info.describe()
        if on_open is not None:
            on_open(source)
        info = source.info
        attributes = {"source": {"path": os.path.abspath(os.fspath(input_path)), "format": info.format,
                                 "found": {k: str(v) for k, v in info.found.items()},
                                 "assumed": list(info.assumed), "overridden": list(info.overridden)}}
        plane_bytes = source.nbytes // max(1, source.shape[0])
        stats = {}
        write_pyramid(source, output, labels=_labels(source, labels), ngff_version=ngff_version, chunks=chunks,
                      shard_chunks=shard_chunks, coarsest=coarsest, overwrite=overwrite, resume=resume,
                      cancel=cancel, workers=workers, scheduler=scheduler, stats=stats,
                      name=name or os.path.basename(os.path.normpath(os.fspath(input_path))), attributes=attributes,
                      progress=(lambda done, total: progress(done, total, plane_bytes)) if progress else None)
    finally:
        source.close()
    result.stats = stats
    result.status = "already complete" if stats.get("already_complete") else "converted"
    result.output_bytes = store_bytes(output)
    result.seconds = time.perf_counter() - start
    return result


def convert_batch(inputs, folder, *, on_start=None, on_done=None, cancel=None, **options):
    """Convert each input into `folder`/<name>.ome.zarr; failures are recorded and the batch goes on.

    on_start(index, count, input, output) and on_done(result) let a caller print as it goes.
    Ctrl-C (KeyboardInterrupt), or a callback's BrokenPipeError (the reader of what it prints has
    gone), stops the batch: the current output stays resumable and the remaining inputs are
    reported as not started, then the exception is raised again.
    """
    folder = os.fspath(folder)
    outputs = [os.path.join(folder, output_name(p)) for p in inputs]
    seen = {}
    for path, out in zip(inputs, outputs):
        if out in seen:
            raise InputError(f"{path} and {seen[out]} would both be written to {out}; convert them into separate folders")
        seen[out] = path
    os.makedirs(folder, exist_ok=True)
    results = [ConversionResult(os.fspath(p), o, status="not started") for p, o in zip(inputs, outputs)]
    for index, (path, out) in enumerate(zip(inputs, outputs)):
        if cancel is not None and (cancel.is_set() if hasattr(cancel, "is_set") else cancel()):
            break
        if on_start is not None:
            on_start(index, len(inputs), path, out)
        start = time.perf_counter()
        try:
            results[index] = convert(path, out, cancel=cancel, **options)
        except WriteCancelled as error:
            results[index].status, results[index].error = "cancelled", str(error)
        except (KeyboardInterrupt, BrokenPipeError):
            results[index].status = "interrupted"
            results[index].error = "interrupted; run again with --resume to continue"
            results[index].seconds = time.perf_counter() - start
            if on_done is not None:
                on_done(results[index])
            raise
        except (BigVolumeError, OSError, ValueError) as error:
            results[index].status, results[index].error = "failed", str(error)
        results[index].seconds = results[index].seconds or time.perf_counter() - start
        if on_done is not None:
            on_done(results[index])
        if results[index].status == "cancelled":
            break
    return results


def _size(n):
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000.0


def summary_table(results):
    """A plain-text table: input, status, sizes, time, throughput; then each failure's reason in full."""
    rows = [("input", "status", "input size", "output size", "time", "MB/s")]
    for r in results:
        rate = f"{r.input_bytes / 1e6 / r.seconds:.0f}" if r.status == "converted" and r.seconds > 0 else "-"
        rows.append((r.input, r.status, _size(r.input_bytes) if r.input_bytes else "-",
                     _size(r.output_bytes) if r.output_bytes else "-", f"{r.seconds:.1f} s", rate))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    ok = sum(r.ok for r in results)
    lines.append(f"{ok} of {len(results)} converted" + (f", {len(results) - ok} not" if ok < len(results) else ""))
    for r in results:
        if r.error:
            lines.append(f"{r.input}: {r.status}: {r.error}")
    return "\n".join(lines)


__all__ = ["ConversionResult", "convert", "convert_batch", "output_name", "summary_table"]
