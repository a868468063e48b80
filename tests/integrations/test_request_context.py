"""The request context the WSGI, ASGI and Flask integrations open: a view's track() and the pageview agree.

Django's are in test_django.py (its settings are configured once per process).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator
from typing import Any, Callable

import pytest
from integration_helpers import BROWSER_UA, UUID4_RE, ASGITestClient

import segment_lite
from segment_lite.integrations.wsgi import SegmentPageviewMiddleware as WSGIMiddleware
from segment_lite.privacy import onetrust_consent
from segment_lite.testing import RecordingClient

HTML = [("Content-Type", "text/html; charset=utf-8")]
ONETRUST = "isGpcEnabled=0&datestamp=Mon+Dec+07+2026&groups=C0001%3A1%2CC0002%3A0%2CC0004%3A1&geolocation=DE"


@pytest.fixture
def default_is_recorder(
    recorder: RecordingClient, monkeypatch: pytest.MonkeyPatch
) -> Iterator[RecordingClient]:
    """Views call the module functions; the recorder is the default client they reach."""
    monkeypatch.setattr(segment_lite, "default_client", recorder)
    yield recorder
    assert segment_lite.scope.active() is None  # nothing of a request is left behind


def _shared(message: dict[str, Any]) -> tuple[Any, ...]:
    context = message["context"]
    return (
        message["anonymousId"],
        context.get("ip"),
        context.get("userAgent"),
        context.get("page"),
        context.get("campaign"),
        context.get("locale"),
    )


def _assert_view_and_pageview_agree(messages: list[dict[str, Any]], anonymous_id: str, ip: str) -> None:
    track = next(m for m in messages if m["type"] == "track")
    page_call = next(m for m in messages if m["type"] == "page")
    assert track["anonymousId"] == page_call["anonymousId"] == anonymous_id
    assert _shared(track) == _shared(page_call)
    assert track["context"]["ip"] == ip
    assert track["context"]["userAgent"] == BROWSER_UA
    assert track["context"]["campaign"] == {"source": "mail", "name": "launch"}
    assert track["context"]["locale"] == "fr-CH"
    assert track["context"]["page"]["search"] == "?utm_source=mail&utm_campaign=launch"
    assert track["properties"] == {"total": 42}


# -- WSGI --------------------------------------------------------------------------


def _wsgi_view(explicit: bool) -> Callable[..., Iterable[bytes]]:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if explicit:
            segment_lite.track(
                "explicit-user",
                "Order Completed",
                anonymous_id="explicit-anon",
                context={"ip": "198.51.100.7"},
            )
        else:
            segment_lite.track(event="Order Completed", properties={"total": 42})
        start_response("200 OK", list(HTML))
        return [b"<p>ordered</p>"]

    return app


def _wsgi_call(app: Any, cookie: str = "", remote_addr: str = "10.0.0.2", forwarded: str = "") -> list[Any]:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/order",
        "QUERY_STRING": "utm_source=mail&utm_campaign=launch",
        "REMOTE_ADDR": remote_addr,
        "HTTP_HOST": "shop.example",
        "HTTP_USER_AGENT": BROWSER_UA,
        "HTTP_ACCEPT_LANGUAGE": "fr-CH, fr;q=0.9",
        "wsgi.url_scheme": "http",
    }
    if cookie:
        environ["HTTP_COOKIE"] = cookie
    if forwarded:
        environ["HTTP_X_FORWARDED_FOR"] = forwarded
    captured: list[Any] = []
    body = app(environ, lambda status, headers, exc_info=None: captured.append(headers))
    b"".join(body)
    return captured[0]


def test_wsgi_view_track_shares_the_pageviews_request(default_is_recorder: RecordingClient) -> None:
    app = WSGIMiddleware(_wsgi_view(explicit=False), trusted_proxies=["10.0.0.0/8"])
    _wsgi_call(app, cookie="ajs_anonymous_id=visitor-1", forwarded="203.0.113.50")
    _assert_view_and_pageview_agree(default_is_recorder.messages, "visitor-1", "203.0.113.50")


def test_wsgi_new_visitor_gets_one_id_for_track_pageview_and_cookie(
    default_is_recorder: RecordingClient,
) -> None:
    headers = _wsgi_call(WSGIMiddleware(_wsgi_view(explicit=False)))
    track, page_call = default_is_recorder.messages
    assert UUID4_RE.match(track["anonymousId"])
    assert track["anonymousId"] == page_call["anonymousId"]
    assert any(
        v.startswith(f"ajs_anonymous_id={track['anonymousId']};") for k, v in headers if k == "Set-Cookie"
    )


def test_wsgi_view_explicit_arguments_win(default_is_recorder: RecordingClient) -> None:
    _wsgi_call(WSGIMiddleware(_wsgi_view(explicit=True)), cookie="ajs_anonymous_id=visitor-1")
    track, page_call = default_is_recorder.messages
    assert (track["userId"], track["anonymousId"], track["context"]["ip"]) == (
        "explicit-user",
        "explicit-anon",
        "198.51.100.7",
    )
    assert track["context"]["userAgent"] == BROWSER_UA
    assert (page_call["anonymousId"], page_call["context"]["ip"]) == ("visitor-1", "10.0.0.2")


def test_wsgi_request_context_off_leaves_the_view_on_its_own(default_is_recorder: RecordingClient) -> None:
    app = WSGIMiddleware(_wsgi_view(explicit=True), request_context=False)
    _wsgi_call(app, cookie="ajs_anonymous_id=visitor-1")
    track = default_is_recorder.messages[0]
    assert "userAgent" not in track["context"]


def test_wsgi_consent_from_onetrust_is_on_the_views_track_and_the_pageview(
    default_is_recorder: RecordingClient,
) -> None:
    consent = onetrust_consent({"C0001": "Necessary", "C0002": "Analytics"})
    app = WSGIMiddleware(_wsgi_view(explicit=False), consent=consent)
    _wsgi_call(app, cookie=f"ajs_anonymous_id=visitor-1; OptanonConsent={ONETRUST}")
    expected = {"categoryPreferences": {"Necessary": True, "Analytics": False, "C0004": True}}
    assert [m["context"]["consent"] for m in default_is_recorder.messages] == [expected, expected]


def test_wsgi_a_failing_consent_reader_is_counted_and_the_request_served(
    default_is_recorder: RecordingClient,
) -> None:
    def broken(info: Any) -> dict[str, bool]:
        raise RuntimeError("consent store down")

    app = WSGIMiddleware(_wsgi_view(explicit=True), consent=broken)
    _wsgi_call(app, cookie="ajs_anonymous_id=visitor-1")
    assert app.errors >= 1
    assert default_is_recorder.messages[0]["event"] == "Order Completed"


# -- ASGI (Starlette) ----------------------------------------------------------------


def _starlette_app() -> Any:
    pytest.importorskip("starlette")  # the frameworks extra; the core suite runs without it
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import HTMLResponse
    from starlette.routing import Route

    from segment_lite.integrations.asgi import SegmentPageviewMiddleware

    async def order(request: Request) -> HTMLResponse:
        async def in_task() -> None:  # a task the view starts inherits the request's context
            segment_lite.track(event="Order Completed", properties={"total": 42})

        await asyncio.create_task(in_task())
        return HTMLResponse("<p>ordered</p>")

    def sync_order(request: Request) -> HTMLResponse:  # run in Starlette's threadpool
        segment_lite.track(event="Order Completed", properties={"total": 42})
        return HTMLResponse("<p>ordered</p>")

    async def explicit(request: Request) -> HTMLResponse:
        segment_lite.track(
            "explicit-user", "Order Completed", anonymous_id="explicit-anon", context={"ip": "198.51.100.7"}
        )
        return HTMLResponse("<p>ordered</p>")

    return Starlette(
        routes=[Route("/order", order), Route("/sync-order", sync_order), Route("/explicit", explicit)],
        middleware=[Middleware(SegmentPageviewMiddleware)],
    )


@pytest.mark.parametrize("path", ["/order", "/sync-order"])
def test_asgi_view_track_shares_the_pageviews_request(
    default_is_recorder: RecordingClient, path: str
) -> None:
    with ASGITestClient(_starlette_app()) as client:
        client.get(
            f"{path}?utm_source=mail&utm_campaign=launch",
            headers={"User-Agent": BROWSER_UA, "Accept-Language": "fr-CH", "Cookie": "ajs_anonymous_id=v-2"},
        )
    _assert_view_and_pageview_agree(default_is_recorder.messages, "v-2", "testclient")


def test_asgi_view_explicit_arguments_win(default_is_recorder: RecordingClient) -> None:
    with ASGITestClient(_starlette_app()) as client:
        client.get("/explicit", headers={"User-Agent": BROWSER_UA, "Cookie": "ajs_anonymous_id=v-2"})
    track, page_call = default_is_recorder.messages
    assert (track["userId"], track["anonymousId"], track["context"]["ip"]) == (
        "explicit-user",
        "explicit-anon",
        "198.51.100.7",
    )
    assert track["context"]["userAgent"] == BROWSER_UA
    assert page_call["anonymousId"] == "v-2"


# -- Flask ---------------------------------------------------------------------------


def _flask_app(**options: Any) -> Any:
    flask = pytest.importorskip("flask")
    from segment_lite.integrations.flask import SegmentPageviews

    app = flask.Flask(__name__)
    app.secret_key = "segment-lite-tests"

    @app.get("/order")
    def order() -> str:
        segment_lite.track(event="Order Completed", properties={"total": 42})
        return "<p>ordered</p>"

    @app.get("/explicit")
    def explicit() -> str:
        segment_lite.track(
            "explicit-user", "Order Completed", anonymous_id="explicit-anon", context={"ip": "198.51.100.7"}
        )
        return "<p>ordered</p>"

    SegmentPageviews(app, **options)
    return app


def test_flask_view_track_shares_the_pageviews_request(default_is_recorder: RecordingClient) -> None:
    client = _flask_app().test_client()
    client.set_cookie("ajs_anonymous_id", "visitor-3")
    client.get(
        "/order?utm_source=mail&utm_campaign=launch",
        headers={"User-Agent": BROWSER_UA, "Accept-Language": "fr-CH"},
        environ_base={"REMOTE_ADDR": "192.0.2.33"},
    )
    _assert_view_and_pageview_agree(default_is_recorder.messages, "visitor-3", "192.0.2.33")


def test_flask_view_explicit_arguments_win(default_is_recorder: RecordingClient) -> None:
    client = _flask_app().test_client()
    client.set_cookie("ajs_anonymous_id", "visitor-3")
    client.get("/explicit", headers={"User-Agent": BROWSER_UA})
    track, page_call = default_is_recorder.messages
    assert (track["userId"], track["anonymousId"], track["context"]["ip"]) == (
        "explicit-user",
        "explicit-anon",
        "198.51.100.7",
    )
    assert track["context"]["userAgent"] == BROWSER_UA
    assert page_call["anonymousId"] == "visitor-3"


def test_flask_login_user_in_the_context_with_context_user_id(default_is_recorder: RecordingClient) -> None:
    flask_login = pytest.importorskip("flask_login")

    class User(flask_login.UserMixin):  # type: ignore[misc]
        def __init__(self, user_id: str) -> None:
            self.id = user_id

    app = _flask_app(context_user_id=True)
    manager = flask_login.LoginManager(app)
    manager.user_loader(lambda user_id: User(user_id))

    @app.get("/login")
    def login() -> str:
        flask_login.login_user(User("user-77"))
        return "<p>in</p>"

    client = app.test_client()
    client.get("/order", headers={"User-Agent": BROWSER_UA})
    assert default_is_recorder.messages[0]["userId"] is None  # anonymous: no user
    client.get("/login", headers={"User-Agent": BROWSER_UA})
    default_is_recorder.clear()
    client.get("/order", headers={"User-Agent": BROWSER_UA})
    assert [m["userId"] for m in default_is_recorder.messages] == ["user-77", "user-77"]
