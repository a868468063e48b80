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

from segment_lite.collector import Collector, Faults

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


def test_sigterm_stops_a_sync_with_143_and_the_next_sync_finishes_it(tmp_path: Path) -> None:
    import signal
    import time

    subprocess.run(
        [sys.executable, str(EXAMPLE / "generate_events.py"), "--users", "300", "--out", "events.jsonl"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )
    args = [
        "audiences",
        "sync",
        DEFS,
        "events.jsonl",
        "--now",
        "2024-06-01T00:00:00Z",
        *STATE,
        "--chunk-size",
        "20",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with Collector(faults=Faults(delay_s=0.05)) as collector:
        child = subprocess.Popen(
            [sys.executable, "-m", "segment_lite.cli", *args, "--host", collector.url, "--write-key", "k"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 60
        while collector.store.count() == 0 and time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.01)
        assert child.poll() is None, "the sync ended before it could be stopped"
        child.send_signal(signal.SIGTERM)
        _, err = child.communicate(timeout=120)
        assert child.returncode == 143, err
        stopped_at = collector.store.count()
        assert stopped_at < 300
        done = _cli(tmp_path, *args, "--host", collector.url, "--write-key", "k", "--json")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["resumed"] > 0
        identifies = [m for m in collector.store.messages() if m["type"] == "identify"]
        assert sorted(m["userId"] for m in identifies) == sorted({m["userId"] for m in identifies})
        assert len(identifies) == 300
