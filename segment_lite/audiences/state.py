"""The sync state: per user, the values last confirmed sent, and the changes of a sync under way (SQLite)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from typing import Any, Optional

__all__ = ["PendingChange", "SyncState"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS users (user_id TEXT PRIMARY KEY, seq INTEGER NOT NULL, vals TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pending (
    user_id TEXT PRIMARY KEY, seq INTEGER NOT NULL, vals TEXT NOT NULL, message_id TEXT NOT NULL
);
"""

#: (userId, the send's sequence number for that user, the full values after it, the identify's messageId)
PendingChange = tuple[str, int, dict[str, Any], str]


def _dumps(values: dict[str, Any]) -> str:
    return json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class SyncState:
    """One SQLite file (WAL, synchronous FULL) that survives kill -9 at any point.

    ``users`` holds what Segment was last confirmed to have; ``pending`` the
    changes of the sync under way, written in one transaction before anything
    is sent and applied to ``users`` in one transaction once delivery is
    confirmed. A sync that finds ``pending`` rows finishes that sync first.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, timeout=30.0)
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = FULL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def __enter__(self) -> SyncState:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def meta(self, key: str) -> Optional[str]:
        """A stored setting, or None."""
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def sent(self) -> dict[str, tuple[int, dict[str, Any]]]:
        """userId -> (sequence number, values last confirmed sent)."""
        rows = self._db.execute("SELECT user_id, seq, vals FROM users").fetchall()
        return {str(uid): (int(seq), json.loads(vals)) for uid, seq, vals in rows}

    def pending(self) -> list[PendingChange]:
        """The changes of an unfinished sync (empty when none)."""
        rows = self._db.execute(
            "SELECT user_id, seq, vals, message_id FROM pending ORDER BY user_id"
        ).fetchall()
        return [(str(u), int(s), json.loads(v), str(m)) for u, s, v, m in rows]

    def begin(self, changes: Iterable[PendingChange], meta: dict[str, str]) -> None:
        """Record the changes about to be sent (replacing any), with ``meta`` settings, atomically."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("DELETE FROM pending")
            db.executemany(
                "INSERT INTO pending (user_id, seq, vals, message_id) VALUES (?, ?, ?, ?)",
                ((uid, seq, _dumps(vals), mid) for uid, seq, vals, mid in changes),
            )
            db.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", meta.items())
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def commit(self, refused: Iterable[str] = ()) -> int:
        """Apply the pending changes as sent, except users whose identify was ``refused``; returns applied."""
        refused_ids = set(refused)
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            rows = db.execute("SELECT user_id, seq, vals, message_id FROM pending").fetchall()
            keep = [(u, s, v) for u, s, v, m in rows if m not in refused_ids]
            db.executemany("INSERT OR REPLACE INTO users (user_id, seq, vals) VALUES (?, ?, ?)", keep)
            db.execute("DELETE FROM pending")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return len(keep)

    def discard(self) -> None:
        """Forget the pending changes (their outbox is gone); the next sync computes them again."""
        self._db.execute("DELETE FROM pending")
