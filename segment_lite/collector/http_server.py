"""HTTP/1.1 plumbing for the collector: connections, timeouts, request bodies and answers; no endpoints.

The server hands each request to an *app* (``Callable[[Request], Response]``)
and writes back the :class:`Response` it returns. The app may read the body
through :meth:`Request.read_body`; whatever it leaves unread is drained so the
connection can be kept alive.

Every connection is bounded (see :class:`ConnectionLimits`): a request must
arrive within the read timeout, a kept-alive connection is closed after the
idle timeout, at most ``max_connections`` handler threads run (an idle
connection is closed to make room for a new one, else the new one is answered
503), and bodies over ``max_body_bytes`` are refused unread.
"""

from __future__ import annotations

import ipaddress
import re
import select
import socket
import struct
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Optional
from urllib.parse import parse_qs, urlsplit

from segment_lite.collector.processing import RequestError, error_body, json_bytes
from segment_lite.errors import SegmentLiteError

__all__ = [
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
    "error_body",
    "is_loopback_host",
    "json_bytes",
]


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
                raise ValueError(f"{name} must be positive, not {getattr(self, name)!r}")
        for name in ("max_connections", "listen_backlog", "max_body_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)!r}")


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


class ClientGone(SegmentLiteError):
    """The client went away while its request was being read."""


class Request:
    """One parsed request line and headers, with a way to read the body and to see if the client left."""

    def __init__(self, handler: _Handler) -> None:
        self._handler = handler
        split = urlsplit(handler.path)
        self.method: str = handler.command
        self.target: str = handler.path
        self.path: str = split.path
        self.query: dict[str, list[str]] = parse_qs(split.query)
        self.headers = Headers(handler.headers.items())
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
                self._body = self._handler.read_body(keep_bytes)
            except (RequestError, ClientGone) as exc:
                self._body_error = exc
                raise
        return self._body

    def client_gone(self) -> bool:
        """Whether the client has closed its side of the connection."""
        sock = self._handler.connection
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


class _Connection:
    """A client connection the server holds: what it is doing and until when it may."""

    __slots__ = ("deadline", "lock", "since", "sock", "state", "timed_out")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.state = _IDLE
        self.since = time.monotonic()
        # When the current state must end (None: no bound, e.g. while the app works).
        self.deadline: Optional[float] = None
        self.timed_out = False
        # Held while an answer is written and the connection marked idle, so a
        # client that has read its answer finds the connection already idle.
        self.lock = threading.Lock()

    @property
    def busy(self) -> bool:
        return self.state != _IDLE

    def move_to(self, state: str, timeout_s: Optional[float]) -> None:
        """Enter ``state``, to end within ``timeout_s`` (None: unbounded); the caller holds ``lock``."""
        now = time.monotonic()
        self.state, self.since = state, now
        self.deadline = None if timeout_s is None else now + timeout_s


class ConnectionTracker:
    """The client connections and handler threads, across restarts of the listening socket (thread-safe)."""

    def __init__(self, on_open: Optional[Callable[[], None]] = None) -> None:
        self._changed = threading.Condition(threading.Lock())
        self._connections: set[_Connection] = set()
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

    def opened(self, conn: _Connection) -> None:
        with self._changed:
            self._connections.add(conn)
        if self._on_open is not None:
            self._on_open()

    def closed(self, conn: _Connection) -> None:
        with self._changed:
            self._connections.discard(conn)

    @staticmethod
    def enter(conn: _Connection, state: str, timeout_s: Optional[float]) -> None:
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


_BUSY_ANSWER = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
    b"Connection: close\r\nContent-Length: %d\r\n\r\n%s"
)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self, address: tuple[str, int], app: App, tracker: ConnectionTracker, limits: ConnectionLimits
    ) -> None:
        self.app = app
        self.tracker = tracker
        self.limits = limits
        self.request_queue_size = limits.listen_backlog
        super().__init__(address, _Handler)

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

    def _refuse_busy(self, sock: socket.socket) -> None:
        message = f"all {self.limits.max_connections} connections are busy; retry shortly"
        body = json_bytes(error_body("too_many_connections", message))
        try:
            sock.settimeout(0.5)
            sock.sendall(_BUSY_ANSWER % (len(body), body))
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


class _Server6(_Server):
    address_family = socket.AF_INET6


_CONTENT_LENGTH = re.compile(rb"[0-9]{1,19}")
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")
_LINE_BYTES = 1024  # chunk-size lines and trailer lines
_MAX_TRAILERS = 64


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
        self.server.tracker.opened(self._conn)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.tracker.closed(self._conn)

    def handle_one_request(self) -> None:
        limits, tracker = self.server.limits, self.server.tracker
        tracker.enter(self._conn, _IDLE, limits.idle_timeout_s)
        try:
            # The socket timeouts only back up the tracker's deadlines.
            self.connection.settimeout(limits.idle_timeout_s + 1)
            if not self.rfile.peek(1):  # type: ignore[attr-defined]  # a BufferedReader
                self.close_connection = True
                return
            tracker.enter(self._conn, _READING, limits.read_timeout_s)
            self.connection.settimeout(limits.read_timeout_s + 1)
        except (OSError, ValueError):
            self.close_connection = True
            return
        super().handle_one_request()

    def send_error(self, code: int, message: Optional[str] = None, explain: Optional[str] = None) -> None:
        """Errors found by the request parser, answered as JSON like every other error."""
        self.close_connection = True
        # The parser takes a request line it cannot read for HTTP/0.9, whose answers
        # carry no status line: answer garbage as HTTP/1.1, with its 4xx.
        self.request_version = "HTTP/1.1"
        if self._conn.timed_out:
            self._send(Response.error(408, "request_timeout", self._timeout_message()))
            return
        reason = message or self.responses.get(code, ("error",))[0]
        self._send(Response.error(code, "bad_request", f"the request could not be parsed: {reason}"))

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default per-request log; the collector logs tracking calls itself."""

    def _timeout_message(self) -> str:
        return f"the request was not received within {self.server.limits.read_timeout_s:g} s"

    # -- dispatch -----------------------------------------------------------------

    def _dispatch(self) -> None:
        if self._conn.timed_out:  # the headers were cut short by the read timeout
            self.send_error(408)
            return
        if not self._has_body():
            self.server.tracker.enter(self._conn, _HANDLING, None)
        request = Request(self)
        try:
            response = self.server.app(request)
        except ClientGone:
            self.close_connection = True
            return
        except Exception as exc:  # a bug of the app: answer 500 rather than drop the connection
            response = Response.error(500, "internal_error", f"{type(exc).__name__}: {exc}", close=True)
        if not request.body_read:
            try:
                request.read_body(keep_bytes=0)  # drain it, to keep the connection in step
            except (RequestError, ClientGone):
                self.close_connection = True
        if response.close:
            self.close_connection = True
        if response.action == "reset":
            self._reset_connection()
        elif response.action == "hang_up":
            self.close_connection = True
        else:
            self._send(response)

    do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _dispatch

    # -- request bodies ---------------------------------------------------------

    def _has_body(self) -> bool:
        return "Transfer-Encoding" in self.headers or self.headers.get("Content-Length", "0").strip() != "0"

    def read_body(self, keep_bytes: Optional[int]) -> Body:
        """Read the request body (Content-Length or chunked), keeping at most ``keep_bytes`` of it."""
        keep = self.server.limits.max_body_bytes if keep_bytes is None else max(0, keep_bytes)
        try:
            body = self._read_body(keep)
        except RequestError:
            self.close_connection = True
            raise
        except (OSError, ValueError, ClientGone):
            self.close_connection = True
            if self._conn.timed_out:
                raise RequestError(408, "request_timeout", self._timeout_message()) from None
            raise ClientGone() from None
        self.server.tracker.enter(self._conn, _HANDLING, None)
        return body

    def _read_body(self, keep: int) -> Body:
        encoding = self.headers.get("Transfer-Encoding")
        if encoding is not None:
            codings = [c.strip().lower() for c in encoding.split(",")]
            if codings != ["chunked"]:
                raise RequestError(
                    400, "invalid_transfer_encoding", "only Transfer-Encoding: chunked is supported"
                )
            return self._read_chunked(keep)
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            return Body(b"", 0)
        if len(self.headers.get_all("Content-Length", [])) > 1 or not _CONTENT_LENGTH.fullmatch(
            length_header.strip().encode("latin-1", "replace")
        ):
            raise RequestError(400, "invalid_length", "Content-Length is not a valid length")
        length = int(length_header)
        self._check_size(length, exact=True)
        return self._read_exactly(length, keep, bytearray())

    def _read_exactly(self, length: int, keep: int, out: bytearray, offset: int = 0) -> Body:
        """Read ``length`` bytes, appending to ``out`` what fits in ``keep`` counting ``offset`` before."""
        remaining = length
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, 64 * 1024))
            if not chunk:
                raise ClientGone()
            room = keep - len(out)
            if room > 0:
                out += chunk[:room]
            remaining -= len(chunk)
        return Body(bytes(out), offset + length)

    def _check_size(self, size: int, exact: bool) -> None:
        """Refuse a body over ``max_body_bytes``; ``exact``: ``size`` is its length, else a lower bound."""
        limit = self.server.limits.max_body_bytes
        if size > limit:
            raise RequestError(
                413,
                "body_too_large",
                f"the body is {'' if exact else 'at least '}{size} bytes; "
                f"this server does not read bodies over {limit} bytes",
                {"size": size, "limit": limit} if exact else {"limit": limit},
            )

    def _read_chunked(self, keep: int) -> Body:
        out = bytearray()
        total = 0
        while True:
            line = self.rfile.readline(_LINE_BYTES)
            if not line:
                raise ClientGone()
            if not line.endswith(b"\n"):
                raise RequestError(400, "invalid_chunking", "a chunk-size line is too long or cut short")
            size_field = line.split(b";", 1)[0].strip()
            if not _CHUNK_SIZE.fullmatch(size_field):
                shown = size_field[:20].decode("latin-1")
                raise RequestError(400, "invalid_chunking", f"invalid chunk size {shown!r}: not hexadecimal")
            size = int(size_field, 16)
            if size == 0:
                for _ in range(_MAX_TRAILERS):
                    trailer = self.rfile.readline(_LINE_BYTES)
                    if not trailer:
                        raise ClientGone()
                    if trailer in (b"\r\n", b"\n"):
                        return Body(bytes(out), total)
                raise RequestError(400, "invalid_chunking", "too many trailer lines")
            self._check_size(total + size, exact=False)
            self._read_exactly(size, keep, out)
            total += size
            if self.rfile.readline(3) not in (b"\r\n", b"\n"):
                raise RequestError(400, "invalid_chunking", "chunk data is not followed by CRLF")

    # -- answering ----------------------------------------------------------------

    def _send(self, response: Response) -> None:
        with self._conn.lock:
            try:
                self.send_response(response.status)
                self.send_header("Content-Type", response.content_type)
                self.send_header("Content-Length", str(len(response.body)))
                self.send_header("Cache-Control", "no-store")
                self.send_header("X-Content-Type-Options", "nosniff")
                for name, value in response.headers:
                    self.send_header(name, value)
                if self.close_connection:
                    self.send_header("Connection", "close")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(response.body)
                self.wfile.flush()
            except OSError:
                self.close_connection = True
            if not self.close_connection:
                self._conn.move_to(_IDLE, self.server.limits.idle_timeout_s)

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


class HttpServer:
    """One listening socket served by a thread, handing requests to ``app``.

    ``tracker`` follows the connections; it may outlive the server (a listening
    socket closed and opened again on the same port shares one tracker).
    """

    def __init__(
        self,
        host: str,
        port: int,
        app: App,
        tracker: ConnectionTracker,
        limits: Optional[ConnectionLimits] = None,
    ) -> None:
        server_class = _Server6 if ":" in host else _Server
        self._server = server_class((host, port), app, tracker, limits or ConnectionLimits())
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"segment-lite-collector:{self.port}",
            daemon=True,
        )
        self._thread.start()

    def close(self) -> None:
        """Stop accepting and close the listening socket (open connections are left to the tracker)."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def _shutdown(sock: socket.socket, how: int = socket.SHUT_RDWR) -> None:
    try:
        sock.shutdown(how)
    except OSError:
        pass
