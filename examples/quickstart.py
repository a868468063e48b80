"""Quickstart: send a few events to a local collector and print what it stored.

    pip install .                     # from the repository root
    python examples/quickstart.py

The script starts its own collector (``segment_lite.collector.Collector``) on a
free loopback port and stops it when it ends, so these events do not show up in
a ``segment-lite serve`` you may have running. To send there instead, set
``analytics.host = "http://127.0.0.1:8787"`` and drop the ``with Collector()``.
(Against Segment, drop the collector and set analytics.write_key to your source's key.)
"""

from __future__ import annotations

import datetime

import segment_lite as analytics
from segment_lite.collector import Collector


def main() -> None:
    with Collector() as collector:
        analytics.write_key = "quickstart-key"
        analytics.host = collector.url
        analytics.on_error = lambda exc, messages: print("not delivered:", exc, len(messages))

        analytics.identify("user-42", {"email": "ada@example.com", "plan": "pro"})
        analytics.track(
            "user-42",
            "Order Completed",
            {"order_id": "A-1001", "total": 99.5, "currency": "EUR", "items": ["book", "pen"]},
            timestamp=datetime.datetime.now(datetime.timezone.utc),
            integrations={"All": True, "Mixpanel": False},
        )
        analytics.page("user-42", "Docs", "Quickstart", {"url": "https://example.com/docs/quickstart"})
        analytics.flush(timeout=10)

        for message in collector.messages():
            label = message.get("event") or message.get("name") or ""
            print(f"{message['type']:<9} {label:<18} {message['messageId']}")
        print(
            "stats:",
            {k: v for k, v in analytics.stats().items() if k in ("accepted", "delivered", "dropped_total")},
        )
        analytics.shutdown()
        print(
            f"(sent to a collector this script started on {collector.url}; it stops with the script, "
            "so these events are not in a running `segment-lite serve`)"
        )


if __name__ == "__main__":
    main()
