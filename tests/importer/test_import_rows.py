"""import_rows: in-memory rows (a Spark partition) with one client, flushed at the end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from import_helpers import WRITE_KEY, read_jsonl

from segment_lite.collector import Collector
from segment_lite.importer import ImportDeliveryError, derive_message_id, import_rows


class FakeSparkRow:
    """Quacks like pyspark.sql.Row for asDict()."""

    def __init__(self, **fields: Any) -> None:
        self._fields = fields

    def asDict(self, recursive: bool = False) -> dict[str, Any]:
        return dict(self._fields)


def partition(n: int) -> list[FakeSparkRow]:
    return [
        FakeSparkRow(
            user_id=f"u{i}", action="Paid", amount=str(i * 1.5), at=f"2024-04-0{1 + i % 9}T10:00:00Z"
        )
        for i in range(n)
    ]


MAPPING = "userId=user_id,event=action,timestamp=at,properties.amount:float=amount"


def test_a_partition_is_sent_and_a_retried_task_is_deduplicated(collector: Collector) -> None:
    first = import_rows(
        partition(40),
        source_key="orders/part-3",
        write_key=WRITE_KEY,
        host=collector.url,
        type="track",
        mapping=MAPPING,
    )
    assert (first.status, first.delivered) == ("completed", 40)
    stored = {m["userId"]: m for m in collector.messages()}
    assert stored["u3"]["properties"] == {"amount": 4.5}
    assert stored["u3"]["originalTimestamp"] == "2024-04-04T10:00:00.000+00:00"
    row_json = b'{"action":"Paid","amount":"4.5","at":"2024-04-04T10:00:00Z","user_id":"u3"}'
    assert stored["u3"]["messageId"] == derive_message_id("orders/part-3", 4, row_json)

    again = import_rows(
        partition(40),
        source_key="orders/part-3",
        write_key=WRITE_KEY,
        host=collector.url,
        type="track",
        mapping=MAPPING,
    )
    assert again.delivered == 40
    assert collector.stats.duplicates == 40 and collector.stats.messages_stored == 40


def test_spec_dicts_rejects_and_failures(collector: Collector, tmp_path: Path) -> None:
    rows = [
        {"type": "identify", "userId": "u1", "traits": {"plan": "pro"}, "timestamp": 1712000000},
        {"type": "identify", "traits": {"plan": "pro"}, "timestamp": 1712000000},  # no user
        42,
    ]
    rejects = tmp_path / "rejects.jsonl"
    summary = import_rows(rows, source_key="k", write_key=WRITE_KEY, host=collector.url, rejects=str(rejects))
    assert (summary.delivered, summary.rejected) == (1, 2)
    assert [(r["line"], r["field"]) for r in read_jsonl(rejects)] == [(2, "userId"), (3, None)]

    with Collector(write_keys=["other"]) as locked, pytest.raises(ImportDeliveryError, match="401"):
        import_rows(rows[:1], source_key="k", write_key=WRITE_KEY, host=locked.url)
