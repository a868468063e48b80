"""An AWS Lambda handler that tracks, with every event delivered before the sandbox is frozen.

    pip install .                     # from the repository root
    python examples/aws_lambda/handler.py

Deploy the module with ``handler.handler`` as the function's handler and
``SEGMENT_WRITE_KEY`` in its environment. Run as a script, it invokes the handler
three times against a collector it starts on a free loopback port, as a warm
sandbox would, and prints what the collector had when each invocation returned.
See docs/serverless.md.
"""

from __future__ import annotations

import os
from typing import Any

import segment_lite as analytics
from segment_lite import flush_after

# Module level: runs once per sandbox, so warm invocations reuse the client and its connection.
analytics.write_key = os.environ.get("SEGMENT_WRITE_KEY", "example-lambda-key")


@flush_after  # flushes before returning (at most 2 s), also when the handler raises
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Record the order in the event; the events are at Segment when this returns."""
    analytics.track(
        event["userId"], "Order Completed", {"order_id": event["orderId"], "total": event["total"]}
    )
    analytics.identify(event["userId"], {"last_order": event["orderId"]})
    return {"statusCode": 200}


def main() -> None:
    from segment_lite.collector import Collector

    with Collector() as collector:
        analytics.host = collector.url
        for number in range(1, 4):
            event = {"userId": f"user-{number}", "orderId": f"A-{1000 + number}", "total": 10.0 * number}
            answer = handler(event, None)
            # No waiting here: the decorator already waited for the collector's acknowledgement.
            print(
                f"invocation {number}: {answer}; the collector has {len(collector.message_ids())} message(s)"
            )
        analytics.shutdown()


if __name__ == "__main__":
    main()
