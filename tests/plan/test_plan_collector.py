"""The collector with a plan: violations recorded on each stored event, in `events`, and in the debugger page."""

from __future__ import annotations

import json
import os
import re
import selectors
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from plan_helpers import shop_plan

import segment_lite
from segment_lite.cli import main
from segment_lite.collector import Collector
from segment_lite.plan import PlanAnnotator, dump_plan, parse_plan

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"


def plan_file(tmp_path: Path) -> str:
    path = tmp_path / "shop.yaml"
    path.write_text(dump_plan(parse_plan(shop_plan())))
    return str(path)


def track(message_id: str, event: str = "Order Completed", **properties: Any) -> dict[str, Any]:
    return {"type": "track", "userId": "u", "event": event, "messageId": message_id, "properties": properties}


GOOD = {"order_id": "o-1", "total": 10.0}
BATCH = [
    track("good", **GOOD),
    track("bad", order_id=7, total="10"),
    track("unplanned", event="Cart Abandoned"),
    {"type": "identify", "userId": "u", "messageId": "ident", "traits": {"email": "not an email"}},
]


def stored_violations(collector: Collector) -> dict[str, list[dict[str, Any]]]:
    result = {}
    for message in collector.store.messages():
        protocols = message.get("context", {}).get("protocols", {})
        result[message["messageId"]] = protocols.get("violations", [])
    return result


def test_annotator_records_each_events_violations(tmp_path: Path) -> None:
    stale_tag = {"protocols": {"violations": [{"path": "x", "message": "old"}], "sourceId": "s"}}
    batch = [*BATCH, dict(track("was-tagged", **GOOD), context=stale_tag)]
    with Collector(annotators=[PlanAnnotator(plan_file(tmp_path))]) as collector:
        assert requests.post(collector.url + "/v1/batch", json={"batch": batch}, timeout=5).status_code == 200
        found = stored_violations(collector)
        by_id = {m["messageId"]: m for m in collector.store.messages()}
    assert found["good"] == []
    assert "context" not in by_id["good"] or "protocols" not in by_id["good"]["context"]
    assert [(v["path"], v["keyword"], v["value"]) for v in found["bad"]] == [
        ("properties.order_id", "type", 7),
        ("properties.total", "type", "10"),
    ]
    assert found["bad"][0]["rule"] == 'TRACK "Order Completed" v1'
    assert [v["keyword"] for v in found["unplanned"]] == ["unplanned"]
    assert [(v["path"], v["rule"]) for v in found["ident"]] == [("traits.email", "IDENTIFY v1")]
    assert found["was-tagged"] == [], "the collector's verdict replaces what the message arrived with"
    assert by_id["was-tagged"]["context"]["protocols"] == {"sourceId": "s"}


def test_a_clients_tags_are_shown_without_a_plan(tmp_path: Path) -> None:
    with Collector() as collector:
        client = segment_lite.Client("k", host=collector.url, tracking_plan=shop_plan(), tag_violations=True)
        client.track("u", "Order Completed", {"order_id": "o", "total": "1"})
        assert client.flush(timeout=10)
        client.shutdown(timeout=5)
        (event,) = collector.store.query(limit=None)
    assert event.summary()["violations"] == 1
    assert event.violations[0]["path"] == "properties.total"


def read_line(stream: Any, timeout: float = 20.0) -> str:
    selector = selectors.DefaultSelector()
    selector.register(stream, selectors.EVENT_READ)
    try:
        assert selector.select(timeout), "the subprocess printed nothing in time"
        return str(stream.readline().decode())
    finally:
        selector.close()


@pytest.fixture
def serve_with_plan(tmp_path: Path) -> Iterator[Any]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(*flags: str) -> tuple[subprocess.Popen[bytes], str]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "segment_lite.cli", "serve", "--port", "0", *flags],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1"),
            bufsize=0,
        )
        procs.append(proc)
        return proc, read_line(proc.stdout)

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_serve_plan_then_events_shows_and_filters_violations(
    serve_with_plan: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "events.db")
    proc, first = serve_with_plan("--db", db, "--plan", plan_file(tmp_path), "--quiet")
    url = re.search(r"listening on (http://127\.0\.0\.1:\d+)", first)
    assert url, first
    assert requests.post(url.group(1) + "/v1/batch", json={"batch": BATCH}, timeout=5).status_code == 200
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=10)
    assert proc.stdout is not None
    assert "checking events against the tracking plan" in proc.stdout.read().decode()

    assert main(["events", "--db", db]) == 0
    out = capsys.readouterr().out
    rows = out.splitlines()
    bad = next(i for i, line in enumerate(rows) if line.rstrip().endswith("bad"))
    assert (
        rows[bad + 1] == "    ! properties.order_id: 7 is not of type 'string' [TRACK \"Order Completed\" v1]"
    )
    assert rows[bad + 2].startswith("    ! properties.total: '10' is not of type 'number'")
    good = next(i for i, line in enumerate(rows) if line.rstrip().endswith("good"))
    assert good == len(rows) - 1 or not rows[good + 1].startswith("    !")

    assert main(["events", "--db", db, "--violations", "--json"]) == 0
    shown = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [m["messageId"] for m in shown] == ["ident", "unplanned", "bad"]
    assert all(m["context"]["protocols"]["violations"] for m in shown)
    assert main(["events", "--db", db, "--violations", "--limit", "1"]) == 0
    out = capsys.readouterr().out
    assert "ident" in out and "(1 of 3 shown" in out
    assert main(["events", "--db", db, "--violations", "--event", "Nothing Like It"]) == 0
    assert "no events match" in capsys.readouterr().out


def test_serve_refuses_an_unusable_plan(serve_with_plan: Any, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("events:\n  A Happened: {properties: {x: strng}}\n")
    proc, _ = serve_with_plan("--ephemeral", "--plan", str(bad))
    proc.wait(timeout=20)
    assert proc.returncode == 1
    assert proc.stderr is not None
    err = proc.stderr.read().decode()
    assert "error: cannot use the plan" in err and "events.A Happened.properties.x" in err


@pytest.fixture
def page() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("playwright is not installed")
        pytest.skip("playwright is not installed")
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing")
        pytest.skip(f"{CHROMIUM} is missing")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            yield browser.new_page(locale="en-US")
        finally:
            browser.close()


@pytest.mark.browser
def test_debugger_page_shows_a_badge_and_the_problems(page: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    with Collector(annotators=[PlanAnnotator(plan_file(tmp_path))]) as collector:
        assert requests.post(collector.url + "/v1/batch", json={"batch": BATCH}, timeout=5).status_code == 200
        errors: list[str] = []
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        page.goto(collector.url + "/")
        rows = page.locator("#events .event-row")
        expect(rows).to_have_count(4)

        flagged = page.locator("#events .event-row.has-violations")
        expect(flagged).to_have_count(3)
        bad = page.locator('.event-row[data-message-id="bad"]')
        expect(bad.locator(".violations-badge")).to_have_text("\u26a0 2")
        expect(bad.locator(".violations-badge")).to_have_attribute("title", "2 tracking-plan violations")
        expect(page.locator('.event-row[data-message-id="good"] .violations-badge')).to_have_count(0)

        bad.click()
        box = page.locator("#detail-violations")
        expect(box).to_be_visible()
        expect(page.locator("#violations-title")).to_have_text("2 tracking-plan violations")
        items = page.locator("#violations-list li")
        expect(items).to_have_count(2)
        expect(items.nth(0).locator(".path")).to_have_text("properties.order_id")
        expect(items.nth(0).locator(".message")).to_have_text("7 is not of type 'string'")
        expect(items.nth(0).locator(".rule")).to_have_text('TRACK "Order Completed" v1')
        expect(items.nth(1).locator(".path")).to_have_text("properties.total")

        page.locator('.event-row[data-message-id="unplanned"]').click()
        expect(page.locator("#violations-title")).to_have_text("1 tracking-plan violation")
        expect(items.first.locator(".message")).to_have_text("'Cart Abandoned' is not in the plan")

        page.locator('.event-row[data-message-id="good"]').click()
        expect(page.locator("#detail-json")).to_have_attribute("data-message-id", "good")
        expect(box).to_be_hidden()

        # A violating event arriving later is flagged as it appears.
        late = track("late", total="x")
        assert requests.post(collector.url + "/v1/track", json=late, timeout=5).status_code == 200
        expect(rows).to_have_count(5, timeout=10_000)
        expect(rows.first).to_have_attribute("data-message-id", "late")
        expect(rows.first.locator(".violations-badge")).to_have_text("\u26a0 2")
        assert errors == []
