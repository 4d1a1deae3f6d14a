"""Export a region of a BigVolume image (a Markups ROI, or a whole level) into an ordinary volume node."""

import numpy as np

from bigvolume.store.region import plan_region

from .volume_nodes import read_region_into_volume_node


class RegionTooLarge(ValueError):
    """The region would not fit in memory; the message says why and which level would."""


def roi_ras_bounds(roi_node):
    """(min, max) RAS corners of a Markups ROI, transforms and rotation included (its bounding box)."""
    bounds = [0.0] * 6
    roi_node.GetRASBounds(bounds)
    if bounds[0] > bounds[1]:
        raise ValueError(f"ROI {roi_node.GetName()!r} has no extent yet; place it first")
    return np.array(bounds[0::2]), np.array(bounds[1::2])


def plan_roi(image, roi_node, level, limit_bytes=None):
    """What exporting `roi_node` at `level` would load (bigvolume.store.region.RegionPlan): shape, bytes, fits."""
    return plan_region(image, level, *roi_ras_bounds(roi_node), limit_bytes=limit_bytes)


def plan_whole_level(image, level, limit_bytes=None):
    """What exporting a whole level would load (the RAS box of level 0's outer voxel faces)."""
    return plan_region(image, level, *image.bounds_ras(0, edges=True), limit_bytes=limit_bytes)


def export_plan(scene, image, plan, name=None):
    """Load a planned region into a new scalar volume node at its exact RAS place; refused if it does not fit."""
    if not plan.fits:
        raise RegionTooLarge(f"Cannot load the region: {plan.reason}.")
    return read_region_into_volume_node(scene, image, plan.level, plan.box,
                                        name=name or f"{image.name or 'BigVolume'} level {plan.level} region")

