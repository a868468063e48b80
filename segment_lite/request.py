"""segment-analytics-python's ``request`` module names (``post``, ``_session``, ``APIError``).

Code written for the reference sometimes posts a batch itself with
``segment.analytics.request.post``, and test suites patch
``segment.analytics.request._session.post`` or ``segment.analytics.consumer.post``
to see or fake what the client sends, or fake HTTP under requests with
``responses``, ``requests-mock`` or VCR.py. With the import changed to
``segment_lite`` those names are here (and in ``segment_lite.consumer``), and
they keep working: the client's default transport is a ``ReferenceSeamTransport``,
which sends through ``consumer.post`` or ``_session.post`` while either is
patched, through requests while a mocking library has replaced a piece of it,
and through the fast transport otherwise (a few identity checks per request).
"""

from __future__ import annotations

import gzip as gzip_module
import json
import sys
from collections.abc import Mapping
from typing import Any, Optional

import requests
import requests.adapters
import urllib3.connectionpool

from segment_lite.encoding import encode
from segment_lite.errors import APIError
from segment_lite.ledger import Credentials
from segment_lite.sender import batch_headers
from segment_lite.timestamps import now_iso
from segment_lite.transport import RequestsTransport, Transport, TransportError, TransportResponse, batch_url

__all__ = ["ReferenceSeamTransport", "post"]

_session = requests.Session()
_SESSION_POST = requests.Session.post


def post(
    write_key: str,
    host: Optional[str] = None,
    gzip: bool = False,
    timeout: float = 15,
    proxies: Optional[Mapping[str, str]] = None,
    oauth_manager: Any = None,
    retry_count: int = 0,
    **body: Any,
) -> Any:
    """Post ``body`` (``batch=[...]`` of message dicts) in one request, as the reference's ``post`` does.

    Goes through ``_session`` (a ``requests.Session``), with the write key as
    HTTP Basic auth (or ``oauth_manager.get_token()`` as a Bearer token) and in
    the body. Returns the response for a 2xx answer; raises ``APIError`` for any
    other, and ``requests``' exceptions when none came.
    """
    body.setdefault("sentAt", now_iso())
    body["writeKey"] = write_key
    data = encode(body)
    token = oauth_manager.get_token() if oauth_manager is not None else None
    headers = batch_headers(write_key, gzip)
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if retry_count > 0:
        headers["X-Retry-Count"] = str(retry_count)
    if gzip:
        data = gzip_module.compress(data)
    options: dict[str, Any] = {"data": data, "headers": headers, "timeout": timeout}
    if proxies:
        options["proxies"] = dict(proxies)
    response = _session.post(batch_url(host), **options)
    if 200 <= response.status_code < 300:
        return response
    code, message = "unknown", response.text
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if isinstance(payload, dict):
        code, message = str(payload.get("code", code)), str(payload.get("message", message))
    credentials = Credentials()  # a server may echo the key (or token) it was sent
    credentials.add(write_key)
    if token:
        credentials.add_issued(str(token))
    raise APIError(response.status_code, credentials.redact(code), credentials.redact(message))


def _session_post_patched() -> bool:
    return getattr(_session.post, "__func__", None) is not _SESSION_POST


# What HTTP mocking libraries replace, as it was at import: ``responses`` patches
# ``HTTPAdapter.send``, ``requests-mock`` ``Session.send``, VCR.py the connection
# classes of urllib3's pools (and http.client's, which requests does not use).
_HTTPAdapter, _Session = requests.adapters.HTTPAdapter, requests.Session
_HTTPPool, _HTTPSPool = urllib3.connectionpool.HTTPConnectionPool, urllib3.connectionpool.HTTPSConnectionPool
_ADAPTER_SEND, _SESSION_SEND = _HTTPAdapter.send, _Session.send
_HTTP_CONNECTION, _HTTPS_CONNECTION = _HTTPPool.ConnectionCls, _HTTPSPool.ConnectionCls


def requests_intercepted() -> bool:
    """Whether a mocking library (or a ``mock.patch``) has replaced part of requests' or urllib3's
    sending since segment_lite was imported: then requests must carry the batch, for the mock to see it."""
    return (
        _HTTPAdapter.send is not _ADAPTER_SEND
        or _Session.send is not _SESSION_SEND
        or _HTTPPool.ConnectionCls is not _HTTP_CONNECTION
        or _HTTPSPool.ConnectionCls is not _HTTPS_CONNECTION
    )


class ReferenceSeamTransport:
    """The default transport, routed through ``consumer.post`` or ``request._session.post`` while patched,
    and through requests while a mocking library intercepts it (see ``requests_intercepted``).

    Nothing else changes: with nothing patched (always, outside tests), every
    request goes to ``inner``.
    """

    def __init__(self, inner: Transport, proxies: Optional[Mapping[str, str]] = None) -> None:
        self._inner = inner
        self._proxies = proxies
        self._through_requests: Optional[RequestsTransport] = None  # made when a mock is first seen

    @property
    def inner(self) -> Transport:
        """The transport every request goes to while nothing is patched."""
        return self._inner

    def post(self, url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> TransportResponse:
        # segment_lite.consumer is imported only by code that uses it (mock.patch does).
        consumer = sys.modules.get("segment_lite.consumer")
        if consumer is not None and consumer.post is not post:
            return self._through_consumer_post(consumer.post, url, body, headers, timeout)
        if _session_post_patched():
            return self._through_session(url, body, headers, timeout)
        if requests_intercepted():
            if self._through_requests is None:
                # requests' own adapter: VCR.py's connections only go into urllib3's own pools.
                self._through_requests = RequestsTransport(self._proxies, abortable=False)
            return self._through_requests.post(url, body, headers, timeout)
        return self._inner.post(url, body, headers, timeout)

    def _through_consumer_post(
        self, patched: Any, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> TransportResponse:
        """Call the patched ``consumer.post`` as the reference's consumer calls ``post``."""
        payload = json.loads(
            gzip_module.decompress(body) if headers.get("Content-Encoding") == "gzip" else body
        )
        base = url[: -len("/v1/batch")] if url.endswith("/v1/batch") else url
        try:
            patched(
                payload["writeKey"],
                base,
                gzip=headers.get("Content-Encoding") == "gzip",
                timeout=timeout,
                batch=payload["batch"],
                proxies=self._proxies,
                retry_count=int(headers.get("X-Retry-Count", 0)),
            )
        except Exception as exc:
            status = getattr(exc, "status", None)
            if isinstance(status, int):  # an APIError, ours or the reference's
                answer = {
                    "code": getattr(exc, "code", "unknown"),
                    "message": getattr(exc, "message", str(exc)),
                }
                return TransportResponse(status, {}, json.dumps(answer).encode())
            raise TransportError(f"{type(exc).__name__}: {exc}") from None
        return TransportResponse(200, {}, b'{"success":true}')

    def _through_session(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> TransportResponse:
        """Post with the patched ``_session.post``, with the arguments the reference gives it."""
        options: dict[str, Any] = {"data": body, "headers": dict(headers), "timeout": timeout}
        if self._proxies:
            options["proxies"] = dict(self._proxies)
        try:
            response = _session.post(url, **options)
        except Exception as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}") from None
        answered = getattr(response, "headers", None)
        content = getattr(response, "content", b"")
        return TransportResponse(
            int(response.status_code),
            answered if isinstance(answered, Mapping) else {},
            content if isinstance(content, bytes) else b"",
        )

    def abort(self) -> None:
        self._inner.abort()

    def close(self) -> None:
        self._inner.close()
        if self._through_requests is not None:
            self._through_requests.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._inner!r})"
