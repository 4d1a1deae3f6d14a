"""OME-NGFF multiscales metadata: parsing 0.1-0.5 and writing 0.4 and 0.5.

Parsing turns the JSON into plain dataclasses with each dataset's scale and
translation already composed with the multiscale-wide transformations, so the
rest of BigVolume never looks at NGFF JSON again.
"""

from dataclasses import dataclass

from ..errors import MetadataError
from .geometry import LPS_ORIENTATION
from .units import canonical_space_unit

NAMESPACE = "bigvolume"  # our own attributes, beside "ome" / "multiscales"
SPATIAL = ("z", "y", "x")
_SUPPORTED_VERSIONS = ("0.1", "0.2", "0.3", "0.4", "0.5")


@dataclass(frozen=True)
class Axis:
    name: str
    type: str
    unit: str = None
    orientation: str = None


@dataclass(frozen=True)
class Dataset:
    path: str
    scale: tuple  # per axis, in axes order
    translation: tuple  # per axis, in axes order


@dataclass(frozen=True)
class Multiscales:
    version: str
    axes: tuple
    datasets: tuple
    name: str = None
    extra: dict = None  # our namespaced attribute, if any

    def axis_index(self, name):
        for i, axis in enumerate(self.axes):
            if axis.name == name:
                return i
        return None


def _guess_axis_type(name):
    return {"t": "time", "c": "channel"}.get(name, "space" if name in SPATIAL else None)


def _parse_axes(raw, ndim, where):
    if raw is None:  # 0.1 / 0.2: always 5D tczyx
        names = ("t", "c", "z", "y", "x")[-ndim:] if ndim else ("t", "c", "z", "y", "x")
        return tuple(Axis(n, _guess_axis_type(n)) for n in names)
    axes = []
    for item in raw:
        if isinstance(item, str):  # 0.3
            axes.append(Axis(item, _guess_axis_type(item)))
            continue
        if not isinstance(item, dict) or "name" not in item:
            raise MetadataError(f"{where}: axis entry {item!r} has no name")
        orientation = item.get("orientation")
        if isinstance(orientation, dict):
            orientation = orientation.get("value") if orientation.get("type", "anatomical") == "anatomical" else None
        elif orientation is not None:
            orientation = str(orientation)
        axis_type = item.get("type") or _guess_axis_type(item["name"])
        unit = item.get("unit")
        if axis_type == "space" and unit is not None:
            unit = canonical_space_unit(unit)
        axes.append(Axis(item["name"], axis_type, unit, orientation))
    names = [a.name for a in axes]
    if len(set(names)) != len(names):
        raise MetadataError(f"{where}: axis names repeat: {names}")
    if not any(a.type == "space" for a in axes):
        raise MetadataError(f"{where}: no space axis among {names}")
    return tuple(axes)


def _compose(transforms, ndim, scale, translation, where):
    """Apply a list of NGFF coordinateTransformations after (scale, translation)."""
    for transform in transforms or ():
        kind = transform.get("type")
        if kind == "identity":
            continue
        if "path" in transform:
            raise MetadataError(f"{where}: transformations stored in binary files ({transform['path']!r}) are not supported")
        if kind == "scale":
            values = transform.get("scale")
            if values is None or len(values) != ndim:
                raise MetadataError(f"{where}: scale {values!r} does not have one value per axis ({ndim})")
            if any((not isinstance(v, (int, float))) or v <= 0 for v in values):
                raise MetadataError(f"{where}: scale {values!r} must be positive numbers")
            scale = tuple(s * v for s, v in zip(scale, values))
            translation = tuple(t * v for t, v in zip(translation, values))
        elif kind == "translation":
            values = transform.get("translation")
            if values is None or len(values) != ndim:
                raise MetadataError(f"{where}: translation {values!r} does not have one value per axis ({ndim})")
            translation = tuple(t + v for t, v in zip(translation, values))
        else:
            raise MetadataError(f"{where}: coordinate transformation of type {kind!r} is not supported")
    return scale, translation


def find_multiscales(attrs):
    """Return (version, first multiscales dict) from group attributes, or (None, None)."""
    ome = attrs.get("ome")
    if isinstance(ome, dict) and ome.get("multiscales"):
        multiscales = ome["multiscales"]
        return str(ome.get("version", multiscales[0].get("version", "0.5"))), multiscales[0]
    multiscales = attrs.get("multiscales")
    if multiscales:
        return str(multiscales[0].get("version", "0.4")), multiscales[0]
    return None, None


def parse_multiscales(attrs, ndim, where):
    """Parse the first multiscale image in `attrs`; `ndim` is the dimensionality of its arrays."""
    version, ms = find_multiscales(attrs)
    if ms is None:
        raise MetadataError(f"{where}: no OME-NGFF 'multiscales' metadata in the group attributes")
    if version not in _SUPPORTED_VERSIONS:
        raise MetadataError(f"{where}: OME-NGFF version {version!r} is not supported (supported: {', '.join(_SUPPORTED_VERSIONS)})")
    axes = _parse_axes(ms.get("axes"), ndim, where)
    n = len(axes)
    raw_datasets = ms.get("datasets")
    if not raw_datasets:
        raise MetadataError(f"{where}: multiscales metadata lists no datasets")
    datasets = []
    for i, item in enumerate(raw_datasets):
        if not isinstance(item, dict) or "path" not in item:
            raise MetadataError(f"{where}: dataset {i} has no path")
        scale, translation = _compose(item.get("coordinateTransformations"), n, (1.0,) * n, (0.0,) * n,
                                      f"{where}, dataset {item['path']!r}")
        scale, translation = _compose(ms.get("coordinateTransformations"), n, scale, translation,
                                      f"{where}, multiscales coordinateTransformations")
        datasets.append(Dataset(str(item["path"]), scale, translation))
    extra = attrs.get(NAMESPACE)
    return Multiscales(version, axes, tuple(datasets), ms.get("name"), extra if isinstance(extra, dict) else None)


def _axes_json(unit, with_orientation):
    axes = []
    for name in SPATIAL:
        axis = {"name": name, "type": "space", "unit": unit}
        if with_orientation:
            axis["orientation"] = {"type": "anatomical", "value": LPS_ORIENTATION[name]}
        axes.append(axis)
    return axes


def multiscales_attrs(version, unit, datasets, name=None, orientation=False):
    """Group attributes for a z, y, x multiscale image.

    `datasets` is a list of (path, scale_zyx, translation_zyx). `orientation`
    adds RFC-4 anatomical orientation (LPS) to the axes.
    """
    entry = {
        "axes": _axes_json(unit, orientation),
        "datasets": [
            {
                "path": path,
                "coordinateTransformations": [
                    {"type": "scale", "scale": [float(s) for s in scale]},
                    {"type": "translation", "translation": [float(t) for t in translation]},
                ],
            }
            for path, scale, translation in datasets
        ],
    }
    if name:
        entry["name"] = name
    if version == "0.5":
        return {"ome": {"version": "0.5", "multiscales": [entry]}}
    if version == "0.4":
        return {"multiscales": [{"version": "0.4", **entry}]}
    raise ValueError(f"can write OME-NGFF 0.4 or 0.5, not {version!r}")
