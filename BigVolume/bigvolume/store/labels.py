"""OME-NGFF label images stored beside an image, in its `labels` group."""

import zarr

from .multiscale import open_group


def label_names(location):
    """Names listed by the image's `labels` group (NGFF 0.4 or 0.5), in stored order; [] if none."""
    group, _ = open_group(location)
    try:
        labels = group["labels"]
    except KeyError:
        return []
    if not isinstance(labels, zarr.Group):
        return []
    attrs = labels.attrs.asdict()
    names = (attrs.get("ome") or {}).get("labels", attrs.get("labels", []))
    return [str(name) for name in names]
