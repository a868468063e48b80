"""Tests of the ASGI middleware with Starlette (and FastAPI when installed) and raw ASGI calls."""

from __future__ import annotations

import asyncio
from typing import Any, Optional

import pytest

pytest.importorskip("starlette")
pytest.importorskip("httpx")

from integration_helpers import (
    BROWSER_UA,
    EXPECTED_COOKIE_ATTRS,
    UUID4_RE,
    ASGITestClient,
    ExplodingClient,
    page_message,
    parse_set_cookie,
    wire,
)
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from segment_lite.integrations.asgi import SegmentPageviewMiddleware
from segment_lite.testing import RecordingClient

pytestmark = pytest.mark.frameworks

HEADERS = {"User-Agent": BROWSER_UA}


async def home(request: Request) -> HTMLResponse:
    anonymous_id = request.scope.get("segment_lite.anonymous_id", "")
    return HTMLResponse(f"<html><body>hello {anonymous_id}</body></html>")


async def api(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


async def form(request: Request) -> HTMLResponse:
    return HTMLResponse("<p>posted</p>")


async def stream(request: Request) -> StreamingResponse:
    async def chunks() -> Any:
        yield b"<html>"
        yield b"</html>"

    return StreamingResponse(chunks(), media_type="text/html")


async def own_cookie(request: Request) -> HTMLResponse:
    response = HTMLResponse("<p>mine</p>")
    response.set_cookie("ajs_anonymous_id", "app-chosen")
    return response


async def echo_ws(websocket: WebSocket) -> None:
    await websocket.accept()
    text = await websocket.receive_text()
    await websocket.send_text(f"echo:{text}")
    await websocket.close()


def make_app(client: Any, lifespan_log: Optional[list[str]] = None, **options: Any) -> Starlette:
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        if lifespan_log is not None:
            lifespan_log.append("startup")
        yield
        if lifespan_log is not None:
            lifespan_log.append("shutdown")

    return Starlette(
        routes=[
            Route("/", home),
            Route("/api", api),
            Route("/form", form, methods=["POST"]),
            Route("/stream", stream),
            Route("/own-cookie", own_cookie),
            Route("/static/app.css", home),
            Route("/healthz", home),
            WebSocketRoute("/ws", echo_ws),
        ],
        middleware=[Middleware(SegmentPageviewMiddleware, client=client, **options)],
        lifespan=lifespan,
    )


def test_tracks_html_page_and_sets_cookie(recorder: RecordingClient) -> None:
    with ASGITestClient(make_app(recorder)) as client:
        response = client.get("/?q=shoes", headers={**HEADERS, "Referer": "http://testserver/prev"})
    assert response.status_code == 200
    [message] = recorder.messages
    anonymous_id = message["anonymousId"]
    assert UUID4_RE.match(anonymous_id)
    assert response.text == f"<html><body>hello {anonymous_id}</body></html>"
    assert wire(message) == page_message(
        anonymous_id=anonymous_id, search="?q=shoes", referrer="http://testserver/prev", ip="testclient"
    )
    [set_cookie] = response.headers.get_list("set-cookie")
    assert parse_set_cookie(set_cookie) == ("ajs_anonymous_id", anonymous_id, EXPECTED_COOKIE_ATTRS)


@pytest.mark.parametrize(
    "cookie",
    [
        "ajs_anonymous_id=anon-2; ajs_user_id=user-2",
        "ajs_anonymous_id=%22anon-2%22; ajs_user_id=%22user-2%22",
    ],
)
def test_existing_cookie_both_formats(recorder: RecordingClient, cookie: str) -> None:
    with ASGITestClient(make_app(recorder)) as client:
        response = client.get("/", headers={**HEADERS, "Cookie": cookie})
    assert "set-cookie" not in response.headers
    assert [wire(m) for m in recorder.messages] == [
        page_message(anonymous_id="anon-2", user_id="user-2", ip="testclient")
    ]


def test_streaming_html_is_tracked(recorder: RecordingClient) -> None:
    with ASGITestClient(make_app(recorder)) as client:
        response = client.get("/stream", headers=HEADERS)
    assert response.text == "<html></html>"
    assert [m["properties"]["path"] for m in recorder.messages] == ["/stream"]
    assert "set-cookie" in response.headers


def test_app_cookie_is_not_overridden(recorder: RecordingClient) -> None:
    with ASGITestClient(make_app(recorder)) as client:
        response = client.get("/own-cookie", headers=HEADERS)
    [set_cookie] = response.headers.get_list("set-cookie")
    assert set_cookie.startswith("ajs_anonymous_id=app-chosen;")
    assert len(recorder.messages) == 1


@pytest.mark.parametrize(
    ("method", "path", "headers"),
    [
        ("POST", "/form", HEADERS),
        ("GET", "/api", HEADERS),
        ("GET", "/missing", HEADERS),
        ("GET", "/static/app.css", HEADERS),
        ("GET", "/healthz", HEADERS),
        (
            "GET",
            "/",
            {"User-Agent": "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"},
        ),
    ],
)
def test_skipped_requests(recorder: RecordingClient, method: str, path: str, headers: dict[str, str]) -> None:
    with ASGITestClient(make_app(recorder)) as client:
        response = client.request(method, path, headers=headers)
    assert "set-cookie" not in response.headers
    assert recorder.messages == []


def test_websocket_passes_through_starlette(recorder: RecordingClient) -> None:
    incoming = [
        {"type": "websocket.connect"},
        {"type": "websocket.receive", "text": "hi"},
        {"type": "websocket.disconnect", "code": 1000},
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "scheme": "ws",
        "path": "/ws",
        "raw_path": b"/ws",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), (b"user-agent", BROWSER_UA.encode())],
        "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
        "subprotocols": [],
    }
    asyncio.run(make_app(recorder)(scope, receive, send))
    assert [m["type"] for m in sent] == ["websocket.accept", "websocket.send", "websocket.close"]
    assert sent[1]["text"] == "echo:hi"
    assert recorder.messages == []


@pytest.mark.parametrize(
    ("scope_type", "options"), [("websocket", {}), ("lifespan", {"flush_at_shutdown": False})]
)
def test_non_http_scopes_reach_the_app_untouched(scope_type: str, options: dict[str, Any]) -> None:
    seen: list[tuple[Any, Any, Any]] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        seen.append((scope, receive, send))

    client = ExplodingClient()
    middleware = SegmentPageviewMiddleware(inner, client=client, **options)
    scope = {"type": scope_type, "asgi": {"version": "3.0"}, "path": "/", "headers": []}
    snapshot = dict(scope)

    async def receive() -> dict[str, Any]:
        return {}

    async def send(message: Any) -> None:
        return None

    asyncio.run(middleware(scope, receive, send))
    assert len(seen) == 1
    assert seen[0][0] is scope and seen[0][1] is receive and seen[0][2] is send
    assert scope == snapshot
    assert client.calls == 0 and middleware.errors == 0


def run_asgi(
    middleware: SegmentPageviewMiddleware,
    *,
    client: tuple[str, int] = ("127.0.0.1", 5000),
    headers: Optional[list[tuple[bytes, bytes]]] = None,
) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "https",
        "path": "/caf\u00e9",
        "raw_path": b"/caf%C3%A9",
        "query_string": b"x=1",
        "root_path": "",
        "headers": [(b"host", b"example.com"), (b"user-agent", BROWSER_UA.encode()), *(headers or [])],
        "client": client,
        "server": ("127.0.0.1", 443),
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(middleware(scope, receive, send))
    return sent


async def raw_html_app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/html")]})
    await send({"type": "http.response.body", "body": b"<p>raw</p>"})


@pytest.mark.parametrize(
    ("peer", "expected_ip"),
    [("10.0.0.5", "198.51.100.7"), ("203.0.113.9", "203.0.113.9")],
)
def test_trusted_proxy_handling_raw_asgi(recorder: RecordingClient, peer: str, expected_ip: str) -> None:
    middleware = SegmentPageviewMiddleware(raw_html_app, client=recorder, trusted_proxies=["10.0.0.0/8"])
    sent = run_asgi(
        middleware,
        client=(peer, 1234),
        headers=[(b"x-forwarded-for", b"6.6.6.6, 198.51.100.7"), (b"cookie", b"ajs_anonymous_id=a")],
    )
    assert sent[1] == {"type": "http.response.body", "body": b"<p>raw</p>"}
    assert sent[0] == {
        "type": "http.response.start",
        "status": 200,
        "headers": [(b"content-type", b"text/html")],
    }
    assert wire(recorder.messages[0]) == page_message(
        anonymous_id="a", scheme="https", host="example.com", path="/caf%C3%A9", search="?x=1", ip=expected_ip
    )


def test_error_inside_tracking_leaves_response_intact_raw() -> None:
    client = ExplodingClient()
    middleware = SegmentPageviewMiddleware(raw_html_app, client=client)
    sent = run_asgi(middleware)
    assert sent == [
        {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/html")]},
        {"type": "http.response.body", "body": b"<p>raw</p>"},
    ]
    assert client.calls == 1 and middleware.errors == 1


def test_error_inside_tracking_leaves_starlette_response_intact() -> None:
    client = ExplodingClient()
    with ASGITestClient(make_app(client)) as test_client:
        response = test_client.get("/", headers=HEADERS)
    assert response.status_code == 200
    assert response.text.startswith("<html><body>hello ")
    assert "set-cookie" not in response.headers
    assert client.calls == 1


def test_fastapi_add_middleware(recorder: RecordingClient) -> None:
    fastapi = pytest.importorskip("fastapi")
    from fastapi.responses import HTMLResponse as FastHTML

    app = fastapi.FastAPI()

    @app.get("/", response_class=FastHTML)
    def index() -> str:
        return "<h1>fast</h1>"

    @app.get("/items")
    def items() -> dict[str, int]:
        return {"count": 1}

    app.add_middleware(SegmentPageviewMiddleware, client=recorder, title=lambda info: "Fast")
    with ASGITestClient(app) as client:
        page = client.get("/", headers=HEADERS)
        data = client.get("/items", headers=HEADERS)
    assert page.text == "<h1>fast</h1>" and data.json() == {"count": 1}
    [message] = recorder.messages
    assert wire(message) == page_message(anonymous_id=message["anonymousId"], title="Fast", ip="testclient")


def test_plain_text_is_not_a_page(recorder: RecordingClient) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await PlainTextResponse("hi")(scope, receive, send)

    sent = run_asgi(SegmentPageviewMiddleware(app, client=recorder))
    assert not any(name == b"set-cookie" for name, _ in sent[0]["headers"])
    assert recorder.messages == []


# --------------------------------------------------------------------------- lifespan: flush at shutdown


def queueing_recorder() -> RecordingClient:
    """A recorder that only sends when flushed: what it holds is lost unless someone flushes."""
    return RecordingClient(sync_mode=False, upload_interval=3600)


def test_lifespan_shutdown_flushes_after_the_apps_own_shutdown_handler() -> None:
    recorder = queueing_recorder()
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        yield
        recorder.track("server", "Server Stopped")  # tracked by the app while shutting down

    app = Starlette(
        routes=[Route("/", home)],
        middleware=[Middleware(SegmentPageviewMiddleware, client=recorder)],
        lifespan=lifespan,
    )
    try:
        with ASGITestClient(app) as client:
            assert client.get("/", headers=HEADERS).status_code == 200
            assert recorder.messages == []  # queued, not sent
        assert [m["type"] for m in client.lifespan_messages] == [
            "lifespan.startup.complete",
            "lifespan.shutdown.complete",
        ]
        assert [(m["type"], m.get("event")) for m in recorder.messages] == [
            ("page", None),
            ("track", "Server Stopped"),
        ]
    finally:
        recorder.shutdown()


async def ignores_lifespan(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "http":
        await raw_html_app(scope, receive, send)


async def refuses_lifespan(scope: Any, receive: Any, send: Any) -> None:
    assert scope["type"] == "http", "this app serves HTTP only"
    await raw_html_app(scope, receive, send)


async def reads_then_refuses_lifespan(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await receive()
        raise RuntimeError("no lifespan here")
    await raw_html_app(scope, receive, send)


@pytest.mark.parametrize("inner", [ignores_lifespan, refuses_lifespan, reads_then_refuses_lifespan])
def test_lifespan_is_answered_for_an_app_that_does_not_speak_it(inner: Any) -> None:
    recorder = queueing_recorder()
    middleware = SegmentPageviewMiddleware(inner, client=recorder)
    try:
        with ASGITestClient(middleware) as client:
            assert client.get("/", headers=HEADERS).text == "<p>raw</p>"
            assert recorder.messages == []
        assert [m["type"] for m in client.lifespan_messages] == [
            "lifespan.startup.complete",
            "lifespan.shutdown.complete",
        ]
        assert [m["type"] for m in recorder.messages] == ["page"]
        assert middleware.errors == 0
    finally:
        recorder.shutdown()


def run_lifespan(middleware: SegmentPageviewMiddleware) -> list[dict[str, Any]]:
    """Send startup then shutdown to ``middleware``; returns what it answered."""
    incoming = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(middleware({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send))
    return sent


def test_a_startup_failure_of_the_app_is_not_hidden() -> None:
    async def failing(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "database unreachable"})
        raise RuntimeError("database unreachable")

    with pytest.raises(RuntimeError, match="database unreachable"):
        run_lifespan(SegmentPageviewMiddleware(failing, client=RecordingClient()))


class FlushFailingClient(RecordingClient):
    def flush(self, timeout: Any = None) -> bool:
        raise RuntimeError("flush exploded")


def test_a_failing_flush_is_logged_and_shutdown_still_completes(caplog: pytest.LogCaptureFixture) -> None:
    client = FlushFailingClient()
    middleware = SegmentPageviewMiddleware(ignores_lifespan, client=client)
    try:
        sent = run_lifespan(middleware)
    finally:
        client.shutdown()
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert middleware.errors == 1
    assert "flushing the client at ASGI lifespan shutdown failed" in caplog.text


def test_an_unfinished_flush_is_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    class SlowClient(RecordingClient):
        def flush(self, timeout: Any = None) -> bool:
            self.flush_timeout = timeout
            return False  # what a flush that ran out of time answers

    client = SlowClient()
    middleware = SegmentPageviewMiddleware(ignores_lifespan, client=client, shutdown_flush_timeout_s=0.25)
    try:
        run_lifespan(middleware)
    finally:
        client.shutdown()
    assert client.flush_timeout == 0.25
    assert "events were still queued when the 0.25s flush at ASGI shutdown ended" in caplog.text


def test_the_module_default_client_is_flushed_but_never_created_at_shutdown() -> None:
    import segment_lite
    from segment_lite.testing import recording

    middleware = SegmentPageviewMiddleware(ignores_lifespan)  # client=None: the module's default client
    segment_lite.default_client = None
    run_lifespan(middleware)
    assert segment_lite.default_client is None  # nothing was tracked: no client made just to flush

    with recording(sync_mode=False, upload_interval=3600) as recorder:
        recorder.track("u", "Queued")
        assert recorder.messages == []
        run_lifespan(middleware)
        assert [m["event"] for m in recorder.messages] == ["Queued"]
