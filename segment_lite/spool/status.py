"""What a spool directory holds, read without taking anything: for ``segment-lite spool status``."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Optional

from segment_lite.spool.store import owner_directories, probe_lock, read_contents, read_stats

__all__ = ["OwnerStatus", "SpoolStatus", "spool_status"]


@dataclass
class OwnerStatus:
    """One owner directory: whose it is, whether its process is alive, and what it still holds."""

    name: str
    live: bool  # its process holds the lock
    pid: Optional[int]
    hostname: Optional[str]
    #: The fingerprints of the write keys its messages were accepted under (usually one).
    write_key_fingerprints: tuple[str, ...]
    messages: int
    nbytes: int
    oldest_age_s: Optional[float]
    unreadable: bool  # its database could not be read

    @property
    def write_key_fingerprint(self) -> Optional[str]:
        """The fingerprint of its write key (the first, when messages of several keys are there)."""
        return self.write_key_fingerprints[0] if self.write_key_fingerprints else None

    def as_dict(self) -> dict[str, Any]:
        """The status as plain JSON values."""
        return {
            "name": self.name,
            "state": "live" if self.live else "orphaned",
            "pid": self.pid,
            "hostname": self.hostname,
            "write_key_fingerprint": self.write_key_fingerprint,
            "write_key_fingerprints": list(self.write_key_fingerprints),
            "messages": self.messages,
            "bytes": self.nbytes,
            "oldest_age_s": None if self.oldest_age_s is None else round(self.oldest_age_s, 3),
            "unreadable": self.unreadable,
        }


@dataclass
class SpoolStatus:
    """Every owner directory under a spool root, and the totals."""

    root: str
    owners: list[OwnerStatus]

    @property
    def messages(self) -> int:
        """Undelivered messages in every owner directory."""
        return sum(owner.messages for owner in self.owners)

    @property
    def nbytes(self) -> int:
        """Their bytes on disk, with the row overhead."""
        return sum(owner.nbytes for owner in self.owners)

    @property
    def oldest_age_s(self) -> Optional[float]:
        """Seconds since the oldest undelivered message was accepted."""
        ages = [owner.oldest_age_s for owner in self.owners if owner.oldest_age_s is not None]
        return max(ages) if ages else None

    def as_dict(self) -> dict[str, Any]:
        """The status as plain JSON values."""
        oldest = self.oldest_age_s
        return {
            "root": self.root,
            "messages": self.messages,
            "bytes": self.nbytes,
            "oldest_age_s": None if oldest is None else round(oldest, 3),
            "unreadable_directories": sum(owner.unreadable for owner in self.owners),
            "directories": [owner.as_dict() for owner in self.owners],
        }


def spool_status(root: str, now_s: Optional[float] = None) -> SpoolStatus:
    """Inspect every owner directory under ``root`` (the ``spool_dir`` a client was given).

    Nothing is locked, taken or deleted. A live owner's database is locked by
    it (SQLite's exclusive mode): its figures are the ones it last published
    (``store.STATS_NAME``, rewritten within ``disk.STATS_INTERVAL_S`` of a change),
    a snapshot that it may already have moved past.
    """
    now_s = time.time() if now_s is None else now_s
    owners = []
    for path in owner_directories(root):
        live = probe_lock(path)
        published = read_stats(path) if live else None
        contents = read_contents(path) if published is None else published
        owners.append(
            OwnerStatus(
                name=os.path.basename(path),
                live=live,
                pid=contents.pid,
                hostname=contents.hostname,
                write_key_fingerprints=contents.fingerprints,
                messages=contents.messages,
                nbytes=contents.nbytes,
                oldest_age_s=None
                if contents.oldest_ms is None
                else max(0.0, now_s - contents.oldest_ms / 1000),
                unreadable=contents.unreadable,
            )
        )
    return SpoolStatus(root, owners)
