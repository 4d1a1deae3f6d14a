"""Display state shared by every view of one streamed source: one window/level for all of them.

Each view shows a source through its own proxy volume node, so each proxy has
its own display node. A user who drags window/level in one slice view changes
that proxy's display node; `SharedDisplay` sees it and applies the same
window to the others, and the owner (the session) saves it with the scene.
"""

import vtk


class SharedDisplay:
    def __init__(self, window_level=None):
        self.window_level = tuple(window_level) if window_level is not None else None
        self._nodes = {}  # display node -> observer tag
        self._applying = False

    @property
    def ready(self):
        """Whether views may compose: not before the window is known (the default ramp would flash)."""
        return self.window_level is not None

    def attach(self, display_node):
        """Follow and drive one proxy's scalar volume display node."""
        if self.window_level is not None:
            self._apply(display_node, self.window_level)
        self._nodes[display_node] = display_node.AddObserver(vtk.vtkCommand.ModifiedEvent, self._on_modified)

    def detach(self, display_node):
        tag = self._nodes.pop(display_node, None)
        if tag is not None:
            display_node.RemoveObserver(tag)

    def set_window_level(self, window, level):
        """Apply a window to every view of the source (chosen from the data, restored, or typed in)."""
        self.window_level = (float(window), float(level))
        for node in list(self._nodes):
            self._apply(node, self.window_level)

    def _apply(self, node, window_level):
        self._applying = True
        try:
            node.SetAutoWindowLevel(False)
            node.SetWindowLevel(*window_level)
        finally:
            self._applying = False

    def _on_modified(self, node, event):
        if self._applying or self.window_level is None:
            return
        current = (float(node.GetWindow()), float(node.GetLevel()))
        if current != self.window_level:
            self.set_window_level(*current)

    def close(self):
        for node in list(self._nodes):
            self.detach(node)
