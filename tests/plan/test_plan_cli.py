"""The ``segment-lite plan`` commands: check, infer, lint, codegen, their output and exit status."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from plan_helpers import order, shop_plan

from segment_lite.cli import main
from segment_lite.collector.store import EventStore
from segment_lite.plan import dump_plan, parse_plan

REPO = Path(__file__).resolve().parents[2]


def stored(path: Path, messages: list[dict[str, Any]]) -> str:
    with EventStore(str(path)) as store:
        for index, message in enumerate(messages):
            message = dict(message, messageId=f"m-{index}", receivedAt="2024-05-01T10:00:00.000Z")
            store.insert_many([message])
    return str(path)


def shop_file(tmp_path: Path) -> str:
    path = tmp_path / "shop.yaml"
    path.write_text(dump_plan(parse_plan(shop_plan())))
    return str(path)


def test_check_passes_on_valid_events(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = stored(tmp_path / "e.db", [order(), order(order_id="ord-2"), {"type": "alias", "userId": "u"}])
    assert main(["plan", "check", shop_file(tmp_path), "--db", db]) == 0
    out = capsys.readouterr().out
    assert 'Plan "Shop": 3 message(s) checked, 0 with violations, 0 unplanned' in out
    assert "Order Completed" in out and "2 messages, ok" in out


def test_check_fails_and_reports_per_event_with_an_example(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    messages = [order(), order(total="27.5"), order(total="1"), order(currency="GBP")]
    db = stored(tmp_path / "e.db", messages)
    assert main(["plan", "check", shop_file(tmp_path), "--db", db]) == 1
    out = capsys.readouterr().out
    assert "4 messages, 3 with violations" in out
    assert "2  properties.total  type  e.g. m-1: '27.5' is not of type 'number'" in out
    assert "1  properties.currency  enum  e.g. m-3:" in out


def test_check_json_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    messages = [order(total="27.5"), {"type": "track", "event": "Cart Abandoned", "properties": {}}]
    db = stored(tmp_path / "e.db", messages)
    assert main(["plan", "check", shop_file(tmp_path), "--db", db, "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert (report["checked"], report["violating"], report["unplanned"], report["passed"]) == (2, 1, 1, False)
    (problem,) = report["events"][0]["problems"]
    assert problem["example"] == {
        "messageId": "m-0",
        "rule": 'TRACK "Order Completed" v1',
        "path": "properties.total",
        "keyword": "type",
        "message": "'27.5' is not of type 'number'",
        "value": "27.5",
    }
    assert report["events"][1] == {
        "name": "Cart Abandoned",
        "type": "track",
        "rule": None,
        "count": 1,
        "violating": 0,
        "unplanned": True,
        "problems": [],
    }


def test_unplanned_events_fail_unless_allowed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = stored(tmp_path / "e.db", [order(), {"type": "track", "event": "Cart Abandoned", "properties": {}}])
    plan = shop_file(tmp_path)
    assert main(["plan", "check", plan, "--db", db]) == 1
    assert "UNPLANNED" in capsys.readouterr().out
    assert main(["plan", "check", plan, "--db", db, "--allow-unplanned"]) == 0


def test_unusable_inputs_exit_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan = shop_file(tmp_path)
    assert main(["plan", "check", plan, "--db", str(tmp_path / "missing.db")]) == 2
    assert "no database at" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("events:\n  A Happened:\n    properties:\n      x: strng\n")
    db = stored(tmp_path / "e.db", [order()])
    assert main(["plan", "check", str(bad), "--db", db]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "events.A Happened.properties.x" in err and "bad.yaml" in err
    not_db = tmp_path / "not.db"
    not_db.write_text("this is not sqlite")
    assert main(["plan", "check", plan, "--db", str(not_db)]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_infer_then_check_round_trips_on_the_demo_data(demo_db: str, tmp_path: Path) -> None:
    for name in ("plan.yaml", "plan.json"):
        output = tmp_path / name
        assert main(["plan", "infer", "--db", demo_db, "-o", str(output)]) == 0
        assert main(["plan", "check", str(output), "--db", demo_db]) == 0
    document = yaml.safe_load((tmp_path / "plan.yaml").read_text())
    assert document["name"] == "plan"
    assert set(document["events"]) == {"Order Completed"}
    assert document["identify"]["traits"]["email"]["format"] == "email"
    assert document["identify"]["traits"]["createdAt"]["format"] == "date-time"
    segment = tmp_path / "segment.json"
    assert (
        main(["plan", "infer", "--db", demo_db, "-o", str(segment), "--form", "segment", "--name", "Demo"])
        == 0
    )
    exported = json.loads(segment.read_text())
    assert exported["name"] == "Demo" and {r["type"] for r in exported["rules"]} == {
        "TRACK",
        "IDENTIFY",
        "GROUP",
        "PAGE",
        "SCREEN",
    }
    assert main(["plan", "check", str(segment), "--db", demo_db]) == 0


def test_lint_exit_status_flags_and_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan = tmp_path / "p.yaml"
    plan.write_text("events:\n  Clicked Button: {}\n  order_shipped: {properties: {orderId: string}}\n")
    assert main(["plan", "lint", str(plan)]) == 1
    out = capsys.readouterr().out
    assert (
        "Clicked Button: the action comes after the object (Object Action) (use 'Button Clicked') [event-form]"
        in out
    )
    assert "order_shipped: event names are title case (use 'Order Shipped') [event-case]" in out
    config = tmp_path / "lint.yaml"
    config.write_text("event_case: snake\ndisable: [event-form]\n")
    assert main(["plan", "lint", str(plan), "--config", str(config), "--json"]) == 1
    findings = json.loads(capsys.readouterr().out)
    assert [f["code"] for f in findings] == ["event-case"], "Clicked Button is not snake case"
    assert main(["plan", "lint", str(plan), "--event-case", "any", "--disable", "event-form"]) == 0
    config.write_text("event_kase: snake\n")
    assert main(["plan", "lint", str(plan), "--config", str(config)]) == 2


def test_codegen_writes_and_checks_freshness(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan = shop_file(tmp_path)
    module = tmp_path / "shop_events.py"
    assert main(["plan", "codegen", plan, "-o", str(module)]) == 0
    first = module.read_text()
    assert "def order_completed(" in first
    assert main(["plan", "codegen", plan, "-o", str(module), "--check"]) == 0
    Path(plan).write_text(Path(plan).read_text().replace("Product Viewed", "Product Seen"))
    assert main(["plan", "codegen", plan, "-o", str(module), "--check"]) == 1
    assert "not up to date" in capsys.readouterr().out
    assert module.read_text() == first, "--check writes nothing"


def test_exit_status_of_the_real_command(tmp_path: Path) -> None:
    db = stored(tmp_path / "e.db", [order(total="oops")])
    env = dict(os.environ, PYTHONPATH=str(REPO))
    result = subprocess.run(
        [sys.executable, "-m", "segment_lite.cli", "plan", "check", shop_file(tmp_path), "--db", db],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stderr
    assert "properties.total" in result.stdout


def test_importing_segment_lite_loads_no_plan_code() -> None:
    code = (
        "import sys, segment_lite, segment_lite.cli\n"
        "segment_lite.cli.build_parser()\n"
        "c = segment_lite.Client('k', send=False); c.track('u', 'E')\n"
        "loaded = [m for m in sys.modules if m.split('.')[0] in ('fastjsonschema', 'jsonschema', 'yaml')"
        " or m.startswith('segment_lite.plan.')]\n"
        "print(loaded)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr


def test_demo_keeps_its_events_with_db_for_infer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "events.db")
    assert main(["demo", "--db", db]) == 0
    assert main(["demo", "--db", db]) == 0
    out = capsys.readouterr().out
    assert out.count("The collector stored 6 message(s)") == 2, "each run shows its own session only"
    assert f"segment-lite events --db {db}" in out
    with EventStore(db) as store:
        assert store.count() == 12
    plan = tmp_path / "plan.yaml"
    assert main(["plan", "infer", "--db", db, "-o", str(plan)]) == 0
    assert main(["plan", "check", str(plan), "--db", db]) == 0
