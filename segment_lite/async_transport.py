"""The asyncio transport: httpx's ``AsyncClient`` behind the same failure tree as the threaded transport.

Needs the ``async`` extra (``pip install 'segment-lite[async]'``). The request
bytes match the threaded transport's: the same headers (JSON, our User-Agent,
HTTP Basic auth, ``Content-Encoding: gzip`` when asked), the same body.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Any, Callable, Optional, Protocol, Union

from segment_lite.errors import SegmentLiteError
from segment_lite.transport import (
    CONNECT_TIMEOUT_S,
    MAX_RESPONSE_BYTES,
    ConnectError,
    ConnectionClosed,
    MalformedResponse,
    StaleConnection,
    TransportError,
    TransportResponse,
    TransportTimeout,
    _answer,
    _chain,
    _describe,
    _server,
    _tls_context,
    _tls_reason,
    proxy_for,
)

__all__ = ["AsyncTransport", "AsyncTransportFactory", "HttpxTransport"]


class AsyncTransport(Protocol):
    """Posts a request body on the running event loop; raises ``TransportError`` when no answer came.

    Cancelling the task awaiting ``post`` cancels the request (shutdown's deadline does).
    """

    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> TransportResponse:
        """Send ``body`` and return the response, or raise ``TransportError``."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


AsyncTransportFactory = Callable[[], AsyncTransport]


_httpx_module: Any
try:  # imported with the module (once, at startup), never on the loop at a first request
    import httpx as _httpx_module
except ImportError:  # pragma: no cover - the extra is installed in CI
    _httpx_module = None


try:  # httpx's asyncio backend loads at the first connection otherwise: tens of ms on the loop
    import anyio._backends._asyncio  # noqa: F401
except ImportError:  # pragma: no cover - another anyio layout
    pass
try:  # and httpcore (with h11) at the first httpx client, made by an AsyncClient often inside the loop
    import httpcore  # noqa: F401
except ImportError:  # pragma: no cover - httpx without httpcore
    pass

_PLAIN_HTTP_CONTEXT: Optional[ssl.SSLContext] = None


def _plain_http_context() -> ssl.SSLContext:
    """An SSL context for plain-HTTP clients, made once: httpx builds one per client otherwise."""
    global _PLAIN_HTTP_CONTEXT
    if _PLAIN_HTTP_CONTEXT is None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        _PLAIN_HTTP_CONTEXT = context
    return _PLAIN_HTTP_CONTEXT


def _httpx() -> Any:
    if _httpx_module is None:  # pragma: no cover
        raise SegmentLiteError("AsyncClient needs httpx: pip install 'segment-lite[async]'")
    return _httpx_module


class HttpxTransport:
    """The default ``AsyncTransport``: one httpx ``AsyncClient``, verified TLS, proxies as the threaded one.

    ``max_connections`` bounds the connections it opens (1 for a delivery task,
    more for immediate sends that may run concurrently). Given ``url``, the httpx
    client is built at once (tens of ms), not on the loop at the first request.
    """

    def __init__(
        self,
        proxies: Optional[Mapping[str, str]] = None,
        verify: Union[bool, str] = True,
        max_connections: int = 1,
        url: Optional[str] = None,
    ) -> None:
        self._proxies = dict(proxies or {})
        self._verify = verify
        self._max_connections = max_connections
        self._client: Any = None
        self._proxy_url: Optional[str] = None
        self._warm = False  # the last request was answered on a connection kept alive
        if url is not None:  # build the httpx client now, off the loop, rather than at the first request
            self._client_for(url)

    def _client_for(self, url: str) -> Any:
        httpx = _httpx()
        proxy = proxy_for(url, self._proxies)
        if self._client is not None and proxy == self._proxy_url:
            return self._client
        # Plain HTTP needs no CA bundle (loading one is file I/O on the loop).
        verify = _tls_context(self._verify) if url[:6].lower() == "https:" else _plain_http_context()
        limits = httpx.Limits(
            max_connections=self._max_connections, max_keepalive_connections=self._max_connections
        )
        client = httpx.AsyncClient(verify=verify, proxy=proxy, trust_env=False, limits=limits)
        # Send the threaded transport's headers, not httpx's defaults.
        for name in ("Accept", "Connection", "User-Agent"):
            client.headers.pop(name, None)
        client.headers["Accept-Encoding"] = "identity"
        self._client, self._proxy_url = client, proxy
        return client

    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> TransportResponse:
        """Send ``body`` and return the response, or raise ``TransportError``."""
        httpx = _httpx()
        client = self._client_for(url)
        warm, self._warm = self._warm, False
        limit = httpx.Timeout(timeout, connect=min(timeout, CONNECT_TIMEOUT_S))
        try:
            async with client.stream("POST", url, content=body, headers=headers, timeout=limit) as response:
                parts: list[bytes] = []
                size = 0
                async for chunk in response.aiter_raw():
                    parts.append(chunk)
                    size += len(chunk)
                    if size > MAX_RESPONSE_BYTES:
                        break
                data = b"".join(parts)[:MAX_RESPONSE_BYTES]
                status, response_headers = response.status_code, response.headers
        except httpx.HTTPError as exc:
            raise _failure(httpx, exc, url, timeout, warm) from None
        self._warm = (response_headers.get("Connection") or "").lower() != "close"
        return _answer(url, status, response_headers, data)

    async def aclose(self) -> None:
        """Close the connections."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def __repr__(self) -> str:
        return f"<HttpxTransport proxy={'set' if self._proxies else 'none'}>"


_CLOSED = "{server} closed the connection without a (complete) response"


def _failure(httpx: Any, exc: BaseException, url: str, timeout: float, reused: bool) -> TransportError:
    """httpx's failure as the tree names it; a close on a kept-alive connection is a ``StaleConnection``."""
    server = _server(url)
    chain = _chain(exc)
    tls = next((cause for cause in chain if isinstance(cause, ssl.SSLError)), None)
    text = _describe(exc)
    kind: type[TransportError]
    if tls is not None:
        return ConnectError(f"TLS error with {server}: {_tls_reason(tls)}")
    if isinstance(exc, httpx.ConnectTimeout):
        return TransportTimeout(f"connecting to {server} timed out after {timeout}s")
    if isinstance(exc, httpx.TimeoutException):
        return TransportTimeout(f"no answer from {server}: timed out after {timeout}s")
    if isinstance(exc, httpx.ProxyError):
        return ConnectError(f"proxy error on the way to {server}: {text}")
    if isinstance(exc, (httpx.ConnectError, httpx.UnsupportedProtocol)):
        if any(isinstance(cause, ConnectionRefusedError) for cause in chain) or "refused" in text.lower():
            return ConnectError(f"connection refused to {server}")
        return ConnectError(text)
    closed = isinstance(exc, (httpx.ReadError, httpx.WriteError)) or (
        isinstance(exc, httpx.RemoteProtocolError)
        and any(words in str(exc).lower() for words in ("disconnected", "peer closed", "incomplete"))
    )
    if closed:
        kind = StaleConnection if reused else ConnectionClosed
        if any(isinstance(cause, ConnectionResetError) for cause in chain) or "reset" in text.lower():
            return kind(f"connection reset by {server} before it answered")
        return kind(_CLOSED.format(server=server))
    if isinstance(exc, (httpx.RemoteProtocolError, httpx.DecodingError)):
        return MalformedResponse(f"{server} sent a malformed response: {text}")
    return TransportError(text)
