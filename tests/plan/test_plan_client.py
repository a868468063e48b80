"""The client with a tracking plan: every on_violation and on_unplanned mode, tags, stats, settings."""

from __future__ import annotations

import datetime
import logging
from pathlib import Path
from typing import Any, Callable

import pytest
from plan_helpers import shop_plan

import segment_lite
from segment_lite.collector import Collector
from segment_lite.plan import PlanError, dump_plan, parse_plan

BAD_ORDER = {"order_id": "ord-1", "total": "27.5"}
GOOD_ORDER = {"order_id": "ord-1", "total": 27.5, "currency": "EUR"}
MakeClient = Callable[..., segment_lite.Client]
Reports = list[tuple[str, BaseException, list[Any]]]


@pytest.fixture
def plan() -> dict[str, Any]:
    return shop_plan()


@pytest.fixture
def reports() -> Reports:
    return []


def delivered(collector: Collector, client: segment_lite.Client, n: int) -> list[dict[str, Any]]:
    assert client.flush(timeout=10)
    if n:
        assert collector.wait_for_messages(n, timeout=5)
    return collector.store.messages()


def plan_counts(client: segment_lite.Client) -> dict[str, int]:
    stats = client.stats()
    return {
        "plan_violation_sent": stats["warnings"]["plan_violation_sent"],
        "unplanned_sent": stats["warnings"]["unplanned_sent"],
        "plan_violation": stats["dropped"]["plan_violation"],
        "unplanned": stats["dropped"]["unplanned"],
    }


def plan_logs(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "tracking plan" in r.getMessage()]


def test_valid_events_pass_untouched(
    make_client: MakeClient, collector: Collector, plan: dict[str, Any]
) -> None:
    client = make_client(tracking_plan=plan, on_violation="raise", on_unplanned="drop", tag_violations=True)
    placed = datetime.datetime(2024, 5, 1, tzinfo=datetime.timezone.utc)
    assert client.track("u", "Order Completed", dict(GOOD_ORDER, placed_at=placed))[0]
    assert client.identify("u", {"email": "ada@example.com"})[0]
    assert client.alias("anon", "u")[0]
    order, _, _ = delivered(collector, client, 3)
    assert "protocols" not in order["context"]
    assert set(plan_counts(client).values()) == {0}
    assert client.stats()["dropped_total"] == 0


def test_send_counts_reports_and_sends(
    make_client: MakeClient,
    collector: Collector,
    plan: dict[str, Any],
    reports: Reports,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = make_client(tracking_plan=plan, on_drop=lambda *report: reports.append(report))
    with caplog.at_level(logging.DEBUG, logger="segment"):
        ok, _ = client.track("u", "Order Completed", {"total": "27.5"})  # on_violation="send" by default
    assert ok
    (stored,) = delivered(collector, client, 1)
    assert stored["properties"] == {"total": "27.5"}
    assert "protocols" not in stored["context"], "tags only when asked"
    assert plan_counts(client) == {
        "plan_violation_sent": 1,
        "unplanned_sent": 0,
        "plan_violation": 0,
        "unplanned": 0,
    }
    assert client.stats()["dropped_total"] == 0, "a message sent anyway is not a drop"
    ((reason, error, messages),) = reports
    assert reason == "plan_violation_sent"
    assert isinstance(error, segment_lite.PlanViolationError)
    assert [v.path for v in error.violations] == ["properties.order_id", "properties.total"]
    assert messages[0]["properties"] == {"total": "27.5"}
    assert all(r.levelno == logging.DEBUG for r in plan_logs(caplog))
    assert any("properties.order_id" in r.getMessage() for r in plan_logs(caplog))


def test_warn_logs_a_warning_per_message_and_sends(
    make_client: MakeClient, collector: Collector, plan: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client(tracking_plan=plan, on_violation="warn")
    with caplog.at_level(logging.WARNING, logger="segment"):
        assert client.track("u", "Order Completed", BAD_ORDER)[0]
        assert client.track("u", "Order Completed", BAD_ORDER)[0]
    assert len(delivered(collector, client, 2)) == 2
    records = [r for r in plan_logs(caplog) if r.levelno >= logging.WARNING]
    assert len(records) == 2 and {r.levelno for r in records} == {logging.WARNING}
    assert (
        "tracking plan: 'Order Completed' sent with properties.total: '27.5' is not of type 'number' "
        '[TRACK "Order Completed" v1]' in records[0].getMessage()
    )
    assert plan_counts(client)["plan_violation_sent"] == 2


def test_drop_refuses_counts_and_reports_to_on_drop(
    make_client: MakeClient, collector: Collector, plan: dict[str, Any], reports: Reports
) -> None:
    errors: list[BaseException] = []
    client = make_client(
        tracking_plan=plan,
        on_violation="drop",
        on_drop=lambda *report: reports.append(report),
        on_error=lambda e, m: errors.append(e),
    )
    ok, message = client.track("u", "Order Completed", BAD_ORDER)
    assert not ok and message is not None and message["event"] == "Order Completed"
    assert client.track("u", "Order Completed", GOOD_ORDER)[0]
    (stored,) = delivered(collector, client, 1)
    assert stored["properties"] == GOOD_ORDER
    stats = client.stats()
    assert stats["dropped"]["plan_violation"] == 1 and stats["dropped_total"] == 1
    assert stats["accepted"] == 1, "a refused message was never accepted"
    ((reason, error, messages),) = reports
    assert reason == "plan_violation"
    assert isinstance(error, segment_lite.PlanViolationError)
    assert error.path == "properties.total" and error.violations[0].value == "27.5"
    assert messages[0]["properties"] == BAD_ORDER
    assert errors == [], "on_error is for delivery failures only"


def test_raise_raises_after_counting(make_client: MakeClient, plan: dict[str, Any], reports: Reports) -> None:
    client = make_client(
        tracking_plan=plan, on_violation="raise", on_drop=lambda *report: reports.append(report)
    )
    with pytest.raises(segment_lite.PlanViolationError) as caught:
        client.track("u", "Order Completed", {"order_id": 5, "total": 1})
    assert isinstance(caught.value, segment_lite.ValidationError)
    (violation,) = caught.value.violations
    assert (violation.path, violation.rule, violation.keyword, violation.value) == (
        "properties.order_id",
        'TRACK "Order Completed" v1',
        "type",
        5,
    )
    assert "tracking plan violation: properties.order_id: 5 is not of type 'string'" in str(caught.value)
    assert [(reason, error) for reason, error, _ in reports] == [("plan_violation", caught.value)]
    assert client.stats()["dropped"]["plan_violation"] == 1
    assert client.stats()["accepted"] == 0


@pytest.mark.parametrize("mode", ["send", "warn", "drop"])
def test_unplanned_events(
    mode: str,
    make_client: MakeClient,
    collector: Collector,
    plan: dict[str, Any],
    reports: Reports,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = make_client(
        tracking_plan=plan, on_unplanned=mode, on_drop=lambda *report: reports.append(report)
    )
    with caplog.at_level(logging.DEBUG, logger="segment"):
        ok, _ = client.track("u", "Cart Abandoned", {"anything": 1})
    assert ok is (mode != "drop")
    assert client.page("u", name="Unplanned pages are fine")[0]
    stored = delivered(collector, client, 1 if mode == "drop" else 2)
    assert [m["type"] for m in stored] == (["page"] if mode == "drop" else ["track", "page"])
    counts = plan_counts(client)
    assert (counts["unplanned"], counts["unplanned_sent"]) == ((1, 0) if mode == "drop" else (0, 1))
    ((reason, error, _),) = reports
    assert reason == ("unplanned" if mode == "drop" else "unplanned_sent")
    assert "event: 'Cart Abandoned' is not in the plan [plan \"Shop\"]" in str(error)
    # "send" logs at debug level only; "warn" logs its own warning; "drop" is logged as a drop.
    loudest = max(
        r.levelno for r in caplog.records if "'Cart Abandoned' is not in the plan" in r.getMessage()
    )
    assert loudest == {"send": logging.DEBUG, "warn": logging.WARNING, "drop": logging.WARNING}[mode]


def test_tags_carry_the_violations_to_the_collector(
    make_client: MakeClient, collector: Collector, plan: dict[str, Any]
) -> None:
    context = {"ip": "203.0.113.9", "protocols": {"sourceId": "keep-me"}}
    client = make_client(tracking_plan=plan, tag_violations=True)
    client.track("u", "Order Completed", dict(BAD_ORDER, currency="x" * 500), context=context)
    client.track("u", "Cart Abandoned", {})
    order, unplanned = delivered(collector, client, 2)
    protocols = order["context"]["protocols"]
    assert protocols["sourceId"] == "keep-me"
    assert [v["path"] for v in protocols["violations"]] == ["properties.currency", "properties.total"]
    currency, total = protocols["violations"]
    assert total == {
        "rule": 'TRACK "Order Completed" v1',
        "path": "properties.total",
        "keyword": "type",
        "message": "'27.5' is not of type 'number'",
        "value": "27.5",
    }
    assert len(currency["value"]) == 100, "long values are cut short in tags"
    assert context == {"ip": "203.0.113.9", "protocols": {"sourceId": "keep-me"}}, (
        "the caller's dict is untouched"
    )
    assert unplanned["context"]["protocols"]["violations"][0]["keyword"] == "unplanned"


def test_before_send_hooks_run_before_the_plan(make_client: MakeClient, plan: dict[str, Any]) -> None:
    def fix_total(message: dict[str, Any]) -> dict[str, Any]:
        message["properties"] = dict(message["properties"], total=float(message["properties"]["total"]))
        return message

    client = make_client(tracking_plan=plan, on_violation="raise", before_send=fix_total)
    assert client.track("u", "Order Completed", BAD_ORDER)[0]


def test_module_settings(collector: Collector, plan: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "shop.yaml"
    path.write_text(dump_plan(parse_plan(plan)))
    segment_lite.write_key = "key"
    segment_lite.host = collector.url
    segment_lite.tracking_plan = str(path)
    segment_lite.on_violation = "drop"
    segment_lite.on_unplanned = "drop"
    assert not segment_lite.track("u", "Order Completed", BAD_ORDER)[0]
    assert not segment_lite.track("u", "Cart Abandoned")[0]
    assert segment_lite.track("u", "Order Completed", GOOD_ORDER)[0]
    dropped = segment_lite.stats()["dropped"]
    assert (dropped["plan_violation"], dropped["unplanned"]) == (1, 1)


def test_bad_options_and_plans_are_refused_at_construction(plan: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(
        segment_lite.ValidationError, match="on_violation must be one of send, warn, drop, raise"
    ):
        segment_lite.Client("key", send=False, tracking_plan=plan, on_violation="explode")
    with pytest.raises(segment_lite.ValidationError, match="on_unplanned must be one of send, warn, drop"):
        segment_lite.Client("key", send=False, tracking_plan=plan, on_unplanned="raise")
    with pytest.raises(PlanError, match=r"missing\.yaml"):
        segment_lite.Client("key", send=False, tracking_plan=str(tmp_path / "missing.yaml"))
    bad = shop_plan()
    bad["events"]["Order Completed"]["properties"]["total"] = "numbr"
    with pytest.raises(segment_lite.ValidationError, match=r"events\.Order Completed\.properties\.total"):
        segment_lite.Client("key", send=False, tracking_plan=bad)


def test_a_client_without_a_plan_has_the_counters_at_zero() -> None:
    stats = segment_lite.Client("key", send=False).stats()
    assert stats["dropped"]["plan_violation"] == stats["warnings"]["plan_violation_sent"] == 0
