"""AsyncClient: Client's calls without threads, awaitable lifecycle, immediate sends, and a loop that ends."""

from __future__ import annotations

import asyncio
import inspect
import logging
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

import segment_lite
from segment_lite import APIError, AsyncClient, ValidationError
from tests.async_driver import SLOW_CALLBACK_S, SlowCallbacks
from tests.conftest import WRITE_KEY

T = TypeVar("T")


def run(coroutine: Coroutine[Any, Any, T], blocking_teardown: bool = False) -> T:
    """``asyncio.run`` in debug mode; fails if any callback held the loop too long.

    ``blocking_teardown``: the loop ends with messages queued, and delivering them holds it, by design.
    """
    slow = SlowCallbacks()
    asyncio_log = logging.getLogger("asyncio")
    asyncio_log.addHandler(slow)

    async def main() -> T:
        asyncio.get_running_loop().slow_callback_duration = SLOW_CALLBACK_S
        return await coroutine

    try:
        result = asyncio.run(main(), debug=True)
    finally:
        asyncio_log.removeHandler(slow)
    if blocking_teardown:
        assert all("segment_lite-consumer" in record for record in slow.records), slow.records
    else:
        assert not slow.records, f"the event loop was held too long: {slow.records}"
    return result


def make(collector, **kwargs: Any) -> AsyncClient:
    kwargs.setdefault("host", collector.url)
    kwargs.setdefault("shutdown_timeout", 2.0)
    return AsyncClient(WRITE_KEY, **kwargs)


def test_the_six_calls_return_what_client_returns_and_deliver_on_shutdown(collector) -> None:
    calls = [
        ("identify", ("u1", {"plan": "pro"})),
        ("track", ("u1", "Signed Up", {"n": 1})),
        ("alias", ("old", "u1")),
        ("group", ("u1", "g1", {"name": "Acme"})),
        ("page", ("u1", "Docs", "Intro", {"path": "/"})),
        ("screen", ("u1", "App", "Home")),
    ]
    reference = segment_lite.Client(WRITE_KEY, send=False)

    async def main() -> list[Any]:
        async with make(collector) as client:
            results = [getattr(client, name)(*args) for name, args in calls]
        assert client.stats()["delivered"] == 6 and client.last_flush.all_delivered
        return results

    results = run(main())
    for (name, args), (ok, message) in zip(calls, results):
        expected_ok, expected = getattr(reference, name)(*args)
        assert ok is expected_ok is True
        same = {k: v for k, v in message.items() if k not in ("messageId", "timestamp")}
        assert same == {k: v for k, v in expected.items() if k not in ("messageId", "timestamp")}
    assert collector.message_ids() == {message["messageId"] for _, message in results}


def test_bad_input_is_refused_as_client_refuses_it(collector) -> None:
    async def main() -> dict[str, Any]:
        async with make(collector, strict=True) as client:
            with pytest.raises(ValidationError) as refused:
                client.track("u", None)
            with pytest.raises(ValidationError) as reference:
                segment_lite.Client(WRITE_KEY, send=False, strict=True).track("u", None)
            assert str(refused.value) == str(reference.value)
            return client.stats()

    assert run(main())["dropped"]["invalid"] == 1


def test_immediate_sends_return_the_servers_verdict_or_raise(collector) -> None:
    async def main() -> dict[str, Any]:
        async with make(collector) as client:
            ok, message = await client.track_now("u", "Paid", {"amount": 3})
            assert ok and message["messageId"] in collector.message_ids()
            assert (await client.identify_now("u", {"a": 1}))[0]
            collector.fail_next(1, 400, body={"code": "invalid", "message": "nope"})
            with pytest.raises(APIError) as refused:
                await client.page_now("u", "Docs", "Refused")
            assert refused.value.status == 400 and refused.value.message == "nope"
            return client.stats()

    stats = run(main())
    assert stats["accepted"] == 3 and stats["delivered"] == 2 and stats["dropped"]["rejected"] == 1


@pytest.mark.parametrize(
    ("option", "value"), [("sync_mode", True), ("on_full", "block"), ("spool_dir", "/tmp/spool")]
)
def test_options_that_would_block_the_loop_are_refused(option: str, value: Any) -> None:
    with pytest.raises(ValidationError) as refused:
        AsyncClient(WRITE_KEY, **{option: value})
    assert refused.value.path == option


def test_a_loop_that_ends_without_shutdown_delivers_synchronously_and_warns(collector, caplog) -> None:
    client = make(collector, upload_interval=3600)

    async def main() -> None:
        for i in range(20):
            client.track("u", "Left Behind", {"i": i})

    with caplog.at_level(logging.WARNING, logger="segment"):
        run(main())  # returns with 20 queued: asyncio.run cancels the worker task
    assert "event loop closed without AsyncClient.shutdown()" in caplog.text
    assert len(collector.message_ids()) == 20
    assert client.stats()["delivered"] == 20 and client.stats()["dropped_total"] == 0

    async def again() -> bool:  # a later loop delivers again
        client.track("u", "Next Loop")
        return await client.shutdown(2.0)

    assert run(again()) and len(collector.message_ids()) == 21


def test_a_loop_that_ends_with_the_server_down_counts_what_it_loses(collector, caplog) -> None:
    client = make(collector, upload_interval=3600, shutdown_timeout=0.3)
    collector.go_down()

    async def main() -> None:
        for i in range(5):
            client.track("u", "Lost", {"i": i})

    with caplog.at_level(logging.WARNING, logger="segment"):
        run(main(), blocking_teardown=True)
    stats = client.stats()
    assert stats["dropped"]["shutdown_timeout"] == 5 and stats["queued"] == 0
    assert "dropped 5 undelivered message(s) as shutdown_timeout" in caplog.text


def test_cancelling_a_task_awaiting_flush_loses_nothing(collector) -> None:
    async def main() -> dict[str, Any]:
        client = make(collector)
        collector.delay_next(1, 0.5)
        for i in range(10):
            client.track("u", "Kept", {"i": i})
        waiting = asyncio.ensure_future(client.flush(10))
        await asyncio.sleep(0.1)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert await client.shutdown(5)
        return client.stats()

    stats = run(main())
    assert stats["delivered"] == 10 and len(collector.message_ids()) == 10


def test_shutdown_at_its_deadline_cancels_the_request_in_flight_and_counts_it(collector) -> None:
    async def main() -> tuple[bool, float, dict[str, Any]]:
        client = make(collector)
        collector.delay_next(1, 5.0)
        for i in range(4):
            client.track("u", "Slow", {"i": i})
        await client.flush(0.2)  # the request is now in flight
        started = time.monotonic()
        settled = await client.shutdown(0.3)
        return settled, time.monotonic() - started, client.stats()

    settled, took, stats = run(main())
    assert settled is False and took < 1.5
    assert stats["dropped"]["shutdown_timeout"] == 4 and stats["queued"] == 0


def test_tracking_before_the_loop_and_from_another_thread_is_delivered(collector) -> None:
    client = make(collector, upload_size=5)
    client.track("u", "Before Any Loop")

    async def main() -> dict[str, Any]:
        producers = [
            threading.Thread(target=lambda: [client.track("u", "From A Thread", {"i": i}) for i in range(50)])
            for _ in range(2)
        ]
        for producer in producers:
            producer.start()
        while any(producer.is_alive() for producer in producers):
            await asyncio.sleep(0.01)
        assert await client.shutdown(5)
        return client.stats()

    stats = run(main())
    assert stats["delivered"] == 101 and len(collector.message_ids()) == 101


def test_flush_after_flushes_an_async_client_around_an_async_handler(collector) -> None:
    client = make(collector, upload_interval=3600)

    @segment_lite.flush_after(client=client, timeout=5)
    async def handler() -> str:
        client.track("u", "In Handler")
        return "done"

    async def main() -> str:
        result = await handler()
        assert len(collector.message_ids()) == 1  # delivered before the handler returned
        await client.shutdown(2)
        return result

    assert run(main()) == "done"


def test_fork_child_starts_empty_and_delivers_its_own(collector) -> None:
    if not hasattr(__import__("os"), "fork"):
        pytest.skip("no fork")
    script = textwrap.dedent(
        f"""
        import asyncio, os
        from segment_lite import AsyncClient
        client = AsyncClient({WRITE_KEY!r}, host={collector.url!r}, upload_interval=3600)
        client.track("parent", "Before Fork")
        pid = os.fork()
        if pid == 0:
            async def child():
                assert client.stats()["queued"] == 0  # the parent's messages are the parent's
                client.track("child", "In Child")
                assert await client.shutdown(5)
            asyncio.run(child())
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        async def parent():
            assert await client.shutdown(5)
        asyncio.run(parent())
        raise SystemExit(os.waitstatus_to_exitcode(status))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    events = sorted(m["event"] for m in collector.messages())
    assert events == ["Before Fork", "In Child"]


def test_the_recording_client_records_async_client_calls() -> None:
    from segment_lite.testing import RecordingAsyncClient

    async def main() -> RecordingAsyncClient:
        async with RecordingAsyncClient() as recorder:
            recorder.track("u", "Queued")
            await recorder.flush()
            await recorder.identify_now("u", {"plan": "pro"})
        return recorder

    recorder = run(main())
    assert [m["type"] for m in recorder.messages] == ["track", "identify"]
    assert recorder.find(event="Queued")[0]["userId"] == "u"
    assert all("writeKey" not in batch for batch in recorder.batches)


#: A value for every parameter of the six calls, each different, so a field sent from the wrong one shows.
EVERY_ARGUMENT = {
    "user_id": "user-1",
    "anonymous_id": "anon-1",
    "previous_id": "previous-1",
    "group_id": "group-1",
    "event": "Paid",
    "category": "Docs",
    "name": "Install",
    "traits": {"plan": "pro"},
    "properties": {"amount": 3},
    "context": {"ip": "10.0.0.1"},
    "timestamp": "2024-05-01T12:00:00Z",
    "integrations": {"All": False},
}


@pytest.mark.parametrize("call", ["identify", "track", "alias", "group", "page", "screen"])
@pytest.mark.parametrize("by_keyword", [True, False])
def test_each_immediate_send_sends_what_its_queued_call_would(call: str, by_keyword: bool) -> None:
    from segment_lite.testing import RecordingAsyncClient

    names = [
        name for name in inspect.signature(getattr(segment_lite.Client, call)).parameters if name != "self"
    ]
    assert names == [name for name in inspect.signature(getattr(AsyncClient, f"{call}_now")).parameters][1:]

    def arguments(message_id: str) -> tuple[list[Any], dict[str, Any]]:
        values = {**EVERY_ARGUMENT, "message_id": message_id}
        if by_keyword:
            return [], {name: values[name] for name in names}
        return [values[name] for name in names], {}

    async def main() -> RecordingAsyncClient:
        async with RecordingAsyncClient() as recorder:
            args, kwargs = arguments("sent-now")
            ok, _ = await getattr(recorder, f"{call}_now")(*args, **kwargs)
            assert ok
            args, kwargs = arguments("queued")
            assert getattr(recorder, call)(*args, **kwargs)[0]
        return recorder

    recorder = run(main())
    sent_now, queued = recorder.messages
    assert (sent_now["messageId"], queued["messageId"]) == ("sent-now", "queued")
    assert {**sent_now, "messageId": ""} == {**queued, "messageId": ""}
    assert sent_now["integrations"] == {"All": False} and sent_now["context"]["ip"] == "10.0.0.1"
