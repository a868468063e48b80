"""The audiences preview page in headless Chromium: sizes, sample members and a user's values, as text."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("duckdb")
pytest.importorskip("yaml")

import requests

from segment_lite.audiences import parse_definitions
from segment_lite.audiences.preview import PreviewServer
from segment_lite.collector import EventStore

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
NOW = "2024-06-01T00:00:00Z"
DEFINITIONS = """\
traits:
  - {name: sessions, kind: count, event: Session Started}
  - {name: last_session_at, kind: last_time, event: Session Started}
audiences:
  - name: Regulars
    where: {trait: sessions, op: ">=", value: 2}
"""
HOSTILE = "<img src=x onerror=alert(1)>"


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):  # CI installs both: there a missing browser is a failure
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


def _store(path: Path) -> str:
    messages = []
    for n, (user, day) in enumerate([("u1", 1), ("u1", 2), (HOSTILE, 3), (HOSTILE, 4), ("u2", 5)]):
        messages.append(
            {
                "type": "track",
                "userId": user,
                "event": "Session Started",
                "timestamp": f"2024-05-0{day}T10:00:00.000Z",
                "messageId": f"m{n}",
                "receivedAt": "2024-05-31T00:00:00.000Z",
            }
        )
    with EventStore(str(path)) as store:
        store.insert_many(messages)
    return str(path)


def test_preview_page_shows_sizes_members_and_values(page: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    db = _store(tmp_path / "collected.db")
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("dialog", lambda dialog: errors.append("dialog: " + dialog.message))
    with PreviewServer(parse_definitions(DEFINITIONS), db, now=NOW) as server:
        page.goto(server.url + "/")
        expect(page.locator("#summary")).to_contain_text("3 users at 2024-06-01T00:00:00Z from 5 events")
        row = page.locator("tr.audience[data-key=regulars]")
        expect(row.locator(".size")).to_have_text("2")
        members = row.locator("button.member")
        expect(members).to_have_count(2)
        assert sorted(members.all_text_contents()) == sorted([HOSTILE, "u1"])
        row.locator("button.member", has_text=HOSTILE).click()
        expect(page.locator("#user-title")).to_have_text(HOSTILE)
        expect(page.locator("#values tr[data-key=last_session_at] td").nth(1)).to_have_text(
            '"2024-05-04T10:00:00.000Z"'
        )
        expect(page.locator("#values tr[data-key=regulars] td").nth(1)).to_have_text("true")
        page.fill("#user", "u2")
        page.click("#lookup button")
        expect(page.locator("#values tr[data-key=regulars] td").nth(1)).to_have_text("false")
        assert page.locator("img").count() == 0  # the hostile userId stayed text
        # a page served under another Host name (DNS rebinding) gets nothing
        answer = requests.get(server.url + "/api/preview", headers={"Host": "evil.example"}, timeout=10)
        assert answer.status_code == 403
    assert errors == []
