"""The queue factory of a client with ``spool_dir``: options checked once, a ``DiskSpool`` per process."""

from __future__ import annotations

import hashlib
import os
from typing import Union

from segment_lite.errors import SpoolError
from segment_lite.queue import MessageQueue

__all__ = ["FSYNC_POLICIES", "SpoolFactory", "check_spool_dir", "key_fingerprint", "spool_factory"]

#: "batch": fsync at most once per ``disk.SYNC_INTERVAL_S``, off the caller's thread;
#: "always": before each call returns; "never": leave it to the operating system
#: (and SQLite's checkpoints). See ``store.SYNCHRONOUS``.
FSYNC_POLICIES = ("batch", "always", "never")


def key_fingerprint(write_key: str) -> str:
    """A short one-way fingerprint of ``write_key``: a spool is delivered with the key it was written for."""
    return hashlib.sha256(b"segment_lite spool\0" + write_key.encode()).hexdigest()[:16]


def check_spool_dir(path: Union[str, os.PathLike[str]]) -> str:
    """Create ``path`` if needed and check this process can spool there; returns it as a string.

    Raises ``SpoolError`` naming the path and the problem.
    """
    root = os.fspath(path)
    try:
        os.makedirs(root, exist_ok=True)
    except OSError as exc:
        raise SpoolError(f"spool_dir {root!r} cannot be created: {exc.strerror or exc}") from None
    if not os.path.isdir(root):
        raise SpoolError(f"spool_dir {root!r} is not a directory")
    if not os.access(root, os.W_OK | os.X_OK):
        raise SpoolError(f"spool_dir {root!r} is not writable by this process")
    return root


class SpoolFactory:
    """Makes a client's ``DiskSpool``: in the process that made the client, and again in each forked child.

    Each call opens a fresh owner directory under the same root (so a child
    never writes into its parent's) and adopts the orphaned ones.
    """

    def __init__(self, root: str, *, max_bytes: int, fsync: str, wake_at: int, write_key: str) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.fsync = fsync
        self.wake_at = wake_at
        self._fingerprint = key_fingerprint(write_key)

    def __call__(self) -> MessageQueue:
        from segment_lite.spool.disk import DiskSpool

        return DiskSpool(
            self.root,
            max_bytes=self.max_bytes,
            wake_at=self.wake_at,
            fingerprint=self._fingerprint,
            fsync=self.fsync,
        )

    def change_write_key(self, write_key: str) -> None:
        """Spools made from now on (in a forked child) store messages under ``write_key``'s fingerprint."""
        self._fingerprint = key_fingerprint(write_key)

    def __repr__(self) -> str:
        return f"<SpoolFactory {self.root!r} max_bytes={self.max_bytes} fsync={self.fsync!r}>"


def spool_factory(
    spool_dir: Union[str, os.PathLike[str]],
    *,
    max_bytes: int,
    fsync: str,
    wake_at: int,
    write_key: str,
) -> SpoolFactory:
    """The queue factory for a client (whose ``ClientOptions`` checked ``fsync`` and ``max_bytes``).

    Raises ``SpoolError`` for a directory this process cannot use.
    """
    try:
        import fcntl  # noqa: F401  # owner directories are locked with flock()
        import sqlite3  # noqa: F401  # the messages live in SQLite
    except ImportError:
        raise SpoolError(
            "spool_dir needs POSIX file locks (fcntl) and the sqlite3 module, which this Python lacks"
        ) from None
    root = check_spool_dir(spool_dir)
    return SpoolFactory(root, max_bytes=max_bytes, fsync=fsync, wake_at=wake_at, write_key=write_key)
