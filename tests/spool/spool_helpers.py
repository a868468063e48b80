"""Helpers for the disk spool tests: child processes that spool, and reading what a spool holds."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Optional

from segment_lite.ledger import Ledger
from segment_lite.spool.disk import DiskSpool
from segment_lite.spool.store import DATABASE_NAME, owner_directories

WRITE_KEY = "test-secret-write-key-1234"
REPO_ROOT = Path(__file__).resolve().parents[2]


class Losses:
    """A ledger that remembers what was reported to on_drop."""

    def __init__(self) -> None:
        self.errors: list[BaseException] = []
        self.ledger = Ledger(
            None, logging.getLogger("test"), on_drop=lambda reason, exc, messages: self.errors.append(exc)
        )

    @property
    def corrupt(self) -> int:
        return int(self.ledger.snapshot(0, 0, 0)["dropped"]["spool_corrupt"])


#: A process that spools ``count`` track calls (properties ``run`` and ``i``), writes
#: their messageIds to ``ids_path``, prints "ready <owner directory>", then does
#: ``then``: "sleep" (until killed), "flush" (deliver, print "flushed", sleep) or
#: "exit" (return normally: the exit flush runs).
SPOOLING_CHILD = r"""
import json, sys, time
import segment_lite

spec = json.loads(sys.argv[1])
# Retries capped at half a second, so a server that comes back is found at once however long it was away.
policy = segment_lite.RetryPolicy(max_retries=10**9, max_delay_s=0.5)
client = segment_lite.Client(
    spec["write_key"], host=spec["host"], spool_dir=spec["dir"], retry_policy=policy, **spec.get("options", {})
)
ids = []
for i in range(spec["count"]):
    ok, message = client.track("user-%d" % (i % 50), "Spooled", {"run": spec["run"], "i": i})
    assert ok, client.stats()
    ids.append(message["messageId"])
with open(spec["ids_path"], "w") as handle:
    json.dump(ids, handle)
print("ready", client.queue.directory, flush=True)
if spec["then"] == "flush":
    assert client.flush(timeout=60), client.stats()
    print("flushed", json.dumps(client.stats()), flush=True)
if spec["then"] in ("sleep", "flush"):
    time.sleep(600)
"""


def child_env() -> dict[str, str]:
    """The environment for child processes: this checkout's segment_lite first."""
    env = dict(os.environ)
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + path if path else "")
    return env


def python(code: str, *args: str, stdin: Optional[int] = None) -> subprocess.Popen[str]:
    """Start ``python -c code args`` with stdout piped (text)."""
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stdin=stdin,
        text=True,
        env=child_env(),
        cwd=REPO_ROOT,
    )


@contextmanager
def spooling_child(
    tmp_path: Path,
    host: str,
    spool_dir: Path,
    count: int,
    then: str = "sleep",
    run: str = "a",
    **options: Any,
) -> Iterator[tuple[subprocess.Popen[str], str, list[str]]]:
    """A child that spooled ``count`` messages: yields (process, its owner directory, the messageIds)."""
    ids_path = tmp_path / f"ids-{run}.json"
    spec = {
        "write_key": WRITE_KEY,
        "host": host,
        "dir": str(spool_dir),
        "count": count,
        "then": then,
        "run": run,
        "ids_path": str(ids_path),
        "options": options,
    }
    process = python(SPOOLING_CHILD, json.dumps(spec))
    try:
        assert process.stdout is not None
        line = process.stdout.readline().split()
        assert line[:1] == ["ready"], f"the child did not get ready: {line!r}"
        yield process, line[1], json.loads(ids_path.read_text())
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)
        if process.stdout is not None:
            process.stdout.close()


def kill9(process: subprocess.Popen[str]) -> None:
    """SIGKILL ``process`` and reap it."""
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` passes (for other processes' progress)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def owner_names(spool_dir: Path) -> list[str]:
    """The owner directories under ``spool_dir``, by name."""
    return [os.path.basename(path) for path in owner_directories(str(spool_dir))]


def crash_in_process(spool: DiskSpool) -> None:
    """Leave ``spool``'s directory as a kill -9 would: the database and WAL unsynced, uncheckpointed.

    The spool's connection holds SQLite's exclusive lock until its process ends,
    so its files are copied (what a kill leaves is what the kernel holds) and the
    copies put in their place; the spool lets go of its lock without touching them.
    """
    directory = Path(spool.directory or "")
    for name in (DATABASE_NAME, DATABASE_NAME + "-wal"):
        if (directory / name).exists():
            shutil.copyfile(directory / name, directory / (name + ".image"))
    spool._forget_after_fork()  # its connection stays open on the old files, never used again
    for name in (DATABASE_NAME, DATABASE_NAME + "-wal"):
        if (directory / (name + ".image")).exists():
            os.replace(directory / (name + ".image"), directory / name)


def database_rows(spool: DiskSpool) -> int:
    """Rows in a live spool's database, read through its own connection (no other can open it)."""
    with spool._lock:
        assert spool._writer is not None
        return int(spool._writer.execute("SELECT count(*) FROM messages").fetchone()[0])
