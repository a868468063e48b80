"""Tests of the WSGI middleware against a raw WSGI application driven through wsgiref."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any, Callable, Optional
from wsgiref.util import setup_testing_defaults

import pytest
from integration_helpers import (
    BROWSER_UA,
    EXPECTED_COOKIE_ATTRS,
    UUID4_RE,
    ExplodingClient,
    page_message,
    parse_set_cookie,
    wire,
)

from segment_lite.integrations import PageviewConfig
from segment_lite.integrations.wsgi import SegmentPageviewMiddleware
from segment_lite.testing import RecordingClient

HTML = [("Content-Type", "text/html; charset=utf-8")]


def make_app(
    status: str = "200 OK",
    headers: Optional[list[tuple[str, str]]] = None,
    body: bytes = b"<html><title>Hi</title></html>",
) -> Callable[..., Iterable[bytes]]:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        start_response(status, list(HTML if headers is None else headers))
        return [body]

    return app


class Response:
    def __init__(self, status: str, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]


def call(
    app: Callable[..., Iterable[bytes]],
    path: str = "/",
    *,
    method: str = "GET",
    query: str = "",
    headers: Optional[dict[str, str]] = None,
    remote_addr: str = "127.0.0.1",
    user_agent: Optional[str] = BROWSER_UA,
    environ_extra: Optional[dict[str, Any]] = None,
) -> Response:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "REMOTE_ADDR": remote_addr,
        "HTTP_HOST": "testserver",
    }
    if user_agent is not None:
        environ["HTTP_USER_AGENT"] = user_agent
    for name, value in (headers or {}).items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    environ.update(environ_extra or {})
    setup_testing_defaults(environ)
    captured: dict[str, Any] = {}

    def start_response(status: str, response_headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        captured["status"], captured["headers"] = status, response_headers
        return lambda data: None

    chunks = app(environ, start_response)
    try:
        body = b"".join(chunks)
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    return Response(captured["status"], captured["headers"], body)


def test_tracks_html_get_and_sets_cookie(recorder: RecordingClient) -> None:
    middleware = SegmentPageviewMiddleware(make_app(), client=recorder)
    response = call(middleware, "/docs/intro", query="a=1", headers={"Referer": "https://google.com/"})
    assert response.status == "200 OK"
    assert response.body == b"<html><title>Hi</title></html>"
    [message] = recorder.messages
    anonymous_id = message["anonymousId"]
    assert UUID4_RE.match(anonymous_id)
    assert wire(message) == page_message(
        anonymous_id=anonymous_id, path="/docs/intro", search="?a=1", referrer="https://google.com/"
    )
    [set_cookie] = response.all("Set-Cookie")
    assert parse_set_cookie(set_cookie) == ("ajs_anonymous_id", anonymous_id, EXPECTED_COOKIE_ATTRS)
    assert ("Content-Type", "text/html; charset=utf-8") in response.headers


def test_cookie_domain_and_secure(recorder: RecordingClient) -> None:
    middleware = SegmentPageviewMiddleware(
        make_app(), client=recorder, cookie_domain=".example.com", cookie_secure=True
    )
    [set_cookie] = call(middleware).all("Set-Cookie")
    name, value, attrs = parse_set_cookie(set_cookie)
    assert name == "ajs_anonymous_id"
    assert attrs == {**EXPECTED_COOKIE_ATTRS, "domain": ".example.com", "secure": ""}
    assert value == recorder.messages[0]["anonymousId"]


@pytest.mark.parametrize(
    ("cookie", "anonymous_id", "user_id"),
    [
        ("ajs_anonymous_id=raw-anon-1; ajs_user_id=raw-user", "raw-anon-1", "raw-user"),  # analytics.js 2.x
        (
            "ajs_anonymous_id=%22json-anon-1%22; ajs_user_id=%22json-user%22",
            "json-anon-1",
            "json-user",
        ),  # 1.x
    ],
)
def test_existing_cookies_in_both_formats(
    recorder: RecordingClient, cookie: str, anonymous_id: str, user_id: str
) -> None:
    seen: dict[str, Any] = {}

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        seen["anonymous_id"] = environ["segment_lite.anonymous_id"]
        start_response("200 OK", HTML)
        return [b"ok"]

    response = call(SegmentPageviewMiddleware(app, client=recorder), headers={"Cookie": cookie})
    assert response.all("Set-Cookie") == []
    assert seen["anonymous_id"] == anonymous_id
    assert [wire(m) for m in recorder.messages] == [page_message(anonymous_id=anonymous_id, user_id=user_id)]


def test_new_anonymous_id_is_visible_to_the_app_and_matches_cookie(recorder: RecordingClient) -> None:
    seen: dict[str, Any] = {}

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        seen["anonymous_id"] = environ["segment_lite.anonymous_id"]
        start_response("200 OK", HTML)
        return [b"ok"]

    response = call(SegmentPageviewMiddleware(app, client=recorder))
    assert parse_set_cookie(response.all("Set-Cookie")[0])[1] == seen["anonymous_id"]
    assert recorder.messages[0]["anonymousId"] == seen["anonymous_id"]


def test_app_setting_its_own_anonymous_id_cookie_is_respected(recorder: RecordingClient) -> None:
    app = make_app(headers=[*HTML, ("Set-Cookie", "ajs_anonymous_id=app-chosen; Path=/")])
    response = call(SegmentPageviewMiddleware(app, client=recorder))
    assert response.all("Set-Cookie") == ["ajs_anonymous_id=app-chosen; Path=/"]
    assert len(recorder.messages) == 1


def test_utm_campaign_mapping(recorder: RecordingClient) -> None:
    query = (
        "utm_source=google&utm_medium=cpc&utm_campaign=spring&utm_term=shoes&utm_content=ad1&utm_adgroup=7"
    )
    call(SegmentPageviewMiddleware(make_app(), client=recorder), "/landing", query=query)
    message = wire(recorder.messages[0])
    assert message == page_message(
        anonymous_id=message["anonymousId"],
        path="/landing",
        search=f"?{query}",
        campaign={
            "source": "google",
            "medium": "cpc",
            "name": "spring",
            "term": "shoes",
            "content": "ad1",
            "adgroup": "7",
        },
    )


def test_path_is_percent_encoded_as_on_the_wire(recorder: RecordingClient) -> None:
    # WSGI hands the decoded path as latin-1 characters; the URL must carry the original escapes.
    raw = "/caf\u00c3\u00a9/a b"  # the UTF-8 bytes of "/café/a b" seen through latin-1
    call(SegmentPageviewMiddleware(make_app(), client=recorder), raw)
    assert recorder.messages[0]["properties"]["path"] == "/caf%C3%A9/a%20b"
    assert recorder.messages[0]["properties"]["url"] == "http://testserver/caf%C3%A9/a%20b"


def test_script_name_is_part_of_the_path(recorder: RecordingClient) -> None:
    call(
        SegmentPageviewMiddleware(make_app(), client=recorder), "/page", environ_extra={"SCRIPT_NAME": "/app"}
    )
    assert recorder.messages[0]["properties"]["path"] == "/app/page"


@pytest.mark.parametrize(
    ("trusted", "remote_addr", "expected_ip"),
    [
        (["10.0.0.0/8"], "10.0.0.1", "198.51.100.7"),  # trusted proxy: use the forwarded client
        (["10.0.0.0/8"], "203.0.113.50", "203.0.113.50"),  # untrusted peer: header ignored
        ([], "10.0.0.1", "10.0.0.1"),  # nothing trusted: header ignored
    ],
)
def test_trusted_proxies(
    recorder: RecordingClient, trusted: list[str], remote_addr: str, expected_ip: str
) -> None:
    middleware = SegmentPageviewMiddleware(make_app(), client=recorder, trusted_proxies=trusted)
    call(middleware, remote_addr=remote_addr, headers={"X-Forwarded-For": "1.2.3.4, 198.51.100.7"})
    assert recorder.messages[0]["context"]["ip"] == expected_ip


@pytest.mark.parametrize(
    ("kwargs", "app_kwargs"),
    [
        ({"method": "POST"}, {}),
        ({"method": "HEAD"}, {}),
        ({}, {"status": "404 Not Found"}),
        ({}, {"status": "301 Moved Permanently", "headers": [*HTML, ("Location", "/x")]}),
        ({}, {"headers": [("Content-Type", "application/json")]}),
        ({}, {"headers": []}),
        ({"path": "/static/app.js"}, {"headers": [("Content-Type", "text/javascript")]}),
        ({"path": "/logo.png"}, {}),
        ({"path": "/healthz"}, {}),
        ({"path": "/health"}, {}),
        ({"user_agent": "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)"}, {}),
        ({"user_agent": None}, {}),
    ],
)
def test_skipped_requests(
    recorder: RecordingClient, kwargs: dict[str, Any], app_kwargs: dict[str, Any]
) -> None:
    middleware = SegmentPageviewMiddleware(make_app(**app_kwargs), client=recorder)
    response = call(middleware, **kwargs)
    assert recorder.messages == []
    assert response.all("Set-Cookie") == []
    assert middleware.tracker.skipped == 1
    assert middleware.errors == 0


def test_error_inside_tracking_leaves_response_intact(caplog: pytest.LogCaptureFixture) -> None:
    client = ExplodingClient()
    middleware = SegmentPageviewMiddleware(make_app(body=b"<p>body</p>"), client=client)
    response = call(middleware)
    assert (response.status, response.body) == ("200 OK", b"<p>body</p>")
    assert response.headers == HTML  # no cookie either: the pageview was not recorded
    assert client.calls == 1
    assert middleware.errors == 1
    assert any(r.name == "segment_lite.integrations" for r in caplog.records)


def test_error_while_inspecting_the_request_leaves_response_intact(recorder: RecordingClient) -> None:
    middleware = SegmentPageviewMiddleware(make_app(body=b"fine"), client=recorder)
    # a broken environ value that makes request inspection fail
    response = call(middleware, environ_extra={"PATH_INFO": 123})
    assert (response.status, response.body) == ("200 OK", b"fine")
    assert middleware.errors == 1
    assert recorder.messages == []


def test_exc_info_start_response_is_passed_through(recorder: RecordingClient) -> None:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        try:
            raise ValueError("app failure")
        except ValueError:
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")], sys.exc_info())
        return [b"error"]

    calls: list[Any] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        calls.append((status, exc_info is not None))
        return lambda data: None

    environ: dict[str, Any] = {"HTTP_USER_AGENT": BROWSER_UA}
    setup_testing_defaults(environ)
    body = b"".join(SegmentPageviewMiddleware(app, client=recorder)(environ, start_response))
    assert body == b"error"
    assert calls == [("500 Internal Server Error", True)]
    assert recorder.messages == []


def test_config_object_and_keyword_options_combine(recorder: RecordingClient) -> None:
    config = PageviewConfig(title=lambda info: "T")
    middleware = SegmentPageviewMiddleware(make_app(), config, client=recorder, cookie_secure=True)
    assert middleware.tracker.config.cookie_secure is True
    response = call(middleware)
    assert recorder.messages[0]["properties"]["title"] == "T"
    assert parse_set_cookie(response.all("Set-Cookie")[0])[2]["secure"] == ""
