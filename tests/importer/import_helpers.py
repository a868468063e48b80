"""Helpers shared by the importer tests (imported by name: tests/importer is on sys.path)."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Optional

from segment_lite.importer import derive_message_id, open_source
from segment_lite.transport import RequestsTransport, TransportResponse

REPO = Path(__file__).resolve().parents[2]
WRITE_KEY = "import-test-key"


def write_jsonl(path: Path, rows: Sequence[Any], compress: bool = False) -> Path:
    """Write ``rows`` (dicts are JSON-encoded, strings written as they are) one per line."""
    text = "".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows)
    data = text.encode("utf-8")
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def track_rows(n: int, start: int = 0, **extra: Any) -> list[dict[str, Any]]:
    """``n`` valid track rows without messageIds, numbered by ``properties.n``."""
    rows = []
    for i in range(start, start + n):
        row: dict[str, Any] = {
            "type": "track",
            "userId": f"user-{i % 7}",
            "event": "Order Completed",
            "properties": {"n": i, "total": 10.5},
            "timestamp": f"2023-06-01T12:{(i // 60) % 60:02d}:{i % 60:02d}.250Z",
        }
        row.update(extra)
        rows.append(row)
    return rows


def expected_ids(path: Path, lines: Sequence[int]) -> list[str]:
    """The messageIds the importer derives for ``lines`` of ``path`` (a JSON Lines file)."""
    source = open_source(str(path))
    try:
        key = source.key
        raw = {line: row for line, row in source.records()}
        return [derive_message_id(key, line, source.content(raw[line])) for line in lines]
    finally:
        source.close()


def run_cli(
    args: Sequence[str],
    *,
    input: Optional[bytes] = None,
    env: Optional[dict[str, str]] = None,
    cwd: Optional[Path] = None,
    timeout: float = 60.0,
    stop: Optional[str] = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m segment_lite.importer ARGS`` in a subprocess; returns the finished process.

    ``stop="exit-after-checkpoints=K"`` (or ``sigint-...``) runs it through stopping_import.py instead.
    """
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = str(REPO) + os.pathsep + full_env.get("PYTHONPATH", "")
    full_env.pop("SEGMENT_WRITE_KEY", None)
    full_env.update(env or {})
    command = [sys.executable, "-m", "segment_lite.importer"]
    if stop is not None:
        command = [sys.executable, str(Path(__file__).with_name("stopping_import.py")), stop]
    completed = subprocess.run(
        [*command, *args],
        input=input,
        capture_output=True,
        env=full_env,
        cwd=str(cwd) if cwd else None,
        timeout=timeout,
    )
    return subprocess.CompletedProcess(
        completed.args,
        completed.returncode,
        completed.stdout.decode("utf-8", "replace"),
        completed.stderr.decode("utf-8", "replace"),
    )


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every JSON line of ``path``."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def by_n(messages: Sequence[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """Stored messages keyed by ``properties.n``; fails if two share one."""
    out: dict[int, dict[str, Any]] = {}
    for message in messages:
        n = message["properties"]["n"]
        assert n not in out, f"row {n} stored twice (ids {out[n]['messageId']} and {message['messageId']})"
        out[n] = message
    return out


class SlowTransport:
    """Forwards to the real server after ``delay_s``: keeps messages unsettled for a while."""

    delay_s = 0.005

    def __init__(self) -> None:
        self.inner = RequestsTransport()

    def post(self, url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> TransportResponse:
        time.sleep(self.delay_s)
        return self.inner.post(url, body, headers, timeout)

    def abort(self) -> None:
        self.inner.abort()

    def close(self) -> None:
        self.inner.close()


class SlowerTransport(SlowTransport):
    """50 ms per request."""

    delay_s = 0.05
