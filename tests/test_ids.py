"""Message ids and timestamps: unique UUID4 strings across threads and forks, ISO 8601 in UTC."""

from __future__ import annotations

import datetime
import json
import os
import threading
import uuid

import pytest

from segment_lite import message


def test_message_ids_are_unique_uuid4_strings_across_threads() -> None:
    found: list[list[str]] = [[] for _ in range(4)]

    def make(index: int) -> None:
        found[index] = [message.new_message_id() for _ in range(5_000)]

    threads = [threading.Thread(target=make, args=(index,)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ids = [value for values in found for value in values]
    assert len(set(ids)) == len(ids) == 20_000
    for value in ids[::97]:
        parsed = uuid.UUID(value)
        assert str(parsed) == value and parsed.version == 4 and parsed.variant == uuid.RFC_4122


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_does_not_repeat_the_parents_message_ids() -> None:
    message.new_message_id()  # the parent has a draw of random bytes in use
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.close(read_end)
        os.write(write_end, json.dumps([message.new_message_id() for _ in range(50)]).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        child_ids = set(json.loads(pipe.read()))
    os.waitpid(pid, 0)
    parent_ids = {message.new_message_id() for _ in range(50)}
    assert len(child_ids) == 50 and not child_ids & parent_ids


def test_now_iso_matches_datetime_formatting() -> None:
    before = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    stamp = message.now_iso()
    after = datetime.datetime.now(datetime.timezone.utc)
    assert len(stamp) == 29 and stamp.endswith("+00:00") and stamp[19] == "."
    parsed = datetime.datetime.fromisoformat(stamp)
    assert before <= parsed <= after
