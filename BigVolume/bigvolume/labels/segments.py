"""Segments: what each label value means, in OME-NGFF `image-label` metadata and in Slicer's conventions.

One `Segment` per label value: its Slicer segment ID, name, colour (RGB,
0..1), tags (Slicer stores terminology there: `TerminologyEntry`) and
whether Slicer generated its name and colour. NGFF 0.4/0.5 keeps colours in
`image-label.colors` and everything else in `image-label.properties` (one
entry per label value, free keys); Slicer's `.seg.nrrd` keeps the same facts
as `SegmentN_ID`, `_Name`, `_Color`, `_LabelValue`, `_Layer`, `_Tags`, ...
key/value pairs. Both are written from one list, so an export to `.seg.nrrd`
and a read by napari or ome-zarr-py each see every segment.
"""

from dataclasses import dataclass, field

from ..errors import MetadataError

# Slicer's default segment colours (its GenericAnatomyColors first entries), used in order for new segments.
DEFAULT_COLORS = ((0.5, 0.68, 0.5), (0.95, 0.84, 0.57), (0.69, 0.48, 0.39), (0.85, 0.4, 0.34),
                  (0.56, 0.36, 0.58), (0.44, 0.58, 0.85), (0.87, 0.71, 0.17), (0.58, 0.79, 0.55))


@dataclass
class Segment:
    value: int  # the label value in the pyramid (never 0: 0 is background)
    name: str
    color: tuple = (0.5, 0.68, 0.5)  # r, g, b in 0..1
    id: str = ""  # Slicer's segment ID; the name when empty
    tags: dict = field(default_factory=dict)  # Slicer tags, e.g. {"TerminologyEntry": "Segmentation category and type - ..."}
    name_auto_generated: bool = False
    color_auto_generated: bool = False

    def __post_init__(self):
        self.value = int(self.value)
        if self.value <= 0:
            raise ValueError(f"segment {self.name!r}: label value {self.value} must be 1 or more (0 is background)")
        self.color = tuple(float(c) for c in self.color)
        if len(self.color) != 3 or not all(0.0 <= c <= 1.0 for c in self.color):
            raise ValueError(f"segment {self.name!r}: colour {self.color} must be three numbers in 0..1")
        self.id = self.id or self.name


def new_segment(segments, name=None, color=None, **extra):
    """A segment with the next free label value, and Slicer-style name and colour where none are given."""
    value = max((s.value for s in segments), default=0) + 1
    return Segment(value=value, name=name or f"Segment_{value}",
                   color=color or DEFAULT_COLORS[(value - 1) % len(DEFAULT_COLORS)],
                   name_auto_generated=name is None, color_auto_generated=color is None, **extra)


def check_unique(segments, where):
    for what in ("value", "id"):
        seen = {}
        for s in segments:
            key = getattr(s, what)
            if key in seen:
                raise MetadataError(f"{where}: segments {seen[key]!r} and {s.name!r} have the same {what} {key!r}")
            seen[key] = s.name


# -- OME-NGFF image-label ----------------------------------------------------------------------------------
def image_label_attrs(segments, version):
    """The `image-label` object: colours as RGBA 0..255, and each segment's other facts as properties."""
    colors = [{"label-value": s.value, "rgba": [round(c * 255) for c in s.color] + [255]} for s in segments]
    properties = [{"label-value": s.value, "name": s.name, "slicer-segment-id": s.id, "slicer-tags": dict(s.tags),
                   "slicer-color": list(s.color), "slicer-name-auto-generated": s.name_auto_generated,
                   "slicer-color-auto-generated": s.color_auto_generated} for s in segments]
    return {"version": version, "colors": colors, "properties": properties, "source": {"image": "../../"}}


def segments_from_image_label(image_label, where):
    """Segments from an `image-label` object written by BigVolume or by any other tool (names default)."""
    if not isinstance(image_label, dict):
        raise MetadataError(f"{where}: 'image-label' metadata is not an object")
    rgba = {}
    for entry in image_label.get("colors") or []:
        try:
            rgba[int(entry["label-value"])] = [float(v) / 255.0 for v in entry["rgba"][:3]]
        except (KeyError, TypeError, ValueError) as error:
            raise MetadataError(f"{where}: an 'image-label' colour entry {entry!r} is malformed ({error})") from error
    props = {}
    for entry in image_label.get("properties") or []:
        if isinstance(entry, dict) and "label-value" in entry:
            props[int(entry["label-value"])] = entry
    segments = []
    for value in sorted(set(rgba) | set(props)):
        if value == 0:
            continue
        p = props.get(value, {})
        segments.append(Segment(value=value, name=str(p.get("name", f"Segment_{value}")),
                                color=tuple(p.get("slicer-color") or rgba.get(value) or DEFAULT_COLORS[0]),
                                id=str(p.get("slicer-segment-id", "")), tags=dict(p.get("slicer-tags") or {}),
                                name_auto_generated=bool(p.get("slicer-name-auto-generated", "name" not in p)),
                                color_auto_generated=bool(p.get("slicer-color-auto-generated", False))))
    check_unique(segments, where)
    return segments


# -- Slicer's .seg.nrrd key/value pairs -----------------------------------------------------------------------
def _tags_text(tags):
    return "".join(f"{k}:{v}|" for k, v in tags.items()) or "|"


def _tags_from_text(text):
    tags = {}
    for item in text.split("|"):
        key, colon, value = item.partition(":")
        if colon:
            tags[key] = value
    return tags


def slicer_pairs(segments, extents=None):
    """`.seg.nrrd` key/value pairs for one-layer segments. `extents` maps a value to (i0, i1, j0, j1, k0, k1)."""
    pairs = {"Segmentation_MasterRepresentation": "Binary labelmap",
             "Segmentation_ContainedRepresentationNames": "Binary labelmap|",
             "Segmentation_ReferenceImageExtentOffset": "0 0 0"}
    for n, s in enumerate(segments):
        prefix = f"Segment{n}_"
        pairs[prefix + "ID"] = s.id
        pairs[prefix + "Name"] = s.name
        pairs[prefix + "NameAutoGenerated"] = str(int(s.name_auto_generated))
        pairs[prefix + "Color"] = " ".join(repr(float(c)) for c in s.color)
        pairs[prefix + "ColorAutoGenerated"] = str(int(s.color_auto_generated))
        pairs[prefix + "LabelValue"] = str(s.value)
        pairs[prefix + "Layer"] = "0"
        pairs[prefix + "Tags"] = _tags_text(s.tags)
        if extents and s.value in extents:
            pairs[prefix + "Extent"] = " ".join(str(int(v)) for v in extents[s.value])
    return pairs


def segments_from_slicer_pairs(pairs, where):
    """Segments from `.seg.nrrd` key/value pairs; refuses several layers (overlapping segments), which one label
    pyramid cannot hold."""
    segments, n = [], 0
    while f"Segment{n}_ID" in pairs or f"Segment{n}_LabelValue" in pairs:
        prefix = f"Segment{n}_"
        layer = int(pairs.get(prefix + "Layer", "0") or 0)
        if layer != 0:
            raise MetadataError(f"{where}: segment {n} is in layer {layer}; overlapping segments (several layers) "
                                "cannot be held in one label pyramid: export them from Slicer as one layer")
        try:
            color = tuple(float(v) for v in pairs.get(prefix + "Color", "0.5 0.68 0.5").split())
            value = int(pairs.get(prefix + "LabelValue", n + 1))
        except ValueError as error:
            raise MetadataError(f"{where}: segment {n} has a malformed colour or label value ({error})") from error
        segments.append(Segment(value=value, name=pairs.get(prefix + "Name", f"Segment_{value}"), color=color,
                                id=pairs.get(prefix + "ID", ""), tags=_tags_from_text(pairs.get(prefix + "Tags", "")),
                                name_auto_generated=pairs.get(prefix + "NameAutoGenerated", "0") == "1",
                                color_auto_generated=pairs.get(prefix + "ColorAutoGenerated", "0") == "1"))
        n += 1
    check_unique(segments, where)
    return segments
