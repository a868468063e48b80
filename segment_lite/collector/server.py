"""The local Tracking API server: HTTP endpoints, recording, fault injection and the debugger routes."""

from __future__ import annotations

import email.utils
import json
import random
import select
import socket
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any, Callable, Optional, Union
from urllib.parse import parse_qs, unquote, urlsplit

from segment_lite.collector.processing import (
    MESSAGE_TYPES,
    Limits,
    RequestError,
    decode_body,
    parse_json,
    prepare_messages,
    write_key_from_auth,
)
from segment_lite.collector.store import EventStore

__all__ = ["TRACKING_PATHS", "Collector", "CollectorStats", "Headers", "RecordedRequest", "is_loopback_host"]

RetryAfter = Union[int, float, str, datetime, None]
FaultBody = Union[bytes, str, dict[str, Any], list[Any], None]

# Paths of the Tracking API, mapped to the kind of body they take.
TRACKING_PATHS = {"/v1/batch": "batch", "/v1/import": "batch"}
TRACKING_PATHS.update({f"/v1/{kind}": kind for kind in MESSAGE_TYPES})

# Bodies larger than this are not even read: the connection is answered 413 and closed.
_HARD_BODY_LIMIT = 16 * 1024 * 1024

_STATIC_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".ico": "image/x-icon",
}


class Headers(Mapping[str, str]):
    """Request headers: a read-only mapping with case-insensitive lookup.

    Iteration yields each header name with the case the client sent; a header
    sent several times is one entry whose values are joined with ``", "``.
    """

    def __init__(self, pairs: Iterable[tuple[str, str]] = ()) -> None:
        self._items: dict[str, tuple[str, str]] = {}
        for name, value in pairs:
            key = name.lower()
            if key in self._items:
                original, previous = self._items[key]
                self._items[key] = (original, f"{previous}, {value}")
            else:
                self._items[key] = (name, value)

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()][1]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return (original for original, _ in self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        # Authorization carries the write key: never show it.
        shown = {k: ("<redacted>" if k.lower() == "authorization" else v) for k, v in self.items()}
        return f"Headers({shown!r})"


@dataclass
class RecordedRequest:
    """One request to a Tracking API path, as received, and what the collector answered.

    ``status`` is None when the connection was reset without an answer
    (``reset_next``) and 499 when the client hung up during an injected delay.
    ``fault`` names the injected fault that shaped the answer: ``"fail"``,
    ``"reset"``, ``"delay"`` or ``"fail+delay"``; None for a normal answer.
    """

    method: str
    path: str
    headers: Headers
    raw_body: bytes
    body: Optional[bytes] = None
    json: Any = None
    status: Optional[int] = None
    response_body: bytes = b""
    fault: Optional[str] = None
    target: str = ""
    received_at: float = 0.0

    def __repr__(self) -> str:
        # A short summary: bodies can be large and may carry the write key.
        batch = self.json.get("batch") if isinstance(self.json, dict) else None
        messages = f", {len(batch)} message(s)" if isinstance(batch, list) else ""
        fault = f", fault={self.fault}" if self.fault else ""
        return (
            f"RecordedRequest({self.method} {self.path} -> {self.status}{messages}, "
            f"{len(self.raw_body)} bytes{fault})"
        )


@dataclass(frozen=True)
class CollectorStats:
    """A snapshot of the collector's counters since start (or the last :meth:`Collector.reset`).

    ``messages_received`` counts the messages of every request answered 200,
    duplicates included, so ``messages_received == messages_stored + duplicates``.
    ``messages_rejected`` counts messages of requests refused by validation.
    ``responses`` maps each HTTP status answered to how many times.
    """

    requests: int = 0
    messages_received: int = 0
    messages_stored: int = 0
    duplicates: int = 0
    messages_rejected: int = 0
    responses: dict[int, int] = field(default_factory=dict)
    resets: int = 0
    abandoned: int = 0
    connections: int = 0

    def as_dict(self) -> dict[str, Any]:
        """The counters as a plain dict (``responses`` keyed by status as a string)."""
        return {
            "requests": self.requests,
            "messages_received": self.messages_received,
            "messages_stored": self.messages_stored,
            "duplicates": self.duplicates,
            "messages_rejected": self.messages_rejected,
            "responses": {str(k): v for k, v in sorted(self.responses.items())},
            "resets": self.resets,
            "abandoned": self.abandoned,
            "connections": self.connections,
        }

    def __getitem__(self, name: str) -> Any:
        """Dict-style access to a counter, e.g. ``stats["duplicates"]``."""
        if name not in self.as_dict():
            raise KeyError(name)
        return getattr(self, name)


@dataclass(frozen=True)
class _Failure:
    status: int
    retry_after: Optional[str]
    body: bytes
    content_type: str
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class _Fault:
    reset: bool = False
    failure: Optional[_Failure] = None
    delay: float = 0.0

    def name(self) -> Optional[str]:
        if self.reset:
            return "reset"
        parts = (["fail"] if self.failure else []) + (["delay"] if self.delay > 0 else [])
        return "+".join(parts) or None


class _Connection:
    """A client connection the server holds, and whether a request is in progress on it."""

    __slots__ = ("busy", "lock", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.busy = False
        # Held while an answer is written and the connection marked idle, so a
        # client that has read its answer finds the connection already idle.
        self.lock = threading.Lock()


class _Disconnected(Exception):
    """The client went away while we were reading its request."""


def _format_retry_after(value: RetryAfter) -> Optional[str]:
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return email.utils.format_datetime(value.astimezone(timezone.utc), usegmt=True)
    if isinstance(value, bool):
        raise TypeError("retry_after must be seconds, an HTTP-date string or a datetime")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else f"{value:g}"
    return str(value)


def _failure(status: int, retry_after: RetryAfter, body: FaultBody) -> _Failure:
    if not 100 <= int(status) <= 599:
        raise ValueError(f"not an HTTP status: {status!r}")
    if body is None:
        payload = {
            "success": False,
            "code": "injected_fault",
            "message": f"fault injected by the local collector: answering {int(status)}",
        }
        return _Failure(
            int(status), _format_retry_after(retry_after), _json_bytes(payload), "application/json"
        )
    if isinstance(body, (dict, list)):
        return _Failure(int(status), _format_retry_after(retry_after), _json_bytes(body), "application/json")
    raw = body.encode("utf-8") if isinstance(body, str) else bytes(body)
    return _Failure(int(status), _format_retry_after(retry_after), raw, "text/plain; charset=utf-8")


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` names a loopback address (what the collector binds to by default)."""
    return host in ("localhost", "::1") or host.startswith("127.")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], collector: Collector) -> None:
        self.collector = collector
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (OSError, ValueError)):
            return  # a client that went away, or a socket we closed on purpose
        super().handle_error(request, client_address)


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "segment-lite-collector"
    sys_version = ""
    _conn: _Connection

    # -- connection bookkeeping ------------------------------------------------

    def setup(self) -> None:
        super().setup()
        try:
            # Headers and body go out in separate writes; without this, Nagle's
            # algorithm and the client's delayed ACK stall every answer ~40 ms.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        self._conn = _Connection(self.connection)
        self.server.collector._connection_opened(self._conn)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.collector._connection_closed(self._conn)

    def handle_one_request(self) -> None:
        self._conn.busy = False
        super().handle_one_request()

    def parse_request(self) -> bool:
        with self._conn.lock:
            self._conn.busy = True
        return super().parse_request()

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default per-request log; the collector logs tracking calls itself."""

    # -- routing ----------------------------------------------------------------

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        kind = TRACKING_PATHS.get(path)
        if kind is not None:
            self._tracking(kind, path)
        elif path.startswith("/api/") or path == "/" or path.startswith("/static/"):
            self._drain_quietly()
            self._send_json(405, _error_body("method_not_allowed", f"POST is not allowed on {path}"))
        else:
            self._unroutable(path, 404, "not_found", f"no endpoint at {path}")

    def do_GET(self) -> None:
        split = urlsplit(self.path)
        path = split.path
        if path in TRACKING_PATHS:
            self._unroutable(path, 405, "method_not_allowed", f"{path} takes POST")
            return
        if path.startswith("/v1/"):
            self._unroutable(path, 404, "not_found", f"no endpoint at {path}")
            return
        self.server.collector._serve_debugger(self, path, parse_qs(split.query))

    def do_HEAD(self) -> None:
        self.do_GET()

    def _other_method(self) -> None:
        path = urlsplit(self.path).path
        if path.startswith("/v1/"):
            self._unroutable(path, 405, "method_not_allowed", f"{self.command} is not allowed on {path}")
        else:
            self._drain_quietly()
            self._send_json(405, _error_body("method_not_allowed", f"{self.command} is not allowed"))

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _other_method

    # -- request bodies ---------------------------------------------------------

    def _read_body(self) -> bytes:
        """Read the whole request body (Content-Length or chunked), up to the hard limit.

        Raises RequestError (and marks the connection to close) for a body we
        will not read, _Disconnected if the client hangs up mid-body.
        """
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            return b""
        try:
            length = int(length_header)
            if length < 0:
                raise ValueError(length_header)
        except ValueError:
            self.close_connection = True
            raise RequestError(400, "invalid_length", "Content-Length is not a valid length") from None
        if length > _HARD_BODY_LIMIT:
            self.close_connection = True
            raise RequestError(
                413,
                "batch_too_large",
                f"the body is {length} bytes; the limit is "
                f"{self.server.collector.limits.max_batch_bytes} bytes per request",
                {"size": length, "limit": self.server.collector.limits.max_batch_bytes},
            )
        data = self.rfile.read(length)
        if len(data) < length:
            raise _Disconnected()
        return data

    def _read_chunked(self) -> bytes:
        out = bytearray()
        while True:
            line = self.rfile.readline(1024)
            if not line:
                raise _Disconnected()
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                self.close_connection = True
                raise RequestError(400, "invalid_chunking", "malformed chunked body") from None
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass
                return bytes(out)
            if len(out) + size > _HARD_BODY_LIMIT:
                self.close_connection = True
                limit = self.server.collector.limits.max_batch_bytes
                raise RequestError(
                    413,
                    "batch_too_large",
                    f"the body is over {_HARD_BODY_LIMIT} bytes; the limit is {limit} bytes per request",
                    {"limit": limit},
                )
            chunk = self.rfile.read(size)
            if len(chunk) < size:
                raise _Disconnected()
            out += chunk
            self.rfile.readline(1024)

    def _drain_quietly(self) -> None:
        try:
            self._read_body()
        except (RequestError, _Disconnected, OSError):
            self.close_connection = True

    # -- answering ----------------------------------------------------------------

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str,
        extra: Iterable[tuple[str, str]] = (),
    ) -> None:
        with self._conn.lock:
            try:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                for name, value in extra:
                    self.send_header(name, value)
                if self.close_connection:
                    self.send_header("Connection", "close")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)
                self.wfile.flush()
            except OSError:
                self.close_connection = True
            if not self.close_connection:
                self._conn.busy = False

    def _send_json(self, status: int, value: Any, extra: Iterable[tuple[str, str]] = ()) -> None:
        self._send(status, _json_bytes(value), "application/json", extra)

    def _reset_connection(self) -> None:
        """Close the connection with a TCP RST (SO_LINGER 0) instead of answering."""
        self.close_connection = True
        sock = self.connection
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        # The socket really closes once the buffered reader on it is closed too.
        self.rfile.close()
        sock.close()

    def _client_gone(self) -> bool:
        """Whether the client has closed its side of the connection."""
        sock = self.connection
        try:
            readable, _, _ = select.select([sock], [], [], 0)
            if not readable:
                return False
            data: bytes = sock.recv(1, socket.MSG_PEEK)
            return data == b""
        except (OSError, ValueError):
            return True

    # -- the Tracking API --------------------------------------------------------

    def _headers(self) -> Headers:
        return Headers(self.headers.items())

    def _unroutable(self, path: str, status: int, code: str, message: str) -> None:
        """Answer a request under /v1/ that no endpoint takes, and record it."""
        collector = self.server.collector
        raw = b""
        try:
            raw = self._read_body()
        except (RequestError, _Disconnected, OSError):
            self.close_connection = True
        body = _json_bytes(_error_body(code, message))
        record = RecordedRequest(
            method=self.command,
            path=path,
            headers=self._headers(),
            raw_body=raw,
            body=raw,
            json=None,
            status=status,
            response_body=body,
            target=self.path,
            received_at=time.time(),
        )
        collector._finish(record)
        self._send(status, body, "application/json")

    def _tracking(self, kind: str, path: str) -> None:
        collector = self.server.collector
        arrived = time.time()
        fault = collector._take_fault()
        record = RecordedRequest(
            method=self.command,
            path=path,
            headers=self._headers(),
            raw_body=b"",
            fault=fault.name(),
            target=self.path,
            received_at=arrived,
        )
        status = 200
        answer: Any = {"success": True}
        extra: list[tuple[str, str]] = []
        messages: list[dict[str, Any]] = []
        rejected = 0
        error: Optional[RequestError] = None
        payload: Any = None

        try:
            record.raw_body = self._read_body()
        except _Disconnected:
            self.close_connection = True
            return
        except RequestError as exc:
            error = exc
        if error is None:
            try:
                record.body = decode_body(
                    record.raw_body, self.headers.get("Content-Encoding"), collector.limits.max_batch_bytes
                )
                payload = parse_json(record.body)
                record.json = payload
            except RequestError as exc:
                error = exc

        if fault.reset:
            collector._finish(record)
            self._reset_connection()
            return

        if fault.failure is not None:
            status = fault.failure.status
            if fault.failure.retry_after is not None:
                extra.append(("Retry-After", fault.failure.retry_after))
            extra.extend(fault.failure.headers)
        else:
            try:
                self._authorize(payload, error)
                if error is not None:
                    raise error
                messages = prepare_messages(kind, payload, collector._now(), collector.limits)
            except RequestError as exc:
                status, answer = exc.status, exc.body()
                if isinstance(payload, dict):
                    batch = payload.get("batch") if kind == "batch" else [payload]
                    rejected = len(batch) if isinstance(batch, list) else 0
            except Exception as exc:  # a bug of ours: answer 500 rather than drop the connection
                status, answer = 500, _error_body("internal_error", f"{type(exc).__name__}: {exc}")

        if fault.delay > 0:
            collector._sleep(fault.delay)
            if self._client_gone():
                # The client gave up waiting: nothing is stored, as nothing was acknowledged.
                record.status = 499
                collector._finish(record, abandoned=True)
                self.close_connection = True
                return

        stored = duplicates = 0
        if status == 200 and messages:
            try:
                result = collector.store.insert_many(messages)
                stored, duplicates = result.stored, result.duplicates
            except Exception as exc:
                status, answer = 500, _error_body("storage_error", f"{type(exc).__name__}: {exc}")
                messages = []

        if fault.failure is not None:
            body, content_type = fault.failure.body, fault.failure.content_type
        else:
            body, content_type = _json_bytes(answer), "application/json"
        record.status = status
        record.response_body = body
        collector._finish(
            record,
            received=len(messages) if status == 200 else 0,
            stored=stored,
            duplicates=duplicates,
            rejected=rejected,
        )
        self._send(status, body, content_type, extra)

    def _authorize(self, payload: Any, body_error: Optional[RequestError]) -> None:
        """Check the write key (Basic auth user name, else ``writeKey`` in the body)."""
        keys = self.server.collector.write_keys
        if keys is None:
            return  # authentication is off: any key, or none, is accepted
        header_key = write_key_from_auth(self.headers.get("Authorization")) or None
        if header_key is not None:
            if header_key not in keys:
                raise RequestError(401, "unauthorized", "unknown write key")
            return
        if body_error is not None:
            raise body_error
        body_key = payload.get("writeKey") if isinstance(payload, dict) else None
        if not isinstance(body_key, str) or not body_key:
            raise RequestError(
                401,
                "unauthorized",
                "missing write key: send it as the Basic auth user name or as writeKey in the body",
            )
        if body_key not in keys:
            raise RequestError(401, "unauthorized", "unknown write key")


def _error_body(code: str, message: str) -> dict[str, Any]:
    return {"success": False, "code": code, "message": message}


class Collector:
    """A local Segment Tracking API server that stores what it receives.

    ``with Collector() as c:`` starts it on a free loopback port; send events to
    ``c.url`` and inspect them with :meth:`messages`, :attr:`requests` and
    :attr:`stats`. ``db=None`` keeps events in a private temporary SQLite file
    removed on :meth:`stop`; a path keeps them in that file.

    ``write_keys`` (an iterable of keys) turns authentication on: requests whose
    key is missing or unknown get 401. Left None, any key (or none) is accepted.

    Fault options, for starting a collector that misbehaves from the outset
    (the methods :meth:`fail_next`, :meth:`delay_next`, :meth:`reset_next`
    queue the same faults at run time):

    * ``fail_count`` requests answered ``fail_status`` (503) with ``retry_after``
      (a ``Retry-After`` header) and ``fail_body``;
    * ``fail_rate``: each later request fails the same way with this probability
      (seeded by ``seed`` for repeatable runs);
    * ``delay_s``: answers are delayed by this many seconds, for the first
      ``delay_count`` requests or, with ``delay_count=None``, for all of them;
    * ``reset_count`` requests are read and then answered with a TCP reset.

    ``limits`` overrides Segment's size limits; ``clock`` supplies the receive
    time (a callable returning an aware datetime), for exact tests; ``log``
    receives one line per Tracking API request; ``keep_requests`` bounds how many
    recorded requests :attr:`requests` keeps (the oldest are dropped; None keeps all).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        db: Optional[str] = None,
        write_keys: Optional[Iterable[str]] = None,
        *,
        fail_status: int = 503,
        fail_count: int = 0,
        retry_after: RetryAfter = None,
        fail_body: FaultBody = None,
        fail_rate: float = 0.0,
        delay_s: float = 0.0,
        delay_count: Optional[int] = None,
        reset_count: int = 0,
        seed: Optional[int] = None,
        limits: Optional[Limits] = None,
        clock: Optional[Callable[[], datetime]] = None,
        log: Optional[Callable[[str], None]] = None,
        keep_requests: Optional[int] = None,
    ) -> None:
        if not 0.0 <= fail_rate <= 1.0:
            raise ValueError("fail_rate must be between 0 and 1")
        self.host = host
        self._requested_port = int(port)
        self.db = db
        self.write_keys: Optional[frozenset[str]] = None if write_keys is None else frozenset(write_keys)
        self.limits = limits or Limits()
        self._clock = clock or (lambda: datetime.now(timezone.utc))
        self._log = log

        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._lifecycle = threading.RLock()
        self._stopping = threading.Event()

        self._server: Optional[_Server] = None
        self._thread: Optional[threading.Thread] = None
        self._store: Optional[EventStore] = None
        self._port: Optional[int] = None
        self._up_timer: Optional[threading.Timer] = None
        self._started = False
        self._final_messages: Optional[list[dict[str, Any]]] = None

        self._connections: set[_Connection] = set()
        self._requests: deque[RecordedRequest] = deque(maxlen=keep_requests)
        self._request_total = 0
        self._counts = _Counts()
        self._unique = 0

        self._failures: deque[_Failure] = deque()
        self._delays: deque[float] = deque()
        self._resets = 0
        self._rate_failure = _failure(fail_status, retry_after, fail_body)
        self._fail_rate = fail_rate
        self._random = random.Random(seed)
        self._delay_all = float(delay_s) if (delay_s > 0 and delay_count is None) else 0.0
        if fail_count:
            self.fail_next(fail_count, fail_status, retry_after, fail_body)
        if delay_s > 0 and delay_count:
            self.delay_next(delay_count, delay_s)
        if reset_count:
            self.reset_next(reset_count)

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> Collector:
        """Open the store and start serving in background threads; returns self."""
        with self._lifecycle:
            if self._started:
                raise RuntimeError("this collector was already started; create a new one")
            self._started = True
            self._store = EventStore(self.db)
            self._unique = self._store.count()
            try:
                self._bind(self._requested_port)
            except BaseException:
                self._store.close()
                raise
        return self

    def stop(self) -> None:
        """Stop serving, drop every connection and close the store.

        With ``db=None`` the temporary database is deleted, but the messages it
        held stay readable through :meth:`messages` and :meth:`message_ids`.
        """
        with self._lifecycle:
            self._stopping.set()
            if self._up_timer is not None:
                self._up_timer.cancel()
                self._up_timer = None
            self._unbind()
            store = self._store
            if store is not None and not store.closed:
                if store.temporary:
                    self._final_messages = store.messages()
                store.close()
        with self._changed:
            self._changed.notify_all()

    def __enter__(self) -> Collector:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _bind(self, port: int) -> None:
        server_class = _Server6 if ":" in self.host else _Server
        server = server_class((self.host, port), self)
        self._port = int(server.server_address[1])
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"segment-lite-collector:{self._port}",
            daemon=True,
        )
        self._server, self._thread = server, thread
        thread.start()
        with self._changed:
            self._changed.notify_all()

    def _unbind(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            _shutdown(conn.sock)
        with self._changed:
            self._changed.notify_all()

    @property
    def port(self) -> int:
        """The TCP port served (the ephemeral one picked when started with ``port=0``)."""
        if self._port is None:
            raise RuntimeError("the collector is not started")
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
            raise RuntimeError("the collector is not started")
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
        with self._lock:
            return list(self._requests)

    @property
    def stats(self) -> CollectorStats:
        """A snapshot of the counters (see :class:`CollectorStats`)."""
        with self._lock:
            return self._counts.snapshot()

    def wait_for_messages(self, n: int, timeout: float = 10.0) -> bool:
        """Block until at least ``n`` unique messages are stored; False if ``timeout`` passes first."""
        with self._changed:
            return self._changed.wait_for(lambda: self._unique >= n, timeout)

    def wait_for_requests(self, n: int, timeout: float = 10.0) -> bool:
        """Block until at least ``n`` requests have been recorded; False if ``timeout`` passes first.

        Counts every request since start or :meth:`reset`, even those dropped by ``keep_requests``.
        """
        with self._changed:
            return self._changed.wait_for(lambda: self._request_total >= n, timeout)

    def reset(self) -> None:
        """Forget stored messages, recorded requests, counters and pending faults."""
        if self._store is not None and not self._store.closed:
            self._store.clear()
        with self._changed:
            self._requests.clear()
            self._request_total = 0
            self._counts = _Counts()
            self._unique = 0
            self._final_messages = None
            self._failures.clear()
            self._delays.clear()
            self._resets = 0
            self._fail_rate = 0.0
            self._delay_all = 0.0
            self._changed.notify_all()

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
        failure = _failure(status, retry_after, body)
        if headers:
            failure = replace(failure, headers=tuple(headers.items()))
        with self._lock:
            self._failures.extend([failure] * int(n))

    def delay_next(self, n: int = 1, seconds: float = 1.0) -> None:
        """Delay the answers to the next ``n`` Tracking API requests by ``seconds``.

        The answer is decided (and validated) on arrival, the delay is served,
        then, if the client has meanwhile closed the connection (it timed out),
        nothing is stored and the request is recorded with status 499. If the
        client is still there the batch is stored and answered. A client that
        times out in the instant between the two may find its batch stored
        anyway, as with any real server; its retry is then a duplicate.
        """
        with self._lock:
            self._delays.extend([float(seconds)] * int(n))

    def reset_next(self, n: int = 1) -> None:
        """Read the next ``n`` Tracking API requests, then reset the connection (RST) without answering.

        Nothing from them is stored.
        """
        with self._lock:
            self._resets += int(n)

    def clear_faults(self) -> None:
        """Drop every pending or ongoing fault (queued ones and the constructor's rate and delay)."""
        with self._lock:
            self._failures.clear()
            self._delays.clear()
            self._resets = 0
            self._fail_rate = 0.0
            self._delay_all = 0.0

    def go_down(self) -> None:
        """Close the listening socket and every connection: new connections are refused."""
        with self._lifecycle:
            if self._up_timer is not None:
                self._up_timer.cancel()
                self._up_timer = None
            self._unbind()

    def go_up(self) -> None:
        """Listen again on the same port after :meth:`go_down` (no-op if already up or stopped)."""
        with self._lifecycle:
            if self._server is not None or self._stopping.is_set() or self._port is None:
                return
            self._bind(self._port)

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
        with self._changed:
            return self._changed.wait_for(lambda: self._server is not None, timeout)

    def close_idle_connections(self) -> int:
        """Close kept-alive connections that sit idle between requests; returns how many.

        The server closes its side (FIN) while the client still holds the
        connection in its pool: the client's next request on it fails, which
        is what a stale pooled connection looks like.
        """
        with self._lock:
            connections = list(self._connections)
        closed = 0
        for conn in connections:
            with conn.lock:
                if conn.busy:
                    continue
                _shutdown(conn.sock)
            closed += 1
            with self._lock:
                self._connections.discard(conn)
        return closed

    @property
    def open_connections(self) -> int:
        """How many client connections the server currently holds."""
        with self._lock:
            return len(self._connections)

    # -- internals used by the handler ----------------------------------------------

    def _now(self) -> datetime:
        return self._clock()

    def _sleep(self, seconds: float) -> None:
        self._stopping.wait(seconds)

    def _take_fault(self) -> _Fault:
        with self._lock:
            if self._resets > 0:
                self._resets -= 1
                return _Fault(reset=True)
            failure: Optional[_Failure] = None
            if self._failures:
                failure = self._failures.popleft()
            elif self._fail_rate > 0 and self._random.random() < self._fail_rate:
                failure = self._rate_failure
            delay = self._delays.popleft() if self._delays else self._delay_all
            return _Fault(failure=failure, delay=delay)

    def _connection_opened(self, conn: _Connection) -> None:
        with self._lock:
            self._connections.add(conn)
            self._counts.connections += 1

    def _connection_closed(self, conn: _Connection) -> None:
        with self._lock:
            self._connections.discard(conn)

    def _finish(
        self,
        record: RecordedRequest,
        *,
        received: int = 0,
        stored: int = 0,
        duplicates: int = 0,
        rejected: int = 0,
        abandoned: bool = False,
    ) -> None:
        with self._changed:
            self._requests.append(record)
            self._request_total += 1
            counts = self._counts
            counts.requests += 1
            counts.messages_received += received
            counts.messages_stored += stored
            counts.duplicates += duplicates
            counts.messages_rejected += rejected
            if record.status is None:
                counts.resets += 1
            else:
                counts.responses[record.status] = counts.responses.get(record.status, 0) + 1
            if abandoned:
                counts.abandoned += 1
            self._unique += stored
            self._changed.notify_all()
        if self._log is not None:
            status = "reset" if record.status is None else str(record.status)
            line = f"{record.method} {record.path} {status}"
            if received:
                line += f" {received} message(s): {stored} stored, {duplicates} duplicate(s)"
            if record.fault:
                line += f" [fault: {record.fault}]"
            self._log(line)

    # -- debugger page and JSON API ----------------------------------------------------

    def _host_allowed(self, host_header: Optional[str]) -> bool:
        """On a loopback bind, the page and API answer only to loopback Host names.

        A web page elsewhere could otherwise point its own host name at 127.0.0.1
        (DNS rebinding) and read the stored events through the visitor's browser.
        """
        if not is_loopback_host(self.host) or not host_header:
            return True
        host = host_header.strip().lower()
        if host.startswith("["):
            host = host[1 : host.find("]")] if "]" in host else host
        elif host.count(":") == 1:
            host = host.split(":", 1)[0]
        return is_loopback_host(host)

    def _serve_debugger(self, handler: _Handler, path: str, query: dict[str, list[str]]) -> None:
        if not self._host_allowed(handler.headers.get("Host")):
            handler._send_json(403, _error_body("forbidden", "the debugger answers only to a loopback Host"))
            return
        if path in ("/", "/index.html"):
            self._serve_static(handler, "index.html")
        elif path.startswith("/static/"):
            self._serve_static(handler, path[len("/static/") :])
        elif path == "/api/events":
            self._api_events(handler, query)
        elif path.startswith("/api/events/"):
            message_id = unquote(path[len("/api/events/") :])
            found = self.store.get(message_id) if not self.store.closed else None
            if found is None:
                handler._send_json(404, _error_body("not_found", "no stored event with that messageId"))
            else:
                handler._send_json(200, {"event": found.summary(), "message": found.message})
        elif path == "/api/stats":
            stats = self.stats.as_dict()
            stats["stored_total"] = self.store.count()
            handler._send_json(200, stats)
        else:
            handler._send_json(404, _error_body("not_found", f"nothing at {path}"))

    def _serve_static(self, handler: _Handler, name: str) -> None:
        suffix = name[name.rfind(".") :] if "." in name else ""
        if not name or name.startswith(".") or "/" in name or "\\" in name or suffix not in _STATIC_TYPES:
            handler._send_json(404, _error_body("not_found", "no such file"))
            return
        resource = resources.files("segment_lite.collector").joinpath("static").joinpath(name)
        try:
            data = resource.read_bytes()
        except OSError:
            handler._send_json(404, _error_body("not_found", "no such file"))
            return
        handler._send(
            200,
            data,
            _STATIC_TYPES[suffix],
            [
                ("Content-Security-Policy", "default-src 'self'; img-src 'self' data:"),
                ("X-Content-Type-Options", "nosniff"),
            ],
        )

    def _api_events(self, handler: _Handler, query: dict[str, list[str]]) -> None:
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
        upto = self.store.last_id()
        before = number("before")
        events = self.store.query(
            type=one("type"),
            user_id=one("user"),
            event=one("event"),
            after_id=number("after"),
            before_id=upto + 1 if before is None else min(before, upto + 1),
            limit=limit,
            newest_first=True,
        )
        handler._send_json(
            200,
            {"events": [e.summary() for e in events], "lastId": upto, "total": self.store.count()},
        )


class _Counts:
    """Mutable counters behind :class:`CollectorStats`."""

    def __init__(self) -> None:
        self.requests = 0
        self.messages_received = 0
        self.messages_stored = 0
        self.duplicates = 0
        self.messages_rejected = 0
        self.responses: dict[int, int] = {}
        self.resets = 0
        self.abandoned = 0
        self.connections = 0

    def snapshot(self) -> CollectorStats:
        return CollectorStats(
            requests=self.requests,
            messages_received=self.messages_received,
            messages_stored=self.messages_stored,
            duplicates=self.duplicates,
            messages_rejected=self.messages_rejected,
            responses=dict(self.responses),
            resets=self.resets,
            abandoned=self.abandoned,
            connections=self.connections,
        )


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
