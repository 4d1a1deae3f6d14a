"""One label pyramid in a scene: its editor (background writer), the bound segmentation node, its streamed
display in every slice view, its surfaces in the 3D views and the editing engine, opened and closed together. The session keeps one per
label pyramid of the open image; the BigVolumeSegment panel and the effects use it.

A scene saved meanwhile keeps, on the bound segmentation node, which label pyramid it stands for
(binding.STORE_ATTRIBUTE, NAME_ATTRIBUTE), never the voxels: reopening the scene finds those nodes
(`bound_segmentation_nodes`) and binds them again; the editor replays any operation left unfinished.
"""

from bigvolume.labels.editor import LabelEditor
from bigvolume.labels.label_store import create_labels, open_labels

from .binding import NAME_ATTRIBUTE, STORE_ATTRIBUTE, SegmentationBinding
from .editing import SegmentEditing
from .surfaces import SegmentSurfaces


def bound_segmentation_nodes(scene):
    """Segmentation nodes of the scene bound to a label pyramid: [(node, store root, label name)]."""
    nodes = scene.GetNodesByClass("vtkMRMLSegmentationNode")
    found = []
    for i in range(nodes.GetNumberOfItems()):
        node = nodes.GetItemAsObject(i)
        name = node.GetAttribute(NAME_ATTRIBUTE)
        if name:
            found.append((node, node.GetAttribute(STORE_ATTRIBUTE), name))
    return found


class BoundLabels:
    def __init__(self, scene, streaming, image, name, *, store=None, create=False, segments=(),
                 segmentation_node=None, durable=True, surfaces=True):
        """Open (or with `create`, make) the label pyramid `name` of `image` (beside it, or in the separate local
        `store`), bind a segmentation node to it (`segmentation_node`, or a new one), stream it into the slice
        views and, with `surfaces`, show its segments' surfaces in the 3D views."""
        if create:
            labels = create_labels(image, name, store=store, segments=segments)
        else:
            labels = open_labels(image, name, store=store)
        self.editor = LabelEditor(labels, durable=durable)
        try:
            self.binding = SegmentationBinding(scene, self.editor, segmentation_node)
            self.streamed = streaming.add_labels(self.binding)
        except Exception:
            self.editor.close(wait=False)
            raise
        self.streaming = streaming
        self.editing = SegmentEditing(self.binding, streaming, None)
        self.surfaces = SegmentSurfaces(scene, self.binding) if surfaces else None

    def update(self):
        """The main thread's share of the background work (the session's timer): finished surfaces."""
        return self.surfaces.update() if self.surfaces is not None else False

    @property
    def name(self):
        return self.binding.store.name

    @property
    def node(self):
        return self.binding.node

    def status(self):
        """The writer's state: pending operations and voxels, throughput, how far behind, errors."""
        return self.editor.status()

    def status_line(self):
        s = self.status()
        if s["error"]:
            return f"labels {self.name}: the writer stopped: {s['error']}"
        rate = f", writing {s['voxels_per_second'] / 1e6:.1f} M voxels/s" if s["voxels_per_second"] else ""
        surfaces = f"; {self.surfaces.status_line()}" if self.surfaces is not None else ""
        if not s["pending"]:
            return f"labels {self.name}: every edit written{rate}{surfaces}"
        return f"labels {self.name}: {self.editor.describe_backlog()}{rate}{surfaces}"

    def close(self, wait=True):
        """Stop streaming and editing; with `wait`, after every queued edit is written (else it is replayed on the
        next open). The bound segmentation node stays in the scene (it is the user's)."""
        self.streaming.remove_source(self.streamed)
        if self.surfaces is not None:
            self.surfaces.close()
        self.binding.close()
        self.editor.close(wait=wait)
