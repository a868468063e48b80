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
from segment_lite.collector.table import clip

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
    # The embedded collector's URL is dead once the demo exits, and the output says so.
    assert "stops when the demo ends" in out.splitlines()[1]
    # Traits are cut at a word, never mid-word.
    (identify,) = [row for row in rows if row.split()[1] == "identify"]
    assert "traits: createdAt, email…" in identify


def test_table_cells_are_cut_at_a_word_boundary() -> None:
    assert clip("traits: createdAt, email, name, plan", 30) == "traits: createdAt, email…"
    assert clip("short", 30) == "short"
    assert clip("a-single-very-long-identifier-without-spaces", 10) == "a-single-…"
    for text in ("Order Completed Successfully Today", "traits: a, bb, ccc, dddd, eeeee, ffffff"):
        for width in range(5, len(text)):
            cut = clip(text, width)
            assert len(cut) <= width and cut.endswith("…")
            kept = cut[:-1]
            assert text.startswith(kept)
            if " " in text[: width - 1]:  # a word fits: no word is cut
                assert text[len(kept)] in " ,", (text, width, cut)


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


def test_quickstart_says_it_runs_its_own_collector() -> None:
    script = REPO / "examples" / "quickstart.py"
    assert "starts its own collector" in script.read_text(encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    last = done.stdout.splitlines()[-1]
    assert re.search(r"a collector this script started on http://127\.0\.0\.1:\d+", last)
    assert "not in a running `segment-lite serve`" in last


@pytest.mark.parametrize("command", ["demo", "serve"])
def test_without_h11_demo_and_serve_name_the_extra_to_install(command: str) -> None:
    # None in sys.modules makes ``import h11`` fail, as on a machine without the collector extra.
    code = f"import sys; sys.modules['h11'] = None; from segment_lite.cli import main; sys.exit(main([{command!r}]))"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 1, done.stderr
    assert 'needs h11, which is not installed: pip install "segment-lite[collector]"' in done.stderr
    assert "Traceback" not in done.stderr
