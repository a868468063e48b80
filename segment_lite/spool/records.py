"""The spool's file format: segment files of checksummed records, and the acknowledgement cursor.

A segment file is an 8-byte header (``SEGMENT_MAGIC``) followed by records::

    magic (2 bytes) | payload length (u32) | accepted at (u64, ms since the epoch) | crc32 (u32) | payload

all little-endian; the crc32 covers the first three fields and the payload (one
encoded message). A segment's space is reserved when it is created and the file
is zero beyond its last record until it is finished (then it is cut to its
records), so zeros where a record should start, with nothing but zeros after
them, are the end of the records, not a loss. A power loss can leave a torn last
record (a checksum-failing or zeroed tail), and a process killed in the middle of
an append can leave that one record incomplete. A reader that meets bytes that
are not a valid record skips to the next offset where one starts (found by its
magic and verified by its checksum) and counts what it skipped as one lost record.

The acknowledgement cursor (file ``ack``) is the position just after the last
delivered record: every record before it is delivered. It has two 32-byte slots,
written alternately and each checksummed, so a torn write of one leaves the other.
"""

from __future__ import annotations

import os
import struct
import zlib
from typing import Optional

__all__ = [
    "MAX_RECORD_BYTES",
    "RECORD_HEADER_BYTES",
    "SEGMENT_HEADER_BYTES",
    "SEGMENT_MAGIC",
    "AckFile",
    "SegmentReader",
    "encode_record",
    "segment_name",
    "segment_number",
]

SEGMENT_MAGIC = b"SLSPOOL\x01"
SEGMENT_HEADER_BYTES = len(SEGMENT_MAGIC)
RECORD_MAGIC = b"\xa7\x5e"
_HEAD = struct.Struct("<2sIQ")  # magic, payload length, accepted at (ms)
_CRC = struct.Struct("<I")
RECORD_HEADER_BYTES = _HEAD.size + _CRC.size
#: Messages are at most 32 KB; a length beyond this is corruption, not a record.
MAX_RECORD_BYTES = 1 << 20
#: Bytes read from a segment file at a time.
READ_CHUNK_BYTES = 256 * 1024
SEGMENT_SUFFIX = ".seg"

_ACK_SLOT = struct.Struct("<4sQQQ")  # magic, generation, segment number, offset
_ACK_MAGIC = b"SLAK"
ACK_SLOT_BYTES = 32  # the slot, its crc32, 4 bytes of padding


def encode_record(payload: bytes, accepted_at_ms: int) -> bytes:
    """One record, ready to append to a segment file."""
    head = _HEAD.pack(RECORD_MAGIC, len(payload), accepted_at_ms)
    return b"".join((head, _CRC.pack(zlib.crc32(payload, zlib.crc32(head))), payload))


def _intact_payload(buf: bytes, pos: int, total: int) -> Optional[bytes]:
    """The payload of the ``total``-byte record at ``buf[pos]``, or None when its checksum fails."""
    payload = buf[pos + RECORD_HEADER_BYTES : pos + total]
    (crc,) = _CRC.unpack_from(buf, pos + _HEAD.size)
    return payload if zlib.crc32(payload, zlib.crc32(buf[pos : pos + _HEAD.size])) == crc else None


def segment_name(number: int) -> str:
    """The file name of segment ``number``; names sort in segment order."""
    return f"{number:016d}{SEGMENT_SUFFIX}"


def segment_number(name: str) -> Optional[int]:
    """The number of a segment file name, or None for any other file."""
    stem, _, suffix = name.partition(".")
    if "." + suffix != SEGMENT_SUFFIX or not stem.isdigit():
        return None
    return int(stem)


class SegmentReader:
    """Reads the records of one segment file in order, skipping what cannot be read.

    ``end`` is how far the file may be read (for the segment still being written,
    the writer's position); ``sealed`` says no record will be appended after it,
    so a partial record at the end is a torn tail rather than one being written.
    Unreadable stretches are tallied in ``lost_records`` (one per stretch) and
    ``lost_bytes``, and the first one's offset is in ``first_loss_offset``.
    """

    def __init__(self, path: str, fd: int, offset: int, end: int, sealed: bool) -> None:
        self.path = path
        self.fd = fd
        self.end = end
        self.sealed = sealed
        self.records_read = 0
        self.lost_records = 0
        self.lost_bytes = 0
        self.first_loss_offset: Optional[int] = None
        self._buf = b""
        self._base = max(offset, SEGMENT_HEADER_BYTES)  # file offset of _buf[0]
        self._pos = 0  # next unread byte in _buf

    @property
    def position(self) -> int:
        """File offset just after the last record returned (or bytes skipped)."""
        return self._base + self._pos

    def at_end(self) -> bool:
        """True when every byte up to ``end`` has been consumed."""
        return self.position >= self.end

    def next(self) -> Optional[tuple[bytes, int]]:
        """The next record's payload and accepted-at time (ms), or None when none is complete yet."""
        while True:
            if not self._ensure(RECORD_HEADER_BYTES):
                if self.sealed and self.position < self.end:
                    self._skip_to_end()  # a torn tail: too short to be a record
                return None
            magic, length, accepted_ms = _HEAD.unpack_from(self._buf, self._pos)
            if magic == RECORD_MAGIC and length <= MAX_RECORD_BYTES:
                total = RECORD_HEADER_BYTES + length
                if self._ensure(total):
                    payload = _intact_payload(self._buf, self._pos, total)
                    if payload is not None:
                        self._pos += total
                        self.records_read += 1
                        return payload, accepted_ms
                elif not self.sealed:
                    return None  # the segment is still being written (never split, but be safe)
            elif magic == b"\0\0" and self._zeros_to_end():
                # Space reserved for records that were never written (its process died).
                if self.sealed:
                    self._skip_to_end(count=False)
                return None
            self._resync()

    def read_buffered(
        self, items: list[bytes], max_count: int, max_bytes: int, nbytes: int
    ) -> tuple[int, bool]:
        """Append the valid records already in the buffer to ``items`` (the fast path of a batch).

        Stops at ``max_count`` items, before an item that would take ``nbytes``
        (each item plus a comma) past ``max_bytes`` (then returns ``full``), and at
        the first record that is incomplete or invalid, which ``next`` deals with.
        Returns the new ``nbytes`` and ``full``.
        """
        buf, pos = self._buf, self._pos
        size = len(buf)
        unpack, crc_at, crc32 = _HEAD.unpack_from, _CRC.unpack_from, zlib.crc32
        head_size, header = _HEAD.size, RECORD_HEADER_BYTES
        count = len(items)
        full = False
        while count < max_count and size - pos >= header:
            magic, length, _ = unpack(buf, pos)
            total = header + length
            if magic != RECORD_MAGIC or length > MAX_RECORD_BYTES or size - pos < total:
                break
            # _intact_payload, inlined: this runs once per message delivered.
            payload = buf[pos + header : pos + total]
            if crc32(payload, crc32(buf[pos : pos + head_size])) != crc_at(buf, pos + head_size)[0]:
                break
            if count and nbytes + length + 1 > max_bytes:
                full = True
                break
            items.append(payload)
            nbytes += length + 1
            count += 1
            pos += total
            self.records_read += 1
        self._pos = pos
        return nbytes, full

    def close(self) -> None:
        """Close the file."""
        if self.fd >= 0:
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.fd = -1

    # -- reading -----------------------------------------------------------------

    def _ensure(self, need: int) -> bool:
        """Make ``need`` unread bytes available in the buffer; False if the segment ends first."""
        while len(self._buf) - self._pos < need:
            start = self._base + len(self._buf)
            if start >= self.end:
                return False
            want = max(need - (len(self._buf) - self._pos), READ_CHUNK_BYTES)
            data = os.pread(self.fd, min(want, self.end - start), start)
            if not data:  # shorter than we were told (truncated under us)
                self.end = start
                return False
            self._buf = self._buf[self._pos :] + data
            self._base += self._pos
            self._pos = 0
        return True

    def _valid_here(self) -> bool:
        if not self._ensure(RECORD_HEADER_BYTES):
            return False
        magic, length, _ = _HEAD.unpack_from(self._buf, self._pos)
        if magic != RECORD_MAGIC or length > MAX_RECORD_BYTES:
            return False
        total = RECORD_HEADER_BYTES + length
        return self._ensure(total) and _intact_payload(self._buf, self._pos, total) is not None

    def _resync(self) -> None:
        """Skip from an unreadable record to the next valid one (or the end), counting one loss."""
        start = self.position
        self._pos += 1
        while True:
            found = self._buf.find(RECORD_MAGIC, self._pos)
            if found < 0:
                # Keep the last byte: a magic may straddle the next read.
                self._pos = max(self._pos, len(self._buf) - 1)
                if not self._ensure(len(self._buf) - self._pos + 1):
                    self._pos = len(self._buf)
                    break
                continue
            self._pos = found
            if self._valid_here():
                break
            self._pos += 1  # (_ensure keeps _pos on the same byte when it refills the buffer)
        self._count_loss(start)

    def _skip_to_end(self, count: bool = True) -> None:
        start = self.position
        self._buf = b""
        self._base = self.end
        self._pos = 0
        if count:
            self._count_loss(start)

    def _zeros_to_end(self) -> bool:
        """True when every byte from here to ``end`` is zero."""
        offset = self.position
        while offset < self.end:
            chunk = os.pread(self.fd, min(READ_CHUNK_BYTES * 4, self.end - offset), offset)
            if not chunk:
                break
            if chunk.count(0) != len(chunk):
                return False
            offset += len(chunk)
        return True

    def _count_loss(self, start: int) -> None:
        self.lost_records += 1
        self.lost_bytes += self.position - start
        if self.first_loss_offset is None:
            self.first_loss_offset = start


class AckFile:
    """The acknowledgement cursor of one spool directory: (segment number, offset)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.generation = 0

    def read(self) -> Optional[tuple[int, int]]:
        """The newest intact cursor, or None when there is none (a new or unreadable file)."""
        data = os.pread(self.fd, 2 * ACK_SLOT_BYTES, 0)
        best: Optional[tuple[int, int, int]] = None
        for slot in range(2):
            raw = data[slot * ACK_SLOT_BYTES : (slot + 1) * ACK_SLOT_BYTES]
            if len(raw) < ACK_SLOT_BYTES:
                continue
            body = raw[: _ACK_SLOT.size]
            (crc,) = _CRC.unpack_from(raw, _ACK_SLOT.size)
            if zlib.crc32(body) != crc:
                continue
            magic, generation, segment, offset = _ACK_SLOT.unpack(body)
            if magic == _ACK_MAGIC and (best is None or generation > best[0]):
                best = (generation, segment, offset)
        if best is None:
            return None
        self.generation = best[0]
        return best[1], best[2]

    def write(self, segment: int, offset: int) -> None:
        """Record the cursor in the slot not holding the newest one."""
        self.generation += 1
        body = _ACK_SLOT.pack(_ACK_MAGIC, self.generation, segment, offset)
        slot = body + _CRC.pack(zlib.crc32(body)) + bytes(ACK_SLOT_BYTES - _ACK_SLOT.size - _CRC.size)
        os.pwrite(self.fd, slot, (self.generation % 2) * ACK_SLOT_BYTES)
