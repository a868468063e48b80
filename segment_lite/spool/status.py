"""What a spool directory holds, read without taking anything: for ``segment-lite spool status``."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Optional

from segment_lite.spool.directory import (
    list_segments,
    owner_directories,
    probe_lock,
    read_cursor,
    read_meta,
    scan_segments,
    start_cursor,
)

__all__ = ["OwnerStatus", "SpoolStatus", "spool_status"]


@dataclass
class OwnerStatus:
    """One owner directory: whose it is, whether its process is alive, and what it still holds."""

    name: str
    live: bool  # its process holds the lock
    pid: Optional[int]
    hostname: Optional[str]
    write_key_fingerprint: Optional[str]
    messages: int
    nbytes: int
    oldest_age_s: Optional[float]
    unreadable_records: int

    def as_dict(self) -> dict[str, Any]:
        """The status as plain JSON values."""
        return {
            "name": self.name,
            "state": "live" if self.live else "orphaned",
            "pid": self.pid,
            "hostname": self.hostname,
            "write_key_fingerprint": self.write_key_fingerprint,
            "messages": self.messages,
            "bytes": self.nbytes,
            "oldest_age_s": None if self.oldest_age_s is None else round(self.oldest_age_s, 3),
            "unreadable_records": self.unreadable_records,
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
        """Their bytes on disk, record headers included."""
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
            "unreadable_records": sum(owner.unreadable_records for owner in self.owners),
            "directories": [owner.as_dict() for owner in self.owners],
        }


def spool_status(root: str, now_s: Optional[float] = None) -> SpoolStatus:
    """Inspect every owner directory under ``root`` (the ``spool_dir`` a client was given).

    Nothing is locked, taken or deleted; a live directory's figures are a
    snapshot that its owner may already have moved past.
    """
    now_s = time.time() if now_s is None else now_s
    owners = []
    for path in owner_directories(root):
        live = probe_lock(path)
        meta = read_meta(path)
        try:
            segments = list_segments(path)
        except OSError:
            continue  # deleted by its owner as we looked
        cursor = read_cursor(path) or start_cursor(segments)
        scan = scan_segments(path, segments, cursor, live=live)
        pid = meta.get("pid")
        hostname = meta.get("hostname")
        fingerprint = meta.get("write_key_fingerprint")
        owners.append(
            OwnerStatus(
                name=os.path.basename(path),
                live=live,
                pid=pid if isinstance(pid, int) else None,
                hostname=hostname if isinstance(hostname, str) else None,
                write_key_fingerprint=fingerprint if isinstance(fingerprint, str) else None,
                messages=scan.records,
                nbytes=scan.nbytes,
                oldest_age_s=None if scan.oldest_ms is None else max(0.0, now_s - scan.oldest_ms / 1000),
                unreadable_records=scan.lost_records,
            )
        )
    return SpoolStatus(root, owners)
