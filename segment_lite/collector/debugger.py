"""The debugger page and its JSON API: static files, the event listing, one event, and the counters."""

from __future__ import annotations

from importlib import resources
from typing import Any, Callable, Optional
from urllib.parse import unquote

from segment_lite.collector.http_server import Request, Response
from segment_lite.collector.recording import CollectorStats
from segment_lite.collector.store import EventStore

__all__ = ["CONTENT_SECURITY_POLICY", "DebuggerRoutes", "is_loopback_host"]

CONTENT_SECURITY_POLICY = "default-src 'self'; img-src 'self' data:"

_STATIC_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".ico": "image/x-icon",
}


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` names a loopback address (what the collector binds to by default)."""
    return host in ("localhost", "::1") or host.startswith("127.")


class DebuggerRoutes:
    """Answers ``GET /``, ``/static/...`` and ``/api/...`` from the store and the counters.

    ``bound_host`` is the address the collector listens on; ``stats`` returns
    the current counters.
    """

    def __init__(self, store: EventStore, stats: Callable[[], CollectorStats], bound_host: str) -> None:
        self._store = store
        self._stats = stats
        self._bound_host = bound_host

    def handle(self, request: Request) -> Response:
        """Answer one request to a debugger path."""
        if not self._host_allowed(request.headers.get("Host")):
            return Response.error(403, "forbidden", "the debugger answers only to a loopback Host")
        path = request.path
        if path in ("/", "/index.html"):
            return self._static("index.html")
        if path.startswith("/static/"):
            return self._static(path[len("/static/") :])
        if path == "/api/events":
            return self._events(request.query)
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

    def _host_allowed(self, host_header: Optional[str]) -> bool:
        """On a loopback bind, the page and API answer only to loopback Host names.

        A web page elsewhere could otherwise point its own host name at 127.0.0.1
        (DNS rebinding) and read the stored events through the visitor's browser.
        """
        if not is_loopback_host(self._bound_host) or not host_header:
            return True
        host = host_header.strip().lower()
        if host.startswith("["):
            host = host[1 : host.find("]")] if "]" in host else host
        elif host.count(":") == 1:
            host = host.split(":", 1)[0]
        return is_loopback_host(host)

    def _static(self, name: str) -> Response:
        suffix = name[name.rfind(".") :] if "." in name else ""
        if not name or name.startswith(".") or "/" in name or "\\" in name or suffix not in _STATIC_TYPES:
            return Response.error(404, "not_found", "no such file")
        resource = resources.files("segment_lite.collector").joinpath("static").joinpath(name)
        try:
            data = resource.read_bytes()
        except OSError:
            return Response.error(404, "not_found", "no such file")
        headers = (
            ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
            ("X-Content-Type-Options", "nosniff"),
        )
        return Response(200, data, _STATIC_TYPES[suffix], headers)

    def _events(self, query: dict[str, list[str]]) -> Response:
        def one(name: str) -> Optional[str]:
            values = query.get(name)
            return (values[0].strip() or None) if values else None

        def number(name: str) -> Optional[int]:
            value = one(name)
            try:
                return None if value is None else int(value)
            except ValueError:
                return None

        limit = min(max(number("limit") or 100, 1), 1000)
        # Read the high-water mark first and bound the query by it, so an event
        # stored meanwhile is neither skipped by the next ``after`` nor shown twice.
        upto = self._store.last_id()
        before = number("before")
        events = self._store.query(
            type=one("type"),
            user_id=one("user"),
            event=one("event"),
            after_id=number("after"),
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
