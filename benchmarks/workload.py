"""The message both clients send, and how each client under test is built.

The track call is a realistic e-commerce event: a user id, an event name, eight
properties (a nested dict, a list, a float, a bool, a datetime, ...) and a context
with ip, userAgent and page. Every call sends the same properties and context
objects with one of 1,000 user ids, so what is measured is the client, not the
building of arguments; each client stamps its own messageId and timestamp.
"""

from __future__ import annotations

import datetime
import importlib.util
from typing import Any, Callable, Optional

__all__ = [
    "CLIENTS",
    "CONTEXT",
    "EVENT",
    "EVENT5",
    "EXPERIMENTS",
    "PLAN5",
    "PROPERTIES",
    "PROPERTIES5",
    "USER_IDS",
    "ClientKind",
    "available_clients",
    "fresh_call_args",
    "label",
    "make_client",
    "preload",
    "unavailable_reason",
]

EVENT = "Product Added"
USER_IDS = [f"user-{index:06d}" for index in range(1000)]
PROPERTIES: dict[str, Any] = {
    "product_id": "sku-48213",
    "name": "Ergonomic Keyboard",
    "price": 129.99,
    "quantity": 2,
    "in_stock": True,
    "tags": ["electronics", "office", "sale"],
    "dimensions": {"width_cm": 44.5, "depth_cm": 13.2, "color": "graphite"},
    "added_at": datetime.datetime(2024, 5, 17, 9, 30, 12, 345000, tzinfo=datetime.timezone.utc),
}
#: The plan scenarios' event: five flat properties, and a plan that describes them exactly.
EVENT5 = "Product Added"
PROPERTIES5: dict[str, Any] = {
    "product_id": "sku-48213",
    "name": "Ergonomic Keyboard",
    "price": 129.99,
    "quantity": 2,
    "in_stock": True,
}
PLAN5: dict[str, Any] = {
    "name": "Benchmark",
    "events": {
        EVENT5: {
            "properties": {
                "product_id": {"type": "string", "required": True},
                "name": {"type": "string", "required": True},
                "price": {"type": "number", "required": True},
                "quantity": {"type": "integer", "minimum": 1},
                "in_stock": "boolean",
            }
        }
    },
}
CONTEXT: dict[str, Any] = {
    "ip": "203.0.113.42",
    "userAgent": (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.4 Safari/605.1.15"
    ),
    "page": {
        "path": "/products/sku-48213",
        "referrer": "https://www.example.com/search?q=keyboard",
        "title": "Ergonomic Keyboard - Example Shop",
        "url": "https://shop.example.com/products/sku-48213",
    },
}


def _fresh(value: Any) -> Any:
    """A copy of ``value`` in which every string, float, datetime and container is a new object."""
    if isinstance(value, str):
        return value[:1] + value[1:]  # an equal string, but a new object
    if isinstance(value, dict):
        return {key: _fresh(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_fresh(item) for item in value]
    if isinstance(value, float):
        return float(repr(value))
    if isinstance(value, datetime.datetime):
        return value.replace()
    return value


def fresh_call_args(index: int) -> tuple[str, str, dict[str, Any], dict[str, Any]]:
    """The track arguments as an app builds them per call: the same values, all new objects.

    In an app the properties and context come from the request being handled (its
    headers, its form, the database), so every string in them is a new object, and
    the app drops them after the call. A client that keeps the caller's objects
    (rather than their encoding) holds all of them while the message is queued.
    Dict keys and the event name are code constants, shared as in an app.
    """
    return f"user-{index % 1000:06d}", EVENT, _fresh(PROPERTIES), _fresh(CONTEXT)


ClientKind = str
#: The clients compared: the reference, and segment_lite with each JSON encoder.
CLIENTS: tuple[ClientKind, ...] = ("reference", "lite-json", "lite-orjson")
#: Not run by default: segment_lite with one change undone or varied, to measure it
#: on its own, as ``base+change[+change]`` (see benchmarks/experiments.py).
EXPERIMENTS: tuple[ClientKind, ...] = (
    "lite-json+requests",
    "lite-orjson+requests",
    "lite-json+gzip6",
    "lite-orjson+gzip6",
)
LABELS = {
    "reference": "reference 2.4.0",
    "lite-json": "segment_lite (json)",
    "lite-orjson": "segment_lite (orjson)",
}


def label(kind: ClientKind) -> str:
    """How ``kind`` is shown in the table."""
    base, *changes = kind.split("+")
    return " + ".join([LABELS.get(base, base), *changes])


def unavailable_reason(kind: ClientKind) -> str:
    """Why ``kind`` cannot run here, or "" when it can."""
    from benchmarks.experiments import CHANGES

    base, *changes = kind.split("+")
    if base not in CLIENTS or (changes and base == "reference"):
        return f"unknown client {kind!r}"
    for change in changes:
        if change not in CHANGES:
            return f"unknown change {change!r} (known: {', '.join(CHANGES)})"
    if base == "reference" and importlib.util.find_spec("segment") is None:
        return "segment-analytics-python is not installed (pip install segment-analytics-python==2.4.0)"
    if base == "reference" and importlib.util.find_spec("segment.analytics") is None:
        return "segment.analytics is not importable"
    if base == "lite-orjson" and importlib.util.find_spec("orjson") is None:
        return "orjson is not installed (pip install 'segment-lite[fast]')"
    return ""


def available_clients(kinds: tuple[ClientKind, ...] = CLIENTS) -> tuple[list[ClientKind], dict[str, str]]:
    """The clients of ``kinds`` that can run here, and the reason for each that cannot."""
    skipped = {kind: unavailable_reason(kind) for kind in kinds}
    return [kind for kind in kinds if not skipped[kind]], {k: v for k, v in skipped.items() if v}


def preload(kind: ClientKind) -> None:
    """Import what client ``kind`` needs, so that neither timing nor tracing sees the imports."""
    if kind == "reference":
        import segment.analytics  # noqa: F401
    else:
        import segment_lite  # noqa: F401


def make_client(
    kind: ClientKind,
    url: str,
    write_key: str,
    gzip: bool,
    batch_cap: Optional[int] = None,
    **lite_options: Any,
) -> tuple[Any, Callable[..., Any]]:
    """Build client ``kind`` with default settings aimed at ``url``; returns it and its bound ``track``.

    Only ``host`` (and ``gzip`` for the gzip variant) differ from the defaults.
    ``batch_cap`` caps the messages per request: the reference's ``upload_size``
    (100 by default: it never sends more) and segment_lite's ``max_batch_size``.
    ``lite_options`` are more ``segment_lite.Client`` arguments (for profiling).
    ``lite-json`` forces segment_lite's standard-library encoder even when orjson
    is importable, so both encoders are measured on one machine. A kind with
    ``+change`` suffixes (``EXPERIMENTS``) applies one change of benchmarks/experiments.py.
    """
    if kind == "reference":
        from segment.analytics import Client as ReferenceClient

        capped = {} if batch_cap is None else {"upload_size": batch_cap}
        client: Any = ReferenceClient(write_key, host=url, gzip=gzip, **capped)
        return client, client.track
    import segment_lite
    import segment_lite.encoding

    base, *changes = kind.split("+")
    if base == "lite-json":
        segment_lite.encoding.HAVE_ORJSON = False
    elif not segment_lite.encoding.HAVE_ORJSON:
        raise RuntimeError("orjson is not importable")
    options: dict[str, Any] = {} if batch_cap is None else {"max_batch_size": batch_cap}
    options.update(lite_options)
    if changes:
        from benchmarks.experiments import apply_changes

        apply_changes(changes, options)
    client = segment_lite.Client(write_key, host=url, gzip=gzip, **options)
    return client, client.track
