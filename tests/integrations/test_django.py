"""Tests of the Django middleware with Django's test clients, on the sync and async stacks."""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Iterator
from typing import Any, Callable

import pytest

django = pytest.importorskip("django")

from django.conf import settings  # noqa: E402

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="segment-lite-tests",
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes", "django.contrib.sessions"],
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.sqlite3",
                "NAME": os.path.join(tempfile.mkdtemp(prefix="segment-lite-django-"), "db.sqlite3"),
            }
        },
        MIDDLEWARE=[],
        USE_TZ=True,
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
    )
    django.setup()

from asgiref.sync import iscoroutinefunction  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.exceptions import ImproperlyConfigured  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.http import HttpResponse, JsonResponse  # noqa: E402
from django.test import AsyncClient, Client, RequestFactory, override_settings  # noqa: E402
from django.test.client import AsyncRequestFactory  # noqa: E402
from django.urls import path  # noqa: E402
from integration_helpers import (  # noqa: E402
    BROWSER_UA,
    UUID4_RE,
    ExplodingClient,
    page_message,
    wire,
)

import segment_lite  # noqa: E402
from segment_lite.integrations import django as django_integration  # noqa: E402
from segment_lite.integrations.django import SegmentPageviewMiddleware  # noqa: E402
from segment_lite.testing import RecordingClient  # noqa: E402

OURS = "segment_lite.integrations.django.SegmentPageviewMiddleware"
STACK = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    OURS,
]


# --------------------------------------------------------------------------- views


def page(request: Any) -> HttpResponse:
    return HttpResponse(f"<html>anon={request.segment_anonymous_id}</html>")


async def async_page(request: Any) -> HttpResponse:
    return HttpResponse(f"<html>async anon={request.segment_anonymous_id}</html>")


def api(request: Any) -> JsonResponse:
    return JsonResponse({"ok": True})


def form(request: Any) -> HttpResponse:
    return HttpResponse("<p>saved</p>")


def own_cookie(request: Any) -> HttpResponse:
    response = HttpResponse("<p>mine</p>")
    response.set_cookie("ajs_anonymous_id", "app-chosen")
    return response


def order(request: Any) -> HttpResponse:
    segment_lite.track(event="Order Completed", properties={"total": 42})
    return HttpResponse("<p>ordered</p>")


async def async_order(request: Any) -> HttpResponse:
    segment_lite.track(event="Order Completed", properties={"total": 42})
    return HttpResponse("<p>ordered</p>")


def explicit_order(request: Any) -> HttpResponse:
    segment_lite.track(
        "explicit-user",
        "Order Completed",
        anonymous_id="explicit-anon",
        context={"ip": "198.51.100.7"},
    )
    return HttpResponse("<p>ordered</p>")


urlpatterns = [
    path("", page),
    path("order/", order),
    path("async-order/", async_order),
    path("explicit-order/", explicit_order),
    path("async/", async_page),
    path("api/", api),
    path("form/", form),
    path("own-cookie/", own_cookie),
    path("static/site.css", page),
    path("healthz", page),
]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def database() -> None:
    call_command("migrate", run_syncdb=True, verbosity=0)


@pytest.fixture
def configure(recorder: RecordingClient) -> Iterator[Callable[..., None]]:
    """Apply the URLconf, the middleware stack and SEGMENT_LITE options for one test."""
    active: list[Any] = []

    def apply(middleware: list[str] = STACK, **options: Any) -> None:
        options.setdefault("CLIENT", recorder)
        override = override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=middleware, SEGMENT_LITE=options)
        override.enable()
        active.append(override)

    try:
        yield apply
    finally:
        for override in reversed(active):
            override.disable()


def sync_client(**defaults: Any) -> Client:
    return Client(HTTP_USER_AGENT=BROWSER_UA, **defaults)


def async_get(path: str, login: Any = None, **extra: Any) -> Any:
    client = AsyncClient()
    # per-request headers: AsyncClient(headers=...) defaults are not ASGI header names
    extra["headers"] = {"user-agent": BROWSER_UA, **extra.get("headers", {})}
    if login is not None:
        client.force_login(login)
    for name, value in extra.pop("cookies", {}).items():
        client.cookies[name] = value
    return asyncio.run(client.get(path, **extra))


def assert_cookie(response: Any, anonymous_id: str) -> None:
    morsel = response.cookies["ajs_anonymous_id"]
    assert morsel.value == anonymous_id
    assert morsel["path"] == "/"
    assert morsel["max-age"] == 31536000
    assert morsel["samesite"] == "Lax"
    assert morsel["domain"] == ""
    assert morsel["secure"] == ""
    assert morsel["httponly"] == ""
    assert morsel["expires"]  # Django adds Expires alongside Max-Age


# --------------------------------------------------------------------------- sync stack


def test_sync_stack_tracks_page_and_sets_cookie(
    configure: Callable[..., None], recorder: RecordingClient
) -> None:
    configure()
    response = sync_client().get(
        "/?utm_source=mail&utm_campaign=launch", HTTP_ACCEPT_LANGUAGE="en-GB,en;q=0.8"
    )
    [message] = recorder.messages
    anonymous_id = message["anonymousId"]
    assert UUID4_RE.match(anonymous_id)
    assert response.status_code == 200
    assert response.content == f"<html>anon={anonymous_id}</html>".encode()
    assert wire(message) == page_message(
        anonymous_id=anonymous_id,
        search="?utm_source=mail&utm_campaign=launch",
        locale="en-GB",
        campaign={"source": "mail", "name": "launch"},
    )
    assert_cookie(response, anonymous_id)


@pytest.mark.parametrize(
    ("cookies", "anonymous_id", "user_id"),
    [
        ({"ajs_anonymous_id": "anon-raw", "ajs_user_id": "user-raw"}, "anon-raw", "user-raw"),
        ({"ajs_anonymous_id": "%22anon-json%22", "ajs_user_id": "%22user-json%22"}, "anon-json", "user-json"),
    ],
)
def test_existing_cookie_formats(
    configure: Callable[..., None],
    recorder: RecordingClient,
    cookies: dict[str, str],
    anonymous_id: str,
    user_id: str,
) -> None:
    configure()
    client = sync_client()
    for name, value in cookies.items():
        client.cookies[name] = value
    response = client.get("/")
    assert "ajs_anonymous_id" not in response.cookies
    assert [wire(m) for m in recorder.messages] == [page_message(anonymous_id=anonymous_id, user_id=user_id)]


def test_logged_in_user_becomes_user_id_sync(
    configure: Callable[..., None], recorder: RecordingClient, database: None
) -> None:
    configure()
    user = get_user_model().objects.create_user(username="sync-user", password="x")
    client = sync_client()
    client.force_login(user)
    client.cookies["ajs_user_id"] = "cookie-user"  # the logged-in user wins over the cookie
    client.get("/")
    assert recorder.messages[0]["userId"] == str(user.pk)


def test_track_user_off_uses_cookie_only(
    configure: Callable[..., None], recorder: RecordingClient, database: None
) -> None:
    configure(TRACK_USER=False)
    user = get_user_model().objects.create_user(username="untracked-user", password="x")
    client = sync_client()
    client.force_login(user)
    client.get("/")
    assert recorder.messages[0]["userId"] is None


@pytest.mark.parametrize(
    ("method", "url", "extra"),
    [
        ("post", "/form/", {}),
        ("get", "/api/", {}),
        ("get", "/missing/", {}),
        ("get", "/static/site.css", {}),
        ("get", "/healthz", {}),
        ("get", "/", {"HTTP_USER_AGENT": "Mozilla/5.0 (compatible; YandexBot/3.0)"}),
    ],
)
def test_sync_skipped_requests(
    configure: Callable[..., None], recorder: RecordingClient, method: str, url: str, extra: dict[str, str]
) -> None:
    configure()
    response = getattr(sync_client(), method)(url, **extra)
    assert recorder.messages == []
    assert "ajs_anonymous_id" not in response.cookies


def test_app_cookie_is_respected(configure: Callable[..., None], recorder: RecordingClient) -> None:
    configure()
    response = sync_client().get("/own-cookie/")
    assert response.cookies["ajs_anonymous_id"].value == "app-chosen"
    assert len(recorder.messages) == 1


@pytest.mark.parametrize(("peer", "expected"), [("10.1.1.1", "198.51.100.7"), ("203.0.113.4", "203.0.113.4")])
def test_trusted_proxies_from_settings(
    configure: Callable[..., None], recorder: RecordingClient, peer: str, expected: str
) -> None:
    configure(TRUSTED_PROXIES=["10.0.0.0/8"])
    sync_client().get("/", REMOTE_ADDR=peer, HTTP_X_FORWARDED_FOR="6.6.6.6, 198.51.100.7")
    assert recorder.messages[0]["context"]["ip"] == expected


def test_settings_accept_dotted_paths(configure: Callable[..., None], recorder: RecordingClient) -> None:
    configure(CLIENT=f"{__name__}.DOTTED_CLIENT", TITLE=f"{__name__}.title_from_path", COOKIE_SECURE=True)
    DOTTED_CLIENT.clear()
    response = sync_client().get("/")
    [message] = DOTTED_CLIENT.messages
    assert message["properties"]["title"] == "title for /"
    assert response.cookies["ajs_anonymous_id"]["secure"] is True
    assert recorder.messages == []


DOTTED_CLIENT = RecordingClient()


def title_from_path(info: Any) -> str:
    return f"title for {info.path}"


def test_unknown_setting_is_improperly_configured() -> None:
    with override_settings(SEGMENT_LITE={"TRUSTED_PROXYS": []}), pytest.raises(ImproperlyConfigured):
        SegmentPageviewMiddleware(lambda request: HttpResponse())


def test_sync_error_leaves_response_intact(configure: Callable[..., None]) -> None:
    exploding = ExplodingClient()
    configure(CLIENT=exploding)
    response = sync_client().get("/")
    assert response.status_code == 200
    assert response.content.startswith(b"<html>anon=")
    assert "ajs_anonymous_id" not in response.cookies
    assert exploding.calls == 1


# --------------------------------------------------------------------------- async stack


def test_middleware_is_async_capable_and_marked() -> None:
    async def get_response(request: Any) -> HttpResponse:
        return HttpResponse("<p>a</p>")

    with override_settings(SEGMENT_LITE={}):
        async_mw = SegmentPageviewMiddleware(get_response, client=RecordingClient())
        sync_mw = SegmentPageviewMiddleware(
            lambda request: HttpResponse("<p>s</p>"), client=RecordingClient()
        )
    assert SegmentPageviewMiddleware.sync_capable and SegmentPageviewMiddleware.async_capable
    assert iscoroutinefunction(async_mw)
    assert not iscoroutinefunction(sync_mw)


def test_direct_async_call(recorder: RecordingClient) -> None:
    async def get_response(request: Any) -> HttpResponse:
        return HttpResponse("<p>a</p>")

    middleware = SegmentPageviewMiddleware(get_response, config=None, client=recorder, track_user=False)
    factory = AsyncRequestFactory()
    factory.cookies["ajs_anonymous_id"] = "d1"
    request = factory.get("/direct", headers={"user-agent": BROWSER_UA})
    response = asyncio.run(middleware(request))
    assert response.content == b"<p>a</p>"
    assert [wire(m) for m in recorder.messages] == [page_message(anonymous_id="d1", path="/direct")]
    # and the sync form of the same middleware, called with a sync request
    sync_mw = SegmentPageviewMiddleware(lambda r: HttpResponse("<p>s</p>"), client=recorder, track_user=False)
    sync_mw(RequestFactory().get("/sync", HTTP_USER_AGENT=BROWSER_UA, HTTP_COOKIE="ajs_anonymous_id=d1"))
    assert wire(recorder.messages[1]) == page_message(anonymous_id="d1", path="/sync")


@pytest.fixture
def acall_counter(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record each time the middleware's async entry point runs."""
    calls: list[str] = []
    original = SegmentPageviewMiddleware.__acall__

    async def counting(self: SegmentPageviewMiddleware, request: Any) -> Any:
        calls.append(request.path)
        return await original(self, request)

    monkeypatch.setattr(SegmentPageviewMiddleware, "__acall__", counting)
    return calls


def test_async_stack_with_async_view(
    configure: Callable[..., None], recorder: RecordingClient, acall_counter: list[str]
) -> None:
    configure()
    response = async_get("/async/", headers={"referer": "https://example.org/"})
    [message] = recorder.messages
    anonymous_id = message["anonymousId"]
    assert response.status_code == 200
    assert response.content == f"<html>async anon={anonymous_id}</html>".encode()
    assert wire(message) == page_message(
        anonymous_id=anonymous_id, path="/async/", referrer="https://example.org/"
    )
    assert_cookie(response, anonymous_id)
    assert acall_counter == ["/async/"]  # the middleware ran natively async, not adapted


def test_sync_client_does_not_use_async_path(
    configure: Callable[..., None], recorder: RecordingClient, acall_counter: list[str]
) -> None:
    configure()
    sync_client().get("/")
    assert acall_counter == []
    assert len(recorder.messages) == 1


def test_logged_in_user_becomes_user_id_async(
    configure: Callable[..., None], recorder: RecordingClient, database: None
) -> None:
    configure()
    user = get_user_model().objects.create_user(username="async-user", password="x")
    async_get("/async/", login=user)
    assert recorder.messages[0]["userId"] == str(user.pk)


def test_async_skipped_and_error(configure: Callable[..., None], recorder: RecordingClient) -> None:
    configure()
    assert async_get("/api/").status_code == 200
    assert async_get("/missing/").status_code == 404
    assert recorder.messages == []

    exploding = ExplodingClient()
    configure(CLIENT=exploding)
    response = async_get("/async/", cookies={"ajs_anonymous_id": "z"})
    assert response.status_code == 200
    assert response.content == b"<html>async anon=z</html>"
    assert exploding.calls == 1


def test_module_exposes_settings_name() -> None:
    assert django_integration.SETTINGS_NAME == "SEGMENT_LITE"


# --------------------------------------------------------------------------- request context


@pytest.fixture
def default_is_recorder(recorder: RecordingClient, monkeypatch: pytest.MonkeyPatch) -> RecordingClient:
    """Views call the module functions; the recorder is the default client they reach."""
    monkeypatch.setattr(segment_lite, "default_client", recorder)
    return recorder


def _request_fields(message: dict[str, Any]) -> tuple[Any, ...]:
    context = message["context"]
    return (message["anonymousId"], context.get("ip"), context.get("userAgent"), context.get("page"))


def test_a_views_track_shares_the_pageviews_request_context(
    configure: Callable[..., None], default_is_recorder: RecordingClient
) -> None:
    configure()
    client = sync_client()
    client.cookies["ajs_anonymous_id"] = "visitor-1"
    client.get("/order/?utm_source=mail", HTTP_ACCEPT_LANGUAGE="de-DE", HTTP_REFERER="https://example.org/")
    track, page_call = default_is_recorder.messages
    assert (track["type"], page_call["type"]) == ("track", "page")
    assert track["anonymousId"] == page_call["anonymousId"] == "visitor-1"
    assert _request_fields(track) == _request_fields(page_call)
    assert track["context"]["ip"] == "127.0.0.1" and track["context"]["userAgent"] == BROWSER_UA
    assert track["context"]["campaign"] == {"source": "mail"}
    assert track["context"]["locale"] == "de-DE"
    assert track["context"]["page"]["referrer"] == "https://example.org/"
    assert track["properties"] == {"total": 42}
    assert track["userId"] is None  # context_user_id is off by default
    assert segment_lite.scope.active() is None


def test_a_new_visitors_track_and_pageview_share_the_minted_anonymous_id(
    configure: Callable[..., None], default_is_recorder: RecordingClient
) -> None:
    configure()
    response = sync_client().get("/order/")
    track, page_call = default_is_recorder.messages
    assert UUID4_RE.match(track["anonymousId"])
    assert track["anonymousId"] == page_call["anonymousId"] == response.cookies["ajs_anonymous_id"].value


def test_the_views_explicit_arguments_win_over_the_request_context(
    configure: Callable[..., None], default_is_recorder: RecordingClient
) -> None:
    configure()
    client = sync_client()
    client.cookies["ajs_anonymous_id"] = "visitor-1"
    client.get("/explicit-order/")
    track, page_call = default_is_recorder.messages
    assert track["userId"] == "explicit-user" and track["anonymousId"] == "explicit-anon"
    assert track["context"]["ip"] == "198.51.100.7"
    assert (
        track["context"]["userAgent"] == BROWSER_UA
    )  # what the view did not set still comes from the request
    assert page_call["anonymousId"] == "visitor-1" and page_call["context"]["ip"] == "127.0.0.1"


def test_async_stack_view_track_shares_the_request_context(
    configure: Callable[..., None], default_is_recorder: RecordingClient
) -> None:
    configure()
    async_get("/async-order/", cookies={"ajs_anonymous_id": "visitor-async"})
    track, page_call = default_is_recorder.messages
    assert track["anonymousId"] == page_call["anonymousId"] == "visitor-async"
    assert _request_fields(track) == _request_fields(page_call)


def test_context_user_id_puts_the_logged_in_user_in_the_context(
    configure: Callable[..., None], default_is_recorder: RecordingClient, database: None
) -> None:
    user = get_user_model().objects.create_user(username="context-user", password="x")
    configure()
    client = sync_client()
    client.force_login(user)
    client.get("/order/")
    assert default_is_recorder.messages[0]["userId"] is None
    default_is_recorder.clear()
    configure(CONTEXT_USER_ID=True)
    client = sync_client()  # a test client loads the middleware once
    client.force_login(user)
    client.get("/order/")
    assert default_is_recorder.messages[0]["userId"] == str(user.pk)
    default_is_recorder.clear()
    async_get("/async-order/", login=user)
    assert default_is_recorder.messages[0]["userId"] == str(user.pk)


def test_request_context_off(configure: Callable[..., None], default_is_recorder: RecordingClient) -> None:
    configure(REQUEST_CONTEXT=False)
    client = sync_client()
    client.cookies["ajs_anonymous_id"] = "visitor-1"
    with pytest.raises(segment_lite.ValidationError, match="user_id or anonymous_id"):
        client.get("/order/")


def test_consent_from_the_onetrust_cookie_reaches_the_views_track_and_the_pageview(
    configure: Callable[..., None], default_is_recorder: RecordingClient
) -> None:
    configure(CONSENT="tests_consent_reader.read_onetrust")
    client = sync_client()
    client.cookies["OptanonConsent"] = "isGpcEnabled=0&groups=C0001%3A1%2CC0002%3A0&AwaitingReconsent=false"
    client.get("/order/")
    expected = {"consent": {"categoryPreferences": {"Necessary": True, "Analytics": False}}}
    assert [m["context"]["consent"] for m in default_is_recorder.messages] == [expected["consent"]] * 2
