"""The Prometheus and OpenTelemetry bridges, read the way their users read them: a scrape, a metric reader."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from typing import Any, Callable

import pytest

import segment_lite
from segment_lite.collector import Collector
from segment_lite.testing import FakeClock


@pytest.fixture
def busy_client(collector: Collector, make_client: Callable[..., segment_lite.Client]) -> segment_lite.Client:
    """A client that delivered 3 messages (one batch, after one retry), had 1 refused by status 400,
    refused 1 oversize message at the call, and holds nothing in its queue."""
    collector.fail_next(1, 503)
    client = make_client(clock=FakeClock(), upload_size=3)
    for n in range(3):
        client.track("u", f"E{n}")
    assert client.flush(10)
    collector.fail_next(1, 400)
    client.track("u", "Refused")
    assert client.flush(10)
    with pytest.raises(segment_lite.MessageTooLargeError):
        client.track("u", "Big", {"blob": "x" * 40_000})
    return client


def test_prometheus_scrape_exposes_stats(busy_client: segment_lite.Client) -> None:
    pytest.importorskip("prometheus_client")
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.parser import text_string_to_metric_families

    from segment_lite.metrics.prometheus import register

    registry = CollectorRegistry()
    register(busy_client, registry, labels={"client": "web"})
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        port = server.server_address[1]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            text = response.read().decode()
    finally:
        server.shutdown()
        thread.join(5)
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    web = (("client", "web"),)
    assert samples[("segment_lite_messages_delivered_total", web)] == 3
    assert samples[("segment_lite_messages_accepted_total", web)] == 4
    assert samples[("segment_lite_retries_total", web)] == 1
    assert samples[("segment_lite_messages_dropped_total", (("client", "web"), ("reason", "rejected")))] == 1
    assert samples[("segment_lite_messages_dropped_total", (("client", "web"), ("reason", "oversize")))] == 1
    assert samples[("segment_lite_messages_rejected_total", (("client", "web"), ("status", "400")))] == 1
    assert samples[("segment_lite_queue_messages", web)] == 0
    assert samples[("segment_lite_sent_bytes_total", web)] > 0
    assert samples[("segment_lite_batch_delivery_seconds_count", web)] == 2
    assert samples[("segment_lite_batch_delivery_seconds_bucket", (("client", "web"), ("le", "+Inf")))] == 2


def test_prometheus_default_client_is_read_only_once_it_exists(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("prometheus_client")
    from prometheus_client import CollectorRegistry, generate_latest

    from segment_lite.metrics.prometheus import register

    monkeypatch.setattr(segment_lite, "default_client", None)
    registry = CollectorRegistry()
    register(registry=registry)
    assert b"segment_lite" not in generate_latest(registry)
    monkeypatch.setattr(segment_lite, "send", False)
    segment_lite.track("u", "E")
    assert b"segment_lite_queue_messages 0.0" in generate_latest(registry)
    segment_lite.shutdown()


def _points(reader: Any) -> Iterator[tuple[str, dict[str, Any], Any]]:
    data = reader.get_metrics_data()
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    yield metric.name, dict(point.attributes), point


def test_opentelemetry_reader_sees_stats_and_batch_durations(busy_client: segment_lite.Client) -> None:
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from segment_lite.metrics.otel import instrument

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    handle = instrument(busy_client, meter_provider=provider, attributes={"client": "web"})
    busy_client.track("u", "After Instrumenting")  # one more batch, timed by the histogram
    assert busy_client.flush(10)
    assert busy_client._pipeline.ledger.wait_observers(5)
    points = list(_points(reader))
    values = {(name, tuple(sorted(attrs.items()))): point for name, attrs, point in points}
    web = (("client", "web"),)
    assert values[("segment_lite.messages.delivered", web)].value == 4
    assert values[("segment_lite.retries", web)].value == 1
    assert values[("segment_lite.messages.dropped", (("client", "web"), ("reason", "rejected")))].value == 1
    assert values[("segment_lite.messages.dropped", (("client", "web"), ("reason", "oversize")))].value == 1
    assert values[("segment_lite.queue.messages", web)].value == 0
    assert values[("segment_lite.sent", web)].value > 0
    duration = values[("segment_lite.batch.duration", web)]
    assert duration.count == 1 and duration.sum >= 0
    assert handle.latency_observer is not None
