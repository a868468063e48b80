"""``segment-lite demo``: send a sample session through the real client to an embedded collector."""

from __future__ import annotations

import json
import sys
import uuid
from typing import Any, Optional, TextIO

__all__ = ["run"]

EXPECTED_MESSAGES = 6


def _send_session(client: Any, user_id: str, anonymous_id: str) -> None:
    """One short, realistic customer journey: six calls, one of each type."""
    browser = {
        "ip": "203.0.113.7",
        "userAgent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)",
        "locale": "en-GB",
        "timezone": "Europe/London",
    }
    client.identify(
        user_id=user_id,
        traits={
            "email": "ada@example.com",
            "name": "Ada Lovelace",
            "plan": "pro",
            "createdAt": "2024-03-01T09:30:00Z",
        },
        context=browser,
        anonymous_id=anonymous_id,
    )
    client.page(
        user_id=user_id,
        category="Checkout",
        name="Cart",
        properties={
            "url": "https://shop.example.com/cart",
            "path": "/cart",
            "title": "Your cart",
            "referrer": "https://shop.example.com/products/analytical-engine",
        },
        context=browser,
    )
    client.track(
        user_id,
        "Order Completed",
        {
            "order_id": "ord_50314",
            "total": 27.5,
            "revenue": 25.0,
            "shipping": 2.5,
            "currency": "EUR",
            "coupon": "SPRING24",
            "products": [
                {
                    "product_id": "p-101",
                    "sku": "NB-A5-DOT",
                    "name": "Dotted notebook",
                    "price": 12.5,
                    "quantity": 1,
                },
                {"product_id": "p-207", "sku": "PEN-FINE", "name": "Fine pen", "price": 6.25, "quantity": 2},
            ],
        },
        context=browser,
        integrations={"All": False, "Amplitude": True},
    )
    client.group(
        user_id=user_id,
        group_id="acme-inc",
        traits={"name": "Acme Inc.", "industry": "Manufacturing", "employees": 420, "plan": "enterprise"},
    )
    client.alias(previous_id=anonymous_id, user_id=user_id)
    client.screen(
        user_id=user_id,
        category="Orders",
        name="Order Details",
        properties={"order_id": "ord_50314", "from_push": True},
        context={
            "device": {"type": "ios", "model": "iPhone15,2"},
            "app": {"name": "Shop", "version": "4.2.0"},
        },
    )


def run(out: Optional[TextIO] = None, db: Optional[str] = None) -> int:
    """Run the demo, printing to ``out`` (stdout by default); returns the exit code.

    ``db`` keeps the events in that SQLite file (added to what it holds already)
    instead of a temporary database.
    """
    import segment_lite
    from segment_lite.collector.server import Collector
    from segment_lite.collector.table import format_table

    out = out or sys.stdout
    user_id = "user-1042"
    anonymous_id = f"anon-{uuid.uuid4().hex[:12]}"
    with Collector(db=db) as collector:
        before = collector.store.last_id()
        out.write(
            f"segment-lite demo: started a collector for this demo on {collector.url}\n"
            "  (it stops when the demo ends; `segment-lite serve` runs one that stays up)\n"
        )
        out.write(
            "Sending identify, page, track, group, alias and screen through segment_lite.Client ...\n\n"
        )
        out.flush()
        client = segment_lite.Client("demo-write-key", host=collector.url)
        try:
            _send_session(client, user_id, anonymous_id)
            client.flush()
        finally:
            client.shutdown()
        complete = collector.wait_for_messages(EXPECTED_MESSAGES, timeout=5.0)
        events = collector.store.query(after_id=before, limit=None, newest_first=False)
        stats = collector.stats

    out.write(f"The collector stored {len(events)} message(s) in {stats.requests} request(s):\n\n")
    out.write(format_table(events) + "\n\n")
    example = next((e for e in events if e.type == "track"), events[0] if events else None)
    if example is not None:
        out.write(
            f"The {example.type} call as stored (receivedAt and timestamp were set by the collector):\n"
        )
        out.write(json.dumps(example.message, indent=2, sort_keys=True, ensure_ascii=False) + "\n\n")
    if db is not None:
        out.write(f"The events are kept in {db}: list them with `segment-lite events --db {db}`.\n\n")
    out.write(
        "Next: run your own collector with `segment-lite serve`\n"
        "  (it listens on http://127.0.0.1:8787 and stores events in events.db),\n"
        "  send to it with segment_lite.Client(WRITE_KEY, host='http://127.0.0.1:8787'),\n"
        "  open http://127.0.0.1:8787/ for the live debugger,\n"
        "  or list events with `segment-lite events` and follow them with `segment-lite tail`.\n"
    )
    out.flush()
    if not complete:
        print(
            f"error: expected {EXPECTED_MESSAGES} messages, the collector stored {len(events)}",
            file=sys.stderr,
        )
        return 1
    return 0
