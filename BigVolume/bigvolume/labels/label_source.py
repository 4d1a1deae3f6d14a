"""A label pyramid as one more chunk source of the streaming engine, refreshed as edits are made and written."""

from ..streaming.readers.label_reader import EditedLabelReader
from ..streaming.sources import ChunkSource


def label_source(editor, engine, threads=2):
    """A ChunkSource of `editor`'s label pyramid, added to `engine`; the editor's changes reach the engine
    (queued edits show at once through the reader's overlay, written ones replace the cached chunks).
    Returns the source; `engine.remove_source(source.id)` and `editor.remove_listener(source.follow)` end it."""
    source = ChunkSource(editor.store, reader=EditedLabelReader(editor, threads=threads),
                         label=f"labels:{editor.store.name}")
    source.follow = lambda touched: engine.chunks_changed(source.id, touched)
    editor.add_listener(source.follow)
    return engine.add_source(source)
