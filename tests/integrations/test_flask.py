"""Tests of the Flask extension with Flask's test client."""

from __future__ import annotations

from typing import Any

import pytest

flask = pytest.importorskip("flask")

from integration_helpers import (  # noqa: E402
    BROWSER_UA,
    EXPECTED_COOKIE_ATTRS,
    UUID4_RE,
    ExplodingClient,
    page_message,
    parse_set_cookie,
    wire,
)

from segment_lite.integrations.flask import SegmentPageviews  # noqa: E402
from segment_lite.testing import RecordingClient, recording  # noqa: E402

pytestmark = pytest.mark.frameworks

HEADERS = {"User-Agent": BROWSER_UA}


def make_app(**config: Any) -> Any:
    app = flask.Flask(__name__)
    app.config.update(config)

    @app.get("/")
    def index() -> str:
        return f"<html>anon={flask.g.segment_anonymous_id}</html>"

    @app.get("/api")
    def api() -> Any:
        return flask.jsonify(ok=True)

    @app.post("/form")
    def form() -> str:
        return "<p>saved</p>"

    @app.get("/healthz")
    def health() -> str:
        return "<p>ok</p>"

    @app.get("/own-cookie")
    def own_cookie() -> Any:
        response = flask.make_response("<p>mine</p>")
        response.set_cookie("ajs_anonymous_id", "app-chosen")
        return response

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("view failure")

    return app


def set_cookies(headers: Any) -> list[str]:
    return list(headers.getlist("Set-Cookie"))


def test_tracks_page_and_sets_cookie(recorder: RecordingClient) -> None:
    app = make_app()
    SegmentPageviews(app, client=recorder)
    response = app.test_client().get("/?utm_medium=social&utm_source=x", headers=HEADERS)
    [message] = recorder.messages
    anonymous_id = message["anonymousId"]
    assert UUID4_RE.match(anonymous_id)
    assert response.status_code == 200
    assert response.get_data(as_text=True) == f"<html>anon={anonymous_id}</html>"
    assert wire(message) == page_message(
        anonymous_id=anonymous_id,
        host="localhost",
        search="?utm_medium=social&utm_source=x",
        campaign={"medium": "social", "source": "x"},
    )
    [set_cookie] = set_cookies(response.headers)
    assert parse_set_cookie(set_cookie) == ("ajs_anonymous_id", anonymous_id, EXPECTED_COOKIE_ATTRS)


@pytest.mark.parametrize(
    ("anon_cookie", "user_cookie", "anonymous_id", "user_id"),
    [("fl-anon", "fl-user", "fl-anon", "fl-user"), ("%22fl-anon%22", "%22fl-user%22", "fl-anon", "fl-user")],
)
def test_existing_cookie_formats(
    recorder: RecordingClient, anon_cookie: str, user_cookie: str, anonymous_id: str, user_id: str
) -> None:
    app = make_app()
    SegmentPageviews(app, client=recorder)
    client = app.test_client()
    client.set_cookie("ajs_anonymous_id", anon_cookie)
    client.set_cookie("ajs_user_id", user_cookie)
    response = client.get("/", headers=HEADERS)
    assert set_cookies(response.headers) == []
    assert [wire(m) for m in recorder.messages] == [
        page_message(anonymous_id=anonymous_id, user_id=user_id, host="localhost")
    ]


def test_init_app_pattern_with_app_config_and_user_callable(recorder: RecordingClient) -> None:
    extension = SegmentPageviews(client=recorder, user_id=lambda info: flask.g.get("user"))
    app = make_app(SEGMENT_LITE={"TRUSTED_PROXIES": ["10.0.0.0/8"], "COOKIE_SECURE": True})

    @app.before_request
    def login() -> None:
        flask.g.user = "flask-user-1"

    extension.init_app(app)
    response = app.test_client().get(
        "/", headers={**HEADERS, "X-Forwarded-For": "198.51.100.9"}, environ_base={"REMOTE_ADDR": "10.2.3.4"}
    )
    [message] = recorder.messages
    assert wire(message) == page_message(
        anonymous_id=message["anonymousId"], host="localhost", user_id="flask-user-1", ip="198.51.100.9"
    )
    attrs = parse_set_cookie(set_cookies(response.headers)[0])[2]
    assert attrs == {**EXPECTED_COOKIE_ATTRS, "secure": ""}
    assert extension.tracker is app.extensions["segment_lite"]


def test_untrusted_peer_forwarded_for_ignored(recorder: RecordingClient) -> None:
    app = make_app(SEGMENT_LITE={"trusted_proxies": ["10.0.0.0/8"]})
    SegmentPageviews(app, client=recorder)
    app.test_client().get(
        "/",
        headers={**HEADERS, "X-Forwarded-For": "198.51.100.9"},
        environ_base={"REMOTE_ADDR": "203.0.113.1"},
    )
    assert recorder.messages[0]["context"]["ip"] == "203.0.113.1"


@pytest.mark.parametrize(
    ("method", "path", "headers"),
    [
        ("POST", "/form", HEADERS),
        ("GET", "/api", HEADERS),
        ("GET", "/missing", HEADERS),
        ("GET", "/static/app.js", HEADERS),
        ("GET", "/healthz", HEADERS),
        ("GET", "/", {"User-Agent": "facebookexternalhit/1.1"}),
        ("GET", "/", {"User-Agent": "python-requests/2.32.0"}),
    ],
)
def test_skipped_requests(recorder: RecordingClient, method: str, path: str, headers: dict[str, str]) -> None:
    app = make_app()
    SegmentPageviews(app, client=recorder)
    response = app.test_client().open(path, method=method, headers=headers)
    assert recorder.messages == []
    assert set_cookies(response.headers) == []


def test_app_cookie_is_respected(recorder: RecordingClient) -> None:
    app = make_app()
    SegmentPageviews(app, client=recorder)
    response = app.test_client().get("/own-cookie", headers=HEADERS)
    [set_cookie] = set_cookies(response.headers)
    assert set_cookie.startswith("ajs_anonymous_id=app-chosen;")
    assert len(recorder.messages) == 1


def test_error_inside_tracking_leaves_response_intact() -> None:
    client = ExplodingClient()
    app = make_app()
    extension = SegmentPageviews(app, client=client)
    response = app.test_client().get("/", headers=HEADERS)
    assert response.status_code == 200
    assert response.get_data(as_text=True).startswith("<html>anon=")
    assert set_cookies(response.headers) == []
    assert client.calls == 1
    assert extension.errors == 1  # outside an app context: the last app initialised
    with app.app_context():
        assert extension.errors == 1
    assert app.extensions["segment_lite"].stats() == {"tracked": 0, "skipped": 0, "errors": 1, "dropped": 0}


def test_view_errors_are_not_tracked_and_still_raise(recorder: RecordingClient) -> None:
    app = make_app()
    SegmentPageviews(app, client=recorder)
    response = app.test_client().get("/boom", headers=HEADERS)
    assert response.status_code == 500
    assert recorder.messages == []


def test_default_module_client() -> None:
    app = make_app()
    SegmentPageviews(app)
    with recording() as recorder:
        app.test_client().get("/", headers=HEADERS)
    assert len(recorder.messages) == 1
    assert recorder.messages[0]["properties"]["path"] == "/"
