"""`bigvolume validate STORE`: is this an OME-NGFF multiscale image (0.4 or 0.5), and is it complete?

Conformance, from the NGFF 0.4/0.5 specifications: the version and Zarr
format agree; 2-5 axes with unique names, types time/channel/space, time
first, then channel, then 2-3 space axes; every dataset path is an array with
one dimension per axis; each dataset (and the multiscale, if it has any) has
one scale (positive, one value per axis) optionally followed by one
translation; levels go from finest to coarsest; Zarr v3 dimension_names match
the axes; the optional omero channels have a color (6 hexadecimal digits)
and a window (min, max, start, end). A unit that is not UDUNITS-2 for its
axis type is a warning (the spec says SHOULD), as is conformant metadata that
BigVolume cannot open.
Other versions are checked only for their datasets, arrays and completeness,
and are at best "valid as far as checked".

Completeness: the store is not marked as being written by BigVolume and has
no write journal; every level's arrays exist. `deep=True` also decodes every
stored chunk or shard (checksums included) and names the first that fails.
"""

import json
import os
import re
from dataclasses import dataclass, field

import numpy as np

from ..errors import BigVolumeError, MetadataError
from ..writing.write_journal import JOURNAL_NAME
from .ngff import NAMESPACE, find_multiscales
from .units import canonical_space_unit

_FULLY_CHECKED = ("0.4", "0.5")
_TIME_UNITS = {"attosecond", "centisecond", "day", "decisecond", "exasecond", "femtosecond", "gigasecond",
               "hectosecond", "hour", "kilosecond", "megasecond", "microsecond", "millisecond", "minute",
               "nanosecond", "petasecond", "picosecond", "second", "terasecond", "yoctosecond", "yottasecond",
               "zeptosecond", "zettasecond"}


@dataclass
class Report:
    store: str
    errors: list = field(default_factory=list)
    warnings: list = field(default_factory=list)
    facts: dict = field(default_factory=dict)
    partial: bool = False  # the version's rules are not all checked, so never a plain "valid"

    @property
    def valid(self):
        return not self.errors

    def text(self):
        verdict = "valid as far as checked" if self.partial else "valid"
        head = f"{self.store}: " + (verdict if self.valid else f"NOT valid ({len(self.errors)} problem"
                                                              f"{'s' if len(self.errors) != 1 else ''})")
        if self.facts:
            head += " - " + ", ".join(f"{k} {v}" for k, v in self.facts.items())
        return "\n".join([head] + [f"  error: {e}" for e in self.errors] + [f"  warning: {w}" for w in self.warnings])


def _root_attrs(path, report):
    v3 = os.path.join(path, "zarr.json")
    if os.path.exists(v3):
        meta = json.load(open(v3))
        if meta.get("node_type") != "group":
            report.errors.append("zarr.json describes an array, not a group; validate the image folder")
        return 3, meta.get("attributes", {})
    if os.path.exists(os.path.join(path, ".zgroup")):
        attrs_path = os.path.join(path, ".zattrs")
        return 2, json.load(open(attrs_path)) if os.path.exists(attrs_path) else {}
    report.errors.append("not a Zarr group (no zarr.json or .zgroup)")
    return None, {}


def _check_axes(axes, report):
    """The axis names, or None if the axes are rejected (the number of axes is then unknown)."""
    if not isinstance(axes, list) or not 2 <= len(axes) <= 5:
        report.errors.append(f"axes must be a list of 2 to 5 entries, got {axes!r}")
        return None
    names, kinds = [], []
    for axis in axes:
        if not isinstance(axis, dict) or "name" not in axis:
            report.errors.append(f"axis {axis!r} is not an object with a name")
            return None
        names.append(axis["name"])
        kind = axis.get("type")
        kinds.append(kind)
        unit = axis.get("unit")
        # The spec says a unit SHOULD be the UDUNITS-2 name of a length (space) or time: warnings, not errors.
        if kind == "space" and unit is not None:
            try:
                canonical = canonical_space_unit(unit)
                if canonical != unit:
                    report.warnings.append(f"axis {axis['name']!r}: unit {unit!r} is not spelled as UDUNITS-2 "
                                           f"({canonical!r})")
            except BigVolumeError:
                report.warnings.append(f"axis {axis['name']!r}: {unit!r} is not a UDUNITS-2 length unit")
        if kind == "time" and unit is not None and unit not in _TIME_UNITS:
            report.warnings.append(f"axis {axis['name']!r}: {unit!r} is not a UDUNITS-2 time unit")
    if len(set(names)) != len(names):
        report.errors.append(f"axis names repeat: {names}")
    space = [i for i, k in enumerate(kinds) if k == "space"]
    if not 2 <= len(space) <= 3:
        report.errors.append(f"there must be 2 or 3 space axes, found {len(space)} ({names})")
    if space and space != list(range(len(kinds) - len(space), len(kinds))):
        report.errors.append(f"space axes must come last: {names}")
    if kinds.count("time") > 1 or ("time" in kinds and kinds.index("time") != 0):
        report.errors.append(f"a time axis must be the first and only one: {names}")
    if kinds.count("channel") > 1:
        report.errors.append(f"at most one channel axis: {names}")
    return names


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)  # JSON true is no number


def _check_transforms(where, transforms, ndim, report):
    """The scale, or None if rejected; `ndim` None (axes rejected) leaves the lengths unchecked."""
    if not isinstance(transforms, list) or not transforms or not all(isinstance(t, dict) for t in transforms):
        report.errors.append(f"{where}: coordinateTransformations must be a non-empty list of objects")
        return None
    kinds = [t.get("type") for t in transforms]
    if kinds not in (["scale"], ["scale", "translation"]):
        report.errors.append(f"{where}: coordinateTransformations must be one scale, optionally followed by one "
                             f"translation; got {kinds}")
        return None
    count = "" if ndim is None else f"{ndim} "
    scale = transforms[0].get("scale")
    if (not isinstance(scale, list) or (ndim is not None and len(scale) != ndim)
            or any(not _is_number(v) or v <= 0 for v in scale)):
        report.errors.append(f"{where}: scale {scale!r} must be {count}positive numbers")
        return None
    if len(transforms) == 2:
        translation = transforms[1].get("translation")
        if (not isinstance(translation, list) or (ndim is not None and len(translation) != ndim)
                or not all(_is_number(v) for v in translation)):
            report.errors.append(f"{where}: translation {translation!r} must be {count}numbers")
    return scale


def _check_omero(omero, version, report):
    """The transitional "omero" rendering metadata.

    The 0.4 and 0.5 schemas (and the 0.5 text) require a list of channels,
    each with a string color and a window of numbers min, max, start and end,
    a label being a string and active a boolean: errors. Only 0.5 requires the
    color to be 6 hexadecimal digits (0.4 just shows it so in its example),
    so in 0.4 a string of another form is a warning.
    """
    if not isinstance(omero, dict) or not isinstance(omero.get("channels"), list):
        report.errors.append("omero metadata must be an object with a 'channels' list")
        return
    for i, channel in enumerate(omero["channels"]):
        where = f"omero channel {i}"
        if not isinstance(channel, dict):
            report.errors.append(f"{where} is not an object")
            continue
        color = channel.get("color")
        if not (isinstance(color, str) and re.fullmatch("[0-9A-Fa-f]{6}", color)):
            problems = report.errors if version == "0.5" or not isinstance(color, str) else report.warnings
            problems.append(f"{where}: color {color!r} must be 6 hexadecimal digits (RRGGBB)")
        window = channel.get("window")
        if not isinstance(window, dict) or not all(_is_number(window.get(k)) for k in ("min", "max", "start", "end")):
            report.errors.append(f"{where}: window {window!r} must be an object with numbers min, max, start and end")
        if not isinstance(channel.get("label", ""), str):
            report.errors.append(f"{where}: label {channel['label']!r} must be a string")
        if not isinstance(channel.get("active", True), bool):
            report.errors.append(f"{where}: active {channel['active']!r} must be true or false")


def _array_meta(path):
    for name in ("zarr.json", ".zarray"):
        file = os.path.join(path, name)
        if os.path.exists(file):
            meta = json.load(open(file))
            if name == "zarr.json" and meta.get("node_type") != "array":
                return None
            return meta
    return None


def _deep_check(store, path, report):
    import zarr

    array = zarr.open_array(os.path.join(store, path), mode="r")
    grid = getattr(array, "shards", None) or array.chunks
    counts = [-(-n // g) for n, g in zip(array.shape, grid)]
    for index in np.ndindex(*counts):
        selection = tuple(slice(i * g, min((i + 1) * g, n)) for i, g, n in zip(index, grid, array.shape))
        try:
            array[selection]
        except Exception as error:
            key = array.metadata.encode_chunk_key(index)
            report.errors.append(f"level {path}: chunk {path}/{key} cannot be decoded ({type(error).__name__}: {error})")
            return
    # What the deep check went through: every chunk of the level's whole array (chunks never written hold the
    # fill value and are read without decoding anything).
    report.facts["chunks read"] = report.facts.get("chunks read", 0) + array.nchunks


def validate(store, deep=False):
    """Check a local OME-Zarr image; returns a Report (report.valid, report.errors, report.text())."""
    store = os.fspath(store)
    report = Report(store)
    if not os.path.isdir(store):
        report.errors.append("no such folder")
        return report
    zarr_format, attrs = _root_attrs(store, report)
    if zarr_format is None:
        return report
    write = ((attrs.get(NAMESPACE) or {}).get("write") or {})
    if write.get("state") not in (None, "complete"):
        report.errors.append(f"incomplete: the write did not finish (state {write.get('state')!r}); "
                             f"resume it (bigvolume convert ... --resume) or write it again")
    if os.path.exists(os.path.join(store, JOURNAL_NAME)):
        report.errors.append(f"incomplete: a write journal ({JOURNAL_NAME}) is still present")
    version, multiscales = find_multiscales(attrs)
    if multiscales is None:
        report.errors.append("no OME-NGFF multiscales metadata in the group attributes")
        return report
    report.facts["OME-NGFF"] = version
    if version == "0.5" and ("ome" not in attrs or zarr_format != 3):
        report.errors.append("OME-NGFF 0.5 must be stored under the 'ome' attribute of a Zarr v3 group")
    if version == "0.4" and zarr_format != 2:
        report.errors.append("OME-NGFF 0.4 must be stored in a Zarr v2 group")
    # The axes and coordinateTransformations rules checked here are those of 0.4 and 0.5.
    report.partial = version not in _FULLY_CHECKED
    if report.partial:
        report.warnings.append(f"NGFF {version} is checked only for its datasets, their arrays and completeness, "
                               f"not against the rest of its specification ({' and '.join(_FULLY_CHECKED)} are "
                               "checked in full)")
    names = None if report.partial else _check_axes(multiscales.get("axes"), report)
    ndim = None if names is None else len(names)
    if not report.partial and "coordinateTransformations" in multiscales:  # optional; the same rules as a dataset's
        _check_transforms("multiscales", multiscales["coordinateTransformations"], ndim, report)
    namespace = attrs["ome"] if isinstance(attrs.get("ome"), dict) else attrs  # where 0.5 and 0.4 keep "omero"
    if not report.partial and "omero" in namespace:
        _check_omero(namespace["omero"], version, report)
    datasets = multiscales.get("datasets")
    if not isinstance(datasets, list) or not datasets:
        report.errors.append("multiscales lists no datasets")
        return report
    report.facts["levels"] = len(datasets)
    previous_scale, previous_shape, dtype = None, None, None
    for i, dataset in enumerate(datasets):
        path = dataset.get("path") if isinstance(dataset, dict) else None
        if path is None:
            report.errors.append(f"dataset {i} has no 'path'")
            continue
        where = f"dataset {i} ({path!r})"
        if not isinstance(path, str):
            report.errors.append(f"{where}: path must be a string, got {path!r}")
        path = str(path)  # as readers take it, to check the rest of the level
        transforms = dataset.get("coordinateTransformations")
        scale = None if report.partial else _check_transforms(where, transforms, ndim, report)
        meta = _array_meta(os.path.join(store, path))
        if meta is None:
            report.errors.append(f"{where}: no array at this path (missing level)")
            continue
        shape = meta["shape"]
        if ndim is not None and len(shape) != ndim:
            report.errors.append(f"{where}: array has {len(shape)} dimensions, the axes name {ndim}")
            continue
        if previous_shape is not None and len(shape) != len(previous_shape):  # all that is left if axes are rejected
            report.errors.append(f"{where}: array has {len(shape)} dimensions, the level before {len(previous_shape)}")
            continue
        level_dtype = meta.get("data_type", meta.get("dtype"))
        if dtype is not None and level_dtype != dtype:
            report.errors.append(f"{where}: data type {level_dtype} differs from level 0's {dtype}")
        dtype = dtype or level_dtype
        if zarr_format == 3 and names is not None and meta.get("dimension_names") not in (None, names):
            report.errors.append(f"{where}: dimension_names {meta.get('dimension_names')} differ from the axes {names}")
        if scale is not None and previous_scale is not None and any(s < p for s, p in zip(scale, previous_scale)):
            report.errors.append(f"{where}: scale {scale} is finer than the level before ({previous_scale}); "
                                 "levels must go from finest to coarsest")
        if previous_shape is not None and any(s > p for s, p in zip(shape, previous_shape)):
            report.errors.append(f"{where}: shape {shape} is larger than the level before ({previous_shape})")
        previous_scale, previous_shape = scale or previous_scale, shape
        if deep:
            _deep_check(store, path, report)
    report.facts["data type"] = dtype
    if not report.errors:
        from .multiscale import open_image

        try:
            open_image(store)
        except MetadataError as error:  # conformant metadata BigVolume's reader refuses, e.g. a space axis in seconds
            report.warnings.append(f"BigVolume cannot open it: {error}")
        except BigVolumeError as error:
            report.errors.append(str(error))
    return report


__all__ = ["Report", "validate"]
