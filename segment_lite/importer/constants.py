"""Constants shared by the import command line and its engine (import-free, for a fast ``--help``)."""

from __future__ import annotations

__all__ = ["DEFAULT_CHUNK_SIZE", "PROGRESS_MODES"]

#: Rows per chunk: the checkpoint advances a chunk at a time.
DEFAULT_CHUNK_SIZE = 5000
#: How progress is shown (``--progress``): see ``segment_lite.importer.progress.make_progress``.
PROGRESS_MODES = ("auto", "bar", "plain", "none")
