"""HTTP/1.1 plumbing for the collector: connections, request bodies and answers, knowing no endpoint.

The server hands each request to an *app* (``Callable[[Request], Response]``)
and writes back the :class:`Response` it returns. The app may read the body
through :meth:`Request.read_body`; whatever it leaves unread is drained so the
connection can be kept alive.
"""

from __future__ import annotations

import json
import select
import socket
import struct
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Optional
from urllib.parse import parse_qs, urlsplit

from segment_lite.collector.processing import RequestError
from segment_lite.errors import SegmentLiteError

__all__ = [
    "MAX_BODY_BYTES",
    "App",
    "Body",
    "ClientGone",
    "ConnectionTracker",
    "Headers",
    "HttpServer",
    "Request",
    "Response",
    "error_body",
    "json_bytes",
]

# Bodies larger than this are not even read: the connection is answered 413 and closed.
MAX_BODY_BYTES = 16 * 1024 * 1024


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


def json_bytes(value: Any) -> bytes:
    """Compact UTF-8 JSON."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def error_body(code: str, message: str) -> dict[str, Any]:
    """The JSON error body every endpoint answers: ``success``, a stable ``code`` and a ``message``."""
    return {"success": False, "code": code, "message": message}


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
    """A request body: its first bytes (all of them unless the reader was told to keep fewer) and size."""

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

    def read_body(self) -> bytes:
        """The whole body (Content-Length or chunked), up to :data:`MAX_BODY_BYTES`.

        Raises :class:`RequestError` for a body that will not be read (the
        connection is then closed after the answer), :class:`ClientGone` if the
        client hangs up mid-body. A second call repeats the first's outcome.
        """
        if self._body_error is not None:
            raise self._body_error
        if self._body is None:
            try:
                self._body = self._handler.read_body()
            except (RequestError, ClientGone) as exc:
                self._body_error = exc
                raise
        return self._body.data

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


class _Connection:
    """A client connection the server holds, and whether a request is in progress on it."""

    __slots__ = ("busy", "lock", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.busy = False
        # Held while an answer is written and the connection marked idle, so a
        # client that has read its answer finds the connection already idle.
        self.lock = threading.Lock()


class ConnectionTracker:
    """The client connections held open, across restarts of the listening socket (thread-safe)."""

    def __init__(self, on_open: Optional[Callable[[], None]] = None) -> None:
        self._lock = threading.Lock()
        self._connections: set[_Connection] = set()
        self._on_open = on_open

    def opened(self, conn: _Connection) -> None:
        with self._lock:
            self._connections.add(conn)
        if self._on_open is not None:
            self._on_open()

    def closed(self, conn: _Connection) -> None:
        with self._lock:
            self._connections.discard(conn)

    @property
    def open_count(self) -> int:
        """How many connections are open."""
        with self._lock:
            return len(self._connections)

    @property
    def busy_count(self) -> int:
        """How many connections have a request in progress."""
        with self._lock:
            return sum(1 for conn in self._connections if conn.busy)

    def close_idle(self) -> int:
        """Close (FIN) every connection idle between requests; returns how many."""
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

    def close_all(self) -> None:
        """Close every connection, busy or not."""
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            _shutdown(conn.sock)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], app: App, tracker: ConnectionTracker) -> None:
        self.app = app
        self.tracker = tracker
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
        self.server.tracker.opened(self._conn)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.tracker.closed(self._conn)

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

    # -- dispatch -----------------------------------------------------------------

    def _dispatch(self) -> None:
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
                request.read_body()  # drain it, to keep the connection in step
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

    def read_body(self) -> Body:
        """Read the whole request body (Content-Length or chunked), up to the hard limit.

        Raises RequestError (and marks the connection to close) for a body we
        will not read, ClientGone if the client hangs up mid-body.
        """
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            data = self._read_chunked()
            return Body(data, len(data))
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            return Body(b"", 0)
        try:
            length = int(length_header)
            if length < 0:
                raise ValueError(length_header)
        except ValueError:
            self.close_connection = True
            raise RequestError(400, "invalid_length", "Content-Length is not a valid length") from None
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            raise RequestError(
                413,
                "body_too_large",
                f"the body is {length} bytes; this server reads at most {MAX_BODY_BYTES} bytes",
                {"size": length, "limit": MAX_BODY_BYTES},
            )
        data = self.rfile.read(length)
        if len(data) < length:
            raise ClientGone()
        return Body(data, length)

    def _read_chunked(self) -> bytes:
        out = bytearray()
        while True:
            line = self.rfile.readline(1024)
            if not line:
                raise ClientGone()
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                self.close_connection = True
                raise RequestError(400, "invalid_chunking", "malformed chunked body") from None
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass
                return bytes(out)
            if len(out) + size > MAX_BODY_BYTES:
                self.close_connection = True
                raise RequestError(
                    413,
                    "body_too_large",
                    f"the body is over {MAX_BODY_BYTES} bytes; this server reads at most that",
                    {"limit": MAX_BODY_BYTES},
                )
            chunk = self.rfile.read(size)
            if len(chunk) < size:
                raise ClientGone()
            out += chunk
            self.rfile.readline(1024)

    # -- answering ----------------------------------------------------------------

    def _send(self, response: Response) -> None:
        with self._conn.lock:
            try:
                self.send_response(response.status)
                self.send_header("Content-Type", response.content_type)
                self.send_header("Content-Length", str(len(response.body)))
                self.send_header("Cache-Control", "no-store")
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
                self._conn.busy = False

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

    def __init__(self, host: str, port: int, app: App, tracker: ConnectionTracker) -> None:
        server_class = _Server6 if ":" in host else _Server
        self._server = server_class((host, port), app, tracker)
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


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
