"""WSGI middleware that tracks server-side pageviews for any WSGI application."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Callable, Optional
from urllib.parse import quote

from segment_lite.integrations.pageview import (
    PageClient,
    PageviewConfig,
    PageviewTracker,
    RequestInfo,
    all_headers,
    first_header,
    parse_cookie_header,
    response_sets_cookie,
)

__all__ = ["ANONYMOUS_ID_ENVIRON_KEY", "SegmentPageviewMiddleware", "request_info_from_environ"]

#: The environ key under which the visitor's anonymous id is made available to the app.
ANONYMOUS_ID_ENVIRON_KEY = "segment_lite.anonymous_id"

WSGIEnviron = dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[WSGIEnviron, StartResponse], Iterable[bytes]]

_SAFE_PATH_CHARS = "/:@!$&'()*+,;=-._~"


def _wsgi_path(environ: Mapping[str, Any]) -> str:
    # WSGI strings carry the raw bytes as latin-1; re-encode them to the wire form.
    raw = (environ.get("SCRIPT_NAME") or "") + (environ.get("PATH_INFO") or "")
    try:
        data = raw.encode("latin-1")
    except UnicodeEncodeError:
        data = raw.encode("utf-8")
    return quote(data, safe=_SAFE_PATH_CHARS) or "/"


def _wsgi_host(environ: Mapping[str, Any]) -> str:
    host = environ.get("HTTP_HOST")
    if host:
        return str(host)
    name = str(environ.get("SERVER_NAME") or "")
    port = str(environ.get("SERVER_PORT") or "")
    scheme = environ.get("wsgi.url_scheme", "http")
    if port and not ((scheme == "http" and port == "80") or (scheme == "https" and port == "443")):
        return f"{name}:{port}"
    return name


def request_info_from_environ(environ: Mapping[str, Any], request: Any = None) -> RequestInfo:
    """Describe a WSGI request; ``request`` (default: the environ) is kept for callables."""
    headers: dict[str, str] = {}
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            headers[key[5:].replace("_", "-").lower()] = value
    if "CONTENT_TYPE" in environ:
        headers["content-type"] = environ["CONTENT_TYPE"]
    if "CONTENT_LENGTH" in environ:
        headers["content-length"] = environ["CONTENT_LENGTH"]
    return RequestInfo(
        method=str(environ.get("REQUEST_METHOD") or "GET"),
        scheme=str(environ.get("wsgi.url_scheme") or "http"),
        host=_wsgi_host(environ),
        path=_wsgi_path(environ),
        query_string=str(environ.get("QUERY_STRING") or ""),
        headers=headers,
        cookies=parse_cookie_header(headers.get("cookie")),
        remote_addr=environ.get("REMOTE_ADDR") or None,
        request=environ if request is None else request,
    )


def _status_code(status: str) -> int:
    try:
        return int(status.split(" ", 1)[0])
    except (ValueError, AttributeError):
        return 0


class SegmentPageviewMiddleware:
    """Wrap a WSGI app: ``app.wsgi_app = SegmentPageviewMiddleware(app.wsgi_app, ...)``.

    Options are a :class:`PageviewConfig` and/or its fields as keyword arguments; ``client``
    defaults to the ``segment_lite`` module's default client, and ``tracker`` lets several
    middlewares share one :class:`PageviewTracker`. The page call is made when the app
    calls ``start_response``; a ``Set-Cookie`` for a new anonymous id is appended there.
    The visitor's anonymous id is put in ``environ["segment_lite.anonymous_id"]``. While
    the app is called, a ``segment_lite.context`` carrying the request's anonymous id, IP,
    user agent, page, campaign and locale is active (option ``request_context``); a body
    the app yields lazily is produced after it ends, so calls made there do not get it.
    """

    def __init__(
        self,
        app: WSGIApp,
        config: Optional[PageviewConfig] = None,
        *,
        client: Optional[PageClient] = None,
        tracker: Optional[PageviewTracker] = None,
        **options: Any,
    ) -> None:
        self.app = app
        self.tracker = PageviewTracker.for_adapter(tracker, config, client, options)

    @property
    def errors(self) -> int:
        """How many tracking errors were caught (and logged) so far."""
        return self.tracker.errors

    def __call__(self, environ: WSGIEnviron, start_response: StartResponse) -> Iterable[bytes]:
        tracker = self.tracker
        try:
            visit = tracker.begin(request_info_from_environ(environ))
            environ[ANONYMOUS_ID_ENVIRON_KEY] = visit.anonymous_id
        except Exception as exc:
            tracker.record_error(exc, "pageview request inspection")
            return self.app(environ, start_response)

        def tracking_start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            if exc_info is None and not visit.done:
                try:
                    cookie = tracker.finish(
                        visit,
                        _status_code(status),
                        first_header(headers, "content-type"),
                        response_sets_anonymous_id=response_sets_cookie(
                            all_headers(headers, "set-cookie"), tracker.config.anonymous_id_cookie
                        ),
                    )
                    if cookie is not None:
                        headers = [*list(headers), ("Set-Cookie", cookie)]
                except Exception as exc:
                    tracker.record_error(exc)
            if exc_info is None:
                return start_response(status, headers)
            return start_response(status, headers, exc_info)

        scope = tracker.request_context(visit)
        if scope is None:
            return self.app(environ, tracking_start_response)
        with scope:
            return self.app(environ, tracking_start_response)
