"""The outcome channel: typed deliveries, retries and drops, every message, to each subscriber."""

from __future__ import annotations

import json
import logging
from typing import Any

from segment_lite.errors import APIError, QueueFullError, ShutdownError
from segment_lite.ledger import MAX_MESSAGES_PER_REPORT, Ledger
from segment_lite.outcomes import Delivered, Dropped, Outcome, Retried, as_message
from segment_lite.testing import FakeClock

log = logging.getLogger("segment_lite.tests")
ONLY_FLUSH_SENDS = 3600.0


def test_subscribers_get_every_message_while_on_drop_is_capped_and_held() -> None:
    drops: list[Any] = []
    seen: list[Outcome] = []
    ledger = Ledger(
        None, log, on_drop=lambda reason, exc, msgs: drops.append((reason, msgs)), monotonic=lambda: 5.0
    )
    ledger.subscribe(seen.append)
    items = [b'{"messageId":"m%d"}' % i for i in range(MAX_MESSAGES_PER_REPORT + 500)]
    error = ShutdownError("deadline passed")
    ledger.drop("shutdown_timeout", error, items)
    ledger.drop("shutdown_timeout", error, items[:3])  # within the interval: held from on_drop
    ledger.delivered(2, [b'{"messageId":"d0"}', b'{"messageId":"d1"}'])
    ledger.count("retried")
    assert [len(msgs) for _, msgs in drops] == [MAX_MESSAGES_PER_REPORT]
    first, second, delivered, retried = seen
    assert isinstance(first, Dropped) and first.reason == "shutdown_timeout" and first.error is error
    assert first.count == len(first.items) == MAX_MESSAGES_PER_REPORT + 500 and first.items[-1] == items[-1]
    assert isinstance(second, Dropped) and list(second.items) == items[:3]
    assert delivered == Delivered(2, [b'{"messageId":"d0"}', b'{"messageId":"d1"}'])
    assert isinstance(retried, Retried)
    stats = ledger.snapshot(0, 0, 0)
    assert (stats["dropped"]["shutdown_timeout"], stats["delivered"], stats["retried"]) == (1503, 2, 1)


def test_a_raising_subscriber_is_counted_and_the_rest_still_run() -> None:
    seen: list[Outcome] = []

    def broken(outcome: Outcome) -> None:
        raise RuntimeError("subscriber bug")

    ledger = Ledger(None, log)
    ledger.subscribe(broken)
    ledger.subscribe(seen.append)
    ledger.drop("queue_full", QueueFullError("full"), [{"event": "A"}])
    assert len(seen) == 1 and ledger.snapshot(0, 0, 0)["hook_errors"] == 1
    assert ledger.snapshot(0, 0, 0)["dropped"]["queue_full"] == 1


def test_a_client_subscriber_sees_the_encoded_items_the_server_accepted_and_refused(
    collector: Any, make_client: Any
) -> None:
    seen: list[Outcome] = []
    client = make_client(clock=FakeClock(), upload_interval=ONLY_FLUSH_SENDS, max_batch_size=2)
    client.add_outcome_subscriber(seen.append)
    collector.fail_next(1, 422, body={"code": "bad_thing", "message": "it was bad"})
    ids = [client.track("u", "E", {"i": i})[1]["messageId"] for i in range(4)]
    assert client.flush(timeout=10)
    dropped = [o for o in seen if isinstance(o, Dropped)]
    delivered = [o for o in seen if isinstance(o, Delivered)]
    assert sum(d.count for d in delivered) + sum(d.count for d in dropped) == 4
    assert all(isinstance(item, bytes) for o in (*dropped, *delivered) for item in o.items)
    settled = [json.loads(item)["messageId"] for o in (*dropped, *delivered) for item in o.items]
    assert sorted(settled) == sorted(ids)
    assert dropped and all(d.reason == "rejected" and d.status == 422 for d in dropped)
    assert isinstance(dropped[0].error, APIError) and dropped[0].error.code == "bad_thing"
    assert as_message(dropped[0].items[0])["messageId"] in ids


def test_the_import_engine_learns_of_drops_from_outcomes_not_the_user_hooks(
    collector: Any, make_client: Any
) -> None:
    from segment_lite.importer.engine import make_client as make_import_client
    from segment_lite.importer.options import ImportOptions

    seen: list[Outcome] = []
    client = make_import_client(
        ImportOptions(
            write_key="k",
            host=collector.url,
            client_options={"upload_size": 2500, "upload_interval": ONLY_FLUSH_SENDS},  # one batch, at flush
        ),
        seen.append,
        lambda: None,
    )
    try:
        assert client.options.on_error is None and client.options.on_drop is None
        collector.fail_next(1, 422, body={"code": "bad", "message": "no"})
        ids = [client.track("u", "E", {"i": i})[1]["messageId"] for i in range(MAX_MESSAGES_PER_REPORT + 200)]
        assert client.flush(timeout=30)
    finally:
        client.shutdown(timeout=5)
    [dropped] = [o for o in seen if isinstance(o, Dropped)]
    assert dropped.reason == "rejected" and dropped.status == 422
    assert [as_message(item)["messageId"] for item in dropped.items] == ids  # every one, in order


def test_api_error_bodies_have_one_parser() -> None:
    from segment_lite.errors import api_error_fields

    assert api_error_fields(b'{"code":"bad","message":"no"}', "raw") == ("bad", "no")
    assert api_error_fields(b'{"message":"no"}', "raw") == ("unknown", "no")
    assert api_error_fields(b"<html>bad gateway</html>", "<html>") == ("unknown", "<html>")
    assert api_error_fields(b"[1, 2]", "[1, 2]") == ("unknown", "[1, 2]")
    assert api_error_fields(b"[" * 100_000, "deep") == ("unknown", "deep")
