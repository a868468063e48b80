"""What crosses the wire, checked on a real HTTP server: path, headers, auth, gzip, body, batching."""

from __future__ import annotations

import base64
import datetime
import gzip
import json
import time

import pytest

import segment_lite
from segment_lite.errors import ValidationError
from segment_lite.transport import DEFAULT_HOST, EU_HOST, batch_url
from tests.conftest import WRITE_KEY

#: Every test that makes clients runs on both delivery drivers (see tests/conftest.py).
DELIVERY_DRIVERS = ("threads", "asyncio")

#: An upload interval no test outlives: what is tracked goes out in one request, at flush().
ONLY_FLUSH_SENDS = 3600


def test_batch_request_shape(collector, make_client) -> None:
    client = make_client(upload_interval=ONLY_FLUSH_SENDS)
    client.track("user-1", "Signed Up", {"plan": "pro"}, integrations={"All": False, "Amplitude": True})
    client.identify("user-1", {"email": "u@example.com"})
    assert client.flush(timeout=10)

    [request] = collector.requests
    assert request.method == "POST"
    assert request.path == "/v1/batch"
    assert request.status == 200
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"] == f"segment-lite/{segment_lite.VERSION}"
    expected_auth = base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
    assert request.headers["Authorization"] == f"Basic {expected_auth}"
    assert "Content-Encoding" not in request.headers
    assert "X-Retry-Count" not in request.headers

    body = json.loads(request.raw_body)
    assert set(body) == {"batch", "sentAt", "writeKey"}
    assert body["writeKey"] == WRITE_KEY
    sent_at = datetime.datetime.fromisoformat(body["sentAt"].replace("Z", "+00:00"))
    assert abs((datetime.datetime.now(datetime.timezone.utc) - sent_at).total_seconds()) < 30
    track, identify = body["batch"]
    assert track["type"] == "track" and track["event"] == "Signed Up"
    assert track["integrations"] == {"All": False, "Amplitude": True}
    assert identify["traits"] == {"email": "u@example.com"}
    assert collector.message_ids() == {track["messageId"], identify["messageId"]}


def test_gzip_body(collector, make_client) -> None:
    client = make_client(gzip=True, upload_interval=ONLY_FLUSH_SENDS)
    for i in range(20):
        client.track("u", "Zipped", {"i": i})
    assert client.flush(timeout=10)
    [request] = collector.requests
    assert request.headers["Content-Encoding"] == "gzip"
    assert request.raw_body[:2] == b"\x1f\x8b"
    body = json.loads(gzip.decompress(request.raw_body))
    assert [m["properties"]["i"] for m in body["batch"]] == list(range(20))
    assert len(collector.messages()) == 20


def test_batches_are_cut_by_upload_size(collector, make_client) -> None:
    # A large upload_interval: only the count, or flush, can make the consumer send.
    client = make_client(upload_size=10, max_batch_size=10, upload_interval=60)
    for i in range(35):
        client.track("u", "Counted", {"i": i})
    assert client.flush(timeout=10)
    sizes = [len(r.json["batch"]) for r in collector.requests]
    assert sum(sizes) == 35 and max(sizes) <= 10
    assert len(collector.message_ids()) == 35


def test_batches_are_cut_by_bytes_under_500kb(collector, make_client) -> None:
    client = make_client(upload_size=100, upload_interval=60)
    blob = "x" * 30_000
    for i in range(40):  # ~1.2 MB in all
        client.track("u", "Heavy", {"i": i, "blob": blob})
    assert client.flush(timeout=20)
    assert len(collector.message_ids()) == 40
    assert len(collector.requests) >= 3
    for request in collector.requests:
        assert len(request.raw_body) <= 500 * 1024
        assert request.status == 200


def test_backlog_is_sent_in_bigger_batches_within_limits(collector, make_client) -> None:
    client = make_client(upload_interval=60)
    # The first batch is held by the server for 3 s, ample time for the backlog to build.
    collector.delay_next(1, 3.0)
    for i in range(3000):
        client.track("u", "Backlog", {"i": i})
    assert client.flush(timeout=30)
    sizes = [len(r.json["batch"]) for r in collector.requests]
    assert sum(sizes) == 3000
    assert max(sizes) > 100  # grew past upload_size...
    assert max(sizes) <= 2500  # ...but not past Segment's limit
    assert len(collector.message_ids()) == 3000


def test_flush_wakes_the_consumer_instead_of_waiting_the_interval(collector, make_client) -> None:
    client = make_client(upload_interval=3600)
    client.track("u", "Now")
    assert client.flush(timeout=10)  # would need an hour if flush only waited
    assert len(collector.messages()) == 1


def test_upload_interval_sends_a_partial_batch_without_flush(collector, make_client) -> None:
    client = make_client(upload_interval=0.05)
    client.track("u", "Soon")
    assert collector.wait_for_messages(1, timeout=10)


@pytest.mark.threads_only
def test_sync_mode_posts_on_the_calling_thread(collector, make_client) -> None:
    client = make_client(sync_mode=True)
    ok, message = client.track("u", "Synced")
    assert ok
    assert collector.message_ids() == {message["messageId"]}  # already there: no flush needed
    assert client.consumers == []


def test_send_false_builds_but_sends_nothing(collector, make_client) -> None:
    client = make_client(send=False)
    ok, message = client.track("u", "Dry", {"a": 1})
    assert ok and message["event"] == "Dry"
    assert client.flush(timeout=1)
    assert collector.requests == []


@pytest.mark.threads_only
def test_all_consumer_threads_are_tracked_and_stopped(collector, make_client) -> None:
    client = make_client(thread=3, upload_size=5)
    for i in range(60):
        client.track("u", "Threaded", {"i": i})
    assert client.flush(timeout=10)
    consumers = client.consumers
    assert len(consumers) == 3 and all(c.is_alive() for c in consumers)
    assert client.shutdown(timeout=10)
    assert not any(c.is_alive() for c in consumers)
    assert len(collector.message_ids()) == 60


@pytest.mark.parametrize(
    ("host", "region", "url"),
    [
        (None, None, DEFAULT_HOST + "/v1/batch"),
        (None, "eu", EU_HOST + "/v1/batch"),
        (None, "US", DEFAULT_HOST + "/v1/batch"),
        ("https://proxy.example", None, "https://proxy.example/v1/batch"),
        ("https://proxy.example/", None, "https://proxy.example/v1/batch"),
        ("https://proxy.example/v1", None, "https://proxy.example/v1/batch"),
        ("https://proxy.example/v1/", None, "https://proxy.example/v1/batch"),
        ("https://proxy.example/base/v1/batch", None, "https://proxy.example/base/v1/batch"),
    ],
)
def test_host_forms(host, region, url) -> None:
    assert batch_url(host, region) == url


@pytest.mark.parametrize(
    "host", ["localhost:8080", "api.segment.io", "127.0.0.1:28799/v1", "ftp://example.com"]
)
def test_a_host_without_an_http_scheme_is_refused_at_construction(host) -> None:
    # Taken as https, a plain-HTTP local server would fail every request, silently.
    with pytest.raises(ValidationError, match="host must start with http:// or https://") as refused:
        segment_lite.Client("key", host=host)
    assert refused.value.path == "host"
    if "://" not in host:
        assert f"did you mean 'http://{host}'" in str(refused.value)


def test_unknown_region_is_refused() -> None:
    with pytest.raises(ValueError, match="region must be 'us' or 'eu', got 'mars'"):
        batch_url(None, "mars")


@pytest.mark.parametrize("suffix", ["", "/", "/v1", "/v1/"])
def test_host_variants_reach_the_server(collector, make_client, driver, suffix) -> None:
    immediate = {} if driver == "asyncio" else {"sync_mode": True}  # AsyncClient's are the *_now calls
    client = make_client(host=collector.url + suffix, **immediate)
    client.track("u", "Hosted")
    assert client.flush(timeout=5)
    assert [r.path for r in collector.requests] == ["/v1/batch"]


@pytest.mark.threads_only
def test_shutdown_stops_every_consumer_promptly_even_with_a_long_interval(collector, make_client) -> None:
    client = make_client(thread=4, upload_interval=3600)
    for i in range(10):
        client.track("u", "Quiet", {"i": i})
    consumers = client.consumers
    started = time.monotonic()
    assert client.shutdown(timeout=60)
    # Far under the timeout: shutdown woke the consumers rather than waiting for its deadline.
    assert time.monotonic() - started < 10
    assert not any(c.is_alive() for c in consumers)
    assert len(collector.message_ids()) == 10


def test_messages_arriving_during_a_send_wait_to_fill_a_batch(collector, make_client) -> None:
    client = make_client(upload_size=50, max_batch_size=50, upload_interval=3600)
    for i in range(80):
        client.track("u", "Steady", {"i": i})
    deadline = time.monotonic() + 10
    while client.stats()["batches"] < 1 and time.monotonic() < deadline:
        time.sleep(0.001)
    assert client.stats()["batches"] == 1  # the first full batch is delivered; 30 are left over
    for i in range(80, 100):
        client.track("u", "Steady", {"i": i})  # ...and these 20 fill the next batch
    assert client.flush(timeout=10)
    # Not [50, 30, 20]: the 30 left over were not rushed out as a partial batch.
    assert [len(r.json["batch"]) for r in collector.requests] == [50, 50]
    assert len(collector.message_ids()) == 100
