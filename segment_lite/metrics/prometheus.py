"""A Prometheus collector that exposes a client's ``stats()``: ``register(client)``."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Optional

from segment_lite.errors import raise_if_framework_missing
from segment_lite.metrics import resolve_client

try:
    from prometheus_client.core import (
        REGISTRY,
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
        Metric,
    )
    from prometheus_client.registry import CollectorRegistry
except ImportError as exc:
    raise_if_framework_missing(exc, integration=__name__, framework="prometheus_client", extra="prometheus")
    raise

__all__ = ["StatsCollector", "register"]

# Counters read straight from stats(): (metric name without namespace, stats key, help).
_COUNTERS = (
    ("messages_accepted", "accepted", "Messages accepted by the client (queued or sent)."),
    ("messages_delivered", "delivered", "Messages the Tracking API accepted."),
    ("messages_filtered", "filtered", "Messages a before_send hook dropped."),
    ("retries", "retried", "Requests retried after a failure, a 5xx or a 429."),
    ("batches", "batches", "Batches the Tracking API accepted."),
    ("sent_bytes", "sent_bytes", "Encoded bytes of the messages in batches taken off the queue to send."),
    ("hook_errors", "hook_errors", "Exceptions raised by before_send hooks and consent sources."),
    ("observer_errors", "observer_errors", "Exceptions raised by delivery observers."),
    ("observer_overflow", "observer_overflow", "Events not handed to delivery observers that fell behind."),
)


class StatsCollector:
    """Reads ``client.stats()`` at each scrape and yields it as metrics named ``<namespace>_...``.

    ``client`` None means the ``segment_lite`` module's default client (nothing is
    exposed until it exists). ``labels`` are added to every sample, to tell several
    clients apart (``{"client": "web"}``).
    """

    def __init__(
        self, client: Any = None, namespace: str = "segment_lite", labels: Optional[Mapping[str, str]] = None
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.labels = dict(labels or {})

    def describe(self) -> list[Metric]:
        """Nothing up front: the metrics are known at collection (so registering never calls stats())."""
        return []

    def collect(self) -> Iterator[Metric]:
        """The metrics of one scrape."""
        client = resolve_client(self.client)
        if client is None:
            return
        stats = client.stats()
        ns = self.namespace
        names = list(self.labels)
        values = list(self.labels.values())
        for name, key, text in _COUNTERS:
            family = CounterMetricFamily(f"{ns}_{name}", text, labels=names)
            family.add_metric(values, stats[key])
            yield family
        for name, key, text in (
            ("messages_dropped", "dropped", "Messages lost, by reason (see stats()['dropped'])."),
            ("messages_changed", "warnings", "Messages sent changed, by reason (see stats()['warnings'])."),
        ):
            family = CounterMetricFamily(f"{ns}_{name}", text, labels=[*names, "reason"])
            for reason, count in sorted(stats[key].items()):
                family.add_metric([*values, reason], count)
            yield family
        rejected = CounterMetricFamily(
            f"{ns}_messages_rejected",
            "Messages the server refused, by HTTP status.",
            labels=[*names, "status"],
        )
        for status, count in sorted(stats["rejected_by_status"].items()):
            rejected.add_metric([*values, str(status)], count)
        yield rejected
        for name, key, text in (
            ("queue_messages", "queued", "Messages waiting in the queue."),
            ("queue_bytes", "queued_bytes", "Encoded bytes waiting in the queue."),
        ):
            gauge = GaugeMetricFamily(f"{ns}_{name}", text, labels=names)
            gauge.add_metric(values, stats[key])
            yield gauge
        latency = stats["delivery_seconds"]
        buckets = [
            ("+Inf" if bound == "inf" else bound, count) for bound, count in latency["buckets"].items()
        ]
        histogram = HistogramMetricFamily(
            f"{ns}_batch_delivery_seconds",
            "Seconds from taking a batch off the queue to settling it (retries and waits included).",
            labels=names,
        )
        histogram.add_metric(values, buckets, latency["sum"])
        yield histogram


def register(
    client: Any = None,
    registry: Optional[CollectorRegistry] = None,
    *,
    namespace: str = "segment_lite",
    labels: Optional[Mapping[str, str]] = None,
) -> StatsCollector:
    """Register a :class:`StatsCollector` for ``client`` on ``registry`` (default: the global one)."""
    collector = StatsCollector(client, namespace, labels)
    (REGISTRY if registry is None else registry).register(collector)  # type: ignore[arg-type]
    return collector
