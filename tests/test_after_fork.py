"""One after-fork hook: a forked child resets message ids, OAuth, spools, then pipelines, in that order."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from segment_lite import after_fork

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import os, sys
import segment_lite, segment_lite.oauth, segment_lite.spool.disk, segment_lite.async_pipeline
from segment_lite import after_fork
ran = []
for stage, reset in list(after_fork._RESETS.items()):
    def record(stage=stage, reset=reset):
        ran.append(stage)
        reset()
    after_fork.on_fork_in_child(stage, record)
read, write = os.pipe()
pid = os.fork()
if pid == 0:
    os.write(write, ",".join(ran).encode())
    os._exit(0)
os.waitpid(pid, 0)
print(os.read(read, 1000).decode())
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_forked_child_runs_every_reset_once_in_the_documented_order() -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    # Import order (pipelines' module first, the lazily imported spool and OAuth last) must not matter.
    result = subprocess.run(
        [sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().split(",") == list(after_fork.STAGES)


def test_only_the_registry_registers_with_the_interpreter() -> None:
    registering = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "segment_lite").rglob("*.py")
        if "os.register_at_fork(" in path.read_text(encoding="utf-8")
    ]
    assert registering == ["segment_lite/after_fork.py"]


def test_an_unknown_stage_is_refused() -> None:
    with pytest.raises(KeyError, match="unknown after-fork stage"):
        after_fork.on_fork_in_child("sockets", lambda: None)
