"""The store model: what an OME-Zarr image is, independent of how it is shown or written.

NGFF metadata (`ngff`), the multiscale image with its levels and their chunk
grids (`multiscale`), geometry and units (voxel index to RAS millimetres,
exactly as ITK and Slicer place voxels), validation, recognising a store from
a dropped path (`locate`), and which voxels a physical region
covers (`region`). Nothing here reads chunks for a view or writes a store.
"""
