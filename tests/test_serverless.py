"""Serverless handlers: flush_after delivers before the handler returns, and a frozen sandbox loses nothing."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

import segment_lite
from segment_lite import flush_after
from segment_lite.collector import Collector

ROOT = Path(__file__).resolve().parent.parent


class HandlerFailed(Exception):
    pass


def test_sync_handler_has_delivered_when_it_returns(collector: Collector, make_client) -> None:
    client = make_client(upload_interval=60)  # only a flush sends before a minute passes

    @flush_after(client=client, timeout=10)
    def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
        for i in range(event["n"]):
            client.track("user-1", "Handled", {"i": i})
        return {"statusCode": 200}

    assert handler({"n": 7}, None) == {"statusCode": 200}
    assert len(collector.message_ids()) == 7  # no wait: delivered before the handler returned
    assert handler.__name__ == "handler" and handler.__wrapped__ is not None  # type: ignore[attr-defined]


def test_sync_handler_that_raises_has_delivered_and_raises_its_own_error(
    collector: Collector, make_client
) -> None:
    client = make_client(upload_interval=60)

    @flush_after(client=client)
    def handler(event: dict[str, Any], context: object) -> None:
        client.track("user-1", "Before the error")
        raise HandlerFailed("boom")

    with pytest.raises(HandlerFailed, match="boom"):
        handler({}, None)
    assert len(collector.message_ids()) == 1


def test_async_handler_has_delivered_when_it_returns_or_raises(collector: Collector, make_client) -> None:
    client = make_client(upload_interval=60)

    @flush_after(client=client, timeout=10)
    async def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
        client.track("user-1", "Async")
        await asyncio.sleep(0)
        if event.get("fail"):
            raise HandlerFailed("async boom")
        return {"statusCode": 200}

    assert asyncio.iscoroutinefunction(handler)
    assert asyncio.run(handler({}, None)) == {"statusCode": 200}
    assert len(collector.message_ids()) == 1
    with pytest.raises(HandlerFailed, match="async boom"):
        asyncio.run(handler({"fail": True}, None))
    assert len(collector.message_ids()) == 2


def test_handler_object_with_an_async_call_is_flushed_after_it_is_awaited(
    collector: Collector, make_client
) -> None:
    client = make_client(upload_interval=60)

    class Handler:
        async def __call__(self, event: dict[str, Any], context: object) -> str:
            await asyncio.sleep(0)
            client.track("user-1", "From an object")
            return "done"

    handler = flush_after(client=client)(Handler())
    assert asyncio.run(handler({}, None)) == "done"
    assert len(collector.message_ids()) == 1


def test_bare_decorator_flushes_every_client_of_the_process(collector: Collector, make_client) -> None:
    first, second = make_client(upload_interval=60), make_client(upload_interval=60)
    segment_lite.write_key = "module-key"
    segment_lite.host = collector.url

    @flush_after
    def handler(event: dict[str, Any], context: object) -> str:
        first.track("user-1", "First")
        second.track("user-2", "Second")
        segment_lite.track("user-3", "Module")
        return "done"

    assert handler({}, None) == "done"
    assert sorted(m["event"] for m in collector.messages()) == ["First", "Module", "Second"]


def test_bare_decorator_with_no_client_at_all_is_harmless() -> None:
    @flush_after
    def handler() -> int:
        return 1

    assert handler() == 1


def test_failed_delivery_never_changes_the_handlers_result(collector: Collector, make_client, caplog) -> None:
    collector.go_down()
    client = make_client(upload_interval=60)

    @flush_after(client=client, timeout=0.2)
    def handler() -> str:
        client.track("user-1", "Undeliverable")
        return "result"

    with caplog.at_level(logging.WARNING, logger="segment"):
        assert handler() == "result"
    assert client.last_flush is not None and not client.last_flush.settled
    assert "stays queued for the next invocation" in caplog.text
    collector.go_up()
    assert client.flush(timeout=30)  # the next invocation's flush delivers it
    assert len(collector.message_ids()) == 1


def test_a_flush_that_raises_is_logged_not_raised(make_client, monkeypatch, caplog) -> None:
    client = make_client()

    def broken_flush(timeout: Any = None) -> bool:
        raise RuntimeError("flush exploded")

    monkeypatch.setattr(client, "flush", broken_flush)

    @flush_after(client=client)
    def handler() -> str:
        return "result"

    @flush_after(client=client)
    async def async_handler() -> str:
        return "async result"

    with caplog.at_level(logging.ERROR, logger="segment"):
        assert handler() == "result"
        assert asyncio.run(async_handler()) == "async result"
    assert caplog.text.count("the handler's result stands") == 2 and "flush exploded" in caplog.text


FROZEN_HANDLER = """
import asyncio, json, sys
import segment_lite as analytics
from segment_lite import flush_after

host, mode, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
# Short upload interval and exit timeout: the freeze outlasts both.
client = analytics.Client("lambda-key", host=host, upload_interval=0.2, shutdown_timeout=0.3)
analytics.default_client = client

@flush_after
def handler(event, context):
    for i in range(event["count"]):
        analytics.track("user-1", "sync", {"i": i})
    return {"statusCode": 200}

@flush_after(client=client, timeout=10)
async def async_handler(event, context):
    for i in range(event["count"]):
        client.track("user-1", "async", {"i": i})
        await asyncio.sleep(0)
    return {"statusCode": 200}

event = {"count": count}
result = handler(event, None) if mode == "sync" else asyncio.run(async_handler(event, None))
print(json.dumps(result), flush=True)
sys.stdin.read()  # the sandbox is frozen here, between invocations
"""
#: Longer than the upload interval (0.2 s) and the exit timeout (0.3 s) of FROZEN_HANDLER.
FREEZE_S = 1.0


@pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="needs SIGSTOP")
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_sandbox_frozen_right_after_the_handler_returns_loses_nothing(
    collector: Collector, mode: str
) -> None:
    count = 40
    process = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(FROZEN_HANDLER), collector.url, mode, str(count)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # the handler returned
        os.kill(process.pid, signal.SIGSTOP)
        assert json.loads(line) == {"statusCode": 200}, process.stderr.read() if process.stderr else ""
        at_freeze = {m["messageId"] for m in collector.messages() if m["event"] == mode}
        time.sleep(FREEZE_S)  # the freeze itself: nothing runs in the sandbox meanwhile
        os.kill(process.pid, signal.SIGCONT)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert len(at_freeze) == count
    assert len(collector.message_ids()) == count


def test_the_cost_benchmark_runs() -> None:
    from benchmarks.serverless import measure

    results = measure(n=50, reps=1, n_events=3)
    assert len(results) == 6
    assert results["one event tracked and delivered (loopback)"] > 0


def test_lambda_example_has_delivered_when_each_invocation_returns() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "aws_lambda" / "handler.py")],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    assert result.returncode == 0, result.stderr
    assert [line.rsplit("has ", 1)[1] for line in result.stdout.splitlines()] == [
        "2 message(s)",
        "4 message(s)",
        "6 message(s)",
    ]
