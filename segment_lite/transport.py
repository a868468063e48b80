"""HTTP behind a small interface: post bytes, get a status back, or a classified network error.

Two transports implement it. ``Urllib3Transport`` (the default) keeps one urllib3
connection per sender thread and does little else per request. ``RequestsTransport``
goes through a ``requests.Session``; pass ``transport=RequestsTransport`` to use it.
Both honour the proxy environment variables as requests does (an explicit
``proxies=`` mapping wins over them), verify TLS against the same CA bundle as
requests, never read ``~/.netrc``, leave redirects unfollowed, and can be aborted
from another thread.
"""

from __future__ import annotations

import http.client
import os
import socket
import ssl
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Callable, Optional, Protocol, Union
from urllib.parse import urlsplit

import requests
import requests.adapters
import requests.auth
import requests.utils
import urllib3
import urllib3.exceptions
from urllib3 import HTTPHeaderDict
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.util import parse_url
from urllib3.util.connection import allowed_gai_family
from urllib3.util.ssl_ import create_urllib3_context

from segment_lite.errors import SegmentLiteError, ValidationError

__all__ = [
    "DEFAULT_HOST",
    "EU_HOST",
    "RequestsTransport",
    "Transport",
    "TransportError",
    "TransportFactory",
    "TransportResponse",
    "Urllib3Transport",
    "batch_url",
    "ca_bundle",
    "default_transport_factory",
    "proxy_for",
]

DEFAULT_HOST = "https://api.segment.io"
EU_HOST = "https://events.eu1.segmentapis.com"
REGION_HOSTS = {"us": DEFAULT_HOST, "eu": EU_HOST}
#: Variables naming a CA bundle, in the order they are honoured (the first two as requests does).
CA_BUNDLE_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE")


def batch_url(host: Optional[str], region: Optional[str] = None) -> str:
    """The batch endpoint for ``host`` (any of ``https://h``, ``https://h/``, ``https://h/v1``).

    With no host, ``region`` ("us" or "eu") picks Segment's endpoint.
    """
    if not host:
        key = (region or "us").lower()
        if key not in REGION_HOSTS:
            raise ValidationError(f"region must be 'us' or 'eu', got {region!r}", "region")
        # Read at call time, so code that repoints DEFAULT_HOST (a test harness) is honoured.
        host = DEFAULT_HOST if key == "us" else REGION_HOSTS[key]
    base = host.strip().rstrip("/")
    if base.endswith("/v1/batch"):
        base = base[: -len("/v1/batch")]
    if base.endswith("/v1"):
        base = base[: -len("/v1")]
    scheme, _, rest = base.partition("://")
    if not rest or scheme.lower() not in ("http", "https"):
        # "localhost:8080" or "api.segment.io" would be taken as some other scheme,
        # or as https to a port that speaks plain HTTP: every request would fail.
        given = host.strip()
        suggestion = f"; did you mean 'http://{given}' or 'https://{given}'?" if "://" not in given else ""
        raise ValidationError(f"host must start with http:// or https://, got {host!r}{suggestion}", "host")
    return base + "/v1/batch"


@dataclass
class TransportResponse:
    """What came back from the server."""

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""


class TransportError(SegmentLiteError):
    """The request did not get a response (connection refused, reset, timeout, aborted, ...).

    ``stale_connection`` is True when a reused keep-alive connection was closed or
    reset by the server: usually one it had closed while idle, so the retry layer
    tries again at once (once per batch); should the server have received the
    batch after all, it deduplicates the retry by messageId.

    ``aborted`` is True when ``Transport.abort()`` cut the request short.

    ``connection_closed`` is True when the server closed or reset the connection
    without a complete answer (on a fresh connection too): twice in a row for
    one batch, the sender bisects it to find a message the server cannot take.

    The message names the cause and the server, e.g. ``connection refused to
    127.0.0.1:8080`` or ``TLS error with api.segment.io:443: certificate verify failed``.
    """

    def __init__(
        self,
        message: str,
        stale_connection: bool = False,
        aborted: bool = False,
        connection_closed: bool = False,
    ) -> None:
        super().__init__(message)
        self.stale_connection = stale_connection
        self.aborted = aborted
        self.connection_closed = connection_closed or stale_connection


class Transport(Protocol):
    """Posts a request body; one instance is used by one thread at a time.

    ``abort`` is the exception: another thread may call it while ``post`` runs.
    """

    def post(self, url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> TransportResponse:
        """Send ``body`` and return the response, or raise ``TransportError``."""
        ...

    def abort(self) -> None:
        """Close the connection of a ``post`` in flight, so that it raises ``TransportError`` at once.

        Called from another thread (a flush or shutdown whose time is up). Does
        nothing when no request is in flight; later posts open a new connection.
        """
        ...

    def close(self) -> None:
        """Release connections."""
        ...


TransportFactory = Callable[[], Transport]

# Exceptions that mean a pooled connection was closed by the peer before or as we
# reused it, as opposed to a server that is down (refused) or slow (timeout).
_STALE_CAUSES = (
    http.client.RemoteDisconnected,
    ConnectionResetError,
    BrokenPipeError,
    ConnectionAbortedError,
)


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and every exception nested in it (arguments, causes, contexts), outermost first."""
    pending: list[BaseException] = [exc]
    seen: set[int] = set()
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        pending.extend(arg for arg in getattr(current, "args", ()) if isinstance(arg, BaseException))
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)


def _is_stale(exc: BaseException) -> bool:
    """Whether ``exc``, or an exception nested in it, means a pooled connection had died."""
    return any(isinstance(cause, _STALE_CAUSES) for cause in _causes(exc))


def _is_timeout(exc: BaseException) -> bool:
    # urllib3's NewConnectionError (refused, unreachable) derives from its TimeoutError.
    if isinstance(exc, urllib3.exceptions.NewConnectionError):
        return False
    # socket.timeout is TimeoutError from Python 3.10 on; on 3.9 it is only an OSError.
    return isinstance(exc, (TimeoutError, socket.timeout, urllib3.exceptions.TimeoutError))


def _describe(exc: BaseException) -> str:
    # Messages embed the URL but never credentials (auth goes in a header; proxy
    # URLs are shown without their user info).
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:500]


def _server(url: str) -> str:
    """``host:port`` of ``url``, as failures name it."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    host = parts.hostname or url
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


_NAME_RESOLUTION_ERRORS: tuple[type[BaseException], ...] = (
    socket.gaierror,
    getattr(urllib3.exceptions, "NameResolutionError", socket.gaierror),  # urllib3 2 only
)


def failure_cause(exc: BaseException, url: str, timeout: float) -> str:
    """A short, plain account of why a request to ``url`` got no answer, naming the server.

    ``connection refused to 127.0.0.1:8080``, ``cannot resolve host example.invalid``,
    ``TLS error with api.segment.io:443: certificate verify failed ...``, ``no
    answer from ...``, ``... closed the connection without a response``; anything
    else is the exception's own text.
    """
    server = _server(url)
    chain = list(_causes(exc))
    for cause in chain:
        if isinstance(cause, ssl.SSLCertVerificationError):
            reason = cause.verify_message or cause.reason or "certificate verify failed"
            return f"TLS error with {server}: certificate verify failed: {reason}"
        if isinstance(cause, ssl.SSLError):
            return f"TLS error with {server}: {cause.reason or cause}"
        if isinstance(cause, _NAME_RESOLUTION_ERRORS):
            return f"cannot resolve host {urlsplit(url).hostname} ({_describe(cause)})"
        if isinstance(cause, ConnectionRefusedError):
            return f"connection refused to {server}"
        if isinstance(cause, (requests.exceptions.ProxyError, urllib3.exceptions.ProxyError)):
            return f"proxy error on the way to {server}: {_describe(cause)}"
    if any(_is_timeout(cause) or isinstance(cause, requests.exceptions.Timeout) for cause in chain):
        connecting = any(
            isinstance(c, (urllib3.exceptions.ConnectTimeoutError, requests.exceptions.ConnectTimeout))
            for c in chain
        )
        if connecting:
            return f"connecting to {server} timed out after {timeout}s"
        return f"no answer from {server}: timed out after {timeout}s"
    for cause in chain:
        # RemoteDisconnected is a ConnectionResetError: test it first.
        if isinstance(cause, (http.client.RemoteDisconnected, http.client.IncompleteRead)):
            return f"{server} closed the connection without a (complete) response"
        if isinstance(cause, ConnectionResetError):
            return f"connection reset by {server} before it answered"
        if isinstance(cause, _STALE_CAUSES):
            return f"{server} closed the connection without a (complete) response"
        if isinstance(cause, http.client.BadStatusLine):
            return f"{server} sent a malformed response: {_describe(cause)}"
    return _describe(exc)


def _failure(exc: BaseException, url: str, timeout: float, reused: bool, aborted: bool) -> TransportError:
    """The ``TransportError`` for a request to ``url`` that failed with ``exc``."""
    if aborted:
        return TransportError(f"request to {_server(url)} aborted: {_describe(exc)}", aborted=True)
    closed = not isinstance(exc, requests.exceptions.ProxyError) and (
        _is_stale(exc) or any(isinstance(c, http.client.IncompleteRead) for c in _causes(exc))
    )
    return TransportError(
        failure_cause(exc, url, timeout), stale_connection=reused and closed, connection_closed=closed
    )


def _answer(url: str, status: int, headers: Mapping[str, str], body: bytes) -> TransportResponse:
    """The response, unless it was cut off before its end (then ``TransportError``).

    A 2xx with neither ``Content-Length`` nor chunked encoding and no body is what a
    response cut off after its status line looks like (the HTTP parser takes the
    end of the stream for the end of the headers); counting it as delivered could
    lose the batch, while sending it again costs at most a duplicate the server
    drops by messageId.
    """
    if (
        200 <= status < 300
        and not body
        and headers.get("Content-Length") is None
        and "chunked" not in (headers.get("Transfer-Encoding") or "").lower()
    ):
        raise TransportError(
            f"{_server(url)} answered {status} but the response was cut off (no Content-Length, "
            "no body): not counted as delivered",
            connection_closed=True,
        )
    return TransportResponse(status, headers, body)


# -- proxies and TLS, as requests does them -------------------------------------


def proxy_for(url: str, proxies: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """The proxy URL to use for ``url``, or None for a direct connection.

    An entry of ``proxies`` (keys as in requests: ``"https"``, ``"http"``,
    ``"all"``, ``"https://host"``...) wins; for the keys it does not set, the
    environment's ``HTTPS_PROXY``/``HTTP_PROXY``/``ALL_PROXY`` apply unless
    ``NO_PROXY`` (or a ``"no_proxy"`` entry) excludes the host: requests' rules for
    proxies passed with a request.
    """
    merged = dict(proxies or {})
    for key, value in requests.utils.get_environ_proxies(url, no_proxy=merged.get("no_proxy")).items():
        merged.setdefault(key, value)
    return requests.utils.select_proxy(url, merged)


def ca_bundle() -> Optional[str]:
    """The CA bundle (file or directory) TLS is verified against; None means the system's store.

    ``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE`` or ``SSL_CERT_FILE`` when set (in that
    order), else certifi's bundle, as requests uses, when certifi is installed.
    """
    for name in CA_BUNDLE_VARIABLES:
        value = os.environ.get(name)
        if value:
            return value
    try:
        import certifi
    except ImportError:  # pragma: no cover - requests installs certifi
        return None
    return str(certifi.where())


def _tls_context(verify: Union[bool, str]) -> ssl.SSLContext:
    """A client TLS context loaded once: the CA bundle for ``verify=True``, a given one for a path."""
    context = create_urllib3_context()
    if verify is False:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    location = verify if isinstance(verify, str) else ca_bundle()
    try:
        if location is None:
            context.load_default_certs()
        elif os.path.isdir(location):
            context.load_verify_locations(capath=location)
        else:
            context.load_verify_locations(cafile=location)
    except (OSError, ssl.SSLError) as exc:
        raise TransportError(f"cannot load the TLS CA bundle {location!r}: {exc}") from None
    return context


def _without_userinfo(url: str) -> str:
    parsed = parse_url(url)
    return parsed._replace(auth=None).url if parsed.auth else url


# -- abortable connections --------------------------------------------------------

#: urllib3 2 (1.x lacks what the default transport uses; RequestsTransport is then the default).
URLLIB3_2 = int(str(getattr(urllib3, "__version__", "2")).split(".")[0]) >= 2


class _SocketRegistry:
    """The sockets one transport opened, so that ``abort()`` can shut them down from another thread.

    A socket is registered the moment it exists, before it connects, so an abort
    also interrupts a connect or a TLS handshake that hangs.
    """

    # The registry of the transport posting on this thread (a transport is used by one
    # thread at a time); connections made by requests' pools find it here.
    _current = threading.local()

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._posting = False
        self.aborted = False

    @contextmanager
    def posting(self) -> Iterator[None]:
        """Mark a post in flight on this thread, for its whole duration."""
        with self._lock:
            self._posting = True
            self.aborted = False
        _SocketRegistry._current.registry = self
        try:
            yield
        finally:
            _SocketRegistry._current.registry = None
            with self._lock:
                self._posting = False
                self._sockets = [sock for sock in self._sockets if sock.fileno() != -1]

    @classmethod
    def active(cls) -> Optional[_SocketRegistry]:
        """The registry of the post in flight on this thread, if any."""
        registry: Optional[_SocketRegistry] = getattr(cls._current, "registry", None)
        return registry

    def add(self, sock: socket.socket) -> None:
        """Register a new socket; raises if the post was aborted already."""
        with self._lock:
            if self.aborted:
                raise ConnectionAbortedError("the request was aborted")
            self._sockets.append(sock)

    def abort(self) -> None:
        """Shut down every socket of a post in flight: its blocked call returns at once."""
        with self._lock:
            if not self._posting:
                return
            self.aborted = True
            sockets = list(self._sockets)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:  # already closed, or never connected
                pass


def _open_socket(conn: HTTPConnection) -> socket.socket:
    """urllib3's connect, with the socket registered before it connects (see ``_SocketRegistry``)."""
    registry = _SocketRegistry.active()
    host, port = conn.host.strip("[]"), conn.port
    try:
        addresses = socket.getaddrinfo(host, port, allowed_gai_family(), socket.SOCK_STREAM)
    except socket.gaierror as exc:
        if URLLIB3_2:
            raise urllib3.exceptions.NameResolutionError(conn.host, conn, exc) from exc
        raise urllib3.exceptions.NewConnectionError(conn, f"Failed to resolve {conn.host!r}: {exc}") from exc
    error: Optional[OSError] = None
    for family, kind, proto, _, address in addresses:
        sock = socket.socket(family, kind, proto)
        try:
            if registry is not None:
                registry.add(sock)
            for option in conn.socket_options or ():
                sock.setsockopt(*option)
            sock.settimeout(conn.timeout)  # type: ignore[arg-type]  # a float, set by the transport
            if conn.source_address:
                sock.bind(conn.source_address)
            sock.connect(address)
        except socket.timeout as exc:
            sock.close()
            raise urllib3.exceptions.ConnectTimeoutError(
                conn, f"Connection to {conn.host} timed out. (connect timeout={conn.timeout})"
            ) from exc
        except OSError as exc:
            sock.close()
            error = exc
            continue
        sys.audit("http.client.connect", conn, conn.host, conn.port)
        return sock
    cause = error or OSError(f"no address found for {host}")
    raise urllib3.exceptions.NewConnectionError(
        conn, f"Failed to establish a new connection: {cause}"
    ) from cause


class _AbortableHTTPConnection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        return _open_socket(self)


class _AbortableHTTPSConnection(HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        return _open_socket(self)


# -- HTTP/1.1 on an open connection -------------------------------------------------

#: A connection idle for longer is checked before reuse (a server may have closed it);
#: one busier is used at once (if it was closed all the same, the stale-connection
#: retry sends the batch again).
IDLE_CHECK_S = 1.0
MAX_LINE_BYTES = 65536
MAX_HEADERS = 100
#: Most response body kept; a server sending more has the connection closed on it.
MAX_RESPONSE_BYTES = 1024 * 1024
_NO_BODY_STATUSES = (204, 304)


_FORBIDDEN_IN_HEADERS = frozenset("\r\n\0")


def _checked(text: str) -> str:
    """``text`` for a request line or a header, refused if it would start a line of its own."""
    if not _FORBIDDEN_IN_HEADERS.isdisjoint(text):
        raise ValueError(f"a request header contains a line break or a NUL character: {text[:40]!r}")
    return text


def _header_lines(headers: Mapping[str, str], content_length: int) -> bytes:
    """The caller's headers, Content-Length and the blank line that ends the head."""
    lines = [
        f"{_checked(name)}: {_checked(value)}\r\n"
        for name, value in headers.items()
        if name.lower() not in _OWN_HEADERS
    ]
    lines.append(f"Content-Length: {content_length}\r\n\r\n")
    return "".join(lines).encode("latin-1")


_OWN_HEADERS = frozenset(("host", "content-length", "transfer-encoding"))


def _read_line(reader: BinaryIO, what: str) -> bytes:
    line = reader.readline(MAX_LINE_BYTES + 1)
    if len(line) > MAX_LINE_BYTES:
        raise http.client.LineTooLong(what)
    if not line.endswith(b"\n"):
        raise (
            http.client.IncompleteRead(line, None)
            if line
            else http.client.RemoteDisconnected(f"Remote end closed connection in the {what}")
        )
    return line


def _read_response(reader: BinaryIO) -> tuple[int, HTTPHeaderDict, bytes, bool]:
    """Read one answer to a POST: status, headers, body (up to ``MAX_RESPONSE_BYTES``), and
    whether the connection must be closed after it.

    Strict where leniency would pass a cut-off answer for a delivered batch: a
    connection closed before the blank line that ends the headers, or before
    ``Content-Length`` bytes or the last chunk arrived, raises.
    """
    while True:
        line = reader.readline(MAX_LINE_BYTES + 1)
        if not line:
            raise http.client.RemoteDisconnected("Remote end closed connection without response")
        if len(line) > MAX_LINE_BYTES:
            raise http.client.LineTooLong("status line")
        version, _, rest = line.partition(b" ")
        code = rest[:3]
        if not version.startswith(b"HTTP/1.") or not code.isdigit() or not line.endswith(b"\n"):
            raise http.client.BadStatusLine(line.decode("latin-1")[:100])
        status = int(code)
        fields: list[list[str]] = []
        for _ in range(MAX_HEADERS + 1):
            header = _read_line(reader, "headers")
            if header in (b"\r\n", b"\n"):
                break
            if header[:1] in (b" ", b"\t") and fields:  # an obsolete folded continuation line
                fields[-1][1] = f"{fields[-1][1]} {header.strip().decode('latin-1')}".strip()
                continue
            name, colon, value = header.partition(b":")
            if not colon:
                raise http.client.HTTPException(f"malformed header line {header[:100]!r}")
            fields.append([name.strip().decode("latin-1"), value.strip().decode("latin-1")])
        else:
            raise http.client.HTTPException(f"more than {MAX_HEADERS} response headers")
        headers = HTTPHeaderDict()
        for field_name, field_value in fields:
            headers.add(field_name, field_value)
        if status >= 200 or status == 101:
            break  # 1xx answers are interim: the final one follows
    connection = headers.get("Connection", "").lower()
    will_close = "close" in connection or (version == b"HTTP/1.0" and "keep-alive" not in connection)
    if status in _NO_BODY_STATUSES:
        return status, headers, b"", will_close
    if "chunked" in headers.get("Transfer-Encoding", "").lower():
        body, complete = _read_chunked(reader)
        return status, headers, body, will_close or not complete
    length_text = headers.get("Content-Length")
    if length_text is None:  # the body ends when the server closes the connection
        body = reader.read(MAX_RESPONSE_BYTES)
        return status, headers, body, True
    if not length_text.strip().isdigit():
        raise http.client.HTTPException(f"invalid Content-Length {length_text[:50]!r}")
    length = int(length_text)
    body = reader.read(min(length, MAX_RESPONSE_BYTES))
    if len(body) < min(length, MAX_RESPONSE_BYTES):
        raise http.client.IncompleteRead(body, length - len(body))
    return status, headers, body, will_close or length > MAX_RESPONSE_BYTES


def _salvage_refusal(reader: BinaryIO) -> Optional[tuple[int, HTTPHeaderDict, bytes, bool]]:
    """An answer the server sent before it stopped reading our request, if it is a refusal.

    A 2xx is never taken from there: the server cannot have had the whole batch.
    """
    try:
        status, headers, body, _ = _read_response(reader)
    except (OSError, ValueError, http.client.HTTPException):
        return None
    return (status, headers, body, True) if not 200 <= status < 300 else None


def _read_chunked(reader: BinaryIO) -> tuple[bytes, bool]:
    """A chunked body, and False if it was cut at ``MAX_RESPONSE_BYTES`` (the rest is unread)."""
    parts: list[bytes] = []
    total = 0
    while True:
        size_text = _read_line(reader, "chunk size").split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise http.client.HTTPException(f"invalid chunk size {size_text[:20]!r}") from None
        if size == 0:
            while _read_line(reader, "trailers") not in (b"\r\n", b"\n"):
                pass
            return b"".join(parts), True
        if total + size > MAX_RESPONSE_BYTES:
            return b"".join(parts), False
        chunk = reader.read(size)
        if len(chunk) < size:
            raise http.client.IncompleteRead(chunk, size - len(chunk))
        parts.append(chunk)
        total += size
        _read_line(reader, "chunk end")


def _send_all(sock: socket.socket, head: bytes, body: bytes) -> None:
    """Send ``head`` and ``body`` in one system call when the kernel takes them at once
    (each blocking call hands the GIL to the caller's threads and back)."""
    sent = sock.sendmsg((head, body))
    if sent < len(head):
        sock.sendall(head[sent:])
        sock.sendall(body)
    elif sent < len(head) + len(body):
        sock.sendall(memoryview(body)[sent - len(head) :])


# -- the default transport ------------------------------------------------------


class Urllib3Transport:
    """The default transport: one kept-alive urllib3 connection, verified TLS, proxies as requests.

    ``proxies`` maps as in requests (``{"https": "http://proxy:3128"}``) and wins
    over the environment's proxy variables; ``verify`` is True (the CA bundle of
    ``ca_bundle()``), False (no verification), or the path of a CA bundle.
    Proxies and the CA bundle are read when a connection is opened.

    urllib3 opens the connection (DNS, TCP, TLS and its verification, proxy
    tunnels); the request and its answer are written and read here, a few dozen
    microseconds per request instead of a hundred or more (see ``_read_response``).
    """

    def __init__(self, proxies: Optional[Mapping[str, str]] = None, verify: Union[bool, str] = True) -> None:
        self._proxies = dict(proxies or {})
        self._verify = verify
        self._context: Optional[ssl.SSLContext] = None
        self._conn: Optional[HTTPConnection] = None
        self._reader: Optional[BinaryIO] = None  # buffered reads of the connection's socket
        self._url = ""  # the URL the connection serves
        self._head = b""  # request line, Host and proxy headers for that URL
        self._registry = _SocketRegistry()
        self._last_answer = 0.0  # monotonic time of the last complete answer

    def post(self, url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> TransportResponse:
        """Send ``body`` and return the response, or raise ``TransportError``."""
        head = self._head if url == self._url else b""
        with self._registry.posting():
            conn = self._conn
            reused = conn is not None and conn.sock is not None and bool(head)
            idle_s = time.monotonic() - self._last_answer
            if reused and idle_s > IDLE_CHECK_S and not conn.is_connected:  # type: ignore[union-attr]
                reused = False  # closed by the server while idle: open a new one, no error
            if not reused:
                self._drop_connection()
                conn = self._connection(url)
                head = self._head
            assert conn is not None
            try:
                if conn.sock is None:
                    conn.timeout = timeout
                    conn.connect()
                    self._reader = conn.sock.makefile("rb")  # type: ignore[attr-defined]
                sock, reader = conn.sock, self._reader
                assert sock is not None and reader is not None
                sock.settimeout(timeout)
                head += _header_lines(headers, len(body))
                try:
                    if type(sock).__module__ == "socket":  # the standard library's, not TLS nor green
                        _send_all(sock, head, body)
                    else:
                        sock.sendall(head)
                        sock.sendall(body)
                except (BrokenPipeError, ConnectionResetError):
                    if self._registry.aborted:
                        raise
                    # The server may have refused the request (413, 401, ...) and closed
                    # the connection before taking the whole body: read its answer.
                    answer = _salvage_refusal(reader)
                    if answer is None:
                        raise
                    status, response_headers, data, will_close = answer
                else:
                    status, response_headers, data, will_close = _read_response(reader)
                self._last_answer = time.monotonic()
            except (OSError, ValueError, http.client.HTTPException, urllib3.exceptions.HTTPError) as exc:
                self._drop_connection()
                raise _failure(exc, url, timeout, reused, self._registry.aborted) from None
            except BaseException:
                # KeyboardInterrupt, a green thread killed, ...: the request may be half sent
                # or its answer half read, so the connection can never be used again.
                self._drop_connection()
                raise
            if will_close:
                self._drop_connection()
        return _answer(url, status, response_headers, data)

    def abort(self) -> None:
        """Close the connection of a ``post`` in flight (from another thread); see ``Transport``."""
        self._registry.abort()

    def close(self) -> None:
        """Close the connection."""
        self._drop_connection()

    def _drop_connection(self) -> None:
        conn, reader, self._conn, self._reader = self._conn, self._reader, None, None
        if reader is not None:
            reader.close()
        if conn is not None:
            conn.close()

    def _connection(self, url: str) -> HTTPConnection:
        """A new, not yet connected, connection for ``url`` (direct or through its proxy)."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            raise TransportError(f"cannot post to {url!r}: the URL must be http:// or https:// with a host")
        host, port = parts.hostname, parts.port or (443 if scheme == "https" else 80)
        proxy = proxy_for(url, self._proxies)
        proxy_headers: dict[str, str] = {}
        if proxy is None:
            conn = self._new_connection(scheme, host, port)
        else:
            conn, proxy_headers = self._proxied_connection(scheme, host, port, proxy)
        # A forwarding proxy gets the whole URL on the request line; everyone else the path.
        target = (
            url
            if conn.proxy_is_forwarding
            else (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        )
        host_header = parts.netloc.rpartition("@")[2]
        lines = [f"POST {_checked(target)} HTTP/1.1", f"Host: {_checked(host_header)}"]
        lines.extend(f"{name}: {_checked(value)}" for name, value in proxy_headers.items())
        self._head = ("\r\n".join(lines) + "\r\n").encode("latin-1")
        self._conn, self._url = conn, url
        return conn

    def _tls(self) -> ssl.SSLContext:
        if self._context is None:
            self._context = _tls_context(self._verify)
        return self._context

    def _new_connection(self, scheme: str, host: str, port: int, **proxy: Any) -> HTTPConnection:
        if scheme == "https":
            return _AbortableHTTPSConnection(host, port, ssl_context=self._tls(), **proxy)
        return _AbortableHTTPConnection(host, port, **proxy)

    def _proxied_connection(
        self, scheme: str, host: str, port: int, proxy_url: str
    ) -> tuple[HTTPConnection, dict[str, str]]:
        """A connection to the proxy (a CONNECT tunnel for https targets, forwarding for http
        ones), and the headers each forwarded request carries for the proxy."""
        proxy = parse_url(proxy_url if "://" in proxy_url else "http://" + proxy_url)
        shown = _without_userinfo(proxy.url)
        if proxy.scheme not in ("http", "https") or not proxy.host:
            raise TransportError(
                f"proxy {shown!r} is not supported by the default transport (http:// and https:// "
                "proxies are); use transport=segment_lite.transport.RequestsTransport for SOCKS proxies"
            )
        auth_headers: dict[str, str] = {}
        user, password = requests.utils.get_auth_from_url(proxy.url)
        if user:
            auth_headers = dict(urllib3.util.make_headers(proxy_basic_auth=f"{user}:{password}"))
        from urllib3.connection import ProxyConfig  # urllib3 2 (the default transport needs it)

        config = ProxyConfig(
            ssl_context=self._tls() if proxy.scheme == "https" else None,
            use_forwarding_for_https=False,
            assert_hostname=None,
            assert_fingerprint=None,
        )
        # TLS is spoken to the origin inside a tunnel, or to an https:// proxy, or both.
        tls = scheme == "https" or proxy.scheme == "https"
        conn = self._new_connection(
            "https" if tls else "http", proxy.host, proxy.port or (443 if proxy.scheme == "https" else 80),
            proxy=proxy, proxy_config=config,
        )  # fmt: skip
        if scheme == "https":
            conn.set_tunnel(host, port, headers=auth_headers, scheme=proxy.scheme)
            return conn, {}
        return conn, auth_headers

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


# -- the requests transport -------------------------------------------------------


class _HeadersCarryAuth(requests.auth.AuthBase):
    """The Authorization header is already set; this only keeps requests from applying
    credentials from ``~/.netrc`` over it (it does so whenever no auth is given)."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        return request


class _AbortableHTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _AbortableHTTPConnection


class _AbortableHTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _AbortableHTTPSConnection


_ABORTABLE_POOLS = {"http": _AbortableHTTPPool, "https": _AbortableHTTPSPool}


class _AbortableAdapter(requests.adapters.HTTPAdapter):
    """requests' adapter, with pools whose connections register their sockets for ``abort()``."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _ABORTABLE_POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> urllib3.PoolManager:
        manager: urllib3.PoolManager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if not proxy.lower().startswith("socks"):  # SOCKS pools make connections of their own
            manager.pool_classes_by_scheme = _ABORTABLE_POOLS
        return manager


class RequestsTransport:
    """A transport on a ``requests.Session`` (keep-alive, TLS verification, proxies).

    segment_lite's default before 0.2, and what ``segment-analytics-python`` uses:
    pass ``transport=RequestsTransport`` to the client to keep it (the client's
    ``proxies=`` is handed over). ``proxies`` win over the environment's proxy
    variables; ``verify`` is as in requests.
    """

    def __init__(self, proxies: Optional[Mapping[str, str]] = None, verify: Union[bool, str] = True) -> None:
        self._session = requests.Session()
        self._session.auth = _HeadersCarryAuth()
        adapter = _AbortableAdapter()
        self._session.mount("https://", adapter)
        self._session.mount("http://", adapter)
        # Passed with each request, not set on the session: requests lets the
        # environment's proxy variables override the session's proxies.
        self._proxies = dict(proxies or {})
        self._session.verify = verify
        self._registry = _SocketRegistry()
        self._used = False

    def post(self, url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> TransportResponse:
        """Send ``body`` and return the response, or raise ``TransportError``."""
        reused = self._used
        self._used = True
        with self._registry.posting():
            try:
                # Redirects are not followed: requests would turn the POST of a 301/302 into a
                # GET, and a 200 for that would pass for a delivered batch.
                response = self._session.post(
                    url,
                    data=body,
                    headers=dict(headers),
                    timeout=timeout,
                    allow_redirects=False,
                    proxies=dict(self._proxies),  # requests adds the environment's to this dict
                )
            except requests.exceptions.RequestException as exc:
                raise _failure(exc, url, timeout, reused, self._registry.aborted) from None
        # getattr: a stand-in response (a test double of requests) may carry no body.
        return _answer(url, response.status_code, response.headers, getattr(response, "content", b""))

    def abort(self) -> None:
        """Close the connection of a ``post`` in flight (from another thread); see ``Transport``."""
        self._registry.abort()

    def close(self) -> None:
        """Close the session's connections."""
        self._session.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def default_transport_factory(
    transport: Union[TransportFactory, None], proxies: Optional[Mapping[str, str]]
) -> TransportFactory:
    """The factory a client uses: ``transport`` as given, with the client's ``proxies``.

    None means the default, ``Urllib3Transport``. One of this module's transport
    classes is built with ``proxies``; any other factory is called as it is.
    """
    if transport is None:
        transport = Urllib3Transport if URLLIB3_2 else RequestsTransport
    if transport is Urllib3Transport or transport is RequestsTransport:
        chosen: Callable[..., Transport] = transport
        return lambda: chosen(proxies=proxies)
    return transport
