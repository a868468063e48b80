"""Constants shared by the import command line and its engine (import-free, for a fast ``--help``)."""

from __future__ import annotations

__all__ = ["DEFAULT_CHUNK_SIZE"]

#: Rows per chunk: the checkpoint advances a chunk at a time.
DEFAULT_CHUNK_SIZE = 5000
