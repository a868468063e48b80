"""HTTP behind a small interface: post bytes, get a status back, or a typed network error.

Two transports implement it, both on urllib3's own request writing and response
parsing. ``Urllib3Transport`` (the default) keeps one urllib3 ``HTTPConnection``
per sender thread. ``RequestsTransport`` goes through a ``requests.Session``; pass
``transport=RequestsTransport`` to use it. Both honour the proxy environment
variables as requests does (an explicit ``proxies=`` mapping wins over them),
verify TLS against the same CA bundle as requests, never read ``~/.netrc``, leave
redirects unfollowed, and can be aborted from another thread.

A request that gets no answer raises one of these (``TransportError`` is the base)::

    TransportError          no answer; the message names the cause and the server
    ├── ConnectError        no connection: refused, name not resolved, TLS, proxy
    ├── TransportTimeout    connecting or waiting for the answer took too long
    ├── ConnectionClosed    the server closed or reset the connection without a complete answer
    │   └── StaleConnection ... on a kept-alive connection it had closed while idle
    ├── MalformedResponse   the answer is not HTTP/1.x (status line, framing)
    └── Aborted             ``Transport.abort()`` cut the request short
"""

from __future__ import annotations

import http.client
import os
import socket
import ssl
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Optional, Protocol, Union
from urllib.parse import urlsplit

import requests
import requests.adapters
import requests.auth
import requests.utils
import urllib3
import urllib3.exceptions
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.util import parse_url
from urllib3.util.ssl_ import create_urllib3_context

from segment_lite.errors import (
    Aborted,
    ConnectError,
    ConnectionClosed,
    MalformedResponse,
    StaleConnection,
    TransportError,
    TransportTimeout,
    ValidationError,
)

if TYPE_CHECKING:
    from urllib3.response import BaseHTTPResponse

__all__ = [
    "DEFAULT_HOST",
    "EU_HOST",
    "Aborted",
    "ConnectError",
    "ConnectionClosed",
    "MalformedResponse",
    "RequestsTransport",
    "StaleConnection",
    "Transport",
    "TransportError",
    "TransportFactory",
    "TransportResponse",
    "TransportTimeout",
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
#: The longest a connection attempt may take (less when the request's timeout is shorter). It
#: also bounds an ``abort()`` that comes while connecting, before there is a socket to shut down.
CONNECT_TIMEOUT_S = 10.0
#: A connection idle for longer is checked before reuse (a server may have closed it);
#: one busier is used at once (if it was closed all the same, the sender retries at once).
IDLE_CHECK_S = 1.0
#: Most response body kept; a server sending more has the connection closed on it.
MAX_RESPONSE_BYTES = 1024 * 1024


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


class Transport(Protocol):
    """Posts a request body; one instance is used by one thread at a time.

    ``abort`` is the exception: another thread may call it while ``post`` runs.
    """

    def post(self, url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> TransportResponse:
        """Send ``body`` and return the response, or raise ``TransportError``."""
        ...

    def abort(self) -> None:
        """Close the connection of a ``post`` in flight, so that it raises ``Aborted`` at once.

        Called from another thread (a flush or shutdown whose time is up). Does
        nothing when no request is in flight; later posts open a new connection.
        """
        ...

    def close(self) -> None:
        """Release connections."""
        ...


TransportFactory = Callable[[], Transport]


# -- foreign exceptions to the tree, in one table ----------------------------------------


def _server(url: str) -> str:
    """``host:port`` of ``url``, as failures name it."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    host = parts.hostname or url
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _describe(exc: BaseException) -> str:
    # Messages embed the URL but never credentials (auth goes in a header; proxy
    # URLs are shown without their user info).
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:500]


def _tls_reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {exc.verify_message or exc.reason or 'certificate verify failed'}"
    return str(getattr(exc, "reason", None) or exc)


_CLOSED = "{server} closed the connection without a (complete) response"
_NAME_NOT_RESOLVED = (socket.gaierror, getattr(urllib3.exceptions, "NameResolutionError", socket.gaierror))

#: Each row: the foreign exceptions, the class they become and the message ({server}, {host},
#: {timeout}, {cause}: the exception, {tls}: its TLS reason). The first row that matches any
#: exception in the chain (arguments, causes, contexts) wins. Order matters: urllib3's
#: NewConnectionError is a ConnectTimeoutError, and RemoteDisconnected a BadStatusLine.
_FAILURES: tuple[tuple[tuple[type[BaseException], ...], type[TransportError], str], ...] = (
    ((ssl.SSLError,), ConnectError, "TLS error with {server}: {tls}"),
    (_NAME_NOT_RESOLVED, ConnectError, "cannot resolve host {host} ({cause})"),
    ((ConnectionRefusedError,), ConnectError, "connection refused to {server}"),
    (
        (requests.exceptions.ProxyError, urllib3.exceptions.ProxyError),
        ConnectError,
        "proxy error on the way to {server}: {cause}",
    ),
    ((urllib3.exceptions.NewConnectionError,), ConnectError, "{cause}"),
    (
        (urllib3.exceptions.ConnectTimeoutError, requests.exceptions.ConnectTimeout),
        TransportTimeout,
        "connecting to {server} timed out after {timeout}s",
    ),
    (
        (TimeoutError, socket.timeout, urllib3.exceptions.TimeoutError, requests.exceptions.Timeout),
        TransportTimeout,
        "no answer from {server}: timed out after {timeout}s",
    ),
    ((http.client.RemoteDisconnected, http.client.IncompleteRead), ConnectionClosed, _CLOSED),
    ((ConnectionResetError,), ConnectionClosed, "connection reset by {server} before it answered"),
    ((BrokenPipeError, ConnectionAbortedError), ConnectionClosed, _CLOSED),
    (
        (http.client.HTTPException, urllib3.exceptions.InvalidHeader),
        MalformedResponse,
        "{server} sent a malformed response: {cause}",
    ),
    # urllib3's own words for a body cut short ("Response ended prematurely").
    ((urllib3.exceptions.ProtocolError, requests.exceptions.ChunkedEncodingError), ConnectionClosed, _CLOSED),
)


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and every exception nested in it (arguments, causes, contexts), outermost first."""
    chain: list[BaseException] = []
    pending = [exc]
    while pending:
        current = pending.pop(0)
        if all(current is not seen for seen in chain):
            chain.append(current)
            pending += [arg for arg in current.args if isinstance(arg, BaseException)]
            pending += [e for e in (current.__cause__, current.__context__) if e is not None]
    return chain


def _failure(
    exc: BaseException, url: str, timeout: float, reused: bool, aborted: bool = False
) -> TransportError:
    """The ``TransportError`` for a request to ``url`` that failed with ``exc``: the table's first match.

    ``reused``: the request went on a kept-alive connection, so a close is a ``StaleConnection``.
    """
    server = _server(url)
    if aborted:
        return Aborted(f"request to {server} aborted: {_describe(exc)}")
    if isinstance(exc, ValueError) and "header" in str(exc).lower():
        # http.client refuses a header value that would start a line of its own. Not quoted:
        # the value may be a credential.
        return TransportError("a request header contains a line break or another forbidden character")
    chain = _chain(exc)
    for kinds, kind, template in _FAILURES:
        cause = next((c for c in chain if isinstance(c, kinds)), None)
        if cause is not None:
            if kind is ConnectionClosed and reused:
                kind = StaleConnection
            host = urlsplit(url).hostname
            return kind(
                template.format(
                    server=server, host=host, timeout=timeout, cause=_describe(cause), tls=_tls_reason(cause)
                )
            )
    return TransportError(_describe(exc))


def _answer(url: str, status: int, headers: Mapping[str, str], body: bytes) -> TransportResponse:
    """The response, unless it was cut off before its end (then ``ConnectionClosed``).

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
        raise ConnectionClosed(
            f"{_server(url)} answered {status} but the response was cut off (no Content-Length, "
            "no body): not counted as delivered"
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


# -- abort from another thread ----------------------------------------------------------

#: urllib3 2 (1.x lacks what the default transport uses; RequestsTransport is then the default).
URLLIB3_2 = int(str(getattr(urllib3, "__version__", "2")).split(".")[0]) >= 2


class _AbortSwitch:
    """The connections of one transport's post in flight, so that ``abort()`` can shut them down.

    Another thread's ``abort()`` shuts down the socket of each connection watched
    (under the lock, so a socket is never shut down after the post let go of it).
    A connection still connecting has no socket yet: its connect timeout bounds
    it, and the post raises once it connects.
    """

    # The switch of the transport posting on this thread (a transport is used by one
    # thread at a time): connections made by requests' pools find it here.
    _current = threading.local()

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._watched: list[HTTPConnection] = []
        self._posting = False
        self.aborted = False

    def begin(self) -> None:
        """A post starts on this thread."""
        with self._lock:
            self._posting = True
            self.aborted = False
        _AbortSwitch._current.switch = self

    def end(self) -> None:
        """The post ended: later aborts do nothing until the next."""
        _AbortSwitch._current.switch = None
        with self._lock:
            self._posting = False
            self._watched.clear()

    def watch(self, conn: HTTPConnection) -> None:
        """Shut ``conn`` down on abort; raises if the post was aborted already."""
        with self._lock:
            if self.aborted:
                raise ConnectionAbortedError("the request was aborted")
            if conn not in self._watched:
                self._watched.append(conn)

    @classmethod
    def watch_on_this_thread(cls, conn: HTTPConnection) -> None:
        switch: Optional[_AbortSwitch] = getattr(cls._current, "switch", None)
        if switch is not None:
            switch.watch(conn)

    def abort(self) -> None:
        """Shut down every socket of a post in flight: its blocked call returns at once."""
        with self._lock:
            if not self._posting:
                return
            self.aborted = True
            for conn in self._watched:
                sock = conn.sock
                if sock is not None:
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:  # already closed, or never connected
                        pass


def _read_body(response: BaseHTTPResponse) -> tuple[bytes, bool]:
    """The body up to ``MAX_RESPONSE_BYTES``, and whether that was all of it (urllib3 raises if cut short)."""
    length = response.length_remaining
    if length is not None and length <= MAX_RESPONSE_BYTES:
        return response.read(), True  # the usual answer: one read of its Content-Length
    parts: list[bytes] = []
    size = 0
    while size <= MAX_RESPONSE_BYTES:
        chunk = response.read(MAX_RESPONSE_BYTES + 1 - size)
        if not chunk:
            return b"".join(parts), True
        parts.append(chunk)
        size += len(chunk)
    return b"".join(parts)[:MAX_RESPONSE_BYTES], False


# -- the default transport ------------------------------------------------------


class Urllib3Transport:
    """The default transport: one kept-alive urllib3 connection, verified TLS, proxies as requests.

    ``proxies`` maps as in requests (``{"https": "http://proxy:3128"}``) and wins
    over the environment's proxy variables; ``verify`` is True (the CA bundle of
    ``ca_bundle()``), False (no verification), or the path of a CA bundle.
    Proxies and the CA bundle are read when a connection is opened.
    """

    def __init__(self, proxies: Optional[Mapping[str, str]] = None, verify: Union[bool, str] = True) -> None:
        self._proxies = dict(proxies or {})
        self._verify = verify
        self._context: Optional[ssl.SSLContext] = None
        self._conn: Optional[HTTPConnection] = None
        self._url = ""  # the URL the connection serves
        self._target = ""  # the request target for that URL (the whole URL through a forwarding proxy)
        self._proxy_headers: dict[str, str] = {}  # for a forwarding proxy
        self._switch = _AbortSwitch()
        self._last_answer = 0.0  # monotonic time of the last complete answer

    def post(self, url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> TransportResponse:
        """Send ``body`` and return the response, or raise ``TransportError``."""
        switch = self._switch
        switch.begin()
        try:
            conn = self._conn if url == self._url else None
            reused = conn is not None and conn.sock is not None
            if reused and time.monotonic() - self._last_answer > IDLE_CHECK_S and not conn.is_connected:  # type: ignore[union-attr]
                reused = False  # closed by the server while idle: open a new one, no error
            if conn is None or not reused:
                self._drop_connection()
                conn = self._connection(url)
            try:
                switch.watch(conn)
                if conn.sock is None:
                    conn.timeout = min(timeout, CONNECT_TIMEOUT_S)
                    conn.connect()
                    switch.watch(conn)  # raises if an abort came while connecting
                conn.timeout = timeout
                status, response_headers, data = self._exchange(conn, body, headers)
                self._last_answer = time.monotonic()
            except (OSError, ValueError, http.client.HTTPException, urllib3.exceptions.HTTPError) as exc:
                self._drop_connection()
                raise _failure(exc, url, timeout, reused, switch.aborted) from None
            except BaseException:
                # KeyboardInterrupt, a green thread killed, ...: the request may be half sent
                # or its answer half read, so the connection can never be used again.
                self._drop_connection()
                raise
        finally:
            switch.end()
        return _answer(url, status, response_headers, data)

    def _exchange(
        self, conn: HTTPConnection, body: bytes, headers: Mapping[str, str]
    ) -> tuple[int, Mapping[str, str], bytes]:
        """Send the request and read the answer: status, headers, body."""
        if self._proxy_headers:
            headers = {**headers, **self._proxy_headers}
        cut_short = False
        try:
            conn.request(
                "POST", self._target, body=body, headers=headers, preload_content=False, decode_content=False
            )
        except (BrokenPipeError, ConnectionResetError) as exc:
            # The server may have refused the request (413, 401, ...) and closed the
            # connection before taking the whole body: its answer is the answer, unless
            # it is a 2xx (the server cannot have had the whole batch).
            if self._switch.aborted:
                raise
            try:
                response = conn.getresponse()
            except (OSError, http.client.HTTPException, urllib3.exceptions.HTTPError):
                raise exc from None
            if 200 <= response.status < 300:
                raise exc from None
            cut_short = True
        else:
            response = conn.getresponse()
        data, complete = _read_body(response)
        if cut_short or not complete:
            self._drop_connection()  # the request or the answer is not whole: the connection is done
        headers = response.headers
        if response.status >= 300 and any(value[:1] in (" ", "\t") for value in headers.values()):
            # An obsolete folded line ("Retry-After:\r\n  7") keeps its indent in urllib3's value.
            headers = urllib3.HTTPHeaderDict((name, value.strip()) for name, value in headers.items())
        return response.status, headers, data

    def abort(self) -> None:
        """Close the connection of a ``post`` in flight (from another thread); see ``Transport``."""
        self._switch.abort()

    def close(self) -> None:
        """Close the connection."""
        self._drop_connection()

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
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
        self._proxy_headers = {}
        if proxy is None:
            conn = self._new_connection(scheme, host, port)
        else:
            conn, self._proxy_headers = self._proxied_connection(scheme, host, port, proxy)
        # A forwarding proxy gets the whole URL on the request line; everyone else the path.
        self._target = (
            url
            if conn.proxy_is_forwarding
            else (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        )
        self._conn, self._url = conn, url
        return conn

    def _tls(self) -> ssl.SSLContext:
        if self._context is None:
            self._context = _tls_context(self._verify)
        return self._context

    def _new_connection(self, scheme: str, host: str, port: int, **proxy: Any) -> HTTPConnection:
        if scheme == "https":
            return HTTPSConnection(host, port, ssl_context=self._tls(), **proxy)
        return HTTPConnection(host, port, **proxy)

    def _proxied_connection(
        self, scheme: str, host: str, port: int, proxy_url: str
    ) -> tuple[HTTPConnection, dict[str, str]]:
        """A connection to the proxy (a CONNECT tunnel for https targets, forwarding for http
        ones), and the headers each forwarded request carries for the proxy."""
        proxy = parse_url(proxy_url if "://" in proxy_url else "http://" + proxy_url)
        shown = _without_userinfo(proxy.url)
        if proxy.scheme not in ("http", "https") or not proxy.host:
            raise ConnectError(
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


class _WatchedHTTPConnection(HTTPConnection):
    """urllib3's connection, shut down by the posting transport's ``abort()`` (see ``_AbortSwitch``)."""

    def connect(self) -> None:
        _AbortSwitch.watch_on_this_thread(self)
        super().connect()
        _AbortSwitch.watch_on_this_thread(self)

    def request(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        _AbortSwitch.watch_on_this_thread(self)  # a pooled connection is not connected again
        super().request(*args, **kwargs)


class _WatchedHTTPSConnection(_WatchedHTTPConnection, HTTPSConnection):
    pass


class _WatchedHTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


_WATCHED_POOLS = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


class _WatchedAdapter(requests.adapters.HTTPAdapter):
    """requests' adapter, with pools whose connections ``abort()`` can shut down."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _WATCHED_POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> urllib3.PoolManager:
        manager: urllib3.PoolManager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if not proxy.lower().startswith("socks"):  # SOCKS pools make connections of their own
            manager.pool_classes_by_scheme = _WATCHED_POOLS
        return manager


class RequestsTransport:
    """A transport on a ``requests.Session`` (keep-alive, TLS verification, proxies).

    segment_lite's default before 0.2, and what ``segment-analytics-python`` uses:
    pass ``transport=RequestsTransport`` to the client to keep it (the client's
    ``proxies=`` is handed over). ``proxies`` win over the environment's proxy
    variables; ``verify`` is as in requests. ``abortable=False`` keeps requests'
    own adapter and pools (``abort()`` then does nothing), as HTTP mocking
    libraries that replace urllib3's connection classes need.
    """

    def __init__(
        self,
        proxies: Optional[Mapping[str, str]] = None,
        verify: Union[bool, str] = True,
        *,
        abortable: bool = True,
    ) -> None:
        self._session = requests.Session()
        self._session.auth = _HeadersCarryAuth()
        adapter = _WatchedAdapter() if abortable else requests.adapters.HTTPAdapter()
        self._session.mount("https://", adapter)
        self._session.mount("http://", adapter)
        # Passed with each request, not set on the session: requests lets the
        # environment's proxy variables override the session's proxies.
        self._proxies = dict(proxies or {})
        self._session.verify = verify
        self._switch = _AbortSwitch()
        self._used = False

    def post(self, url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> TransportResponse:
        """Send ``body`` and return the response, or raise ``TransportError``."""
        reused = self._used
        self._used = True
        self._switch.begin()
        try:
            # Redirects are not followed: requests would turn the POST of a 301/302 into a
            # GET, and a 200 for that would pass for a delivered batch.
            response = self._session.post(
                url,
                data=body,
                headers=dict(headers),
                timeout=(min(timeout, CONNECT_TIMEOUT_S), timeout),
                allow_redirects=False,
                proxies=dict(self._proxies),  # requests adds the environment's to this dict
            )
        except requests.exceptions.RequestException as exc:
            raise _failure(exc, url, timeout, reused, self._switch.aborted) from None
        finally:
            self._switch.end()
        # getattr: a stand-in response (a test double of requests) may carry no body.
        return _answer(url, response.status_code, response.headers, getattr(response, "content", b""))

    def abort(self) -> None:
        """Close the connection of a ``post`` in flight (from another thread); see ``Transport``."""
        self._switch.abort()

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
