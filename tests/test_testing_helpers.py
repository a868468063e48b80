"""The public test helpers behave as documented."""

from __future__ import annotations

import threading

import segment_lite
from segment_lite.testing import FakeClock, RecordingClient, recording
from segment_lite.testing import segment_recorder as segment_recorder  # the documented fixture


def test_recording_replaces_and_restores_the_default_client() -> None:
    before = segment_lite.default_client
    with recording() as recorder:
        segment_lite.track("u1", "Signed Up", {"plan": "pro"})
        segment_lite.identify("u1", {"email": "a@b.c"})
        assert segment_lite.default_client is recorder
    assert segment_lite.default_client is before
    assert [m["type"] for m in recorder.messages] == ["track", "identify"]
    assert recorder.find(type="track", event="Signed Up")[0]["properties"] == {"plan": "pro"}
    assert recorder.find(userId="u1", type="identify")[0]["traits"] == {"email": "a@b.c"}
    assert recorder.find(event="Nope") == []
    assert "writeKey" not in recorder.batches[0]


def test_fixture_records(segment_recorder) -> None:
    segment_lite.page("u", "Docs", "Home")
    assert segment_recorder.find(type="page")[0]["name"] == "Home"


def test_recording_client_through_the_queue() -> None:
    recorder = RecordingClient(sync_mode=False)
    for i in range(5):
        recorder.track("u", "Queued", {"i": i})
    assert recorder.flush(timeout=10)
    assert [m["properties"]["i"] for m in recorder.messages] == list(range(5))
    recorder.clear()
    assert recorder.messages == [] and recorder.batches == []
    recorder.shutdown()


def test_fake_clock_advances_instead_of_sleeping() -> None:
    clock = FakeClock(start=10.0, wall_start=100.0)
    event = threading.Event()
    assert clock.wait(2.5, event) is True
    assert clock.monotonic() == 12.5 and clock.time() == 102.5 and clock.waits == [2.5]
    event.set()
    assert clock.wait(1.0, event) is False
    assert clock.monotonic() == 12.5
