"""Durable delivery: a disk spool that keeps accepted messages across crashes, kills and restarts.

``Client(spool_dir=PATH)`` builds its queue with :func:`spool_factory`; the
``segment-lite spool`` command inspects and drains a spool directory. See
docs/reliability.md for what survives what, and the module docstrings of
``records`` (file format), ``directory`` (ownership) and ``disk`` (the queue).
"""

from __future__ import annotations

import os
from typing import Union

from segment_lite.errors import SpoolError, ValidationError
from segment_lite.queue import MessageQueue
from segment_lite.spool.directory import key_fingerprint
from segment_lite.spool.disk import DEFAULT_SEGMENT_BYTES, FSYNC_POLICIES, SYNC_INTERVAL_S, DiskSpool

__all__ = [
    "DEFAULT_SEGMENT_BYTES",
    "FSYNC_POLICIES",
    "SYNC_INTERVAL_S",
    "DiskSpool",
    "SpoolFactory",
    "check_spool_dir",
    "spool_factory",
]


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
        return DiskSpool(
            self.root,
            max_bytes=self.max_bytes,
            wake_at=self.wake_at,
            fingerprint=self._fingerprint,
            fsync=self.fsync,
        )

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
    """Validate the spool options and return the queue factory for a client.

    Raises ``ValidationError`` for a bad ``spool_fsync`` or ``spool_max_bytes``
    and ``SpoolError`` for a directory this process cannot use.
    """
    if fsync not in FSYNC_POLICIES:
        raise ValidationError(
            f"spool_fsync must be one of {', '.join(repr(p) for p in FSYNC_POLICIES)}, got {fsync!r}",
            "spool_fsync",
        )
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 64 * 1024:
        raise ValidationError(
            f"spool_max_bytes must be an integer of at least 65536 bytes, got {max_bytes!r}",
            "spool_max_bytes",
        )
    root = check_spool_dir(spool_dir)
    return SpoolFactory(root, max_bytes=max_bytes, fsync=fsync, wake_at=wake_at, write_key=write_key)
