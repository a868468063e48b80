"""The spool's journal: an append-only file each accepted message is written to before ``put`` returns.

An owner directory holds one journal at a time, ``journal-<gen>`` (``gen`` a
generation number from 1, eight digits), beside the SQLite database. Format,
all integers little-endian::

    file header (32 bytes):  magic b"SLJRNL\\r\\n" | version u32 (1) |
                             write-key fingerprint (16 ASCII bytes) | crc32 of the 28 bytes before it
    record (24 + n bytes):   body length n u32 | crc32 u32 of (row id | accepted_ms | body) |
                             row id i64 | accepted_ms i64 | body (n bytes, the encoded message)

Every message of a journal was accepted under the write key whose fingerprint
its header holds: a key change starts a new journal. Row ids follow one another
(a record per row). A record is copied into the journal's shared memory mapping
in one piece; once copied, it is in the kernel's page cache and survives the
process being killed.

The database's one-row ``journal`` table, ``(gen, offset)``, says how far the
journals are settled: every record of journal ``gen`` before ``offset``, and of
every older journal, is in the database or was delivered (see ``disk.py``).
Replay reads, in order, journal ``gen`` from ``offset`` and every newer journal
from its header's end; older journals are left over from a rotation and are
deleted.

A journal's room is allocated when it is made and mapped into memory: a record
is copied in, with no system call (see ``append``), and the bytes past the last
record are zeros until the next one comes.

A replay stops at the first record that cannot be read: a last record whose
copy never completed (cut short, or with only zeros after it, where the room was
never written or a power loss left no data) was never accepted, and is not a
loss; an unreadable record followed by anything but zeros is damage (counted as
one lost message by the caller).
"""

from __future__ import annotations

import errno
import mmap
import os
import struct
import zlib
from dataclasses import dataclass, field
from typing import Optional

from segment_lite.errors import JournalError

__all__ = [
    "HEADER_SIZE",
    "PREFIX",
    "RECORD_HEAD_SIZE",
    "JournalContents",
    "JournalError",
    "Replay",
    "append",
    "create",
    "encode",
    "file_name",
    "header",
    "journal_files",
    "parse",
    "parse_header",
    "read_journals",
    "reserve",
    "unwrite",
    "write",
]

PREFIX = "journal-"
MAGIC = b"SLJRNL\r\n"
VERSION = 1
_HEADER = struct.Struct("<8sI16s")  # magic, version, fingerprint; then its crc32
HEADER_SIZE = _HEADER.size + 4
_HEAD = struct.Struct("<II")  # body length, crc32 of what follows
_IDS = struct.Struct("<qq")  # row id, accepted_ms
RECORD_HEAD_SIZE = _HEAD.size + _IDS.size
#: No message is this big (Segment's limit is 32 KB): a longer length is damage, not a record.
MAX_BODY_BYTES = 1 << 24
_OPEN_FLAGS = getattr(os, "O_CLOEXEC", 0)


def file_name(gen: int) -> str:
    """The name of journal ``gen`` in its owner directory."""
    return f"{PREFIX}{gen:08d}"


def journal_files(directory: str) -> list[tuple[int, str]]:
    """The journals in ``directory``: (gen, path), oldest first."""
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    found = []
    for name in names:
        digits = name[len(PREFIX) :]
        if name.startswith(PREFIX) and digits.isdigit() and len(digits) == 8:
            found.append((int(digits), os.path.join(directory, name)))
    return sorted(found)


def header(fingerprint: str) -> bytes:
    """The 32-byte header of a journal of messages accepted under ``fingerprint``'s write key."""
    head = _HEADER.pack(MAGIC, VERSION, fingerprint.encode("ascii")[:16].ljust(16, b"\0"))
    return head + struct.pack("<I", zlib.crc32(head))


def parse_header(data: bytes) -> str:
    """The fingerprint a journal's first bytes name; ``JournalError`` when they are not a header."""
    if len(data) < HEADER_SIZE:
        raise JournalError("shorter than a journal header")
    head = data[: _HEADER.size]
    (crc,) = struct.unpack_from("<I", data, _HEADER.size)
    if zlib.crc32(head) != crc:
        raise JournalError("not a journal header (bad checksum)")
    magic, version, fingerprint = _HEADER.unpack(head)
    if magic != MAGIC or version != VERSION:
        raise JournalError(f"not a version {VERSION} journal")
    try:
        return str(fingerprint.rstrip(b"\0").decode("ascii"))
    except UnicodeDecodeError:
        raise JournalError("not a journal header (fingerprint)") from None


def encode(row_id: int, accepted_ms: int, body: bytes) -> bytes:
    """One record: its head and ``body``, copied into the journal in one piece."""
    ids = _IDS.pack(row_id, accepted_ms)
    return _HEAD.pack(len(body), zlib.crc32(body, zlib.crc32(ids))) + ids + body


def create(path: str, fingerprint: str) -> int:
    """Make journal ``path`` (which must not exist) with its header; returns its descriptor.

    Open for reading and writing, so that ``reserve`` can map it.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | _OPEN_FLAGS, 0o600)
    try:
        write(fd, header(fingerprint), 0)
    except BaseException:
        os.close(fd)
        os.unlink(path)
        raise
    return fd


def reserve(fd: int, size: int) -> mmap.mmap:
    """Give journal ``fd`` its room on disk, ``size`` bytes (zeros past its header), and map it.

    The room is allocated now (``posix_fallocate``; zeros written where the file
    system cannot allocate), so a full disk is an ``OSError`` here, never a
    fault while a record is copied in. The mapping is shared: what ``append``
    copies into it is in the kernel's page cache at once, as a ``write()`` is.
    """
    allocate = getattr(os, "posix_fallocate", None)  # missing on macOS
    try:
        if allocate is None:
            raise OSError(errno.ENOSYS, "posix_fallocate is not available")
        allocate(fd, 0, size)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise
        # Written zeros, never a sparse file: a page with no disk behind it faults when copied into.
        end = os.fstat(fd).st_size
        zeros = bytes(1 << 16)
        while end < size:
            end += os.pwrite(fd, zeros[: size - end], end)
    return mmap.mmap(fd, size)


def append(journal: mmap.mmap, data: bytes, end: int) -> None:
    """Copy ``data`` into mapped journal ``journal`` at ``end`` (its first unused byte).

    No system call, so the calling thread keeps the GIL (a ``write()`` gives it
    up, and the delivery thread takes it at every call). Raises ``ENOSPC`` when
    the journal's room is used up: the caller starts a new journal.
    """
    if end + len(data) > len(journal):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC) + " (the journal's room is used up)")
    journal[end : end + len(data)] = data


def write(fd: int, data: bytes, end: int) -> None:
    """Write ``data`` at offset ``end`` of the journal open as ``fd``, whole or not at all.

    A short write (the disk filled up in the middle) is cut off again and raised
    as ``ENOSPC``: half a record is never left for the next one to follow.
    """
    written = os.pwrite(fd, data, end)
    if written != len(data):
        os.ftruncate(fd, end)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC) + " (short write to the journal)")


def unwrite(fd: int, journal: Optional[mmap.mmap], end: int, length: int) -> None:
    """Take back the ``length`` bytes put at ``end``, the last record (its fsync failed: not accepted).

    A mapped journal keeps its size, which its mapping needs: the bytes become zeros
    again, as the room past the last record is. An unmapped one is cut off at ``end``.
    """
    if journal is not None:
        journal[end : end + length] = bytes(length)
    else:
        os.ftruncate(fd, end)


@dataclass
class Replay:
    """What ``parse`` read from a journal's bytes."""

    records: list[tuple[int, int, bytes]] = field(default_factory=list)  # (row id, accepted_ms, body)
    end: int = 0  # the offset just past the last whole record read
    damaged: bool = False  # an unreadable record with more data after it (not a torn tail)


def parse(data: bytes, start: int = HEADER_SIZE) -> Replay:
    """The whole records of journal bytes ``data`` from offset ``start``, up to the first unreadable one.

    Never raises: whatever the bytes, the records returned are the ones whose
    checksum holds, in order, and ``damaged`` tells a torn tail from damage.
    """
    replay = Replay(end=start)
    size = len(data)
    position = start
    view = memoryview(data)
    while position < size:
        if position + RECORD_HEAD_SIZE > size:
            break  # a torn head
        length, crc = _HEAD.unpack_from(data, position)
        body_at = position + RECORD_HEAD_SIZE
        if length > MAX_BODY_BYTES:
            replay.damaged = _more_than_zeros(data, position)
            break
        if body_at + length > size:
            break  # a torn body: the write of the last record never completed
        ids = view[position + _HEAD.size : body_at]
        body = data[body_at : body_at + length]
        if zlib.crc32(body, zlib.crc32(ids)) != crc:
            # Only zeros after it: the last record, whose copy the process did not live to finish.
            replay.damaged = _more_than_zeros(data, body_at + length)
            break
        row_id, accepted_ms = _IDS.unpack(ids)
        replay.records.append((row_id, accepted_ms, body))
        position = replay.end = body_at + length
    return replay


def _more_than_zeros(data: bytes, start: int) -> bool:
    """Whether anything but zeros follows ``start`` (zeros: what a power loss leaves of unwritten data)."""
    return data.count(0, start) != len(data) - start


@dataclass
class JournalContents:
    """The records of an owner directory's journals that are not yet settled in its database."""

    records: list[tuple[int, str, int, bytes]] = field(default_factory=list)  # id, fingerprint, ms, body
    gen: int = 0  # the newest journal read (0: none)
    end: int = 0  # the offset in it where the replay stopped
    damaged: list[tuple[str, int, int]] = field(default_factory=list)  # (path, offset, bytes) unreadable
    obsolete: list[str] = field(default_factory=list)  # journals older than the database's state


def read_journals(directory: str, gen: int, offset: int) -> JournalContents:
    """Read, changing nothing, the journals of ``directory`` past state ``(gen, offset)``.

    A journal whose header cannot be read holds nothing readable: with nothing
    after the header's place it is one whose owner died making it, otherwise it
    counts as damaged. Raises ``OSError`` when a journal cannot be read at all.
    """
    contents = JournalContents()
    for file_gen, path in journal_files(directory):
        if file_gen < gen:
            contents.obsolete.append(path)
            continue
        with open(path, "rb") as handle:
            data = handle.read()
        contents.gen, contents.end = file_gen, len(data)
        try:
            fingerprint = parse_header(data)
        except JournalError:
            if _more_than_zeros(data, min(len(data), HEADER_SIZE)):
                contents.damaged.append((path, 0, len(data)))
            continue
        start = offset if file_gen == gen else HEADER_SIZE
        replay = parse(data, max(start, HEADER_SIZE))
        contents.records.extend((row_id, fingerprint, ms, body) for row_id, ms, body in replay.records)
        if replay.damaged:
            contents.damaged.append((path, replay.end, len(data) - replay.end))
    return contents
