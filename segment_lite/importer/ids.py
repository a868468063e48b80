"""Derived messageIds: the same row always gets the same id, so Segment deduplicates a row sent twice."""

from __future__ import annotations

import hashlib
import uuid

__all__ = ["ID_NAMESPACE", "LineIdMaker", "RowIdMaker", "derive_message_id", "derive_row_id"]

#: Namespace of derived messageIds (a fixed, random UUID: changing it would change every id).
ID_NAMESPACE = uuid.UUID("4f4ab0b8-aab6-4269-8ed9-b210397e8cf7")
#: Marks content-only names, so they can never equal a file-and-line name.
_ROW_MARK = "row"


def _as_uuid5(state: hashlib._Hash) -> str:
    raw = bytearray(state.digest()[:16])
    raw[6] = (raw[6] & 0x0F) | 0x50  # version 5
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def derive_message_id(file_key: str, line: int, content: bytes, salt: str = "") -> str:
    """The messageId of a file row that has none: a UUID version 5 (SHA-1 name-based) in :data:`ID_NAMESPACE`.

    The name is ``salt NUL file_key NUL line NUL content``: the same row of the
    same file always gets the same id, so a re-run is deduplicated by Segment;
    any change to the row's bytes gives a new id. Equal to
    ``uuid.uuid5(ID_NAMESPACE, name)`` for a text name.
    """
    return LineIdMaker(file_key, salt)(line, content)


def derive_row_id(content: bytes, salt: str = "") -> str:
    """The messageId of an in-memory row (a DataFrame row) that has none, from its content alone.

    The name is ``salt NUL "row" NUL content``, where ``content`` is the row (or
    its ``id_columns``) as sorted, compact JSON. Neither the partition nor the
    task that sends the row takes part, so a retried or speculative task, or a
    whole re-run, sends the same id.
    """
    return RowIdMaker(salt)(0, content)


class LineIdMaker:
    """``derive_message_id`` for one input, with the shared prefix hashed once."""

    __slots__ = ("_prefix",)

    def __init__(self, file_key: str, salt: str = "") -> None:
        self._prefix = hashlib.sha1(
            ID_NAMESPACE.bytes + f"{salt}\0{file_key}\0".encode(), usedforsecurity=False
        )

    def __call__(self, line: int, content: bytes) -> str:
        """The id of the row on ``line`` whose bytes are ``content``."""
        state = self._prefix.copy()
        state.update(b"%d\0" % line)
        state.update(content)
        return _as_uuid5(state)


class RowIdMaker:
    """``derive_row_id`` with the salt hashed once; the line is ignored (same call shape as LineIdMaker)."""

    __slots__ = ("_prefix",)

    def __init__(self, salt: str = "") -> None:
        self._prefix = hashlib.sha1(
            ID_NAMESPACE.bytes + f"{salt}\0{_ROW_MARK}\0".encode(), usedforsecurity=False
        )

    def __call__(self, line: int, content: bytes) -> str:
        """The id of a row whose content is ``content`` (wherever it is)."""
        state = self._prefix.copy()
        state.update(content)
        return _as_uuid5(state)
