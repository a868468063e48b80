"""The pipeline seam: the queue comes from a factory, and shutdown ends every mode the same way."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Optional

import pytest

import segment_lite
from segment_lite.queue import MemoryQueue
from segment_lite.transport import TransportResponse

pytestmark = pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")


class CountingQueue(MemoryQueue):
    """A memory queue that remembers what was put into it and whether it was closed."""

    made: list[CountingQueue] = []

    def __init__(self) -> None:
        super().__init__(100, 1 << 20, wake_at=10)
        self.puts = 0
        self.closed = False
        CountingQueue.made.append(self)

    def put(self, item: bytes, block: bool = False, timeout: Optional[float] = None) -> bool:
        self.puts += 1
        return super().put(item, block, timeout)

    def close(self) -> None:
        self.closed = True


class ClosingTransport:
    """Answers 200 and counts how many transports were closed."""

    closed = 0

    def post(self, url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> TransportResponse:
        return TransportResponse(200, {}, b"{}")

    def abort(self) -> None:
        pass  # answers at once: nothing is ever in flight

    def close(self) -> None:
        ClosingTransport.closed += 1


def test_client_takes_its_queue_from_the_factory(collector, make_client) -> None:
    CountingQueue.made.clear()
    client = make_client(queue_factory=CountingQueue)
    assert client.queue is CountingQueue.made[0]
    for i in range(5):
        assert client.track("u", "Queued", {"i": i})[0]
    assert client.flush(timeout=10)
    assert CountingQueue.made[0].puts == 5
    assert len(collector.message_ids()) == 5
    assert client.shutdown(timeout=5)
    assert CountingQueue.made[0].closed, "shutdown closes the queue"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_gets_a_new_queue_from_the_factory(make_client) -> None:
    CountingQueue.made.clear()
    client = make_client(queue_factory=CountingQueue, send=True)
    client.track("u", "Before fork")
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child reports how many queues exist and what its queue holds
        try:
            report = (
                f"{len(CountingQueue.made)} {client.queue.qsize()} {client.queue is CountingQueue.made[-1]}"
            )
            os.write(write_end, report.encode())
        finally:
            os._exit(0)
    os.close(write_end)
    report = os.read(read_end, 100).decode()
    os.close(read_end)
    os.waitpid(pid, 0)
    assert report == "2 0 True"


@pytest.mark.parametrize("mode", [{"send": False}, {"sync_mode": True}])
def test_shutdown_refuses_later_calls_in_every_mode(mode: dict[str, Any]) -> None:
    ClosingTransport.closed = 0
    client = segment_lite.Client("key", transport=ClosingTransport, **mode)
    assert client.track("u", "Before")[0]
    assert client.shutdown(timeout=5)
    ok, message = client.track("u", "After")
    assert not ok and message is not None
    assert client.stats()["dropped"]["after_shutdown"] == 1
    if mode.get("sync_mode"):
        assert ClosingTransport.closed == 1, "the sync sender's connections are released at shutdown"
