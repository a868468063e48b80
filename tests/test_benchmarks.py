"""The side-by-side benchmark runs end to end, and the hot-path optimizations keep their behaviour.

The benchmark runs on a tiny N with one repetition: these tests check that it
completes, that every run delivered exactly what it sent, and that the report
carries every metric. They assert nothing about timings.
"""

from __future__ import annotations

import asyncio
import datetime
import gzip
import http.client
import json
import math
import os
import threading
import tracemalloc
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import segment_lite
from benchmarks import run as bench_run
from benchmarks.report import METRICS, TIMED_METRICS, format_table
from benchmarks.sink import Sink, serve
from benchmarks.worker import SCENARIOS, closed_port
from benchmarks.workload import CLIENTS, fresh_call_args, unavailable_reason
from segment_lite import encoding, message
from segment_lite import queue as queue_module
from segment_lite.queue import PACK_COUNT, MemoryQueue, _Packed

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    """One tiny run of the whole benchmark, with every client that is installed."""
    return bench_run.run_benchmark(n=300, warmup=50, reps=1)


def test_benchmark_completes_and_every_run_delivered_what_it_sent(report: dict[str, Any]) -> None:
    runs = report["runs"]
    clients = report["meta"]["clients"]
    assert "lite-json" in clients
    assert {(run["scenario"], run["client"]) for run in runs} == {
        (scenario, client) for scenario in SCENARIOS for client in clients
    }
    for run in runs:
        assert run["accepted"] == run["sent"], run
        if not SCENARIOS[run["scenario"]].memory:
            assert run["delivered_unique"] == run["sent"] == run["delivered_total"], run
            assert run["bad_requests"] == 0


def test_report_has_every_metric(report: dict[str, Any]) -> None:
    medians = report["medians"]
    for scenario, spec in SCENARIOS.items():
        for client in report["meta"]["clients"]:
            values = medians[scenario][client]
            keys = ["bytes_per_msg"] if spec.memory else [*TIMED_METRICS, "caller_cpu_us_per_msg"]
            for key in keys:
                assert key in values and not math.isnan(values[key]) and values[key] > 0, (
                    scenario,
                    client,
                    key,
                )
    json.dumps(report)  # the report is written as JSON
    table = bench_run.render(report)
    for metric in METRICS.values():
        assert metric.label in table


def test_report_has_ratios_against_the_reference(report: dict[str, Any]) -> None:
    reason = unavailable_reason("reference")
    if reason:
        pytest.skip(f"reference side skipped: {reason}")
    assert "reference" in report["meta"]["clients"]
    for scenario, spec in SCENARIOS.items():
        for client in report["meta"]["clients"]:
            if client == "reference":
                continue
            keys = ["bytes_per_msg"] if spec.memory else TIMED_METRICS
            for key in keys:
                verdict = report["targets"][scenario][client][key]
                assert verdict["factor"] > 0 and isinstance(verdict["met"], bool)
    assert "vs ref" in format_table(report, report["meta"]["clients"], list(SCENARIOS))


def test_quick_mode_is_small() -> None:
    assert bench_run.QUICK["n"] + bench_run.QUICK["warmup"] <= 1_500 and bench_run.QUICK["reps"] == 1
    assert set(CLIENTS) == {"reference", "lite-json", "lite-orjson"}


# -- the sink ----------------------------------------------------------------------


@pytest.fixture
def sink_url() -> Iterator[tuple[Sink, str]]:
    """A sink served on a loopback port from a thread of this process."""
    sink = Sink("key")
    ready = threading.Event()
    port: list[int] = []
    loop = asyncio.new_event_loop()

    def on_ready(bound: int) -> None:
        port.append(bound)
        ready.set()

    task_holder: list[asyncio.Task[None]] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        task = loop.create_task(serve(sink, port=0, ready=on_ready, max_seconds=60))
        task_holder.append(task)
        try:
            loop.run_until_complete(task)
        except asyncio.CancelledError:
            pass

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(10)
    yield sink, f"127.0.0.1:{port[0]}"
    loop.call_soon_threadsafe(task_holder[0].cancel)
    thread.join(10)


def _post(address: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    host, port = address.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("POST", path, body=body, headers=headers)
    response = conn.getresponse()
    result = response.status, response.read()
    conn.close()
    return result


def test_sink_counts_unique_message_ids_in_plain_and_gzip_bodies(sink_url: tuple[Sink, str]) -> None:
    sink, address = sink_url
    batch = {"batch": [{"messageId": "a"}, {"messageId": "b"}], "writeKey": "key"}
    body = json.dumps(batch).encode()
    assert _post(address, "/v1/batch", body, {}) == (200, b'{"success": true}')
    status, _ = _post(address, "/v1/batch", gzip.compress(body), {"Content-Encoding": "gzip"})
    assert status == 200
    assert (sink.stats()["unique"], sink.messages, sink.batches) == (2, 4, 2)
    assert _post(address, "/v1/batch", b"not json", {})[0] == 400
    assert _post(address, "/v1/batch", json.dumps({"batch": [], "writeKey": "wrong"}).encode(), {})[0] == 401
    assert sink.bad_requests == 2
    assert _post(address, "/reset", b"", {})[0] == 200
    assert sink.stats()["unique"] == 0


# -- the hot path keeps its behaviour ------------------------------------------------


def test_message_ids_are_unique_uuid4_strings_across_threads() -> None:
    found: list[list[str]] = [[] for _ in range(4)]

    def make(index: int) -> None:
        found[index] = [message.new_message_id() for _ in range(5_000)]

    threads = [threading.Thread(target=make, args=(index,)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ids = [value for values in found for value in values]
    assert len(set(ids)) == len(ids) == 20_000
    for value in ids[::97]:
        parsed = uuid.UUID(value)
        assert str(parsed) == value and parsed.version == 4 and parsed.variant == uuid.RFC_4122


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_does_not_repeat_the_parents_message_ids() -> None:
    message.new_message_id()  # the parent has a draw of random bytes in use
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.close(read_end)
        os.write(write_end, json.dumps([message.new_message_id() for _ in range(50)]).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        child_ids = set(json.loads(pipe.read()))
    os.waitpid(pid, 0)
    parent_ids = {message.new_message_id() for _ in range(50)}
    assert len(child_ids) == 50 and not child_ids & parent_ids


def test_now_iso_matches_datetime_formatting() -> None:
    before = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    stamp = message.now_iso()
    after = datetime.datetime.now(datetime.timezone.utc)
    assert len(stamp) == 24 and stamp.endswith("Z") and stamp[19] == "."
    parsed = datetime.datetime.fromisoformat(stamp[:-1] + "+00:00")
    assert before <= parsed <= after


def test_encoded_messages_are_exact_size_and_identical_on_both_encoders(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    built = message.build_track(*fresh_call_args(7))
    first = encoding.encode(built)
    monkeypatch.setattr(encoding, "HAVE_ORJSON", False)
    assert encoding.encode(built) == first
    assert json.loads(first)["properties"]["added_at"] == "2024-05-17T09:30:12.345000+00:00"


@pytest.mark.parametrize("orjson_on", [True, False])
def test_encoded_bytes_hold_no_more_memory_than_their_length(
    monkeypatch: pytest.MonkeyPatch, orjson_on: bool
) -> None:
    # The queue keeps each encoded message: it must not keep an encoder's larger
    # working buffer with it (orjson returns one of 1 KB to 4 KB or more).
    if orjson_on and not encoding.HAVE_ORJSON:
        pytest.skip("orjson is not installed")
    monkeypatch.setattr(encoding, "HAVE_ORJSON", orjson_on)
    built = message.build_track(*fresh_call_args(7))
    size = len(encoding.encode(built))
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = [encoding.encode(built) for _ in range(200)]
        per_item = (tracemalloc.get_traced_memory()[0] - before) / len(kept)
    finally:
        tracemalloc.stop()
    assert per_item < size + 128  # the bytes object's header and the list's slot


def test_non_finite_floats_take_the_exact_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(encoding, "HAVE_ORJSON", False)
    assert encoding.encode({"a": float("nan"), "b": [float("inf"), 1.5], "s": "NaN"}) == (
        b'{"a":null,"b":[null,1.5],"s":"NaN"}'
    )


# -- the queue packs its backlog while delivery is stalled ----------------------------


def _messages(count: int, start: int = 0) -> list[bytes]:
    return [
        encoding.encode(message.build_track(*fresh_call_args(index))) for index in range(start, start + count)
    ]


def test_a_healthy_queue_never_packs() -> None:
    q = MemoryQueue(100_000, 10**9, wake_at=100)
    assert q.put(b"{}")
    assert q.take(1, 10**6) is not None  # a batch out, but only just: not a stall
    for item in _messages(1_000):
        assert q.put(item)
    assert not any(isinstance(entry, _Packed) for entry in q._items)


def test_stalled_queue_packs_and_gives_back_every_message_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(queue_module, "STALL_S", 0.0)
    q = MemoryQueue(100_000, 10**9, wake_at=100)
    assert q.put(b'{"first":1}')
    stuck = q.take(1, 10**6)  # out, and never settled: delivery is stalled
    assert stuck is not None
    sent = _messages(1_000)
    for item in sent:
        assert q.put(item)
    packed = [entry for entry in q._items if isinstance(entry, _Packed)]
    assert len(packed) >= (1_000 - 2 * PACK_COUNT) // PACK_COUNT - 1
    assert q.qsize() == 1_000 and q.nbytes() == sum(map(len, sent))
    assert q.pending_count() == 1_001
    got: list[bytes] = []
    while True:
        batch = q.take(300, 100_000)
        if batch is None:
            break
        assert len(batch) <= 300 and batch.nbytes <= 100_000
        got.extend(batch.items)
        q.done(batch)
    assert got == sent
    assert q.qsize() == 0 and q.nbytes() == 0
    q.done(stuck)
    assert q.wait_settled(q.accepted_count(), 0)


def test_drain_unpacks_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(queue_module, "STALL_S", 0.0)
    q = MemoryQueue(100_000, 10**9, wake_at=100)
    q.put(b"{}")
    q.take(1, 10**6)
    sent = _messages(600)
    for item in sent:
        q.put(item)
    assert any(isinstance(entry, _Packed) for entry in q._items)
    assert q.drain() == sent
    assert q.qsize() == 0 and q.nbytes() == 0


def test_packed_backlog_holds_a_fraction_of_the_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    sent = _messages(2_000)

    def held(stalled: bool) -> float:
        monkeypatch.setattr(queue_module, "STALL_S", 0.0 if stalled else 3600.0)
        q = MemoryQueue(100_000, 10**9, wake_at=100)
        q.put(b"{}")
        q.take(1, 10**6)
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for item in sent:
                q.put(bytes(bytearray(item)))  # a copy that only the queue holds
            return (tracemalloc.get_traced_memory()[0] - before) / len(sent)
        finally:
            tracemalloc.stop()

    assert held(stalled=True) < held(stalled=False) / 3


def test_client_delivers_everything_after_an_outage(monkeypatch: pytest.MonkeyPatch) -> None:
    # The server is down while 1,000 messages are queued (so they are packed), then
    # comes back on the same port: every message arrives, once.
    monkeypatch.setattr(queue_module, "STALL_S", 0.0)
    port = closed_port()
    client = segment_lite.Client("key", host=f"http://127.0.0.1:{port}")
    client.track("u", "first")
    assert not client.flush(timeout=0.3)  # the first batch is out and failing: delivery is stalled
    for index in range(1_000):
        client.track(f"user-{index}", "Queued", {"index": index})
    assert any(isinstance(entry, _Packed) for entry in client.queue._items)

    sink = Sink("key")
    ready = threading.Event()
    loop = asyncio.new_event_loop()
    holder: list[asyncio.Task[None]] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        holder.append(loop.create_task(serve(sink, port=port, ready=lambda _: ready.set())))
        try:
            loop.run_until_complete(holder[0])
        except asyncio.CancelledError:
            pass

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        assert client.flush(timeout=30)
        assert sink.stats()["unique"] == sink.messages == 1_001
    finally:
        client.shutdown(timeout=5)
        loop.call_soon_threadsafe(holder[0].cancel)
        thread.join(10)
