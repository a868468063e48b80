"""The debugger page end to end in headless Chromium: list, filters, detail JSON and live updates."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
from collector_helpers import post

from segment_lite.collector import Collector

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _unavailable(reason: str) -> None:
    # CI installs both, so there a missing browser is a failure, not a skip.
    if os.environ.get("CI"):
        pytest.fail(f"browser test cannot run in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture
def page() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is not installed (pip install playwright)")
    if not os.path.exists(CHROMIUM):
        _unavailable(f"{CHROMIUM} is missing (apt-get install chromium)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser.new_page(locale="en-US")
        finally:
            browser.close()


def test_debugger_page_lists_filters_shows_json_and_follows_live(page: Any) -> None:
    from playwright.sync_api import expect

    with Collector() as collector:
        order = {
            "type": "track",
            "userId": "user-1",
            "event": "Order Completed",
            "messageId": "order-1",
            "properties": {"order_id": "ord-77", "total": 12.5, "note": "<b>not html</b>"},
        }
        batch = [
            {"type": "identify", "userId": "user-2", "messageId": "ident-1", "traits": {"plan": "pro"}},
            {"type": "page", "anonymousId": "anon-1", "name": "Home", "messageId": "page-1"},
            order,
        ]
        assert post(collector, "/v1/batch", {"batch": batch}).status_code == 200

        requested: list[str] = []
        console_errors: list[str] = []
        page.on("request", lambda request: requested.append(request.url))

        def on_console(msg: Any) -> None:
            if msg.type == "error":
                console_errors.append(msg.text)

        page.on("console", on_console)
        page.goto(collector.url + "/")
        rows = page.locator("#events .event-row")
        expect(rows).to_have_count(3)
        # Newest first.
        assert rows.evaluate_all("rs => rs.map(r => r.dataset.messageId)") == ["order-1", "page-1", "ident-1"]
        page.evaluate("window.__sameDocument = true")

        # Filters narrow the list.
        page.select_option("#filter-type", "track")
        expect(rows).to_have_count(1)
        expect(rows.first).to_have_attribute("data-message-id", "order-1")
        page.click("#clear-filters")
        expect(rows).to_have_count(3)
        page.fill("#filter-user", "anon-1")
        expect(rows).to_have_count(1)
        expect(rows.first).to_have_attribute("data-message-id", "page-1")
        page.fill("#filter-user", "")
        page.fill("#filter-event", "Order Completed")
        expect(rows).to_have_count(1)
        page.click("#clear-filters")
        expect(rows).to_have_count(3)

        # Clicking an event shows its full JSON, exactly as stored.
        page.click('.event-row[data-message-id="order-1"]')
        detail = page.locator("#detail-json")
        expect(detail).to_have_attribute("data-message-id", "order-1")
        shown = json.loads(detail.inner_text())
        (stored,) = [m for m in collector.messages() if m["messageId"] == "order-1"]
        assert shown == stored
        assert shown["properties"]["note"] == "<b>not html</b>"  # rendered as text
        assert page.locator("#detail-json b").count() == 0

        # A new event appears without a reload, on top.
        assert post(
            collector, "/v1/track", {"userId": "user-3", "event": "Live One", "messageId": "live-1"}
        ).ok
        expect(rows).to_have_count(4, timeout=10_000)
        expect(rows.first).to_have_attribute("data-message-id", "live-1")
        expect(rows.first).to_contain_text("Live One")
        assert page.evaluate("window.__sameDocument") is True

        # The page only ever talks to the collector itself.
        assert requested and all(url.startswith(collector.url + "/") for url in requested), requested
        assert console_errors == []
        # Debugger traffic is not recorded as Tracking API requests.
        assert [r.path for r in collector.requests] == ["/v1/batch", "/v1/track"]


def test_debugger_page_says_loading_then_no_events_yet(page: Any) -> None:
    from playwright.sync_api import expect

    held: list[Any] = []
    with Collector() as collector:
        # Hold the first listing request, to see the page before any answer arrives.
        page.route("**/api/events?*", lambda route: route.continue_() if held else held.append(route))
        page.goto(collector.url + "/")
        empty = page.locator("#empty")
        expect(empty).to_be_visible()
        expect(empty).to_have_text("Loading events…")
        for _ in range(200):  # let the route handler see the page's first request (up to 10 s)
            if held:
                break
            page.wait_for_timeout(50)
        assert held, "the page did not ask for events"
        expect(empty).to_have_text("Loading events…")  # still, while the answer is held
        held[0].continue_()
        expect(empty).to_contain_text("No events yet")


def test_debugger_page_counts_with_separators_and_names_pages_by_path(page: Any) -> None:
    from playwright.sync_api import expect

    with Collector() as collector:
        filler = [
            {
                "type": "track",
                "userId": "u",
                "event": "E",
                "messageId": f"m{n}",
                "receivedAt": "2024-01-01T00:00:00.000Z",
            }
            for n in range(1233)
        ]
        collector.store.insert_many(filler)
        page_call = {
            "type": "page",
            "anonymousId": "a",
            "messageId": "p-1",
            "properties": {"path": "/pricing"},
        }
        assert post(collector, "/v1/batch", {"batch": [page_call]}).status_code == 200
        page.goto(collector.url + "/")
        expect(page.locator("#counts")).to_have_text("1,234 stored")
        first = page.locator("#events .event-row").first
        expect(first).to_have_attribute("data-message-id", "p-1")
        expect(first.locator(".title")).to_have_text("/pricing")


def test_debugger_detail_shows_an_events_page_campaign_consent_and_visitor(page: Any) -> None:
    from playwright.sync_api import expect

    with Collector() as collector:
        order = {
            "type": "track",
            "anonymousId": "anon-7",
            "event": "Order Completed",
            "messageId": "ctx-1",
            "context": {
                "ip": "203.0.113.9",
                "userAgent": "Mozilla/5.0 <script>alert(1)</script>",
                "locale": "fr-CH",
                "page": {"url": "https://shop.example/checkout?utm_source=mail", "path": "/checkout"},
                "campaign": {"source": "mail", "name": "launch"},
                "consent": {"categoryPreferences": {"Analytics": True, "Advertising": False}},
            },
        }
        bare = {"type": "track", "userId": "u", "event": "Bare", "messageId": "bare-1"}
        assert post(collector, "/v1/batch", {"batch": [bare, order]}).status_code == 200
        page.goto(collector.url + "/")
        page.locator('#events .event-row[data-message-id="ctx-1"]').click()
        box = page.locator("#detail-context")
        expect(box).to_be_visible()
        expect(page.locator("#context-page dd")).to_have_text(
            ["https://shop.example/checkout?utm_source=mail", "/checkout"]
        )
        expect(page.locator("#context-campaign dd")).to_have_text(["mail", "launch"])
        expect(page.locator("#context-consent li.granted .category")).to_have_text(["Analytics"])
        expect(page.locator("#context-consent li.refused .category")).to_have_text(["Advertising"])
        expect(page.locator("#context-client dd")).to_have_text(
            ["203.0.113.9", "Mozilla/5.0 <script>alert(1)</script>", "fr-CH"]  # shown as text, never markup
        )
        # An event without any of it shows no empty boxes.
        page.locator('#events .event-row[data-message-id="bare-1"]').click()
        expect(page.locator("#detail-title")).to_have_text("Bare")
        expect(box).to_be_hidden()
