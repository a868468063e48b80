"""Tests of the framework-free pageview logic: ids, cookies, IPs, campaigns, filters, errors."""

from __future__ import annotations

import ipaddress
import logging
import re
import subprocess
import sys
import textwrap
from typing import Any, Optional

import pytest
from integration_helpers import (
    BROWSER_UA,
    UUID4_RE,
    ExplodingClient,
    page_message,
    wire,
)

import segment_lite
from segment_lite.errors import ValidationError
from segment_lite.integrations import (
    PageviewConfig,
    PageviewTracker,
    RequestInfo,
    anonymous_id_cookie_header,
    client_ip,
    decode_ajs_cookie,
    parse_cookie_header,
)
from segment_lite.testing import RecordingClient, recording


def make_info(
    path: str = "/",
    *,
    method: str = "GET",
    query: str = "",
    headers: Optional[dict[str, str]] = None,
    cookies: Optional[dict[str, str]] = None,
    remote_addr: Optional[str] = "127.0.0.1",
    host: str = "testserver",
    scheme: str = "http",
) -> RequestInfo:
    all_headers = {"user-agent": BROWSER_UA}
    all_headers.update(headers or {})
    return RequestInfo(
        method=method,
        scheme=scheme,
        host=host,
        path=path,
        query_string=query,
        headers=all_headers,
        cookies=cookies or {},
        remote_addr=remote_addr,
    )


def run(
    tracker: PageviewTracker,
    info: RequestInfo,
    status: int = 200,
    content_type: Optional[str] = "text/html; charset=utf-8",
    **kwargs: Any,
) -> Optional[str]:
    return tracker.finish(tracker.begin(info), status, content_type, **kwargs)


# --------------------------------------------------------------------------- cookies and ids


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("abc-123", "abc-123"),  # analytics.js 2.x: raw
        ("%22abc-123%22", "abc-123"),  # analytics.js 1.x: JSON string, URL-encoded
        ('"abc-123"', "abc-123"),  # JSON string, not encoded
        ("%22user%40example.com%22", "user@example.com"),
        ("user%40example.com", "user@example.com"),
        ("%22with%20%5C%22quote%5C%22%22", 'with "quote"'),
        ("12345", "12345"),  # a numeric id, either format
        ("", None),
        ("%22%22", None),
        ("null", None),
        ("undefined", None),
        (None, None),
    ],
)
def test_decode_ajs_cookie_accepts_both_analytics_js_formats(
    raw: Optional[str], expected: Optional[str]
) -> None:
    assert decode_ajs_cookie(raw) == expected


def test_parse_cookie_header_keeps_first_and_tolerates_garbage() -> None:
    header = 'a=1; ajs_anonymous_id=%22x%22; junk; b="quoted"; a=2; =empty; c='
    assert parse_cookie_header(header) == {"a": "1", "ajs_anonymous_id": "%22x%22", "b": "quoted", "c": ""}
    assert parse_cookie_header(None) == {}
    assert parse_cookie_header("") == {}


def test_anonymous_id_cookie_header_all_attributes() -> None:
    config = PageviewConfig()
    assert (
        anonymous_id_cookie_header("id-1", config)
        == "ajs_anonymous_id=id-1; Path=/; Max-Age=31536000; SameSite=Lax"
    )
    custom = config.replace(
        cookie_domain=".example.com",
        cookie_secure=True,
        cookie_samesite="None",
        cookie_max_age=60,
        cookie_path="/app",
    )
    assert (
        anonymous_id_cookie_header("id-1", custom)
        == "ajs_anonymous_id=id-1; Path=/app; Max-Age=60; Domain=.example.com; SameSite=None; Secure"
    )
    assert "SameSite" not in anonymous_id_cookie_header("id-1", config.replace(cookie_samesite=None))


# --------------------------------------------------------------------------- client IP


NETS = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "192.168.1.1/32", "fd00::/8"))


@pytest.mark.parametrize(
    ("peer", "xff", "expected"),
    [
        ("203.0.113.9", "1.1.1.1", "203.0.113.9"),  # untrusted peer: header ignored
        ("10.0.0.2", "1.1.1.1", "1.1.1.1"),  # trusted peer: client is the hop it reports
        ("10.0.0.2", "6.6.6.6, 1.1.1.1", "1.1.1.1"),  # spoofed left part is not believed
        ("10.0.0.2", "6.6.6.6, 1.1.1.1, 10.0.0.7, 192.168.1.1", "1.1.1.1"),  # walk past trusted hops
        ("10.0.0.2", "10.0.0.9, 10.0.0.8", "10.0.0.9"),  # all trusted: leftmost
        ("10.0.0.2", "", "10.0.0.2"),  # no header
        ("10.0.0.2", None, "10.0.0.2"),
        ("10.0.0.2", "garbage, 10.0.0.8", "10.0.0.8"),  # unparseable hop stops the walk
        ("10.0.0.2", "1.1.1.1:4567", "1.1.1.1"),  # port stripped
        ("10.0.0.2", "[2001:db8::1]:443", "2001:db8::1"),
        ("fd00::5", "2001:db8::2", "2001:db8::2"),  # IPv6 proxy
        ("::ffff:10.0.0.2", "1.1.1.1", "1.1.1.1"),  # IPv4-mapped peer
        (None, "1.1.1.1", None),
    ],
)
def test_client_ip_walks_forwarded_for_right_to_left(
    peer: Optional[str], xff: Optional[str], expected: Optional[str]
) -> None:
    assert client_ip(peer, xff, NETS) == expected


def test_client_ip_without_trusted_proxies_ignores_header() -> None:
    assert client_ip("10.0.0.2", "1.1.1.1", ()) == "10.0.0.2"


def test_trusted_proxy_also_supplies_scheme_and_host(recorder: RecordingClient) -> None:
    tracker = PageviewTracker(PageviewConfig(trusted_proxies=["10.0.0.0/8"]), recorder)
    headers = {
        "x-forwarded-for": "6.6.6.6, 198.51.100.7",
        "x-forwarded-proto": "https",
        "x-forwarded-host": "www.example.com",
    }
    run(tracker, make_info("/a", headers=headers, remote_addr="10.1.2.3", host="backend:8000"))
    run(tracker, make_info("/b", headers=headers, remote_addr="203.0.113.5", host="backend:8000"))
    first, second = (wire(m) for m in recorder.messages)
    anon1, anon2 = first["anonymousId"], second["anonymousId"]
    assert first == page_message(
        anonymous_id=anon1, host="www.example.com", scheme="https", path="/a", ip="198.51.100.7"
    )
    assert second == page_message(anonymous_id=anon2, host="backend:8000", path="/b", ip="203.0.113.5")


def test_invalid_trusted_proxy_is_rejected_at_startup() -> None:
    with pytest.raises(ValueError):
        PageviewTracker(PageviewConfig(trusted_proxies=["not-an-ip"]))


# --------------------------------------------------------------------------- message content


def test_full_message_with_utm_locale_referrer_title_and_cookies(recorder: RecordingClient) -> None:
    config = PageviewConfig(
        title=lambda info: "Pricing",
        name=lambda info: "pricing",
        category=lambda info: "marketing",
        properties=lambda info: {"plan": "pro"},
        context=lambda info: {"app": {"name": "web"}},
    )
    tracker = PageviewTracker(config, recorder)
    query = (
        "utm_source=news&utm_medium=email&utm_campaign=spring&utm_term=shoes&utm_content=hero"
        "&utm_custom=x&UTM_Extra=y&utm_=ignored&other=1&utm_source=second"
    )
    info = make_info(
        "/pricing",
        query=query,
        headers={"referer": "https://ref.example/", "accept-language": "fr-CA,fr;q=0.9,en;q=0.8"},
        cookies={"ajs_anonymous_id": "%22anon-1%22", "ajs_user_id": "user-9"},
    )
    cookie = run(tracker, info)
    assert cookie is None  # the visitor already has an anonymous id
    [message] = recorder.messages
    assert wire(message) == page_message(
        anonymous_id="anon-1",
        user_id="user-9",
        path="/pricing",
        search=f"?{query}",
        referrer="https://ref.example/",
        title="Pricing",
        locale="fr-CA",
        name="pricing",
        category="marketing",
        campaign={
            "source": "news",
            "medium": "email",
            "name": "spring",
            "term": "shoes",
            "content": "hero",
            "custom": "x",
            "extra": "y",
        },
        extra_properties={"plan": "pro"},
        extra_context={"app": {"name": "web"}},
    )


@pytest.mark.parametrize(
    ("accept_language", "locale"),
    [("de", "de"), ("*;q=0.5, pt-BR", "pt-BR"), ("en-US;q=0.8", "en-US"), ("", None), ("*", None)],
)
def test_locale_is_first_accept_language_tag(
    recorder: RecordingClient, accept_language: str, locale: Optional[str]
) -> None:
    tracker = PageviewTracker(client=recorder)
    run(tracker, make_info(headers={"accept-language": accept_language}, cookies={"ajs_anonymous_id": "a"}))
    assert wire(recorder.messages[0]) == page_message(anonymous_id="a", locale=locale)


def test_new_visitor_gets_uuid4_and_cookie(recorder: RecordingClient) -> None:
    tracker = PageviewTracker(client=recorder)
    cookie = run(tracker, make_info())
    [message] = recorder.messages
    anonymous_id = message["anonymousId"]
    assert UUID4_RE.match(anonymous_id)
    assert cookie == f"ajs_anonymous_id={anonymous_id}; Path=/; Max-Age=31536000; SameSite=Lax"


def test_no_cookie_when_disabled_or_response_sets_one(recorder: RecordingClient) -> None:
    tracker = PageviewTracker(PageviewConfig(set_anonymous_id_cookie=False), recorder)
    assert run(tracker, make_info()) is None
    tracker = PageviewTracker(client=recorder)
    assert run(tracker, make_info(), response_sets_anonymous_id=True) is None
    assert len(recorder.messages) == 2


def test_user_id_precedence(recorder: RecordingClient) -> None:
    cookies = {"ajs_anonymous_id": "a", "ajs_user_id": "%22from-cookie%22"}
    # the cookie alone
    run(PageviewTracker(client=recorder), make_info(cookies=cookies))
    # the adapter's logged-in user wins over the cookie
    run(PageviewTracker(client=recorder), make_info(cookies=cookies), user_id="from-adapter")
    # the configured callable wins over both; an int becomes a string
    run(
        PageviewTracker(PageviewConfig(user_id=lambda info: 42), recorder),
        make_info(cookies=cookies),
        user_id="x",
    )
    # cookie reading can be turned off
    run(PageviewTracker(PageviewConfig(user_id_from_cookie=False), recorder), make_info(cookies=cookies))
    assert [m.get("userId") for m in recorder.messages] == ["from-cookie", "from-adapter", "42", None]


def test_capture_ip_off_and_integrations(recorder: RecordingClient) -> None:
    config = PageviewConfig(capture_ip=False, integrations={"Amplitude": False})
    run(PageviewTracker(config, recorder), make_info(cookies={"ajs_anonymous_id": "a"}))
    expected = page_message(anonymous_id="a", ip=None)
    expected["integrations"] = {"Amplitude": False}
    assert wire(recorder.messages[0]) == expected


# --------------------------------------------------------------------------- filters


@pytest.mark.parametrize(
    ("info_kwargs", "status", "content_type", "reason"),
    [
        ({"method": "POST"}, 200, "text/html", "method"),
        ({"method": "HEAD"}, 200, "text/html", "method"),
        ({}, 404, "text/html", "status"),
        ({}, 302, "text/html", "status"),
        ({}, 500, "text/html", "status"),
        ({}, 200, "application/json", "content_type"),
        ({}, 200, None, "content_type"),
        ({"path": "/static/app.css"}, 200, "text/css", "excluded_path"),
        ({"path": "/img/logo.PNG"}, 200, "text/html", "static"),
        ({"path": "/favicon.ico"}, 200, "text/html", "static"),
        ({"path": "/healthz"}, 200, "text/html", "health_check"),
        ({"path": "/health/"}, 200, "text/html", "health_check"),
        ({"path": "/ready"}, 200, "text/html", "health_check"),
        ({"headers": {"user-agent": "Mozilla/5.0 (compatible; Googlebot/2.1)"}}, 200, "text/html", "bot"),
        ({"headers": {"user-agent": "curl/8.5.0"}}, 200, "text/html", "bot"),
        ({"headers": {"user-agent": "Mozilla/5.0 HeadlessChrome/120.0"}}, 200, "text/html", "bot"),
        ({"headers": {"user-agent": ""}}, 200, "text/html", "bot"),
        ({"headers": {"sec-fetch-mode": "cors"}}, 200, "text/html", "not_navigation"),
        ({"headers": {"x-requested-with": "XMLHttpRequest"}}, 200, "text/html", "not_navigation"),
        ({"headers": {"sec-purpose": "prefetch"}}, 200, "text/html", "not_navigation"),
        ({"headers": {"sec-fetch-mode": "navigate"}}, 200, "text/html", None),
        ({"path": "/cubot-phones"}, 200, "text/html", None),
        ({}, 200, "application/xhtml+xml", None),
        ({}, 201, "TEXT/HTML; charset=utf-8", None),
    ],
)
def test_skip_reasons(
    info_kwargs: dict[str, Any], status: int, content_type: Optional[str], reason: Optional[str]
) -> None:
    tracker = PageviewTracker()
    visit = tracker.begin(make_info(**info_kwargs))
    assert tracker.response_skip_reason(visit, status, content_type) == reason


@pytest.mark.parametrize(
    ("info_kwargs", "status", "content_type", "expected"),
    [
        (
            {"headers": {"user-agent": "curl/8.5.0"}},
            200,
            "text/html",
            "pageview skipped: GET '/': User-Agent 'curl/8.5.0' counts as a bot (bot_user_agents=None tracks it;"
            " browsers are tracked, curl and HTTP libraries are not)",
        ),
        (
            {"headers": {"user-agent": ""}},
            200,
            "text/html",
            "pageview skipped: GET '/': no User-Agent: counted as a bot (bot_user_agents=None tracks it)",
        ),
        (
            {"headers": {"sec-purpose": "prefetch;prerender"}},
            200,
            "text/html",
            "pageview skipped: GET '/': a prefetch or preview (Purpose 'prefetch;prerender'), not a page"
            " navigation (navigation_only=False tracks it)",
        ),
        (
            {"headers": {"sec-fetch-mode": "cors"}},
            200,
            "text/html",
            "pageview skipped: GET '/': Sec-Fetch-Mode 'cors', not a page navigation (navigation_only=False tracks it)",
        ),
        (
            {"path": "/static/app.css"},
            200,
            "text/css",
            "pageview skipped: GET '/static/app.css': the path is excluded (exclude_paths / exclude_patterns)",
        ),
        (
            {"path": "/healthz"},
            200,
            "text/html",
            "pageview skipped: GET '/healthz': the path is a health check (health_paths)",
        ),
        (
            {"path": "/logo.png"},
            200,
            "image/png",
            "pageview skipped: GET '/logo.png': the path ends in a static file extension (static_extensions)",
        ),
        (
            {"method": "POST"},
            200,
            "text/html",
            "pageview skipped: POST '/': method POST is not in methods ('GET',)",
        ),
        (
            {},
            404,
            "text/html",
            "pageview skipped: GET '/': status 404 is outside 200..299 (min_status / max_status)",
        ),
        (
            {},
            200,
            "application/json",
            "pageview skipped: GET '/': content type 'application/json' is not a page (content_types)",
        ),
        ({}, 200, "text/html", "pageview tracked: GET '/'"),
    ],
)
def test_debug_logs_why_a_request_was_skipped(
    caplog: pytest.LogCaptureFixture,
    recorder: RecordingClient,
    info_kwargs: dict[str, Any],
    status: int,
    content_type: Optional[str],
    expected: str,
) -> None:
    caplog.set_level(logging.DEBUG, logger="segment_lite.integrations")
    tracker = PageviewTracker(PageviewConfig(debug=True), client=recorder)
    run(tracker, make_info(**info_kwargs), status=status, content_type=content_type)
    assert [r.getMessage() for r in caplog.records if r.name == "segment_lite.integrations"] == [expected]


def test_debug_log_escapes_what_the_request_sent(
    caplog: pytest.LogCaptureFixture, recorder: RecordingClient
) -> None:
    caplog.set_level(logging.DEBUG, logger="segment_lite.integrations")
    tracker = PageviewTracker(PageviewConfig(debug=True), client=recorder)
    run(tracker, make_info("/a%0A", headers={"user-agent": "curl/1\nFAKE LOG LINE\x1b[31m"}))
    [line] = [r.getMessage() for r in caplog.records]
    assert "\n" not in line and "\x1b" not in line


def test_debug_option_makes_skip_reasons_visible_without_logging_setup() -> None:
    # A fresh interpreter with no logging configured: the debug option alone shows the reason on stderr.
    script = textwrap.dedent(
        """
        from segment_lite.integrations import PageviewConfig, PageviewTracker, RequestInfo
        from segment_lite.testing import RecordingClient

        tracker = PageviewTracker(PageviewConfig(debug=True), client=RecordingClient())
        info = RequestInfo("GET", "http", "localhost:8000", "/", headers={"user-agent": "curl/8.5.0"})
        tracker.finish(tracker.begin(info), 200, "text/html")
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "pageview skipped: GET '/': User-Agent 'curl/8.5.0' counts as a bot" in result.stderr


def test_without_debug_skips_are_not_logged(
    caplog: pytest.LogCaptureFixture, recorder: RecordingClient
) -> None:
    caplog.set_level(logging.INFO, logger="segment_lite.integrations")
    run(PageviewTracker(client=recorder), make_info(headers={"user-agent": "curl/8.5.0"}))
    assert caplog.records == []


def test_send_page_sends_the_page_call_and_track_is_its_deprecated_alias(recorder: RecordingClient) -> None:
    tracker = PageviewTracker(client=recorder)
    visit = tracker.begin(make_info(cookies={"ajs_anonymous_id": "anon-1"}))
    assert tracker.should_track(visit, 200, "text/html")
    assert tracker.send_page(visit) is None
    old = tracker.begin(make_info(cookies={"ajs_anonymous_id": "anon-2"}))
    assert tracker.should_track(old, 200, "text/html")
    with pytest.warns(DeprecationWarning, match=r"send_page\(\)"):
        assert tracker.track(old) is None
    assert [(m["type"], m["anonymousId"]) for m in recorder.messages] == [
        ("page", "anon-1"),
        ("page", "anon-2"),
    ]


def test_skipped_requests_send_nothing_and_count(recorder: RecordingClient) -> None:
    tracker = PageviewTracker(client=recorder)
    assert run(tracker, make_info(method="POST")) is None
    assert run(tracker, make_info(), status=404) is None
    assert recorder.messages == []
    assert tracker.stats() == {"tracked": 0, "skipped": 2, "errors": 0, "dropped": 0}


def test_custom_filters_and_should_track(recorder: RecordingClient) -> None:
    seen: list[tuple[str, int, Optional[str]]] = []

    def should_track(info: RequestInfo, status: int, content_type: Optional[str]) -> bool:
        seen.append((info.path, status, content_type))
        return info.path != "/private"

    config = PageviewConfig(
        exclude_paths=["/admin/"],
        exclude_patterns=[r"^/api(/|$)", r"\.php$"],
        methods=["get", "head"],
        bot_user_agents=None,
        should_track=should_track,
    )
    tracker = PageviewTracker(config, recorder)
    for path in ("/admin/users", "/api", "/api/x", "/index.php", "/private", "/ok"):
        run(tracker, make_info(path))
    run(tracker, make_info("/head", method="HEAD"))
    run(tracker, make_info("/bot", headers={"user-agent": "Googlebot"}))
    assert [m["properties"]["path"] for m in recorder.messages] == ["/ok", "/head", "/bot"]
    # should_track is consulted last, only for requests that passed every other check
    assert seen == [
        ("/private", 200, "text/html; charset=utf-8"),
        ("/ok", 200, "text/html; charset=utf-8"),
        ("/head", 200, "text/html; charset=utf-8"),
        ("/bot", 200, "text/html; charset=utf-8"),
    ]


def test_config_from_mapping_is_case_insensitive_and_strict() -> None:
    config = PageviewConfig.from_mapping({"TRUSTED_PROXIES": ["10.0.0.0/8"], "cookie_secure": True})
    assert config.trusted_proxies == ("10.0.0.0/8",)
    assert config.cookie_secure is True
    with pytest.raises(ValueError, match="COOKIE_SECRUE"):
        PageviewConfig.from_mapping({"COOKIE_SECRUE": True})
    with pytest.raises(TypeError):
        PageviewConfig(exclude_paths="/admin/")  # type: ignore[arg-type]


def test_an_unknown_option_is_a_validation_error_naming_it() -> None:
    with pytest.raises(ValidationError, match="COOKIE_SECRUE") as raised:
        PageviewConfig.from_mapping({"COOKIE_SECRUE": True})
    assert raised.value.path == "COOKIE_SECRUE"


def test_the_pageview_module_still_exports_the_names_moved_out_of_it() -> None:
    from segment_lite.integrations import pageview

    moved = {
        "DEFAULT_BOT_USER_AGENTS",
        "DEFAULT_CONTENT_TYPES",
        "DEFAULT_EXCLUDE_PATHS",
        "DEFAULT_HEALTH_PATHS",
    }
    moved |= {"DEFAULT_STATIC_EXTENSIONS", "PageviewConfig", "RequestInfo", "all_headers", "build_page_call"}
    moved |= {"client_ip", "decode_ajs_cookie", "first_header", "parse_cookie_header", "response_sets_cookie"}
    assert moved <= set(pageview.__all__)
    assert [name for name in pageview.__all__ if not hasattr(pageview, name)] == []


# --------------------------------------------------------------------------- errors and the default client


def test_errors_are_logged_counted_and_never_raised(caplog: pytest.LogCaptureFixture) -> None:
    client = ExplodingClient()
    tracker = PageviewTracker(client=client)
    with caplog.at_level(logging.ERROR, logger="segment_lite.integrations"):
        assert run(tracker, make_info()) is None
    assert client.calls == 1
    assert tracker.errors == 1
    assert tracker.tracked == 0
    [record] = caplog.records
    assert record.name == "segment_lite.integrations"
    assert record.exc_info is not None and "tracking exploded" in str(record.exc_info[1])


def test_broken_callables_are_contained(recorder: RecordingClient) -> None:
    def broken(*args: Any) -> Any:
        raise ValueError("bad callable")

    for option in ("title", "user_id", "properties", "should_track"):
        tracker = PageviewTracker(PageviewConfig(**{option: broken}), recorder)
        assert run(tracker, make_info()) is None
        assert tracker.errors == 1, option
    assert recorder.messages == []


def test_programmer_error_from_the_real_client_is_contained(recorder: RecordingClient) -> None:
    # properties that are not a mapping make Client.page raise; the tracker must absorb it
    tracker = PageviewTracker(PageviewConfig(properties=lambda info: {"bad": object()}), recorder)
    assert run(tracker, make_info()) is None
    assert tracker.errors == 1
    assert recorder.messages == []


def test_default_client_is_resolved_at_call_time() -> None:
    tracker = PageviewTracker()  # created before any default client exists
    with recording() as first:
        run(tracker, make_info("/one", cookies={"ajs_anonymous_id": "a"}))
    with recording() as second:
        run(tracker, make_info("/two", cookies={"ajs_anonymous_id": "a"}))
    assert [wire(m) for m in first.messages] == [page_message(anonymous_id="a", path="/one")]
    assert [wire(m) for m in second.messages] == [page_message(anonymous_id="a", path="/two")]
    assert segment_lite.default_client is None or segment_lite.default_client not in (first, second)


def test_dropped_when_client_refuses() -> None:
    class FullClient:
        def page(self, **kwargs: Any) -> tuple[bool, dict[str, Any]]:
            return False, {}  # what Client.page returns when its queue is full

    tracker = PageviewTracker(client=FullClient())
    run(tracker, make_info())
    assert tracker.stats() == {"tracked": 1, "skipped": 0, "errors": 0, "dropped": 1}


def test_importing_integrations_imports_no_framework() -> None:
    code = textwrap.dedent(
        """
        import sys
        import segment_lite, segment_lite.integrations, segment_lite.integrations.pageview
        import segment_lite.integrations.wsgi, segment_lite.integrations.asgi
        frameworks = {"django", "flask", "starlette", "fastapi", "celery", "werkzeug"}
        print(sorted(m for m in sys.modules if m.split(".")[0] in frameworks))
        """
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "[]"


def test_every_option_is_documented() -> None:
    import dataclasses
    import inspect
    from pathlib import Path

    from segment_lite.integrations.asgi import SegmentPageviewMiddleware

    docs = (Path(__file__).resolve().parents[2] / "docs" / "integrations.md").read_text(encoding="utf-8")
    asgi_options = [
        name
        for name, parameter in inspect.signature(SegmentPageviewMiddleware).parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    ]
    names = [f.name for f in dataclasses.fields(PageviewConfig)] + asgi_options
    assert [name for name in names if not re.search(rf"`{name}\b", docs)] == []
