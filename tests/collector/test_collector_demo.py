"""``segment-lite demo``: the real client sends a session to an embedded collector, which prints it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from segment_lite.cli import main

REPO = Path(__file__).resolve().parents[2]
TYPES = ("identify", "page", "track", "group", "alias", "screen")


def _check_output(out: str) -> None:
    assert "The collector stored 6 message(s)" in out
    rows = [line for line in out.splitlines() if re.match(r"^\d{4}-\d\d-\d\dT", line)]
    assert sorted(row.split()[1] for row in rows) == sorted(TYPES)
    assert any("Order Completed" in row for row in rows)
    # The full JSON example is the stored track call, with what the collector added.
    start = out.index("{\n")
    end = out.index("\n}\n", start) + 2
    example = json.loads(out[start:end])
    assert example["type"] == "track"
    assert example["event"] == "Order Completed"
    assert example["integrations"] == {"All": False, "Amplitude": True}
    assert example["properties"]["order_id"] == "ord_50314"
    assert {"receivedAt", "timestamp", "originalTimestamp", "messageId"} <= set(example)
    assert "segment-lite serve" in out[end:]


def test_demo_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["demo"])
    out = capsys.readouterr().out
    assert code == 0
    _check_output(out)


def test_demo_as_a_subprocess() -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run(
        [sys.executable, "-m", "segment_lite.cli", "demo"],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(REPO),
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    _check_output(done.stdout)
