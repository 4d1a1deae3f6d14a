"""Chunks of a label pyramid as its editor shows them: stored labels with the pending edits applied."""

from .base import ThreadedReader


class EditedLabelReader(ThreadedReader):
    """Reads through a `LabelEditor`, so a view never shows an edit vanish between its preview and its write.

    Label chunks are small and mostly absent (background costs no decode), so
    the Python-thread path is enough here.
    """

    name = "labels"

    def __init__(self, editor, threads=None):
        super().__init__(threads)
        self.editor = editor

    @staticmethod
    def supports(image):
        return False  # only for editors, never chosen for an image

    def read_chunks(self, level, coords):
        return {c: self.editor.read_chunk(level, c) for c in coords}
