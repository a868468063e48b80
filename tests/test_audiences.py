"""Audiences: definitions validation, every trait kind and attribution model, inputs, SQL safety, sync."""

from __future__ import annotations

import datetime
import decimal
import gzip
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

duckdb = pytest.importorskip("duckdb")
pytest.importorskip("yaml")

from segment_lite.audiences import DefinitionError, compute, parse_definitions, sync  # noqa: E402
from segment_lite.audiences.compute import format_time  # noqa: E402
from segment_lite.collector import Collector, EventStore, Faults  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
NOW = "2024-06-01T00:00:00Z"


def _write_jsonl(path: Path, messages: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(m) + "\n" for m in messages))
    return path


def _ev(kind: str, user: str, ts: str, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "userId": user, "timestamp": ts, **fields}


EVENTS = [
    _ev(
        "identify", "u1", "2024-04-01T00:00:00Z", traits={"created_at": "2024-04-01T00:00:00Z", "plan": "pro"}
    ),
    _ev(
        "track",
        "u1",
        "2024-05-01T10:00:00Z",
        event="Feature Used",
        properties={"feature_name": "export", "n": 2},
    ),
    _ev(
        "track",
        "u1",
        "2024-05-20T10:00:00Z",
        event="Feature Used",
        properties={"feature_name": "reports", "n": 5},
    ),
    _ev(
        "track",
        "u1",
        "2024-05-25T10:00:00Z",
        event="Feature Used",
        properties={"feature_name": "reports", "n": 1.5},
    ),
    _ev("track", "u1", "2024-05-10T10:00:00Z", event="Session Started"),
    _ev("track", "u1", "2024-05-21T12:00:00Z", event="Session Started"),
    # after "now": ignored everywhere
    _ev("track", "u1", "2024-06-05T00:00:00Z", event="Session Started"),
    _ev("track", "u2", "2024-03-01T00:00:00Z", event="Feature Used", properties={"feature_name": "alerts"}),
    _ev("identify", "u2", "2024-03-01T00:00:00Z", traits={"plan": "free"}),
    # campaign touches and conversions of u3 (channels from context.campaign, properties.utm_*, the URL)
    _ev("page", "u3", "2024-05-01T00:00:00Z", context={"campaign": {"source": "Google"}}),
    _ev("page", "u3", "2024-05-02T00:00:00Z", properties={"utm_source": "email"}),
    _ev(
        "page",
        "u3",
        "2024-05-03T00:00:00Z",
        context={"page": {"url": "https://x.test/?a=1&utm_source=facebook"}},
    ),
    _ev("track", "u3", "2024-05-04T00:00:00Z", event="Order Completed", properties={"revenue": 10}),
    _ev(
        "page", "u3", "2024-04-01T00:00:00Z", context={"campaign": {"source": "bing"}}
    ),  # outside the lookback
    {"type": "track", "event": "Session Started", "timestamp": "2024-05-01T00:00:00Z", "anonymousId": "a"},
    {"type": "track", "userId": "u4", "event": "Session Started", "timestamp": "not a time"},
]

DEFINITIONS = """\
version: 3
traits:
  - {name: features_30d, kind: count, event: Feature Used, within_days: 30}
  - {name: reports_used, kind: count, event: Feature Used, where: {feature_name: reports}}
  - {name: first_feature_at, kind: first_time, event: Feature Used}
  - {name: last_session_at, kind: last_time, event: Session Started}
  - {name: distinct_features, kind: distinct_count, event: Feature Used, property: feature_name}
  - {name: n_sum, kind: sum, event: Feature Used, property: n}
  - {name: n_min, kind: min, event: Feature Used, property: n}
  - {name: n_max, kind: max, event: Feature Used, property: n}
  - {name: last_feature, kind: last, event: Feature Used, property: feature_name}
  - {name: days_since_session, kind: days_since, event: Session Started}
  - {name: account_age, kind: days_since, identify_trait: created_at}
  - {name: big_n, kind: count, event: Feature Used, where: [{property: n, op: ">", value: 1.5}]}
  - {name: first, kind: attribution, model: first_touch, conversion: Order Completed, lookback_days: 30, prefix: ft_}
  - {name: last, kind: attribution, model: last_touch, conversion: Order Completed, lookback_days: 30, prefix: lt_}
  - {name: lin, kind: attribution, model: linear, conversion: Order Completed, lookback_days: 30, prefix: atb_}
  - name: decay
    kind: attribution
    model: time_decay
    half_life_days: 1
    conversion: Order Completed
    lookback_days: 30
    prefix: td_
    channels: [google, email]
audiences:
  - name: Heavy Reporters
    where: {all: [{trait: reports_used, op: ">=", value: 2}, {not: {identify_trait: plan, op: "==", value: free}}]}
  - name: Dormant
    where: {any: [{trait: days_since_session, op: ">", value: 7}, {trait: last_session_at, op: missing}]}
    entered_event: Idle Period Detected
  - name: Email Top
    where: {trait: atb_top_channel, op: in, value: [email, facebook]}
"""


@pytest.fixture
def events(tmp_path: Path) -> Path:
    return _write_jsonl(tmp_path / "events.jsonl", EVENTS)


def test_every_trait_kind_and_model_on_a_small_dataset(events: Path) -> None:
    result = compute(parse_definitions(DEFINITIONS), [str(events)], now=NOW)
    assert result.inputs.as_dict() == {
        "read": 16,
        "used": 13,
        "skipped": {"after_now": 1, "no_timestamp": 1, "no_user_id": 1},
    }
    u1 = result.users["u1"]
    assert u1["features_30d"] == 2  # 05-01 is 31 days before now
    assert u1["reports_used"] == 2
    assert u1["first_feature_at"] == "2024-05-01T10:00:00.000Z"
    assert u1["last_session_at"] == "2024-05-21T12:00:00.000Z"  # the event after now is ignored
    assert u1["distinct_features"] == 2
    assert (u1["n_sum"], u1["n_min"], u1["n_max"]) == (8.5, 1.5, 5.0)
    assert u1["last_feature"] == "reports"
    assert u1["days_since_session"] == 10
    assert u1["account_age"] == 61
    assert u1["big_n"] == 2
    assert u1["heavy_reporters"] is True and u1["dormant"] is True and u1["email_top"] is False
    u2 = result.users["u2"]
    assert u2["features_30d"] == 0 and u2["n_sum"] is None and u2["last_session_at"] is None
    assert u2["heavy_reporters"] is False and u2["dormant"] is True  # no session at all
    u3 = result.users["u3"]
    assert (u3["ft_google"], u3["ft_email"], u3["ft_facebook"], u3["ft_top_channel"]) == (
        1.0,
        0.0,
        0.0,
        "google",
    )
    assert (u3["lt_facebook"], u3["lt_top_channel"]) == (1.0, "facebook")
    assert (u3["atb_google"], u3["atb_email"], u3["atb_facebook"]) == (0.333333, 0.333333, 0.333333)
    assert u3["atb_top_channel"] == "email"  # ties go to the first channel by name
    assert "atb_bing" not in u3  # the bing touch is older than the lookback, so no channel "bing" exists
    # time decay with a 1-day half-life: weights 1/8, 1/4, 1/2 for google, email, facebook (-> other)
    assert (u3["td_google"], u3["td_email"], u3["td_other"]) == (0.142857, 0.285714, 0.571429)
    assert u3["td_top_channel"] == "other"
    assert u3["email_top"] is True and result.users["u1"]["atb_top_channel"] is None
    assert result.audience_sizes == {"heavy_reporters": 1, "dormant": 3, "email_top": 1}


def test_inputs_jsonl_gzip_parquet_and_collector_store_agree(events: Path, tmp_path: Path) -> None:
    definitions = parse_definitions(DEFINITIONS)
    expected = compute(definitions, [str(events)], now=NOW).users
    gz = tmp_path / "events.jsonl.gz"
    gz.write_bytes(gzip.compress(events.read_bytes()))
    assert compute(definitions, [str(gz)], now=NOW).users == expected
    parquet = tmp_path / "events.parquet"
    con = duckdb.connect()
    con.execute(
        "COPY (SELECT * FROM read_json(?, format='newline_delimited')) TO '"
        + str(parquet)
        + "' (FORMAT PARQUET)",
        [str(events)],
    )
    assert compute(definitions, [str(parquet)], now=NOW).users == expected
    db = tmp_path / "collector.db"
    with EventStore(str(db)) as store:
        store.insert_many(
            {**m, "messageId": f"m{i}", "receivedAt": "2024-06-01T00:00:00Z"}
            for i, m in enumerate(EVENTS)
            if m.get("timestamp") != "not a time"  # the collector's receivedAt would stand in for it
        )
    assert compute(definitions, [str(db)], now=NOW).users == expected


def test_hostile_names_and_values_are_data_not_sql(tmp_path: Path) -> None:
    evil_prop = "x'); DROP TABLE ev; --\"/~0"
    evil_event = "Signed'); DROP TABLE ev; --"
    events = _write_jsonl(
        tmp_path / "e.jsonl",
        [
            _ev("track", "u'1", "2024-05-30T00:00:00Z", event=evil_event, properties={evil_prop: "v'\"; --"}),
            _ev("track", "u'1", "2024-05-30T00:00:00Z", event=evil_event, properties={evil_prop: "other"}),
            _ev("identify", "u'1", "2024-05-30T00:00:00Z", traits={evil_prop: "a'b"}),
        ],
    )
    text = json.dumps(
        {
            "traits": [
                {"name": "n", "kind": "count", "event": evil_event, "where": {evil_prop: "v'\"; --"}},
                {"name": "d", "kind": "distinct_count", "event": evil_event, "property": evil_prop},
            ],
            "audiences": [{"name": "A", "where": {"identify_trait": evil_prop, "op": "==", "value": "a'b"}}],
        }
    )
    result = compute(parse_definitions(text), [str(events)], now=NOW)
    assert result.users == {"u'1": {"n": 1, "d": 2, "a": True}}
    quoted = tmp_path / "it's; DROP TABLE ev.jsonl"
    quoted.write_bytes(events.read_bytes())
    assert compute(parse_definitions(text), [str(quoted)], now=NOW).users == result.users
    with pytest.raises(DefinitionError) as info:
        parse_definitions(json.dumps({"traits": [{"name": 'x" FROM ev; --', "kind": "count"}]}))
    assert info.value.field == "name"


def test_validation_errors_name_line_definition_and_field() -> None:
    text = textwrap.dedent(
        """\
        traits:
          - name: ok
            kind: count
          - name: sessions
            kind: count
            within_days: -3
        """
    )
    with pytest.raises(DefinitionError) as info:
        parse_definitions(text, source="defs.yaml")
    err = info.value
    assert (err.line, err.definition, err.field) == (6, "sessions", "within_days")
    assert str(err).startswith("defs.yaml:6, definition 'sessions', field within_days:")

    text = "traits:\n  - {name: a, kind: count}\naudiences:\n  - name: X\n    where:\n      all:\n        - {trait: a, op: '>', value: 1}\n        - {trait: nope, op: '>', value: 1}\n"
    with pytest.raises(DefinitionError) as info:
        parse_definitions(text)
    assert (info.value.line, info.value.definition, info.value.field) == (8, "X", "where.all[1].trait")
    with pytest.raises(DefinitionError, match="unknown field 'kinds'"):
        parse_definitions("traits:\n  - {name: a, kinds: count, kind: count}\n")
    with pytest.raises(DefinitionError, match="aliases"):
        parse_definitions("a: &x [1]\ntraits: *x\n")
    with pytest.raises(DefinitionError, match="deeper"):
        parse_definitions("audiences: " + "[" * 40 + "]" * 40)
    with pytest.raises(DefinitionError, match="larger than"):
        parse_definitions("#" * (2 << 20))
    with pytest.raises(DefinitionError, match="not valid YAML"):
        parse_definitions("traits: !!python/object/apply:os.system ['true']\n")
    # JSON indented with tabs (which YAML refuses) is read as JSON
    tabbed = '{\n\t"traits": [\n\t\t{"name": "a", "kind": "count", "within_days": 0}\n\t]\n}\n'
    with pytest.raises(DefinitionError) as info:
        parse_definitions(tabbed, source="defs.json")
    assert (info.value.definition, info.value.field) == ("a", "within_days")
    with pytest.raises(DefinitionError, match=r"defs.json:2: not valid JSON"):
        parse_definitions('{"traits":\n ]', source="defs.json")
    with pytest.raises(DefinitionError, match="deeper"):
        parse_definitions('{"traits": ' + "[" * 5000 + "]" * 5000 + "}")
    with pytest.raises(DefinitionError, match=r"<definitions>:3: not valid YAML"):
        parse_definitions("traits:\n  - name: [unclosed\n")


def _definitions_file(tmp_path: Path) -> str:
    path = tmp_path / "defs.yaml"
    path.write_text(DEFINITIONS)
    return str(path)


def _identifies(store: EventStore) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for message in store.messages():
        if message["type"] == "identify":
            out.setdefault(message["userId"], []).append(message)
    return out


def test_sync_sends_everyone_then_changes_only_and_false_on_leaving(events: Path, tmp_path: Path) -> None:
    defs = _definitions_file(tmp_path)
    with Collector() as collector:
        first = sync(defs, [str(events)], write_key="k", host=collector.url, now=NOW)
        assert (first.status, first.changed, first.identifies) == ("completed", 3, 3)
        sent = _identifies(collector.store)
        assert set(sent) == {"u1", "u2", "u3"}
        assert sent["u1"][0]["traits"]["heavy_reporters"] is True
        assert sent["u2"][0]["traits"]["heavy_reporters"] is False
        assert "days_since_session" not in sent["u1"][0]["traits"]  # days_since is not synced by default
        assert "n_sum" not in sent["u2"][0]["traits"]  # None values are not sent to a new user
        idle = [m for m in collector.store.messages() if m.get("event") == "Idle Period Detected"]
        assert sorted(m["userId"] for m in idle) == ["u1", "u2", "u3"]

        again = sync(defs, [str(events)], write_key="k", host=collector.url, now=NOW)
        assert again.changed == 0 and collector.store.count(type="identify") == 3

        # u1 drops out of Heavy Reporters (now on the free plan) and gains a session
        more = _write_jsonl(
            tmp_path / "more.jsonl",
            [
                _ev("identify", "u1", "2024-05-31T00:00:00Z", traits={"plan": "free"}),
                _ev("track", "u1", "2024-05-31T01:00:00Z", event="Session Started"),
            ],
        )
        dry = sync(defs, [str(events), str(more)], write_key="k", host=collector.url, now=NOW, dry_run=True)
        assert [c.user_id for c in dry.changes] == ["u1"] and collector.store.count(type="identify") == 3
        third = sync(defs, [str(events), str(more)], write_key="k", host=collector.url, now=NOW)
        assert third.changed == 1
        latest = _identifies(collector.store)["u1"][-1]
        assert latest["traits"] == {
            "heavy_reporters": False,
            "dormant": False,
            "last_session_at": "2024-05-31T01:00:00.000Z",
        }
        assert third.exited == {"heavy_reporters": 1, "dormant": 1}
        ids = [m["messageId"] for m in collector.store.messages()]
        assert len(ids) == len(set(ids))


def test_message_ids_are_deterministic_across_states(events: Path, tmp_path: Path) -> None:
    defs = _definitions_file(tmp_path)
    with Collector() as one, Collector() as two:
        sync(defs, [str(events)], write_key="k", host=one.url, now=NOW, state=str(tmp_path / "a.db"))
        sync(defs, [str(events)], write_key="k", host=two.url, now=NOW, state=str(tmp_path / "b.db"))
        assert one.store.message_ids() == two.store.message_ids()


KILLED_SYNC = """
import sys
from segment_lite.audiences import sync
sync(sys.argv[1], [sys.argv[2]], write_key="k", host=sys.argv[3], now=sys.argv[4], state=sys.argv[5],
     chunk_size=20, client_options={"upload_size": 5, "max_batch_size": 5})
"""


def test_kill_9_mid_sync_then_resume_delivers_every_change_exactly_once(tmp_path: Path) -> None:
    gen = ROOT / "examples" / "audiences" / "generate_events.py"
    events = tmp_path / "events.jsonl"
    subprocess.run(
        [sys.executable, str(gen), "--users", "300", "--out", str(events)], check=True, capture_output=True
    )
    defs = str(ROOT / "examples" / "audiences" / "definitions.yaml")
    with Collector() as reference:
        sync(defs, [str(events)], write_key="k", host=reference.url, now=NOW, state=str(tmp_path / "ref.db"))
        expected = reference.store.message_ids()
    assert len(expected) > 300
    state = str(tmp_path / "state.db")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with Collector(faults=Faults(delay_s=0.02)) as collector:
        child = subprocess.Popen(
            [sys.executable, "-c", KILLED_SYNC, defs, str(events), collector.url, NOW, state], env=env
        )
        try:
            deadline = time.monotonic() + 60
            while collector.store.count() < 60 and time.monotonic() < deadline and child.poll() is None:
                time.sleep(0.01)
            assert child.poll() is None, "the sync ended before it could be killed"
            os.kill(child.pid, signal.SIGKILL)
        finally:
            child.wait()
        partial = collector.store.count()
        assert 0 < partial < len(expected)
        resumed = sync(defs, [str(events)], write_key="k", host=collector.url, now=NOW, state=state)
        assert resumed.status == "completed" and resumed.resumed > 0 and resumed.changed == 0
        assert collector.store.message_ids() == expected
        per_user = _identifies(collector.store)
        assert all(len(v) == 1 for v in per_user.values()) and len(per_user) == 300
        assert sync(defs, [str(events)], write_key="k", host=collector.url, now=NOW, state=state).changed == 0


def test_importing_segment_lite_loads_neither_duckdb_nor_yaml() -> None:
    code = "import sys, segment_lite, segment_lite.audiences; import segment_lite.cli as c; c.build_parser(); print(sorted(m for m in sys.modules if m.split('.')[0] in ('duckdb', 'yaml')))"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert out.stdout.strip() == "[]"


def test_a_failed_delivery_keeps_the_changes_pending_and_the_next_sync_finishes_them(
    events: Path, tmp_path: Path
) -> None:
    defs = _definitions_file(tmp_path)
    with Collector(write_keys={"right"}) as collector:
        failed = sync(defs, [str(events)], write_key="wrong", host=collector.url, now=NOW, max_retries=0)
        assert failed.status == "delivery_failed" and failed.exit_code == 4
        assert collector.store.count() == 0
        assert os.path.exists(f"{defs}.state.db.outbox.jsonl")
        done = sync(defs, [str(events)], write_key="right", host=collector.url, now=NOW)
        assert (done.status, done.resumed, done.changed) == ("completed", 3, 0)
        assert sorted(_identifies(collector.store)) == ["u1", "u2", "u3"]
        assert not os.path.exists(f"{defs}.state.db.outbox.jsonl")


# -- a plain Python reference for the aggregate kinds, and a property test that DuckDB agrees ----------

REFERENCE_DEFINITIONS = {
    "traits": [
        {"name": "n_all", "kind": "count"},
        {"name": "n_a_week", "kind": "count", "event": "A'", "within_days": 7},
        {"name": "n_b_red", "kind": "count", "event": "B", "where": {"color": "red"}},
        {"name": "colors", "kind": "distinct_count", "event": ["A'", "B"], "property": "color"},
        {"name": "total", "kind": "sum", "event": "B", "property": "amount"},
        {"name": "last_a", "kind": "last_time", "event": "A'"},
        {"name": "first_any", "kind": "first_time"},
        {"name": "last_color", "kind": "last", "property": "color"},
    ]
}


def _reference(events: list[dict[str, Any]], now: datetime.datetime) -> dict[str, dict[str, Any]]:
    """The same traits by a plain loop over events: what the SQL must agree with."""
    out: dict[str, dict[str, Any]] = {}
    week_ago = now - datetime.timedelta(days=7)
    for user in sorted({e["userId"] for e in events}):
        mine = [
            (i, e, datetime.datetime.fromisoformat(e["timestamp"][:-1]))
            for i, e in enumerate(events)
            if e["userId"] == user
        ]
        mine = [m for m in mine if m[2] <= now]
        if not mine:
            continue
        a = [m for m in mine if m[1].get("event") == "A'"]
        b = [m for m in mine if m[1].get("event") == "B"]
        amounts = [m[1]["properties"]["amount"] for m in b if "amount" in m[1]["properties"]]
        colored = sorted(
            (m for m in mine if m[1]["properties"].get("color") is not None), key=lambda m: (m[2], m[0])
        )
        fmt = format_time
        out[user] = {
            "n_all": len(mine),
            "n_a_week": sum(1 for m in a if m[2] > week_ago),
            "n_b_red": sum(1 for m in b if m[1]["properties"].get("color") == "red"),
            "colors": len(
                {m[1]["properties"]["color"] for m in a + b if m[1]["properties"].get("color") is not None}
            ),
            "total": round(sum(decimal.Decimal(str(x)) for x in amounts), 6) if amounts else None,
            "last_a": fmt(max(m[2] for m in a)) if a else None,
            "first_any": fmt(min(m[2] for m in mine)),
            "last_color": colored[-1][1]["properties"]["color"] if colored else None,
        }
        if out[user]["total"] is not None:
            out[user]["total"] = float(out[user]["total"])
    return out


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.fixed_dictionaries(
            {
                "userId": st.sampled_from(["u1", "u'2", "u3"]),
                "event": st.sampled_from(["A'", "B", "C"]),
                "minutes": st.integers(min_value=0, max_value=60 * 24 * 20),
                "color": st.one_of(st.none(), st.sampled_from(["red", "blue", "gr'een"])),
                "amount": st.one_of(st.none(), st.decimals(min_value=-1000, max_value=1000, places=2)),
            }
        ),
        min_size=1,
        max_size=40,
    )
)
def test_duckdb_agrees_with_a_plain_python_reference(tmp_path: Path, drawn: list[dict[str, Any]]) -> None:
    now = datetime.datetime(2024, 6, 1)
    start = now - datetime.timedelta(days=18)  # some events land after "now"
    events = []
    for item in drawn:
        properties: dict[str, Any] = {}
        if item["color"] is not None:
            properties["color"] = item["color"]
        if item["amount"] is not None:
            properties["amount"] = float(item["amount"])
        at = start + datetime.timedelta(minutes=item["minutes"])
        events.append(
            {
                "type": "track",
                "userId": item["userId"],
                "event": item["event"],
                "timestamp": format_time(at),
                "properties": properties,
            }
        )
    path = _write_jsonl(tmp_path / "drawn.jsonl", events)
    result = compute(parse_definitions(json.dumps(REFERENCE_DEFINITIONS)), [str(path)], now=now)
    assert result.users == _reference(events, now)
