"""A scene keeps a reference to the store it streams, never a copy of its voxels.

The reference is a small vtkMRMLScriptedModuleNode saved with the scene: the
store's location, the channel and time point, the display window and the
layer the views use. The slice nodes are saved by the scene itself, so a
reloaded scene reopens the store where the user left the views. The streamed
proxy volumes are not saved (slice_streamer.py).
"""

import json

REFERENCE_TAG = "BigVolumeStoreReference"  # singleton tag: one streamed store per scene
_FIELDS = ("location", "channel", "timePoint", "window", "level", "layer")


def reference_node(scene, create=False):
    node = scene.GetSingletonNode(REFERENCE_TAG, "vtkMRMLScriptedModuleNode")
    if node is None and create:
        node = scene.CreateNodeByClass("vtkMRMLScriptedModuleNode")
        node.UnRegister(None)  # the scene holds the only reference
        node.SetName("BigVolume store")
        node.SetSingletonTag(REFERENCE_TAG)
        node.SetHideFromEditors(True)  # no ModuleName attribute: it is not the module's parameter node
        node = scene.AddNode(node)
    return node


def save_reference(scene, location, channel=0, time_point=0, window_level=None, layer="background"):
    """Record in the scene which store it streams and how (kept up to date while streaming)."""
    node = reference_node(scene, create=True)
    values = {"location": str(location), "channel": int(channel), "timePoint": int(time_point),
              "window": None if window_level is None else float(window_level[0]),
              "level": None if window_level is None else float(window_level[1]), "layer": layer}
    for key, value in values.items():
        node.SetParameter(key, json.dumps(value))
    return node


def load_reference(scene):
    """The saved reference as a dict (location, channel, timePoint, window_level, layer), or None."""
    node = reference_node(scene)
    if node is None or not node.GetParameter("location"):
        return None
    values = {}
    for key in _FIELDS:
        raw = node.GetParameter(key)
        values[key] = json.loads(raw) if raw else None
    window, level = values.pop("window"), values.pop("level")
    values["window_level"] = None if window is None or level is None else (window, level)
    values["channel"] = values["channel"] or 0
    values["timePoint"] = values["timePoint"] or 0
    values["layer"] = values["layer"] or "background"
    return values


def remove_reference(scene):
    node = reference_node(scene)
    if node is not None:
        scene.RemoveNode(node)
