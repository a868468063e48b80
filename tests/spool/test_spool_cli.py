"""``segment-lite spool status`` and ``segment-lite spool drain``."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

from spool_helpers import REPO_ROOT, WRITE_KEY, child_env, kill9, owner_names, spooling_child

from segment_lite.collector import Collector


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "segment_lite.cli", "spool", *args],
        capture_output=True,
        text=True,
        env=child_env(),
        cwd=REPO_ROOT,
        timeout=timeout,
    )


def _orphan(tmp_path: Path, collector: Collector, spool_dir: Path, count: int) -> list[str]:
    collector.go_down()
    with spooling_child(tmp_path, collector.url, spool_dir, count) as (child, _, ids):
        kill9(child)
    return ids


def test_status_shows_messages_bytes_and_the_oldest(
    tmp_path: Path, collector: Collector, spool_dir: Path
) -> None:
    _orphan(tmp_path, collector, spool_dir, 1_500)
    shown = cli("status", str(spool_dir))
    assert shown.returncode == 0, shown.stderr
    assert "orphaned" in shown.stdout and "1,500" in shown.stdout
    assert "1,500 undelivered message(s)" in shown.stdout and "oldest was accepted" in shown.stdout

    report = json.loads(cli("status", str(spool_dir), "--json").stdout)
    assert report["messages"] == 1_500
    assert report["bytes"] > 1_500 * 100
    assert report["oldest_age_s"] >= 0
    (owner,) = report["directories"]
    assert owner["state"] == "orphaned" and owner["messages"] == 1_500
    assert WRITE_KEY not in json.dumps(report), "never the write key"
    assert len(owner_names(spool_dir)) == 1, "status changes nothing"


def test_status_of_a_live_owner(tmp_path: Path, collector: Collector, spool_dir: Path) -> None:
    collector.go_down()
    with spooling_child(tmp_path, collector.url, spool_dir, 200):
        report = json.loads(cli("status", str(spool_dir), "--json").stdout)
        (owner,) = report["directories"]
        assert owner["state"] == "live" and owner["messages"] == 200


def test_drain_delivers_what_a_dead_process_left_with_progress(
    tmp_path: Path, collector: Collector, spool_dir: Path
) -> None:
    ids = _orphan(tmp_path, collector, spool_dir, 3_000)
    collector.go_up()
    drained = cli(
        "drain",
        str(spool_dir),
        "--write-key",
        WRITE_KEY,
        "--host",
        collector.url,
        "--progress",
        "plain",
        "--json",
    )
    assert drained.returncode == 0, drained.stderr
    summary = json.loads(drained.stdout)
    assert summary["found"] == 3_000 and summary["delivered"] == 3_000 and summary["left_in_spool"] == 0
    assert "segment-lite spool drain: delivered 3,000 of 3,000" in drained.stderr
    assert collector.message_ids() == set(ids)
    assert owner_names(spool_dir) == []
    assert WRITE_KEY not in drained.stderr + drained.stdout


def test_drain_with_the_server_down_gives_up_at_the_timeout_and_keeps_everything(
    tmp_path: Path, collector: Collector, spool_dir: Path
) -> None:
    ids = _orphan(tmp_path, collector, spool_dir, 500)
    drained = cli(
        "drain",
        str(spool_dir),
        "--write-key",
        WRITE_KEY,
        "--host",
        collector.url,
        "--timeout",
        "1",
        "--progress",
        "plain",
        "--progress-interval",
        "0.2",
    )
    assert drained.returncode == 4, drained.stderr
    assert "segment-lite spool drain: [" in drained.stderr, "progress lines, as import shows them"
    assert "500 left in the spool" in drained.stderr
    collector.go_up()
    again = cli(
        "drain", str(spool_dir), "--write-key", WRITE_KEY, "--host", collector.url, "--progress", "none"
    )
    assert again.returncode == 0, again.stderr
    assert collector.message_ids() == set(ids)


def test_drain_leaves_other_keys_and_live_owners_alone(
    tmp_path: Path, collector: Collector, spool_dir: Path
) -> None:
    _orphan(tmp_path, collector, spool_dir, 100)
    collector.go_up()
    drained = cli("drain", str(spool_dir), "--write-key", "some-other-key", "--host", collector.url)
    assert drained.returncode == 0
    assert "another write key" in drained.stderr
    assert collector.message_ids() == set()
    collector.go_down()
    with spooling_child(tmp_path, collector.url, spool_dir, 50, run="live"):
        drained = cli(
            "drain", str(spool_dir), "--write-key", WRITE_KEY, "--host", collector.url, "--timeout", "5"
        )
        assert "running process" in drained.stderr


def test_drain_needs_a_key_and_a_directory(tmp_path: Path) -> None:
    missing = cli("drain", str(tmp_path / "nowhere"), "--write-key", WRITE_KEY)
    assert missing.returncode == 2 and "is not a directory" in missing.stderr
    no_key = subprocess.run(
        [sys.executable, "-m", "segment_lite.cli", "spool", "drain", str(tmp_path)],
        capture_output=True,
        text=True,
        env={k: v for k, v in child_env().items() if k != "SEGMENT_WRITE_KEY"},
        cwd=REPO_ROOT,
    )
    assert no_key.returncode == 2 and "--write-key is required" in no_key.stderr
    assert cli("status", str(tmp_path / "nowhere")).returncode == 2


def test_drain_stopped_by_sigterm_exits_143_and_keeps_what_is_undelivered(
    tmp_path: Path, collector: Collector, spool_dir: Path
) -> None:
    _orphan(tmp_path, collector, spool_dir, 300)  # the collector stays down: nothing can be delivered
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "segment_lite.cli", "spool", "drain", str(spool_dir)),
            *("--write-key", WRITE_KEY, "--host", collector.url),
            *("--progress", "plain", "--progress-interval", "0.1"),
        ],
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(),
        cwd=REPO_ROOT,
    )
    assert proc.stderr is not None
    first = ""
    while "segment-lite spool drain" not in first:  # wait for a progress line: the drain is under way
        line = proc.stderr.readline()
        assert line, "the drain ended before printing progress"
        first += line
    proc.send_signal(signal.SIGTERM)
    rest = proc.communicate(timeout=60)[1]
    assert proc.returncode == 143, first + rest
    assert "interrupted" in rest and "300 left in the spool" in rest
