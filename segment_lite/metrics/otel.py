"""OpenTelemetry instruments for a client's ``stats()`` and batch latency: ``instrument(client)``."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Callable, Optional

from segment_lite.errors import raise_if_framework_missing
from segment_lite.metrics import resolve_client
from segment_lite.observe import DeliveryObserver
from segment_lite.version import VERSION

try:
    from opentelemetry import metrics
    from opentelemetry.metrics import CallbackOptions, Histogram, Meter, MeterProvider, Observation
except ImportError as exc:
    raise_if_framework_missing(exc, integration=__name__, framework="opentelemetry", extra="otel")
    raise

__all__ = ["Instruments", "instrument"]

# Observable counters read from stats(): (instrument name suffix, stats key, unit, description).
_COUNTERS = (
    ("messages.accepted", "accepted", "{message}", "Messages accepted by the client."),
    ("messages.delivered", "delivered", "{message}", "Messages the Tracking API accepted."),
    ("messages.filtered", "filtered", "{message}", "Messages a before_send hook dropped."),
    ("retries", "retried", "{request}", "Requests retried after a failure, a 5xx or a 429."),
    ("batches", "batches", "{batch}", "Batches the Tracking API accepted."),
    ("sent", "sent_bytes", "By", "Encoded bytes of the messages in batches taken off the queue to send."),
    ("observer.errors", "observer_errors", "{error}", "Exceptions raised by delivery observers."),
)


class _BatchLatency(DeliveryObserver):
    """Records each settled batch's duration in a histogram (called on the observer thread)."""

    def __init__(self, histogram: Histogram, attributes: dict[str, str]) -> None:
        self._histogram = histogram
        self._attributes = attributes

    def batch_settled(self, count: int, delivered: int, nbytes: int, seconds: float) -> None:
        self._histogram.record(seconds, self._attributes)


@dataclass
class Instruments:
    """The instruments made by :func:`instrument` (kept alive as long as you keep this)."""

    meter: Meter
    instruments: list[Any]
    latency_observer: Optional[DeliveryObserver]


def instrument(
    client: Any = None,
    *,
    meter_provider: Optional[MeterProvider] = None,
    prefix: str = "segment_lite",
    attributes: Optional[dict[str, str]] = None,
) -> Instruments:
    """Expose ``client.stats()`` as observable instruments on a meter named ``segment_lite``.

    Counters (observable): ``<prefix>.messages.accepted|delivered|filtered``,
    ``<prefix>.messages.dropped`` and ``<prefix>.messages.changed`` (attribute
    ``reason``), ``<prefix>.retries``, ``<prefix>.batches``, ``<prefix>.sent``
    (bytes), ``<prefix>.observer.errors``. Gauges: ``<prefix>.queue.messages`` and
    ``<prefix>.queue.bytes``. A histogram ``<prefix>.batch.duration`` (seconds) is
    recorded through a delivery observer added to ``client`` (so it needs a
    ``Client``; ``client`` None means the module's default client, created now).
    ``attributes`` are added to every point. The meter comes from
    ``meter_provider`` or the global provider.
    """
    import segment_lite

    target = resolve_client(client)
    if target is None:
        target = segment_lite._default()
    meter = metrics.get_meter("segment_lite", VERSION, meter_provider=meter_provider)
    base = dict(attributes or {})

    def counter(key: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            return [Observation(target.stats()[key], base)]

        return observe

    def by_reason(key: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            return [Observation(n, {**base, "reason": reason}) for reason, n in target.stats()[key].items()]

        return observe

    made: list[Any] = []
    for suffix, key, unit, description in _COUNTERS:
        made.append(
            meter.create_observable_counter(
                f"{prefix}.{suffix}", callbacks=[counter(key)], unit=unit, description=description
            )
        )
    made.append(
        meter.create_observable_counter(
            f"{prefix}.messages.dropped",
            callbacks=[by_reason("dropped")],
            unit="{message}",
            description="Messages lost, by reason.",
        )
    )
    made.append(
        meter.create_observable_counter(
            f"{prefix}.messages.changed",
            callbacks=[by_reason("warnings")],
            unit="{message}",
            description="Messages sent changed, by reason.",
        )
    )
    made.append(
        meter.create_observable_gauge(
            f"{prefix}.queue.messages",
            callbacks=[counter("queued")],
            unit="{message}",
            description="Messages waiting in the queue.",
        )
    )
    made.append(
        meter.create_observable_gauge(
            f"{prefix}.queue.bytes",
            callbacks=[counter("queued_bytes")],
            unit="By",
            description="Encoded bytes waiting in the queue.",
        )
    )
    latency: Optional[DeliveryObserver] = None
    add_observer = getattr(target, "add_observer", None)
    if add_observer is not None:
        histogram = meter.create_histogram(
            f"{prefix}.batch.duration",
            unit="s",
            description="Seconds from taking a batch off the queue to settling it (retries included).",
        )
        made.append(histogram)
        latency = _BatchLatency(histogram, base)
        add_observer(latency)
    return Instruments(meter, made, latency)
