"""The memory queue: it packs its backlog while delivery is stalled and gives every message back in order."""

from __future__ import annotations

import asyncio
import threading
import tracemalloc

import pytest

import segment_lite
from benchmarks.sink import Sink, serve
from benchmarks.worker import closed_port
from benchmarks.workload import fresh_call_args
from segment_lite import encoding, message
from segment_lite import queue as queue_module
from segment_lite.queue import PACK_COUNT, MemoryQueue, _Packed


def _messages(count: int, start: int = 0) -> list[bytes]:
    return [
        encoding.encode(message.build_track(*fresh_call_args(index))) for index in range(start, start + count)
    ]


def test_a_healthy_queue_never_compresses_and_gives_back_its_blocks_in_order() -> None:
    q = MemoryQueue(100_000, 10**9, wake_at=100)
    assert q.put(b"{}")
    first = q.take(1, 10**6)  # a batch out, but only just: not a stall
    assert first is not None
    sent = _messages(1_000)
    for item in sent:
        assert q.put(item)
    blocks = [entry for entry in q._items if isinstance(entry, _Packed)]
    assert len(blocks) >= (1_000 - 2 * PACK_COUNT) // PACK_COUNT - 1, "a long backlog is kept in blocks"
    assert not any(block.compressed for block in blocks)
    assert q.qsize() == 1_000 and q.nbytes() == sum(map(len, sent))
    got: list[bytes] = []
    while (batch := q.take(300, 100_000)) is not None:
        got.extend(batch.items)
        q.done(batch)
    assert got == sent


def test_a_short_backlog_stays_as_it_came() -> None:
    q = MemoryQueue(100_000, 10**9, wake_at=100)
    for item in _messages(2 * PACK_COUNT - 1):
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


@pytest.mark.parametrize("stalled", [False, True])
def test_batches_cut_inside_blocks_are_the_greedy_ones_in_order(
    monkeypatch: pytest.MonkeyPatch, stalled
) -> None:
    # Blocks are taken whole or split (the rest stays packed at the head): each batch must still be
    # the longest run from the head within both budgets (at least one message), as if taken one by one.
    if stalled:
        monkeypatch.setattr(queue_module, "STALL_S", 0.0)
    q = MemoryQueue(100_000, 10**9, wake_at=100)
    assert q.put(b"{}")
    out = q.take(1, 10**6)
    assert out is not None
    sent = _messages(1_500)
    for item in sent:
        assert q.put(item)
    assert any(isinstance(entry, _Packed) for entry in q._items)
    budgets = [(100, 10**6), (1, 10**6), (37, 10**6), (300, 30_000), (PACK_COUNT, 10**6), (500, 1)]
    got: list[bytes] = []
    index = 0
    drained_at = 0
    while True:
        max_count, max_bytes = budgets[index % len(budgets)]
        index += 1
        batch = q.take(max_count, max_bytes)
        if batch is None:
            break
        assert batch.seq == 1 + len(got)
        assert batch.nbytes == sum(len(item) + 1 for item in batch.items)
        assert 1 <= len(batch) <= max_count
        following = sent[len(got) + len(batch) : len(got) + len(batch) + 1]
        if len(batch) < max_count and following:  # cut by the byte budget
            assert batch.nbytes + len(following[0]) + 1 > max_bytes
        if len(batch) > 1:
            assert batch.nbytes <= max_bytes
        got.extend(batch.items)
        q.done(batch)
        if len(got) >= 700 and not drained_at:  # shutdown's drain takes what is left, split or not
            drained_at = len(got)
            drained = q.drain()
            assert drained is not None
            got.extend(drained.items)
            q.done(drained)
    assert drained_at and got == sent
    assert q.qsize() == 0 and q.nbytes() == 0


def test_drain_unpacks_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(queue_module, "STALL_S", 0.0)
    q = MemoryQueue(100_000, 10**9, wake_at=100)
    q.put(b"{}")
    q.take(1, 10**6)
    sent = _messages(600)
    for item in sent:
        q.put(item)
    assert any(isinstance(entry, _Packed) for entry in q._items)
    drained = q.drain()
    assert drained is not None and drained.items == sent
    assert q.qsize() == 0 and q.nbytes() == 0
    assert q.drain() is None


def test_drained_messages_stay_pending_until_done() -> None:
    # Shutdown counts drained messages as dropped before it calls done(): a flush
    # waiting on them must not wake (and read stats()) in between.
    q = MemoryQueue(100, 10**6, wake_at=100)
    for item in _messages(5):
        q.put(item)
    target = q.accepted_count()
    drained = q.drain()
    assert drained is not None and len(drained) == 5
    assert q.pending_count() == 5
    assert not q.wait_settled(target, 0)
    q.done(drained)
    assert q.wait_settled(target, 0) and q.pending_count() == 0


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


def test_a_healthy_backlog_costs_a_few_bytes_per_message_beyond_its_json(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(queue_module, "STALL_S", 3600.0)
    sent = _messages(2_048)
    q = MemoryQueue(100_000, 10**9, wake_at=100)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for item in sent:
            q.put(bytes(bytearray(item)))  # a copy that only the queue holds
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    overhead = (held - sum(map(len, sent))) / len(sent)
    # 41 bytes each as separate bytes objects in the deque; in blocks, about 5.
    assert overhead < 12, overhead


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
