"""One owner directory of a spool: its lock, and the SQLite database that holds its messages.

A spool root holds one subdirectory per process that spooled into it::

    SPOOL_DIR/
        spool-4242-1f0c9a7e/    owned by process 4242 while it holds the lock
            lock                flock()ed by the owner; free once it exits or dies
            journal-00000001    each accepted message, appended as it is accepted (see journal.py)
            spool.db            the messages (SQLite, WAL mode), with -wal beside it
            stats.json          what the owner holds, rewritten by it a few times a second

A message is first a record of the journal; its owner moves it into the
database later, in batches (or never, when it was delivered before that). In the
database a message is one row of ``messages``: its id (acceptance order), the
fingerprint of the write key it was accepted under (never the key), when it
was accepted, and the encoded JSON. A row is deleted in the transaction that
settles it (delivered, or dropped for good); the one row of ``journal`` says how
far the journals are moved or settled, and advances in the transactions that
move or settle their records. What is undelivered is exactly the rows of
``messages`` plus the journal records past that point.

A directory is made under a staging name, locked, then renamed: an adopter
never sees one half-made. A directory whose lock is free belongs to a process
that exited or died; a directory whose lock file is missing is treated the same
way (the lock is made again), so nothing is stranded. A starting client moves
the rows written with its write key into its own database, one orphan at a
time (each is opened, its journal replayed into its database, emptied and
closed before the next), then deletes the orphan once nothing is left in it.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import secrets
import socket
import sqlite3
import time
from dataclasses import dataclass
from typing import Optional

from segment_lite.spool import journal

__all__ = [
    "DATABASE_NAME",
    "DISK_FULL_ERRNOS",
    "OWNER_PREFIX",
    "ROW_OVERHEAD_BYTES",
    "STATS_NAME",
    "SYNCHRONOUS",
    "Contents",
    "OwnerDirectory",
    "connect",
    "create_schema",
    "fdatasync",
    "fsync_directory",
    "orphan_contents",
    "owner_directories",
    "preallocate_wal",
    "probe_lock",
    "read_contents",
    "read_state",
    "read_stats",
    "remove_stale_new_directories",
    "remove_tree",
    "replay_journals",
    "wal_pages",
    "write_stats",
]

OWNER_PREFIX = "spool-"
LOCK_NAME = "lock"
DATABASE_NAME = "spool.db"
#: What a live owner publishes of its database (which only it can open): see ``write_stats``.
STATS_NAME = "stats.json"
_NEW_PREFIX = ".new-"
#: A directory still being created (under ``_NEW_PREFIX``) after this long was abandoned.
STALE_STAGING_S = 600.0
_OPEN_FLAGS = getattr(os, "O_CLOEXEC", 0)
#: The errors of a write that found no room: the disk (or the user's quota) is full.
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
#: What a message costs on disk beyond its bytes, about (a journal record's head, or a row's id,
#: fingerprint, time, headers): counted against ``spool_max_bytes`` with each message.
ROW_OVERHEAD_BYTES = 32
#: A checkpoint (copying the WAL into the database, with an fsync of each under synchronous=NORMAL,
#: milliseconds on most disks) runs once the WAL holds this many pages, on the thread whose commit
#: crossed it; the WAL is then written again from its start, over the same file. 4,000 pages (16
#: MiB) make them 4 times rarer than SQLite's default of 1,000, which cost a client about 10 µs
#: per message (measured). Smaller for a small ``spool_max_bytes``: see ``wal_pages``.
WAL_CHECKPOINT_PAGES = 4000
#: The fewest pages a WAL holds before its checkpoint (400 KiB).
MIN_WAL_CHECKPOINT_PAGES = 100
#: The page size of a new database (SQLite's default): a WAL frame is a page and a 24-byte header.
PAGE_SIZE_BYTES = 4096
_WAL_HEADER_BYTES = 32
_WAL_FRAME_HEADER_BYTES = 24
#: ``spool_fsync`` policy -> SQLite ``PRAGMA synchronous`` (always in WAL mode).
#: "batch" adds an fdatasync of the WAL from a background thread (see disk.py).
SYNCHRONOUS = {"always": "FULL", "batch": "NORMAL", "never": "NORMAL"}

#: The tables, in the database attached as ``{schema}``.
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS {schema}.owner (pid INTEGER, hostname TEXT, created_ms INTEGER)",
    "CREATE TABLE IF NOT EXISTS {schema}.messages "
    "(id INTEGER PRIMARY KEY, key TEXT NOT NULL, accepted_ms INTEGER NOT NULL, body BLOB NOT NULL)",
    # How far the journals are moved or settled: one row (see journal.py).
    "CREATE TABLE IF NOT EXISTS {schema}.journal (gen INTEGER NOT NULL, offset INTEGER NOT NULL)",
)


def _make_tables(connection: sqlite3.Connection, schema: str) -> None:
    for statement in _SCHEMA:
        connection.execute(statement.format(schema=schema))


def wal_pages(max_bytes: int) -> int:
    """How many pages a spool of ``max_bytes`` lets its WAL hold before a checkpoint: 1/16 of it."""
    return max(MIN_WAL_CHECKPOINT_PAGES, min(WAL_CHECKPOINT_PAGES, max_bytes // 16 // PAGE_SIZE_BYTES))


def connect(
    path: str, synchronous: str, create: bool, exclusive: bool = False, checkpoint_pages: int = 1000
) -> sqlite3.Connection:
    """A connection to the database at ``path`` in WAL mode; ``create`` makes it if missing.

    Autocommit (each statement outside ``BEGIN`` is its own transaction), usable
    from any thread (the spool serialises its use). ``exclusive``: SQLite's
    exclusive locking mode, set before WAL mode so the WAL index lives in this
    process's memory, not in a shared ``-shm`` file: a commit then takes no file
    lock, about half the cost of one, and no other connection can open the
    database until this one closes (its owner publishes its counts in
    ``STATS_NAME`` instead). ``checkpoint_pages``: see ``WAL_CHECKPOINT_PAGES``.
    """
    mode = "rwc" if create else "rw"
    uri = "file:" + _uri_path(path) + "?mode=" + mode
    connection = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False, timeout=30)
    try:
        if exclusive:
            connection.execute("PRAGMA locking_mode=EXCLUSIVE")
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute(f"PRAGMA synchronous={synchronous}")
        connection.execute(f"PRAGMA wal_autocheckpoint={int(checkpoint_pages)}")
    except BaseException:
        connection.close()
        raise
    return connection


def preallocate_wal(path: str, checkpoint_pages: int) -> None:
    """Write zeros past the end of database ``path``'s WAL, up to the size it reaches before a checkpoint.

    Writing over a file's existing bytes costs about half what extending it does
    (measured: 2.1 against 3.5 to 4.9 µs per frame), and every commit writes a
    frame. SQLite ignores what lies past the WAL's last valid frame (each frame
    carries the WAL's salts and a running checksum), so zeros there are never
    read as data. Only an optimisation: where the disk has no room for it, the
    file is left as it was.
    """
    target = _WAL_HEADER_BYTES + (checkpoint_pages + 16) * (PAGE_SIZE_BYTES + _WAL_FRAME_HEADER_BYTES)
    fd = os.open(path + "-wal", os.O_WRONLY | _OPEN_FLAGS)
    try:
        offset = start = os.fstat(fd).st_size
        zeros = bytes(1 << 18)
        try:
            while offset < target:
                offset += os.pwrite(fd, zeros[: target - offset], offset)
        except OSError:
            os.ftruncate(fd, start)  # no room (a small disk): the WAL grows as it is written instead
    finally:
        os.close(fd)


def _uri_path(path: str) -> str:
    return os.path.abspath(path).replace("%", "%25").replace("?", "%3f").replace("#", "%23")


def owner_directories(root: str) -> list[str]:
    """The owner directories under ``root``, oldest name first."""
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return []
    return [
        os.path.join(root, name)
        for name in sorted(names)
        if name.startswith(OWNER_PREFIX) and os.path.isdir(os.path.join(root, name))
    ]


def _lock(path: str, create: bool) -> Optional[int]:
    """Take the owner lock of directory ``path`` without waiting: its fd, or None when held or gone.

    ``create``: make the lock file when it is missing (a stranded directory).
    """
    lock_path = os.path.join(path, LOCK_NAME)
    try:
        fd = os.open(lock_path, os.O_RDWR | _OPEN_FLAGS)
    except FileNotFoundError:
        if not create:
            return None
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | _OPEN_FLAGS, 0o600)
        except OSError:
            return None
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        # The owner may have deleted the directory between our open and our lock.
        if os.fstat(fd).st_ino != os.stat(lock_path).st_ino:
            raise FileNotFoundError(lock_path)
    except OSError:
        os.close(fd)
        return None
    return fd


def probe_lock(path: str) -> bool:
    """True when a live process holds the owner lock of ``path`` (a shared lock is tried and released)."""
    try:
        fd = os.open(os.path.join(path, LOCK_NAME), os.O_RDONLY | _OPEN_FLAGS)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def remove_stale_new_directories(root: str) -> None:
    """Delete directories a process died while creating (they never held a message).

    Only old ones: a directory being created right now is not locked yet.
    """
    try:
        names = os.listdir(root)
    except OSError:
        return
    now = time.time()
    for name in names:
        path = os.path.join(root, name)
        if not name.startswith(_NEW_PREFIX):
            continue
        try:
            if now - os.stat(path).st_mtime < STALE_STAGING_S:
                continue
        except OSError:
            continue
        fd = _lock(path, create=False)
        if fd is not None:
            remove_tree(path)
            os.close(fd)


def remove_tree(path: str) -> None:
    """Delete an owner directory: the database files first, the lock last."""
    try:
        names = os.listdir(path)
    except OSError:
        return
    # The lock goes last: until then a racing adopter cannot take a half-deleted directory.
    for name in sorted(names, key=lambda n: n == LOCK_NAME):
        try:
            os.unlink(os.path.join(path, name))
        except IsADirectoryError:
            remove_tree(os.path.join(path, name))
        except OSError:
            pass
    try:
        os.rmdir(path)
    except OSError:
        pass


def fdatasync(fd: int) -> None:
    """Flush a file's data to disk (fsync where fdatasync is missing)."""
    sync = getattr(os, "fdatasync", os.fsync)
    sync(fd)


def fsync_directory(path: str) -> None:
    """Make the names created in directory ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | _OPEN_FLAGS)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class Contents:
    """What an owner directory's database holds, by write key fingerprint."""

    messages: int = 0
    nbytes: int = 0  # message bytes plus ``ROW_OVERHEAD_BYTES`` each
    oldest_ms: Optional[int] = None
    pid: Optional[int] = None
    hostname: Optional[str] = None
    fingerprints: tuple[str, ...] = ()
    unreadable: bool = False  # the database could not be read (damaged)


def read_contents(path: str) -> Contents:
    """Read what owner directory ``path`` holds, changing nothing (for ``spool status``).

    The rows of its database, and the records of its journals not yet in them.
    """
    database = os.path.join(path, DATABASE_NAME)
    if not os.path.isfile(database):
        return Contents()
    try:
        connection = sqlite3.connect(
            "file:" + _uri_path(database) + "?mode=ro", uri=True, isolation_level=None, timeout=5
        )
    except sqlite3.Error:
        return Contents(unreadable=True)
    try:
        contents = _contents(connection, "main")
        pending = journal.read_journals(path, *read_state(connection, "main"))
    except (sqlite3.Error, OSError):
        return Contents(unreadable=True)
    finally:
        connection.close()
    return _with_journal(contents, pending)


def _with_journal(contents: Contents, pending: journal.JournalContents) -> Contents:
    records = pending.records
    fingerprints = list(contents.fingerprints)
    fingerprints.extend(sorted({key for _, key, _, _ in records} - set(fingerprints)))
    oldest = [ms for ms in (contents.oldest_ms, min((r[2] for r in records), default=None)) if ms is not None]
    return Contents(
        messages=contents.messages + len(records),
        nbytes=contents.nbytes + sum(len(r[3]) + ROW_OVERHEAD_BYTES for r in records),
        oldest_ms=min(oldest) if oldest else None,
        pid=contents.pid,
        hostname=contents.hostname,
        fingerprints=tuple(fingerprints),
        unreadable=contents.unreadable or bool(pending.damaged),
    )


def read_state(connection: sqlite3.Connection, schema: str = "main") -> tuple[int, int]:
    """The journal state ``(gen, offset)`` of a database; ``(0, 0)`` for one made before journals."""
    tables = {row[0] for row in connection.execute(f"SELECT name FROM {schema}.sqlite_master")}
    if "journal" not in tables:
        return 0, 0
    row = connection.execute(f"SELECT gen, offset FROM {schema}.journal").fetchone()
    return (0, 0) if row is None else (int(row[0]), int(row[1]))


def replay_journals(connection: sqlite3.Connection, path: str) -> journal.JournalContents:
    """Move the journal records of orphan ``path`` (its database attached as ``orphan``) into its database.

    The records and the state past them go in one transaction; journals older
    than the state (left by a rotation) are deleted. Returns what was read,
    with the damage found (``damaged``: the caller counts it as lost).
    """
    pending = journal.read_journals(path, *read_state(connection, "orphan"))
    if pending.gen:
        connection.execute("BEGIN IMMEDIATE")
        try:
            _make_tables(connection, "orphan")  # a power loss may have taken those its owner made
            connection.executemany(
                "INSERT OR IGNORE INTO orphan.messages (id, key, accepted_ms, body) VALUES (?, ?, ?, ?)",
                pending.records,
            )
            connection.execute("DELETE FROM orphan.journal")
            connection.execute("INSERT INTO orphan.journal VALUES (?, ?)", (pending.gen, pending.end))
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
    for obsolete in pending.obsolete:
        try:
            os.unlink(obsolete)
        except OSError:
            pass
    return pending


def write_stats(path: str, contents: Contents) -> None:
    """Publish what owner directory ``path`` holds, for ``spool status`` (its database is locked).

    Written to a temporary name and renamed over the last one, so a reader sees
    one whole version; never fsynced (a figure for people, not a record).
    """
    target = os.path.join(path, STATS_NAME)
    staging = target + ".tmp"
    data = {
        "pid": contents.pid,
        "hostname": contents.hostname,
        "messages": contents.messages,
        "bytes": contents.nbytes,
        "oldest_ms": contents.oldest_ms,
        "fingerprints": list(contents.fingerprints),
        "updated_ms": int(time.time() * 1000),
    }
    with open(staging, "w", encoding="utf-8") as handle:
        json.dump(data, handle)
    os.replace(staging, target)


def read_stats(path: str) -> Optional[Contents]:
    """What a live owner last published of owner directory ``path``; None if nothing readable."""
    try:
        with open(os.path.join(path, STATS_NAME), encoding="utf-8") as handle:
            data = json.load(handle)
        fingerprints = tuple(str(f) for f in data["fingerprints"])
        oldest = data["oldest_ms"]
        return Contents(
            messages=int(data["messages"]),
            nbytes=int(data["bytes"]),
            oldest_ms=oldest if isinstance(oldest, int) else None,
            pid=data["pid"] if isinstance(data["pid"], int) else None,
            hostname=data["hostname"] if isinstance(data["hostname"], str) else None,
            fingerprints=fingerprints,
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _contents(connection: sqlite3.Connection, schema: str) -> Contents:
    tables = {row[0] for row in connection.execute(f"SELECT name FROM {schema}.sqlite_master")}
    if "messages" not in tables:
        return Contents()  # its owner died before making the tables: nothing was ever accepted
    count, nbytes, oldest = connection.execute(
        f"SELECT count(*), coalesce(sum(length(body)), 0), min(accepted_ms) FROM {schema}.messages"
    ).fetchone()
    keys = tuple(row[0] for row in connection.execute(f"SELECT DISTINCT key FROM {schema}.messages"))
    owner = connection.execute(f"SELECT pid, hostname FROM {schema}.owner").fetchone() or (None, None)
    return Contents(
        messages=count,
        nbytes=nbytes + count * ROW_OVERHEAD_BYTES,
        oldest_ms=oldest,
        pid=owner[0] if isinstance(owner[0], int) else None,
        hostname=owner[1] if isinstance(owner[1], str) else None,
        fingerprints=keys,
    )


class OwnerDirectory:
    """An owner directory this process holds the lock of: its own, or an orphan being emptied."""

    def __init__(self, path: str, lock_fd: int) -> None:
        self.path = path
        self.lock_fd = lock_fd

    @property
    def database(self) -> str:
        """The path of its SQLite database."""
        return os.path.join(self.path, DATABASE_NAME)

    @classmethod
    def create(cls, root: str, sync: bool) -> OwnerDirectory:
        """Make and lock a fresh owner directory under ``root`` (its database is made by the caller)."""
        os.makedirs(root, exist_ok=True)
        name = f"{OWNER_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
        staging = os.path.join(root, _NEW_PREFIX + name)
        os.mkdir(staging, 0o700)
        fd = -1
        try:
            fd = os.open(os.path.join(staging, LOCK_NAME), os.O_RDWR | os.O_CREAT | _OPEN_FLAGS, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            # Visible under its final name only once locked: no one can adopt it half-made.
            final = os.path.join(root, name)
            os.rename(staging, final)
            if sync:
                fsync_directory(root)
        except BaseException:
            remove_tree(staging)
            if fd >= 0:
                os.close(fd)
            raise
        return cls(final, fd)

    @classmethod
    def adopt(cls, path: str) -> Optional[OwnerDirectory]:
        """Lock an orphaned owner directory; None when its owner is alive (or it is gone)."""
        fd = _lock(path, create=True)
        return None if fd is None else cls(path, fd)

    def release(self, remove: bool) -> None:
        """Let go of the directory (its database must be closed): delete it first when ``remove``."""
        if remove:
            remove_tree(self.path)
        if self.lock_fd >= 0:
            os.close(self.lock_fd)  # releases the lock
            self.lock_fd = -1

    def abandon(self) -> None:
        """Close the lock's descriptor without unlocking (in a forked child: the parent keeps it)."""
        if self.lock_fd >= 0:
            try:
                os.close(self.lock_fd)
            except OSError:
                pass
            self.lock_fd = -1

    def set_aside(self) -> str:
        """Rename a directory whose database is damaged out of the way (kept for inspection).

        Its new name (``unreadable-...``) is no owner directory's, so no client
        tries it again. Returns the new path.
        """
        root, name = os.path.split(self.path)
        target = os.path.join(root, f"unreadable-{name}")
        os.replace(self.path, target)
        self.path = target
        return target


def owner_row() -> tuple[int, str, int]:
    """The ``owner`` row of a database this process makes: pid, host, creation time (ms)."""
    return os.getpid(), socket.gethostname(), int(time.time() * 1000)


def create_schema(connection: sqlite3.Connection, gen: int) -> None:
    """Make the tables, the owner row and the journal state (``gen``, nothing in it) in one transaction."""
    connection.execute("BEGIN")
    try:
        _make_tables(connection, "main")
        connection.execute("INSERT INTO owner VALUES (?, ?, ?)", owner_row())
        connection.execute("INSERT INTO journal VALUES (?, ?)", (gen, journal.HEADER_SIZE))
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise


def orphan_contents(connection: sqlite3.Connection) -> Contents:
    """What the database attached as ``orphan`` holds."""
    return _contents(connection, "orphan")
