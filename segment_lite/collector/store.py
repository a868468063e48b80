"""SQLite storage for collected Segment messages, independent of the HTTP layer."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import tempfile
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Optional

from segment_lite.errors import InvalidStateError

__all__ = ["EventStore", "InsertResult", "StoredEvent"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    user_id TEXT,
    anonymous_id TEXT,
    event TEXT,
    received_at TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_type ON events (type);
CREATE INDEX IF NOT EXISTS events_user_id ON events (user_id);
CREATE INDEX IF NOT EXISTS events_anonymous_id ON events (anonymous_id);
CREATE INDEX IF NOT EXISTS events_event ON events (event);
CREATE INDEX IF NOT EXISTS events_received_at ON events (received_at);
"""

_COLUMNS = "id, message_id, type, user_id, anonymous_id, event, received_at, body"


@dataclass(frozen=True)
class StoredEvent:
    """One stored message: its row id, the indexed columns and the full message."""

    id: int
    message_id: str
    type: str
    user_id: Optional[str]
    anonymous_id: Optional[str]
    event: Optional[str]
    received_at: str
    message: dict[str, Any]

    @property
    def violations(self) -> list[dict[str, Any]]:
        """The tracking-plan problems recorded in ``context.protocols.violations`` (``serve --plan``)."""
        context = self.message.get("context")
        protocols = context.get("protocols") if isinstance(context, dict) else None
        found = protocols.get("violations") if isinstance(protocols, dict) else None
        return [item for item in found if isinstance(item, dict)] if isinstance(found, list) else []

    def summary(self) -> dict[str, Any]:
        """The indexed columns without the full message, as a JSON-ready dict."""
        return {
            "id": self.id,
            "messageId": self.message_id,
            "type": self.type,
            "userId": self.user_id,
            "anonymousId": self.anonymous_id,
            "event": self.event,
            "name": self.message.get("name"),
            "path": _page_path(self.message),
            "groupId": self.message.get("groupId"),
            "previousId": self.message.get("previousId"),
            "receivedAt": self.received_at,
            "violations": len(self.violations),
        }


@dataclass(frozen=True)
class InsertResult:
    """What :meth:`EventStore.insert_many` did: how many rows it added and how many were duplicates."""

    stored: int
    duplicates: int


def _page_path(message: dict[str, Any]) -> Optional[str]:
    """The path of a page call: ``properties.path``, else ``context.page.path``; None if neither."""
    properties = message.get("properties")
    if isinstance(properties, dict) and isinstance(properties.get("path"), str):
        return str(properties["path"])
    context = message.get("context")
    page = context.get("page") if isinstance(context, dict) else None
    if isinstance(page, dict) and isinstance(page.get("path"), str):
        return str(page["path"])
    return None


def _text(value: Any) -> Optional[str]:
    """Render an identifier column: strings as they are, numbers as text, anything else as NULL."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return str(value)
    return None


class EventStore:
    """A thread-safe SQLite (WAL) store of messages, one row per unique ``messageId``.

    ``path=None`` creates a private temporary database that :meth:`close` deletes;
    any other path is a persistent file shared with other processes (for example
    ``segment-lite events`` reading while ``segment-lite serve`` writes).
    """

    def __init__(self, path: Optional[str] = None) -> None:
        self._tempdir: Optional[str] = None
        if path is None:
            self._tempdir = tempfile.mkdtemp(prefix="segment-lite-collector-")
            path = os.path.join(self._tempdir, "events.db")
        self.path = path
        self.temporary = self._tempdir is not None
        self._lock = threading.Lock()
        self._conn: Optional[sqlite3.Connection] = sqlite3.connect(
            path, check_same_thread=False, isolation_level=None, timeout=10.0
        )
        self._conn.execute("PRAGMA busy_timeout = 10000")
        self._conn.execute("PRAGMA journal_mode = WAL")
        # A file the user named must survive power loss once we answered 200;
        # a private temporary database is deleted on stop, so it may skip fsync.
        self._conn.execute("PRAGMA synchronous = NORMAL" if self.temporary else "PRAGMA synchronous = FULL")
        self._conn.executescript(_SCHEMA)

    # -- lifecycle -----------------------------------------------------------

    def close(self) -> None:
        """Close the database; a temporary database is deleted."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
        if self._tempdir is not None:
            shutil.rmtree(self._tempdir, ignore_errors=True)
            self._tempdir = None

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has been called."""
        return self._conn is None

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise InvalidStateError("the event store is closed")
        return self._conn

    # -- writing -------------------------------------------------------------

    def insert_many(self, messages: Iterable[dict[str, Any]]) -> InsertResult:
        """Store messages in one transaction, committed before this returns.

        Each message needs ``messageId``, ``type`` and ``receivedAt``. A message
        whose ``messageId`` is already stored (or repeated within ``messages``)
        is skipped and counted as a duplicate. Either every new message is
        stored or, on error, none is.
        """
        rows = []
        for message in messages:
            rows.append(
                (
                    str(message["messageId"]),
                    str(message["type"]),
                    _text(message.get("userId")),
                    _text(message.get("anonymousId")),
                    _text(message.get("event")),
                    str(message["receivedAt"]),
                    json.dumps(message, ensure_ascii=False, separators=(",", ":")),
                )
            )
        stored = 0
        with self._lock:
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
            try:
                for row in rows:
                    cursor = db.execute(
                        "INSERT OR IGNORE INTO events"
                        " (message_id, type, user_id, anonymous_id, event, received_at, body)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?)",
                        row,
                    )
                    stored += cursor.rowcount
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return InsertResult(stored=stored, duplicates=len(rows) - stored)

    def clear(self) -> None:
        """Delete every stored message."""
        with self._lock:
            self._db().execute("DELETE FROM events")

    # -- reading -------------------------------------------------------------

    @staticmethod
    def _where(
        type: Optional[str],
        user_id: Optional[str],
        event: Optional[str],
        after_id: Optional[int],
        before_id: Optional[int],
    ) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        if type:
            clauses.append("type = ?")
            params.append(type)
        if user_id:
            clauses.append("(user_id = ? OR anonymous_id = ?)")
            params.extend([user_id, user_id])
        if event:
            clauses.append("event = ?")
            params.append(event)
        if after_id is not None:
            clauses.append("id > ?")
            params.append(after_id)
        if before_id is not None:
            clauses.append("id < ?")
            params.append(before_id)
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        return where, params

    def query(
        self,
        *,
        type: Optional[str] = None,
        user_id: Optional[str] = None,
        event: Optional[str] = None,
        after_id: Optional[int] = None,
        before_id: Optional[int] = None,
        limit: Optional[int] = 100,
        newest_first: bool = True,
    ) -> list[StoredEvent]:
        """Stored events matching every given filter.

        ``user_id`` matches either ``userId`` or ``anonymousId``. ``after_id``
        and ``before_id`` bound the row id (use ``after_id`` with
        ``newest_first=False`` to follow new events). ``limit=None`` means all.
        """
        where, params = self._where(type, user_id, event, after_id, before_id)
        sql = f"SELECT {_COLUMNS} FROM events{where} ORDER BY id {'DESC' if newest_first else 'ASC'}"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(max(0, int(limit)))
        with self._lock:
            rows = self._db().execute(sql, params).fetchall()
        return [self._row(row) for row in rows]

    def count(
        self, *, type: Optional[str] = None, user_id: Optional[str] = None, event: Optional[str] = None
    ) -> int:
        """How many stored events match the filters (all of them by default)."""
        where, params = self._where(type, user_id, event, None, None)
        with self._lock:
            (n,) = self._db().execute(f"SELECT COUNT(*) FROM events{where}", params).fetchone()
        return int(n)

    def get(self, message_id: str) -> Optional[StoredEvent]:
        """The stored event with this ``messageId``, or None."""
        with self._lock:
            row = (
                self._db()
                .execute(f"SELECT {_COLUMNS} FROM events WHERE message_id = ?", (message_id,))
                .fetchone()
            )
        return None if row is None else self._row(row)

    def last_id(self) -> int:
        """The highest row id stored so far (0 when empty)."""
        with self._lock:
            (n,) = self._db().execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()
        return int(n)

    def messages(self) -> list[dict[str, Any]]:
        """Every stored message, oldest first."""
        return [e.message for e in self.query(limit=None, newest_first=False)]

    def message_ids(self) -> set[str]:
        """The set of stored ``messageId`` values."""
        with self._lock:
            rows = self._db().execute("SELECT message_id FROM events").fetchall()
        return {str(r[0]) for r in rows}

    @staticmethod
    def _row(row: tuple[Any, ...]) -> StoredEvent:
        message = json.loads(row[7])
        return StoredEvent(
            id=int(row[0]),
            message_id=str(row[1]),
            type=str(row[2]),
            user_id=row[3],
            anonymous_id=row[4],
            event=row[5],
            received_at=str(row[6]),
            message=message if isinstance(message, dict) else {},
        )
