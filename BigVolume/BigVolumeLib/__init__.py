"""BigVolume's MRML layer: binds the core to Slicer's MRML scene.

Qt-free: it uses vtk and the MRML classes only, so it runs both inside the
Slicer application and with the slicer-core wheel in plain Python.
"""

from .volume_nodes import level_nbytes, read_region_into_volume_node, region_ijk_to_ras, set_ijk_to_ras

__all__ = ["level_nbytes", "read_region_into_volume_node", "region_ijk_to_ras", "set_ijk_to_ras"]
