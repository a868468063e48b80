"""The debugger page and its JSON API: static files, the event listing, one event, and the counters."""

from __future__ import annotations

from importlib import resources
from typing import Any, Callable, Optional
from urllib.parse import unquote

from segment_lite.collector.http_server import CONTENT_SECURITY_POLICY, LocalNames, Request, Response
from segment_lite.collector.processing import RequestError
from segment_lite.collector.recording import CollectorStats
from segment_lite.collector.store import EventStore
from segment_lite.limits import MESSAGE_TYPES

__all__ = ["CONTENT_SECURITY_POLICY", "MAX_PAGE_EVENTS", "DebuggerRoutes"]

# Row ids are SQLite integers.
_MAX_ROW_ID = 2**63 - 1
MAX_PAGE_EVENTS = 1000

_STATIC_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".ico": "image/x-icon",
}


class DebuggerRoutes:
    """Answers ``GET /``, ``/static/...`` and ``/api/...`` from the store and the counters.

    ``local`` says which ``Host`` values are this machine's (others get 403:
    see :class:`~segment_lite.collector.http_server.LocalNames`); ``stats``
    returns the current counters.
    """

    def __init__(self, store: EventStore, stats: Callable[[], CollectorStats], local: LocalNames) -> None:
        self._store = store
        self._stats = stats
        self._local = local

    def handle(self, request: Request) -> Response:
        """Answer one request to a debugger path (the server adds the security headers to every answer)."""
        host = request.headers.get("Host")
        if host is not None and not self._local.allows_host(host):
            return Response.error(
                403,
                "forbidden_host",
                "the debugger answers only to localhost, a loopback address or the address it is bound to",
            )
        path = request.path
        if path in ("/", "/index.html"):
            return self._static("index.html")
        if path.startswith("/static/"):
            return self._static(path[len("/static/") :])
        if path == "/api/events":
            try:
                return self._events(request.query)
            except RequestError as exc:
                return Response.json(exc.status, exc.body())
        if path.startswith("/api/events/"):
            message_id = unquote(path[len("/api/events/") :])
            found = self._store.get(message_id) if not self._store.closed else None
            if found is None:
                return Response.error(404, "not_found", "no stored event with that messageId")
            return Response.json(200, {"event": found.summary(), "message": found.message})
        if path == "/api/stats":
            stats = self._stats().as_dict()
            stats["stored_total"] = self._store.count()
            return Response.json(200, stats)
        return Response.error(404, "not_found", f"nothing at {path}")

    def _static(self, name: str) -> Response:
        suffix = name[name.rfind(".") :] if "." in name else ""
        if not name or name.startswith(".") or "/" in name or "\\" in name or suffix not in _STATIC_TYPES:
            return Response.error(404, "not_found", "no such file")
        resource = resources.files("segment_lite.collector").joinpath("static").joinpath(name)
        try:
            data = resource.read_bytes()
        except OSError:
            return Response.error(404, "not_found", "no such file")
        return Response(200, data, _STATIC_TYPES[suffix])

    def _events(self, query: dict[str, list[str]]) -> Response:
        def text(name: str) -> Optional[str]:
            values = query.get(name)
            return (values[0].strip() or None) if values else None

        def number(name: str, low: int, high: int) -> Optional[int]:
            value = text(name)
            if value is None:
                return None
            if not (value.isascii() and value.isdigit() and low <= int(value) <= high):
                raise RequestError(
                    400,
                    "invalid_query",
                    f"{name} must be a whole number from {low} to {high} (got {value[:30]!r})",
                    {"field": name},
                )
            return int(value)

        kind = text("type")
        if kind is not None and kind not in MESSAGE_TYPES:
            raise RequestError(
                400,
                "invalid_query",
                f"type must be one of {', '.join(MESSAGE_TYPES)} (got {kind[:30]!r})",
                {"field": "type"},
            )
        limit = number("limit", 1, MAX_PAGE_EVENTS) or 100
        after = number("after", 0, _MAX_ROW_ID)
        before = number("before", 0, _MAX_ROW_ID)
        # Read the high-water mark first and bound the query by it, so an event
        # stored meanwhile is neither skipped by the next ``after`` nor shown twice.
        upto = self._store.last_id()
        events = self._store.query(
            type=kind,
            user_id=text("user"),
            event=text("event"),
            after_id=after,
            before_id=upto + 1 if before is None else min(before, upto + 1),
            limit=limit,
            newest_first=True,
        )
        body: dict[str, Any] = {
            "events": [e.summary() for e in events],
            "lastId": upto,
            "total": self._store.count(),
        }
        return Response.json(200, body)
