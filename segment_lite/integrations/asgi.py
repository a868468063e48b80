"""ASGI middleware that tracks server-side pageviews (Starlette, FastAPI, any ASGI app)."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, MutableMapping
from typing import Any, Callable, Optional
from urllib.parse import quote

from segment_lite.integrations.pageview import (
    PageClient,
    PageviewConfig,
    PageviewTracker,
    RequestInfo,
    parse_cookie_header,
    response_sets_cookie,
)

__all__ = ["ANONYMOUS_ID_SCOPE_KEY", "SegmentPageviewMiddleware", "request_info_from_scope"]

#: The scope key under which the visitor's anonymous id is made available to the app.
ANONYMOUS_ID_SCOPE_KEY = "segment_lite.anonymous_id"

#: How long the lifespan shutdown waits for the client to deliver what is queued, by default.
DEFAULT_SHUTDOWN_FLUSH_TIMEOUT_S = 5.0

logger = logging.getLogger("segment_lite.integrations")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_SAFE_PATH_CHARS = "/:@!$&'()*+,;=-._~"
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def _decode(value: bytes) -> str:
    return value.decode("latin-1")


def request_info_from_scope(scope: Scope) -> RequestInfo:
    """Describe an ASGI HTTP request from its scope."""
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers") or ():
        name = _decode(raw_name).lower()
        value = _decode(raw_value)
        if name in headers:
            headers[name] = headers[name] + ("; " if name == "cookie" else ", ") + value
        else:
            headers[name] = value
    scheme = str(scope.get("scheme") or "http")
    host = headers.get("host")
    if not host:
        server = scope.get("server")
        if server:
            server_host, port = server[0], server[1]
            host = str(server_host) if port in (None, _DEFAULT_PORTS.get(scheme)) else f"{server_host}:{port}"
        else:
            host = ""
    raw_path = scope.get("raw_path")
    if raw_path:
        path = _decode(raw_path).split("?", 1)[0]
    else:
        path = quote(str(scope.get("root_path") or "") + str(scope.get("path") or ""), safe=_SAFE_PATH_CHARS)
    client = scope.get("client")
    query = scope.get("query_string") or b""
    return RequestInfo(
        method=str(scope.get("method") or "GET"),
        scheme=scheme,
        host=host,
        path=path or "/",
        query_string=_decode(query) if isinstance(query, bytes) else str(query),
        headers=headers,
        cookies=parse_cookie_header(headers.get("cookie")),
        remote_addr=str(client[0]) if client else None,
        request=scope,
    )


class SegmentPageviewMiddleware:
    """ASGI middleware: ``app.add_middleware(SegmentPageviewMiddleware, trusted_proxies=[...])``.

    ``http`` scopes are inspected: the page call is made when the app sends
    ``http.response.start``, where a ``set-cookie`` header for a new anonymous id is added.
    Tracking only enqueues on the client, so it never blocks the event loop on the network.
    The visitor's anonymous id is put in ``scope["segment_lite.anonymous_id"]``. While the
    app handles the request, a ``segment_lite.context`` carrying its anonymous id, IP, user
    agent, page, campaign and locale is active (option ``request_context``): tasks the
    app starts inherit it, and Starlette's threadpool for sync endpoints carries it too.
    ``websocket`` scopes pass through untouched.

    At the ``lifespan`` shutdown the middleware flushes the client (see
    :meth:`PageviewTracker.flush_client`), waiting at most ``shutdown_flush_timeout_s``
    seconds, in a worker thread: servers such as uvicorn end the process by re-raising
    SIGTERM, so ``atexit`` never runs. It flushes after the app's own shutdown handlers
    (what they track is included), and answers the lifespan protocol itself for an app
    that does not. ``flush_at_shutdown=False`` turns this off.
    """

    def __init__(
        self,
        app: ASGIApp,
        config: Optional[PageviewConfig] = None,
        *,
        client: Optional[PageClient] = None,
        tracker: Optional[PageviewTracker] = None,
        flush_at_shutdown: bool = True,
        shutdown_flush_timeout_s: float = DEFAULT_SHUTDOWN_FLUSH_TIMEOUT_S,
        **options: Any,
    ) -> None:
        self.app = app
        self.tracker = PageviewTracker.for_adapter(tracker, config, client, options)
        self.flush_at_shutdown = flush_at_shutdown
        self.shutdown_flush_timeout_s = shutdown_flush_timeout_s

    @property
    def errors(self) -> int:
        """How many tracking errors were caught (and logged) so far."""
        return self.tracker.errors

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope_type = scope.get("type")
        if scope_type == "lifespan" and self.flush_at_shutdown:
            await self._lifespan(scope, receive, send)
            return
        if scope_type != "http":
            await self.app(scope, receive, send)
            return
        tracker = self.tracker
        try:
            visit = tracker.begin(request_info_from_scope(scope))
            scope = dict(scope)
            scope[ANONYMOUS_ID_SCOPE_KEY] = visit.anonymous_id
        except Exception as exc:
            tracker.record_error(exc, "pageview request inspection")
            await self.app(scope, receive, send)
            return

        async def tracking_send(message: Message) -> None:
            if message.get("type") == "http.response.start" and not visit.done:
                try:
                    headers: list[tuple[bytes, bytes]] = list(message.get("headers") or ())
                    content_type: Optional[str] = None
                    set_cookies: list[str] = []
                    for name, value in headers:
                        lowered = name.lower()
                        if lowered == b"content-type" and content_type is None:
                            content_type = _decode(value)
                        elif lowered == b"set-cookie":
                            set_cookies.append(_decode(value))
                    cookie = tracker.finish(
                        visit,
                        int(message.get("status", 200)),
                        content_type,
                        response_sets_anonymous_id=response_sets_cookie(
                            set_cookies, tracker.config.anonymous_id_cookie
                        ),
                    )
                    if cookie is not None:
                        headers.append((b"set-cookie", cookie.encode("latin-1")))
                        message = {**message, "headers": headers}
                except Exception as exc:
                    tracker.record_error(exc)
            await send(message)

        request_scope = tracker.request_context(visit)
        if request_scope is None:
            await self.app(scope, receive, tracking_send)
            return
        with request_scope:
            await self.app(scope, receive, tracking_send)

    # -- lifespan

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app's lifespan, flushing before ``lifespan.shutdown.complete`` goes out."""
        received: list[str] = []
        answered: list[str] = []

        async def watching_receive() -> Message:
            message = await receive()
            received.append(str(message.get("type")))
            return message

        async def flushing_send(message: Message) -> None:
            message_type = str(message.get("type"))
            if message_type in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                await self._flush_client()
            answered.append(message_type)
            await send(message)

        try:
            await self.app(scope, watching_receive, flushing_send)
        except Exception as exc:
            if answered:  # the app speaks lifespan and failed in it: the server reports that
                raise
            logger.debug("segment_lite: the app does not handle lifespan (%r); answering it here", exc)
        if not answered:
            await self._answer_lifespan(receive, send, startup_received="lifespan.startup" in received)

    async def _answer_lifespan(self, receive: Receive, send: Send, *, startup_received: bool) -> None:
        """Speak the lifespan protocol for an app that does not: confirm startup, flush at shutdown."""
        if not startup_received:
            await receive()
        await send({"type": "lifespan.startup.complete"})
        message = await receive()  # the protocol's only message after startup
        if message.get("type") == "lifespan.shutdown":
            await self._flush_client()
            await send({"type": "lifespan.shutdown.complete"})

    async def _flush_client(self) -> None:
        """Flush the client without blocking the event loop; errors are logged, never raised."""
        try:
            client = self.tracker.client
            flush = getattr(client, "flush", None)
            if client is not None and inspect.iscoroutinefunction(flush):
                # An AsyncClient: await its flush on this loop (it delivers from tasks on it).
                if await flush(self.shutdown_flush_timeout_s) is False:
                    logger.warning(
                        "segment_lite: events were still queued when the %gs flush at ASGI shutdown ended",
                        self.shutdown_flush_timeout_s,
                    )
                return
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # another async library (trio): flushing inline is fine at exit
                delivered = self.tracker.flush_client(self.shutdown_flush_timeout_s)
            else:
                delivered = await loop.run_in_executor(
                    None, self.tracker.flush_client, self.shutdown_flush_timeout_s
                )
            if delivered is False:
                logger.warning(
                    "segment_lite: events were still queued when the %gs flush at ASGI shutdown ended",
                    self.shutdown_flush_timeout_s,
                )
        except Exception as exc:
            self.tracker.record_error(exc, "flushing the client at ASGI lifespan shutdown")
