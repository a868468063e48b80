"""The ``Collector``: its lifecycle, routing and test-facing API, composed from the collector's parts.

Calls go one way: ``Collector`` owns an :class:`~segment_lite.collector.http_server.HttpServer`
that hands each request to the routes (:class:`_Routes`), which answer through
the tracking endpoint or the debugger routes by returning a response. Nothing
below calls back into the ``Collector``.
"""

from __future__ import annotations

import errno
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, Callable, Optional

from segment_lite.collector.debugger import DebuggerRoutes
from segment_lite.collector.faults import Failure, FaultBody, FaultPlan, RetryAfter
from segment_lite.collector.http_server import (
    ConnectionTracker,
    HttpServer,
    LocalNames,
    Request,
    Response,
    is_loopback_host,
)
from segment_lite.collector.oauth import TOKEN_PATH, TokenIssuer
from segment_lite.collector.recording import CollectorStats, RecordedRequest, RequestLog
from segment_lite.collector.settings import Auth, CollectorLimits, Faults
from segment_lite.collector.store import EventStore
from segment_lite.collector.tracking import (
    TRACKING_PATHS,
    Annotator,
    TrackingEndpoint,
    WriteKeyCheck,
)
from segment_lite.errors import InvalidStateError

__all__ = [
    "Collector",
    "is_loopback_host",
]

#: How long ``go_up`` tries again to listen on a port something else holds for now.
REBIND_WAIT_S = 10.0


class _Routes:
    """Sends each request to the tracking endpoint or the debugger routes, by method and path."""

    def __init__(
        self,
        tracking: TrackingEndpoint,
        debugger: DebuggerRoutes,
        token_endpoint: Optional[Callable[[Request], Response]] = None,
    ) -> None:
        self._tracking = tracking
        self._debugger = debugger
        self._token_endpoint = token_endpoint

    def __call__(self, request: Request) -> Response:
        path, method = request.path, request.method
        kind = TRACKING_PATHS.get(path)
        if method == "POST":
            if kind is not None:
                return self._tracking.handle(request, kind)
            if path == TOKEN_PATH and self._token_endpoint is not None:
                return self._token_endpoint(request)
            if path.startswith("/api/") or path == "/" or path.startswith("/static/"):
                return Response.error(405, "method_not_allowed", f"POST is not allowed on {path}")
            return self._tracking.unroutable(request, 404, "not_found", f"no endpoint at {path}")
        if method in ("GET", "HEAD"):
            if kind is not None:
                return self._tracking.unroutable(request, 405, "method_not_allowed", f"{path} takes POST")
            if path.startswith("/v1/"):
                return self._tracking.unroutable(request, 404, "not_found", f"no endpoint at {path}")
            return self._debugger.handle(request)
        if path.startswith("/v1/"):
            return self._tracking.unroutable(
                request, 405, "method_not_allowed", f"{method} is not allowed on {path}"
            )
        return Response.error(405, "method_not_allowed", f"{method} is not allowed")


class Collector:
    """A local Segment Tracking API server that stores what it receives.

    ``with Collector() as c:`` starts it on a free loopback port; send events to
    ``c.url`` and inspect them with :meth:`messages`, :attr:`requests` and
    :attr:`stats`. ``db=None`` keeps events in a private temporary SQLite file
    removed on :meth:`stop`; a path keeps them in that file.

    ``write_keys`` (an iterable of keys) turns authentication on: requests whose
    key is missing or unknown get 401. Left None, any key (or none) is accepted.
    ``auth`` (:class:`~segment_lite.collector.settings.Auth`) sets another
    credential check or OAuth mode; ``faults``
    (:class:`~segment_lite.collector.settings.Faults`) makes it misbehave from the
    outset; ``limits`` (:class:`~segment_lite.collector.settings.CollectorLimits`)
    sets size limits, connection limits and how many requests it keeps.
    ``annotators`` see each accepted message before it is stored (see
    :data:`~segment_lite.collector.tracking.Annotator`); ``clock`` supplies the
    receive time (a callable returning an aware datetime), for exact tests;
    ``log`` receives one line per Tracking API request.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        db: Optional[str] = None,
        write_keys: Optional[Iterable[str]] = None,
        *,
        auth: Optional[Auth] = None,
        faults: Optional[Faults] = None,
        limits: Optional[CollectorLimits] = None,
        annotators: Sequence[Annotator] = (),
        clock: Optional[Callable[[], datetime]] = None,
        log: Optional[Callable[[str], None]] = None,
    ) -> None:
        self.host = host
        self._requested_port = int(port)
        self.db = db
        self.write_keys: Optional[frozenset[str]] = None if write_keys is None else frozenset(write_keys)
        auth = auth or Auth()
        credential_check = auth.credential_check
        if credential_check is None and self.write_keys is not None:
            credential_check = WriteKeyCheck(self.write_keys)
        self.oauth: Optional[TokenIssuer] = None
        if auth.oauth_public_key is not None:
            self.oauth = TokenIssuer(
                auth.oauth_public_key,
                lambda: self.url,
                token_lifetime_s=auth.oauth_token_lifetime_s,
                fallback=credential_check,
            )
            credential_check = self.oauth
        self._credential_check = credential_check
        self._annotators = tuple(annotators)
        self.limits = limits or CollectorLimits()
        self._clock = clock or (lambda: datetime.now(timezone.utc))

        self._lifecycle = threading.RLock()
        self._up = threading.Condition(threading.Lock())
        self._stopping = threading.Event()

        self._log = RequestLog(self.limits.keep_requests, log, self.limits.keep_request_bytes)
        self._tracker = ConnectionTracker(on_open=self._log.connection_opened)
        faults = faults or Faults()
        self._faults = FaultPlan(
            Failure.make(faults.fail_status, faults.retry_after, faults.fail_body),
            fail_rate=faults.fail_rate,
            seed=faults.seed,
            delay_all_s=float(faults.delay_s) if (faults.delay_s > 0 and faults.delay_count is None) else 0.0,
        )
        if faults.fail_count:
            self.fail_next(faults.fail_count, faults.fail_status, faults.retry_after, faults.fail_body)
        if faults.delay_s > 0 and faults.delay_count:
            self.delay_next(faults.delay_count, faults.delay_s)
        if faults.reset_count:
            self.reset_next(faults.reset_count)

        self._server: Optional[HttpServer] = None
        self._routes: Optional[_Routes] = None
        self._store: Optional[EventStore] = None
        self._port: Optional[int] = None
        self._up_timer: Optional[threading.Timer] = None
        self._started = False
        self._final_messages: Optional[list[dict[str, Any]]] = None

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> Collector:
        """Open the store and start serving in background threads; returns self."""
        with self._lifecycle:
            if self._started:
                raise InvalidStateError("this collector was already started; create a new one")
            self._started = True
            store = self._store = EventStore(self.db)
            self._log.set_unique(store.count())
            local = LocalNames(self.host)
            tracking = TrackingEndpoint(
                store=store,
                log=self._log,
                faults=self._faults,
                limits=self.limits.sizes,
                credential_check=self._credential_check,
                annotators=self._annotators,
                local=local,
                clock=self._clock,
                sleep=self._stopping.wait,
            )
            self._routes = _Routes(
                tracking,
                DebuggerRoutes(store, self._log.stats, local),
                None if self.oauth is None else self.oauth.handle_token,
            )
            try:
                self._bind(self._requested_port)
            except BaseException:
                store.close()
                raise
        return self

    def stop(self) -> None:
        """Stop serving, drop every connection and close the store.

        With ``db=None`` the temporary database is deleted, but the messages it
        held stay readable through :meth:`messages` and :meth:`message_ids`.
        """
        with self._lifecycle:
            self._stopping.set()
            self.go_down()
            store = self._store
            if store is not None and not store.closed:
                if store.temporary:
                    self._final_messages = store.messages()
                store.close()
        self._log.wake()

    def __enter__(self) -> Collector:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _bind(self, port: int) -> None:
        assert self._routes is not None
        server = HttpServer(self.host, port, self._routes, self._tracker, self.limits.connections)
        with self._up:
            self._server = server
            self._port = server.port
            self._up.notify_all()

    def _unbind(self) -> None:
        with self._up:
            server, self._server = self._server, None
        if server is not None:
            server.close()
        self._tracker.close_all()

    @property
    def port(self) -> int:
        """The TCP port served (the ephemeral one picked when started with ``port=0``)."""
        if self._port is None:
            raise InvalidStateError("the collector is not started")
        return self._port

    @property
    def url(self) -> str:
        """Base URL of the collector, e.g. ``http://127.0.0.1:54321`` (pass it as the client's host)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def store(self) -> EventStore:
        """The :class:`EventStore` holding the messages."""
        if self._store is None:
            raise InvalidStateError("the collector is not started")
        return self._store

    @property
    def is_up(self) -> bool:
        """Whether the collector is accepting connections (False after :meth:`go_down`)."""
        return self._server is not None

    # -- the test-facing API -----------------------------------------------------

    def messages(self) -> list[dict[str, Any]]:
        """Every stored message (with ``receivedAt``, ``timestamp`` ...), oldest first."""
        if self._store is None or self._store.closed:
            return list(self._final_messages or [])
        return self._store.messages()

    def message_ids(self) -> set[str]:
        """The set of stored ``messageId`` values."""
        if self._store is None or self._store.closed:
            return {str(m.get("messageId")) for m in self._final_messages or []}
        return self._store.message_ids()

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every Tracking API request received so far (a copy), oldest first, faulted ones included.

        A request is appended once its answer is decided, just before the answer is written.
        Debugger page and ``/api/`` requests are not recorded.
        """
        return self._log.requests()

    @property
    def stats(self) -> CollectorStats:
        """A snapshot of the counters (see :class:`CollectorStats`)."""
        return self._log.stats()

    def wait_for_messages(self, n: int, timeout: float = 10.0) -> bool:
        """Block until at least ``n`` unique messages are stored; False if ``timeout`` passes first."""
        return self._log.wait_for_messages(n, timeout)

    def wait_for_requests(self, n: int, timeout: float = 10.0) -> bool:
        """Block until at least ``n`` requests have been recorded; False if ``timeout`` passes first.

        Counts every request since start or :meth:`reset`, even those dropped by ``keep_requests``.
        """
        return self._log.wait_for_requests(n, timeout)

    def reset(self) -> None:
        """Forget stored messages, recorded requests, counters and pending faults."""
        if self._store is not None and not self._store.closed:
            self._store.clear()
        self._final_messages = None
        self._faults.clear()
        self._log.clear()

    # -- fault injection ---------------------------------------------------------

    def fail_next(
        self,
        n: int = 1,
        status: int = 503,
        retry_after: RetryAfter = None,
        body: FaultBody = None,
        headers: Optional[Mapping[str, str]] = None,
    ) -> None:
        """Answer the next ``n`` Tracking API requests with ``status`` and store nothing from them.

        ``retry_after`` adds a ``Retry-After`` header: seconds (int or float),
        an HTTP-date string, or a datetime (sent as an HTTP-date). ``body``
        replaces the default JSON error body (a dict or list is sent as JSON,
        str or bytes as plain text). ``headers`` are added to the answer (a
        ``Location`` for a redirect, say). Calls queue up.
        """
        self._faults.fail_next(n, Failure.make(status, retry_after, body, headers))

    def delay_next(self, n: int = 1, seconds: float = 1.0) -> None:
        """Delay the answers to the next ``n`` Tracking API requests by ``seconds``.

        The answer is decided (and validated) on arrival, the delay is served,
        then, if the client has meanwhile closed the connection (it timed out),
        nothing is stored and the request is recorded with status 499. If the
        client is still there the batch is stored and answered. A client that
        times out in the instant between the two may find its batch stored
        anyway, as with any real server; its retry is then a duplicate.
        """
        self._faults.delay_next(n, seconds)

    def reset_next(self, n: int = 1) -> None:
        """Read the next ``n`` Tracking API requests, then reset the connection (RST) without answering.

        Nothing from them is stored.
        """
        self._faults.reset_next(n)

    def reset_when(self, marker: str) -> None:
        """Reset the connection (RST, no answer) of every Tracking API request whose body contains ``marker``.

        Like a server that crashes on one message: a batch holding it never gets
        an answer, whatever else it holds. Nothing from such requests is stored.
        Markers add up; :meth:`clear_faults` removes them.
        """
        self._faults.reset_when(marker.encode("utf-8"))

    def clear_faults(self) -> None:
        """Drop every pending or ongoing fault (queued ones and the constructor's rate and delay)."""
        self._faults.clear()

    def go_down(self) -> None:
        """Close the listening socket and every connection: new connections are refused."""
        with self._lifecycle:
            if self._up_timer is not None:
                self._up_timer.cancel()
                self._up_timer = None
            self._unbind()

    def go_up(self) -> None:
        """Listen again on the same port after :meth:`go_down` (no-op if already up or stopped).

        While it was down, a client connecting to the port may have been given that very
        port as its own (a connection to itself, which holds the port until the client
        gives up on it): the bind is tried again for up to ``REBIND_WAIT_S``.
        """
        with self._lifecycle:
            if self._server is not None or self._stopping.is_set() or self._port is None:
                return
            deadline = time.monotonic() + REBIND_WAIT_S
            while True:
                try:
                    self._bind(self._port)
                    return
                except OSError as exc:
                    if exc.errno != errno.EADDRINUSE or time.monotonic() >= deadline:
                        raise
                time.sleep(0.05)

    def refuse_for(self, seconds: float) -> None:
        """Go down now and come back up on the same port after ``seconds`` (in the background)."""
        with self._lifecycle:
            self.go_down()
            timer = threading.Timer(seconds, self.go_up)
            timer.daemon = True
            self._up_timer = timer
            timer.start()

    def wait_until_up(self, timeout: float = 10.0) -> bool:
        """Block until the collector is accepting connections again; False on timeout."""
        with self._up:
            return self._up.wait_for(lambda: self._server is not None, timeout)

    def close_idle_connections(self) -> int:
        """Close kept-alive connections that sit idle between requests; returns how many.

        The server closes its side (FIN) while the client still holds the
        connection in its pool: the client's next request on it fails, which
        is what a stale pooled connection looks like.
        """
        return self._tracker.close_idle()

    @property
    def open_connections(self) -> int:
        """How many client connections the server currently holds."""
        return self._tracker.open_count
