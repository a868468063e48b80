"""The audiences example runs end to end from its README lines: generate, preview, sync, a day later."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("duckdb")
pytest.importorskip("yaml")

from segment_lite.collector import Collector

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "audiences"
DEFS = str(EXAMPLE / "definitions.yaml")
STATE = ("--state", "audiences.state.db")


def _cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "segment_lite.cli", *args], cwd=cwd, env=env, capture_output=True, text=True
    )


def test_example_generate_preview_sync_and_a_day_later(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(EXAMPLE / "generate_events.py"), "--users", "400", "--out", "events.jsonl"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )
    preview = _cli(
        tmp_path,
        "audiences",
        "preview",
        DEFS,
        "events.jsonl",
        "--now",
        "2024-06-01T00:00:00Z",
        "--json",
    )
    assert preview.returncode == 0, preview.stderr
    data = json.loads(preview.stdout)
    sizes = {a["key"]: a["size"] for a in data["audiences"]}
    assert set(sizes) == {"re_engagement", "feature_adoption", "depth_nudge", "retarget_on_google"}
    assert all(size > 0 for size in sizes.values()), sizes

    with Collector(db=str(tmp_path / "collected.db")) as collector:
        first = _cli(
            tmp_path,
            "audiences",
            "sync",
            DEFS,
            "events.jsonl",
            "--now",
            "2024-06-01T00:00:00Z",
            *STATE,
            "--host",
            collector.url,
            "--write-key",
            "demo",
            "--json",
        )
        assert first.returncode == 0, first.stderr
        assert json.loads(first.stdout)["identifies"] == 400
        identifies = [m for m in collector.store.messages() if m["type"] == "identify"]
        assert len(identifies) == 400
        members = {m["userId"] for m in identifies if m["traits"]["re_engagement"] is True}
        assert len(members) == sizes["re_engagement"]
        assert all(
            k in identifies[0]["traits"] for k in ("feature_used_30d", "last_session_at", "distinct_features")
        )

        dry = _cli(
            tmp_path,
            "audiences",
            "sync",
            DEFS,
            "events.jsonl",
            "--now",
            "2024-06-02T00:00:00Z",
            *STATE,
            "--dry-run",
        )
        assert dry.returncode == 0, dry.stderr
        planned = [line.split("  ", 1)[0] for line in dry.stdout.splitlines() if line]
        assert 0 < len(planned) < 400
        assert collector.store.count(type="identify") == 400

        later = _cli(
            tmp_path,
            "audiences",
            "sync",
            DEFS,
            "events.jsonl",
            "--now",
            "2024-06-02T00:00:00Z",
            *STATE,
            "--host",
            collector.url,
            "--write-key",
            "demo",
            "--json",
        )
        assert later.returncode == 0, later.stderr
        second = [m for m in collector.store.messages() if m["type"] == "identify"][400:]
        assert sorted(m["userId"] for m in second) == sorted(planned)
        entered = [m for m in second if m["traits"].get("re_engagement") is True]
        idle = {m["userId"] for m in collector.store.messages() if m.get("event") == "Idle Period Detected"}
        assert {m["userId"] for m in entered} <= idle

    listed = _cli(tmp_path, "events", "--db", "collected.db", "--type", "identify", "--limit", "3", "--json")
    assert listed.returncode == 0, listed.stderr
    assert len(listed.stdout.splitlines()) == 3


def test_validation_error_exit_status_and_message(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("traits:\n  - name: x\n    kind: count\n    within_days: zero\n")
    events = tmp_path / "e.jsonl"
    events.write_text("")
    out = _cli(tmp_path, "audiences", "compute", "bad.yaml", "e.jsonl")
    assert out.returncode == 2
    assert "bad.yaml:4, definition 'x', field within_days: must be a number" in out.stderr
