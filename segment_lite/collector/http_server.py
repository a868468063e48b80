"""HTTP/1.1 plumbing for the collector: connections, timeouts, request bodies and answers; no endpoints.

The server hands each request to an *app* (``Callable[[Request], Response]``)
and writes back the :class:`Response` it returns. The app may read the body
through :meth:`Request.read_body`; whatever it leaves unread is drained so the
connection can be kept alive. h11 parses and frames; it never touches a socket,
so this module can time out, reset or hang up on a connection when it chooses.

Every connection is bounded (see :class:`ConnectionLimits`): a request must
arrive within the read timeout, a kept-alive connection is closed after the
idle timeout, at most ``max_connections`` handler threads run (an idle
connection is closed to make room for a new one, else the new one is answered
503), a request head is at most :data:`MAX_HEAD_BYTES`, and bodies over
``max_body_bytes`` are refused unread.
"""

from __future__ import annotations

import email.utils
import ipaddress
import logging
import re
import select
import socket
import socketserver
import struct
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from http.client import responses
from typing import Any, Callable, Optional
from urllib.parse import parse_qs, urlsplit

from segment_lite.collector.processing import RequestError, error_body, json_bytes
from segment_lite.errors import ClientGone, FrameworkNotInstalledError, ValidationError

try:
    import h11
except ModuleNotFoundError as exc:  # pragma: no cover - depends on the environment
    if exc.name != "h11":
        raise
    raise FrameworkNotInstalledError("segment_lite.collector", "h11", "collector") from None

__all__ = [
    "CONTENT_SECURITY_POLICY",
    "INTERNAL_ERROR",
    "MAX_HEAD_BYTES",
    "SECURITY_HEADERS",
    "App",
    "Body",
    "ClientGone",
    "ConnectionLimits",
    "ConnectionTracker",
    "Headers",
    "HttpServer",
    "LocalNames",
    "Request",
    "Response",
    "is_loopback_host",
]


# The debugger page loads nothing from elsewhere and may not be framed (clickjacking).
CONTENT_SECURITY_POLICY = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"

# Sent with every answer, whatever the route, status or error.
SECURITY_HEADERS = (
    ("Cache-Control", "no-store"),
    ("X-Content-Type-Options", "nosniff"),
    ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
    ("X-Frame-Options", "DENY"),
)

# The request line and headers together; a longer head is answered 431.
MAX_HEAD_BYTES = 64 * 1024

log = logging.getLogger("segment_lite.collector")

# What a 500 says: the exception's text stays in the log, as it may hold paths or data.
INTERNAL_ERROR = "the collector failed on this request; its log has the details"


@dataclass(frozen=True)
class ConnectionLimits:
    """How long and how much the server waits for and holds per connection.

    * ``read_timeout_s``: one request (line, headers and body) must be read
      within this many seconds of its first byte, else it is answered 408 and
      the connection closed.
    * ``idle_timeout_s``: a kept-alive connection with no new request for this
      long is closed.
    * ``max_connections``: handler threads (one per open connection). When all
      are taken, the longest-idle connection is closed to make room; if none
      is idle, the new connection is answered 503 with ``Retry-After: 1``.
    * ``listen_backlog``: connections the kernel queues before they are accepted.
    * ``max_body_bytes``: larger bodies are refused with 413 without being read.
    """

    read_timeout_s: float = 10.0
    idle_timeout_s: float = 30.0
    max_connections: int = 64
    listen_backlog: int = 128
    max_body_bytes: int = 16 * 1024 * 1024

    def __post_init__(self) -> None:
        for name in ("read_timeout_s", "idle_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValidationError(f"{name} must be positive, not {getattr(self, name)!r}")
        for name in ("max_connections", "listen_backlog", "max_body_bytes"):
            if getattr(self, name) < 1:
                raise ValidationError(f"{name} must be at least 1, not {getattr(self, name)!r}")


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


class LocalNames:
    """Which ``Host`` and ``Origin`` values name this server as seen from this machine.

    Allowed: loopback IP literals (127.0.0.0/8, ``::1``), ``localhost``, and the
    address the server is bound to; when bound to every interface (``0.0.0.0``
    or ``::``), any IP literal too. Any other name could be an attacker's
    domain resolving to this machine (DNS rebinding), so it is refused.
    """

    def __init__(self, bound_host: str) -> None:
        self._bound = _ip(bound_host)
        self._bound_name = bound_host.strip("[]").lower()

    def allows_name(self, name: str) -> bool:
        """Whether a bare host name or IP literal (no port, no brackets) is local."""
        name = name.lower()
        if name == "localhost" or name == self._bound_name:
            return True
        ip = _ip(name)
        if ip is None:
            return False
        if ip.is_loopback or ip == self._bound:
            return True
        return self._bound is not None and self._bound.is_unspecified

    def allows_host(self, host_header: str) -> bool:
        """Whether a ``Host`` header value (``name``, ``name:port``, ``[v6]:port``) is local."""
        name = _host_of(host_header.strip())
        return name is not None and self.allows_name(name)

    def allows_origin(self, origin: str) -> bool:
        """Whether an ``Origin`` header value (``scheme://host[:port]``) is local; ``null`` is not."""
        scheme, sep, authority = origin.strip().partition("://")
        if not sep or scheme.lower() not in ("http", "https") or "/" in authority or "@" in authority:
            return False
        return self.allows_host(authority)


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` is ``localhost`` or a loopback IP literal (what the collector binds to by default)."""
    ip = _ip(host)
    return host.lower() == "localhost" or (ip is not None and ip.is_loopback)


def _ip(text: str) -> Optional[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        return ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None


def _host_of(value: str) -> Optional[str]:
    """The host of a ``host[:port]`` value, or None if the value is malformed."""
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        host, rest = value[1:end], value[end + 1 :]
        if not isinstance(_ip(host), ipaddress.IPv6Address):
            return None
    else:
        host, colon, port = value.partition(":")
        rest = colon + port
    if rest and not (rest.startswith(":") and rest[1:].isascii() and rest[1:].isdigit()):
        return None
    return host or None


@dataclass(frozen=True)
class Response:
    """What to answer: a status, body and headers, or (``action``) a reset or a silent hang-up.

    ``action`` is ``"answer"``; ``"reset"`` closes the connection with a TCP
    RST instead; ``"hang_up"`` closes it without answering. ``close`` ends the
    connection after the answer.
    """

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()
    close: bool = False
    action: str = "answer"

    @classmethod
    def json(
        cls, status: int, value: Any, headers: Iterable[tuple[str, str]] = (), close: bool = False
    ) -> Response:
        """An answer with a JSON body."""
        return cls(status, json_bytes(value), "application/json", tuple(headers), close)

    @classmethod
    def error(cls, status: int, code: str, message: str, close: bool = False) -> Response:
        """A JSON error answer (see :func:`error_body`)."""
        return cls.json(status, error_body(code, message), close=close)

    @classmethod
    def reset(cls) -> Response:
        """No answer: the connection is closed with a TCP RST."""
        return cls(0, action="reset", close=True)

    @classmethod
    def hang_up(cls) -> Response:
        """No answer: the connection is closed (FIN)."""
        return cls(0, action="hang_up", close=True)


@dataclass(frozen=True)
class Body:
    """A request body: its first bytes (all of them, unless told to keep fewer) and its full size."""

    data: bytes
    size: int

    @property
    def complete(self) -> bool:
        """Whether ``data`` is the whole body."""
        return len(self.data) == self.size


class Request:
    """One parsed request line and headers, with a way to read the body and to see if the client left."""

    def __init__(self, method: str, target: str, headers: Headers, connection: _ServerConnection) -> None:
        self._connection = connection
        split = urlsplit(target)
        self.method = method
        self.target = target
        self.path: str = split.path
        self.query: dict[str, list[str]] = parse_qs(split.query)
        self.headers = headers
        self._body: Optional[Body] = None
        self._body_error: Optional[BaseException] = None

    @property
    def body_read(self) -> bool:
        """Whether :meth:`read_body` was called."""
        return self._body is not None or self._body_error is not None

    def read_body(self, keep_bytes: Optional[int] = None) -> Body:
        """Read the whole body off the wire (Content-Length or chunked), keeping its first ``keep_bytes``.

        Bytes past ``keep_bytes`` (None: no bound) are read and dropped, so a
        body too large for the app costs no memory yet the connection stays
        usable. Raises :class:`RequestError` for a body that will not be read
        (400 malformed, 408 too slow, 413 over ``max_body_bytes``; the
        connection is then closed after the answer) and :class:`ClientGone` if
        the client hangs up mid-body. A second call repeats the first's outcome.
        """
        if self._body_error is not None:
            raise self._body_error
        if self._body is None:
            try:
                self._body = self._connection.read_body(keep_bytes)
            except (RequestError, ClientGone) as exc:
                self._body_error = exc
                raise
        return self._body

    def client_gone(self) -> bool:
        """Whether the client has closed its side of the connection."""
        sock = self._connection.sock
        try:
            readable, _, _ = select.select([sock], [], [], 0)
            if not readable:
                return False
            data: bytes = sock.recv(1, socket.MSG_PEEK)
            return data == b""
        except (OSError, ValueError):
            return True


App = Callable[[Request], Response]

_IDLE, _READING, _HANDLING = "idle", "reading", "handling"


# h11 reads "Content-Length: 5, 5" and repeated equal lines as 5, as RFC 9110 allows; a
# collector is there to show a client its mistakes, so it refuses them, as the RFC also allows.
_CONTENT_LENGTH_LINE = re.compile(rb"\ncontent-length[ \t]*:([^\r\n]*)", re.IGNORECASE)
# h11 reads chunk sizes of up to 20 hexadecimal digits; over 16 (2^64 bytes) is refused.
_OVERSIZED_CHUNK = re.compile(rb"\r?\n?[0-9A-Fa-f]{17}")


class _ServerConnection:
    """The server side of one connection: h11 parses and frames, this reads and writes the socket."""

    def __init__(self, sock: socket.socket, server: HttpServer) -> None:
        self.sock = sock
        self.state = _IDLE
        self.since = time.monotonic()
        # When the current state (idle, reading, handling) must end (None: no bound).
        self.deadline: Optional[float] = None
        self.timed_out = False
        # Held while an answer is written and the connection marked idle, so a
        # client that has read its answer finds the connection already idle.
        self.lock = threading.Lock()
        self._app, self._tracker, self._limits = server.app, server.tracker, server.limits
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
        self._head: Optional[bytearray] = None  # the request head while it is read
        self._length: Optional[int] = None  # Content-Length
        self._chunked = self._at_chunk_size = self._close = False

    @property
    def busy(self) -> bool:
        return self.state != _IDLE

    def move_to(self, state: str, timeout_s: Optional[float]) -> None:
        """Enter ``state``, to end within ``timeout_s`` (None: unbounded); the caller holds ``lock``."""
        now = time.monotonic()
        self.state, self.since = state, now
        self.deadline = None if timeout_s is None else now + timeout_s

    def serve(self) -> None:
        """Serve requests until one side closes the connection."""
        self._tracker.opened(self)
        try:
            while self._serve_one():
                self._h11.start_next_cycle()
        finally:
            self._tracker.closed(self)

    def _serve_one(self) -> bool:
        """Read one request and answer it; whether the connection stays open for another."""
        limits = self._limits
        self._tracker.enter(self, _IDLE, limits.idle_timeout_s)
        pipelined = self._h11.trailing_data[0]
        self._head, self._close = bytearray(pipelined), False
        try:
            # The socket timeouts only back up the tracker's deadlines.
            self.sock.settimeout(limits.idle_timeout_s + 1)
            if not pipelined:
                self._recv()  # the first bytes of a request, or the end of the connection
            self._tracker.enter(self, _READING, limits.read_timeout_s)
            self.sock.settimeout(limits.read_timeout_s + 1)
            event = self._next_event()
            if not isinstance(event, h11.Request):
                return False  # closed between requests
            request = self._start(event)
        except ClientGone:
            return False
        except RequestError as exc:  # no request could be read: answer why, and close
            self._close = True
            self._answer(Response.json(exc.status, exc.body()))
            return False
        try:
            response = self._app(request)
        except ClientGone:
            return False
        except Exception:  # a bug of the app: answer 500 rather than drop the connection
            log.exception("the collector failed on a request")
            response = Response.error(500, "internal_error", INTERNAL_ERROR, close=True)
        if not request.body_read:
            try:
                request.read_body(keep_bytes=0)  # drain it, to keep the connection in step
            except (RequestError, ClientGone):
                pass
        if response.action == "reset":  # a TCP RST (SO_LINGER 0) instead of an answer
            try:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            finally:
                self.sock.close()
        elif response.action == "answer":
            self._close = self._close or response.close
            self._answer(response, request.method)
        return response.action == "answer" and not self._close and self._h11.our_state is h11.DONE

    def _start(self, event: h11.Request) -> Request:
        """The app's view of a parsed request head, once its framing is checked."""
        assert self._head is not None
        head, self._head = self._head[: len(self._head) - len(self._h11.trailing_data[0])], None
        if len(head) > MAX_HEAD_BYTES:  # h11 bounds only a head still incomplete
            raise _head_too_large()
        headers = Headers((k.decode("latin-1"), v.decode("latin-1")) for k, v in event.headers.raw_items())
        self._chunked = "Transfer-Encoding" in headers
        length = headers.get("Content-Length")
        self._length = None if length is None else int(length)
        if self._chunked and length is not None:
            # RFC 9112, section 6.1: the bytes after the body could be read as a smuggled request.
            message = "Content-Length and Transfer-Encoding were both sent; send one of them"
            raise RequestError(400, "invalid_transfer_encoding", message)
        lengths = _CONTENT_LENGTH_LINE.findall(head)
        if len(lengths) > 1 or any(b"," in value for value in lengths):
            raise RequestError(400, "invalid_length", "Content-Length is not a valid length")
        if not (self._chunked or self._length):
            self._tracker.enter(self, _HANDLING, None)
        return Request(event.method.decode("ascii"), event.target.decode("latin-1"), headers, self)

    def _recv(self) -> None:
        """Hand h11 the next bytes from the socket; raise if none will come."""
        try:
            data = self.sock.recv(64 * 1024)
        except socket.timeout:
            self.timed_out, data = self.state == _READING, b""
        except OSError:
            data = b""
        if not data and self.timed_out:
            message = f"the request was not received within {self._limits.read_timeout_s:g} s"
            raise RequestError(408, "request_timeout", message)
        if not data:
            raise ClientGone()
        if self._head is not None:
            self._head += data
        self._h11.receive_data(data)

    def _next_event(self) -> Any:
        """The next event h11 reads, receiving as much as it needs."""
        while True:
            if self._at_chunk_size and _OVERSIZED_CHUNK.match(self._h11.trailing_data[0]):
                raise RequestError(400, "invalid_chunking", "a chunk size has over 16 hexadecimal digits")
            try:
                event = self._h11.next_event()
            except h11.RemoteProtocolError as exc:
                raise _protocol_error(exc) from None
            if event is not h11.NEED_DATA:
                return event
            self._recv()

    def read_body(self, keep_bytes: Optional[int]) -> Body:
        """Read the request body (Content-Length or chunked), keeping at most ``keep_bytes`` of it."""
        limit = self._limits.max_body_bytes
        keep = limit if keep_bytes is None else max(0, keep_bytes)
        out, size = bytearray(), 0
        try:
            if self._length is not None and self._length > limit:
                raise _body_too_large(self._length, limit, exact=True)
            if self._h11.they_are_waiting_for_100_continue:
                self._send(self._h11.send(h11.InformationalResponse(status_code=100, headers=[])))
            self._at_chunk_size = self._chunked
            while not isinstance(event := self._next_event(), h11.EndOfMessage):
                if not isinstance(event, h11.Data):
                    raise ClientGone()
                size += len(event.data)
                if size > limit:
                    raise _body_too_large(size, limit, exact=False)
                out += event.data[: max(0, keep - len(out))]
                self._at_chunk_size = self._chunked and event.chunk_end
        except (RequestError, ClientGone):
            self._close = True
            raise
        self._at_chunk_size = False
        self._tracker.enter(self, _HANDLING, None)
        return Body(bytes(out), size)

    def _answer(self, response: Response, method: str = "GET") -> None:
        """Write ``response`` and, unless the connection is closing, mark it idle."""
        try:
            data = _frame(self._h11, response, self._close, method)
        except h11.LocalProtocolError:  # headers h11 will not write (an injected fault's, say)
            log.exception("the collector could not write a %d answer", response.status)
            self._close = True
            return
        with self.lock:
            self._send(data)
            if not self._close:
                self.move_to(_IDLE, self._limits.idle_timeout_s)

    def _send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError:
            self._close = True


class ConnectionTracker:
    """The client connections and handler threads, across restarts of the listening socket (thread-safe)."""

    def __init__(self, on_open: Optional[Callable[[], None]] = None) -> None:
        self._changed = threading.Condition(threading.Lock())
        self._connections: set[_ServerConnection] = set()
        self._threads = 0
        self._on_open = on_open

    # -- handler threads -------------------------------------------------------

    def reserve_thread(self, limit: int, wait_s: float = 0.25) -> bool:
        """Take a handler thread slot; when all ``limit`` are taken, close the longest-idle connection.

        Returns False if no slot freed up within ``wait_s``.
        """
        with self._changed:
            if self._threads < limit:
                self._threads += 1
                return True
            idle = [conn for conn in self._connections if not conn.busy]
        if idle:
            oldest = min(idle, key=lambda conn: conn.since)
            with oldest.lock:
                if not oldest.busy:
                    _shutdown(oldest.sock)
        with self._changed:
            if self._changed.wait_for(lambda: self._threads < limit, wait_s):
                self._threads += 1
                return True
            return False

    def release_thread(self) -> None:
        """Give back a handler thread slot."""
        with self._changed:
            self._threads -= 1
            self._changed.notify_all()

    # -- connections ------------------------------------------------------------

    def opened(self, conn: _ServerConnection) -> None:
        with self._changed:
            self._connections.add(conn)
        if self._on_open is not None:
            self._on_open()

    def closed(self, conn: _ServerConnection) -> None:
        with self._changed:
            self._connections.discard(conn)

    @staticmethod
    def enter(conn: _ServerConnection, state: str, timeout_s: Optional[float]) -> None:
        """Move ``conn`` to ``state``, to end within ``timeout_s`` (None: unbounded)."""
        with conn.lock:
            conn.move_to(state, timeout_s)

    def expire(self, now: float) -> None:
        """Close connections whose state outlived its deadline.

        A request still being read has only its reading side shut, so the
        handler sees the end of input, then answers 408.
        """
        with self._changed:
            expired = [c for c in self._connections if c.deadline is not None and c.deadline <= now]
        for conn in expired:
            with conn.lock:
                if conn.deadline is None or conn.deadline > now:
                    continue
                conn.deadline = None
                if conn.state == _READING:
                    conn.timed_out = True
                    _shutdown(conn.sock, socket.SHUT_RD)
                else:
                    _shutdown(conn.sock)

    @property
    def open_count(self) -> int:
        """How many connections are open."""
        with self._changed:
            return len(self._connections)

    @property
    def busy_count(self) -> int:
        """How many connections have a request in progress."""
        with self._changed:
            return sum(1 for conn in self._connections if conn.busy)

    def close_idle(self) -> int:
        """Close (FIN) every connection idle between requests; returns how many."""
        with self._changed:
            connections = list(self._connections)
        closed = 0
        for conn in connections:
            with conn.lock:
                if conn.busy:
                    continue
                _shutdown(conn.sock)
            closed += 1
            with self._changed:
                self._connections.discard(conn)
        return closed

    def close_all(self) -> None:
        """Close every connection, busy or not."""
        with self._changed:
            connections = list(self._connections)
        for conn in connections:
            _shutdown(conn.sock)


class HttpServer(socketserver.ThreadingTCPServer):
    """One listening socket served by a thread, handing requests to ``app``.

    ``tracker`` follows the connections; it may outlive the server (a listening
    socket closed and opened again on the same port shares one tracker).
    """

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self, host: str, port: int, app: App, tracker: ConnectionTracker, limits: ConnectionLimits
    ) -> None:
        self.app, self.tracker, self.limits = app, tracker, limits
        self.request_queue_size = limits.listen_backlog
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # Each connection is served by finish_request below, not by a handler class.
        super().__init__((host, port), socketserver.BaseRequestHandler)
        self.port = int(self.server_address[1])
        name = f"segment-lite-collector:{self.port}"
        self._thread = threading.Thread(target=self.serve_forever, args=(0.05,), name=name, daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop accepting and close the listening socket (open connections are left to the tracker)."""
        self.shutdown()
        self.server_close()
        self._thread.join(timeout=5)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.tracker.reserve_thread(self.limits.max_connections):
            self._refuse_busy(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.tracker.release_thread()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.tracker.release_thread()

    def finish_request(self, request: Any, client_address: Any) -> None:
        _ServerConnection(request, self).serve()

    def _refuse_busy(self, sock: socket.socket) -> None:
        message = f"all {self.limits.max_connections} connections are busy; retry shortly"
        busy = Response.json(503, error_body("too_many_connections", message), [("Retry-After", "1")])
        answer = _frame(h11.Connection(h11.SERVER), busy, close=True)
        try:
            sock.settimeout(0.5)
            sock.sendall(answer)
        except OSError:
            pass
        self.shutdown_request(sock)

    def service_actions(self) -> None:
        # Runs between accepts, every poll interval: the one place timeouts are enforced.
        self.tracker.expire(time.monotonic())

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (OSError, ValueError)):
            return  # a client that went away, or a socket we closed on purpose
        super().handle_error(request, client_address)


def _frame(conn: h11.Connection, response: Response, close: bool, method: str = "GET") -> bytes:
    """``response`` as bytes on the wire, framed by ``conn``, with the security headers."""
    # 1xx, 204 and 304 answers have no body, and a HEAD request gets only the head.
    has_body = response.status >= 200 and response.status not in (204, 304)
    headers = [
        ("Date", email.utils.formatdate(usegmt=True)),
        ("Server", "segment-lite-collector"),
        ("Content-Type", response.content_type),
        *([("Content-Length", str(len(response.body)))] if has_body else []),
        *SECURITY_HEADERS,
        *response.headers,
        *([("Connection", "close")] if close else []),
    ]
    reason = responses.get(response.status, "").encode("ascii")
    data = conn.send(h11.Response(status_code=response.status, headers=headers, reason=reason)) or b""
    if has_body and method != "HEAD":
        data += conn.send(h11.Data(data=response.body)) or b""
    return data + (conn.send(h11.EndOfMessage()) or b"")


def _protocol_error(exc: h11.RemoteProtocolError) -> RequestError:
    """The answer to a request h11 could not parse; h11 names the header at fault in its message."""
    text = str(exc)
    if "Content-Length" in text:
        return RequestError(400, "invalid_length", "Content-Length is not a valid length")
    if "Transfer-Encoding" in text:
        return RequestError(400, "invalid_transfer_encoding", "only one Transfer-Encoding: chunked is read")
    if "chunk" in text:
        return RequestError(400, "invalid_chunking", f"the chunked body is malformed: {text[:100]}")
    if exc.error_status_hint == 431:
        return _head_too_large()
    return RequestError(400, "bad_request", f"the request could not be parsed: {text[:100]}")


def _head_too_large() -> RequestError:
    message = f"the request line and headers are over {MAX_HEAD_BYTES} bytes"
    return RequestError(431, "head_too_large", message, {"limit": MAX_HEAD_BYTES})


def _body_too_large(size: int, limit: int, exact: bool) -> RequestError:
    """The 413 for a body over ``max_body_bytes``; ``exact``: ``size`` is its length, else a lower bound."""
    return RequestError(
        413,
        "body_too_large",
        f"the body is {'' if exact else 'at least '}{size} bytes; "
        f"this server does not read bodies over {limit} bytes",
        {"size": size, "limit": limit} if exact else {"limit": limit},
    )


def _shutdown(sock: socket.socket, how: int = socket.SHUT_RDWR) -> None:
    try:
        sock.shutdown(how)
    except OSError:
        pass
