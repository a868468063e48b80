"""Drop-in fidelity: the same calls give the same messages as segment-analytics-python, loudly where lenient."""

from __future__ import annotations

import datetime
import decimal
import importlib.util
import inspect
import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
import types
from typing import Any
from unittest import mock

import pytest

import segment_lite
from segment_lite import EncodeError, MessageTooLargeError, ValidationError
from segment_lite.testing import FakeClock, RecordingClient

reference = pytest.importorskip("segment.analytics")
reference_request = pytest.importorskip("segment.analytics.request")


class Opaque:
    """A value neither client can encode."""


def lite(**kwargs: Any) -> segment_lite.Client:
    kwargs.setdefault("send", False)
    return segment_lite.Client("write-key", **kwargs)


def comparable(message: dict[str, Any]) -> Any:
    """A message as JSON values, without what differs by design (library name, random ids, now)."""
    out = json.loads(json.dumps(message, default=str))
    out["context"].pop("library")
    return out


CALLS = [
    ("track", ("u", "Signed Up", {"plan": "pro", "seats": 3}), {}),
    ("track", (), {"anonymous_id": 157963456373623803, "event": "E"}),
    ("track", ("u", "E", {"price": decimal.Decimal("9.99"), "tags": {"a"}, "raw": b"bytes"}), {}),
    ("track", ("u", "E", {"keep": 1, "drop": Opaque()}), {}),
    ("identify", ("u", {"birthday": datetime.date(1981, 2, 2)}), {"integrations": {"All": False}}),
    ("group", ("u", "g"), {"traits": {"n": 1}}),
    ("alias", ("previous", "u"), {}),
    ("page", ("u",), {}),
    ("page", ("u", "Docs", "Install", {"path": "/"}), {}),
    ("screen", (), {"anonymous_id": "a", "name": "Home"}),
    # Inputs strict mode refuses, accepted as the reference accepts them:
    ("track", ("u", ""), {}),
    ("track", (True, "E"), {}),
    ("track", ("u", "E", []), {}),
    ("track", ("u", "E"), {"message_id": ""}),
    ("track", ("u", "E"), {"message_id": 12345}),
    ("identify", ("u", ""), {"context": 0}),
    ("group", ("u", ""), {}),
    ("alias", ("", "u"), {}),
]


@pytest.mark.parametrize(("call", "args", "kwargs"), CALLS, ids=[f"{c[0]}-{i}" for i, c in enumerate(CALLS)])
def test_returned_message_is_the_references(call: str, args: tuple, kwargs: dict) -> None:
    timestamp = datetime.datetime(2014, 9, 3, tzinfo=datetime.timezone.utc)
    kwargs = {**kwargs, "timestamp": timestamp}
    kwargs.setdefault("message_id", "fixed-id")
    ours_ok, ours = getattr(lite(), call)(*args, **kwargs)
    theirs_ok, theirs = getattr(reference.Client("write-key", send=False), call)(*args, **kwargs)
    assert ours_ok and theirs_ok
    assert comparable(ours) == comparable(theirs)


def test_decimal_comes_back_as_a_float_and_plain_messages_are_not_copied() -> None:
    properties = {"plan": "pro"}
    _, plain = lite().track("u", "E", properties)
    assert plain["properties"] is properties  # the hot path copies nothing
    _, converted = lite().track(
        "u", "E", {"price": decimal.Decimal("9.99"), "nested": {"n": decimal.Decimal(2)}}
    )
    assert converted["properties"] == {"price": 9.99, "nested": {"n": 2.0}}
    assert type(converted["properties"]["price"]) is float


@pytest.mark.parametrize(
    ("call", "args", "kwargs", "path"),
    [
        ("track", ("u", ""), {}, "event"),
        ("track", (True, "E"), {}, "userId"),
        ("track", ("u", "E", []), {}, "properties"),
        ("track", ("u", "E"), {"message_id": ""}, "messageId"),
        ("track", ("u", "E"), {"message_id": "x" * 101}, "messageId"),
        ("group", ("u", ""), {}, "groupId"),
        ("page", ("u",), {"name": 0}, "name"),
    ],
)
def test_lenient_input_is_sent_loudly_and_refused_when_strict(
    call: str, args: tuple, kwargs: dict, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    drops: list[tuple[str, BaseException, list[Any]]] = []
    client = RecordingClient(strict=False, on_drop=lambda *report: drops.append(report))
    with caplog.at_level(logging.WARNING):
        ok, message = getattr(client, call)(*args, **kwargs)
    assert ok and client.messages == [message]
    assert client.stats()["warnings"]["coerced"] == 1
    [(reason, error, messages)] = drops
    assert reason == "coerced" and isinstance(error, ValidationError) and error.path == path
    assert messages == [message]
    assert any(r.levelno == logging.WARNING and f"{path}:" in r.getMessage() for r in caplog.records)

    strict = RecordingClient(strict=True)
    with pytest.raises(ValidationError) as caught:
        getattr(strict, call)(*args, **kwargs)
    assert caught.value.path == path
    assert strict.messages == [] and strict.stats()["dropped"]["invalid"] == 1


def test_an_unencodable_value_is_left_out_and_the_rest_sent(caplog: pytest.LogCaptureFixture) -> None:
    drops: list[tuple[str, BaseException, list[Any]]] = []
    client = RecordingClient(strict=False, on_drop=lambda *report: drops.append(report))
    with caplog.at_level(logging.WARNING):
        ok, message = client.track("u", "E", {"keep": 1, "cart": {"owner": Opaque(), "items": [1, Opaque()]}})
    assert ok
    assert client.messages[0]["properties"] == {"keep": 1, "cart": {"items": [1]}} == message["properties"]
    [(reason, error, _)] = drops
    assert reason == "value_dropped" and isinstance(error, EncodeError)
    assert "properties.cart.owner" in str(error) and "properties.cart.items[1]" in str(error)
    assert client.stats()["warnings"]["value_dropped"] == 1
    assert "properties.cart.owner" in caplog.text

    with pytest.raises(EncodeError, match=r"properties\.cart\.owner"):
        RecordingClient().track("u", "E", {"cart": {"owner": Opaque()}})  # recorders are strict


def test_what_the_reference_refuses_is_refused_with_its_exception_types() -> None:
    client = lite()
    for call in (
        lambda: client.track("u"),  # no event
        lambda: client.track(event="E"),  # no id
        lambda: client.track("u", "E", [1]),  # properties not a dict
        lambda: client.track("u", "E", timestamp=1700000000),
        lambda: client.group("u"),
        lambda: client.alias(user_id="u"),
        lambda: segment_lite.Client(None),
    ):
        with pytest.raises(AssertionError):
            call()
    with pytest.raises(RuntimeError):  # the 32 KB limit
        client.track("u", "Big", {"blob": "x" * 33_000})
    assert issubclass(MessageTooLargeError, ValidationError)


def test_an_empty_write_key_is_accepted_loudly_unless_strict(caplog: pytest.LogCaptureFixture) -> None:
    drops: list[Any] = []
    with caplog.at_level(logging.WARNING):
        client = segment_lite.Client("", on_drop=lambda *report: drops.append(report))
    assert client.stats()["warnings"]["coerced"] == 1
    assert drops[0][0] == "coerced" and drops[0][1].path == "write_key"
    assert "write_key is empty" in caplog.text
    client.shutdown(timeout=1)
    with pytest.raises(ValidationError, match="write_key is empty"):
        segment_lite.Client("", strict=True)


def test_any_mapping_is_accepted_where_a_dict_is() -> None:
    frozen = types.MappingProxyType({"plan": "pro", "nested": types.MappingProxyType({"n": 1})})
    client = RecordingClient()
    client.track("u", "E", frozen, context=frozen, integrations=types.MappingProxyType({"All": True}))
    [sent] = client.messages
    assert sent["properties"] == {"plan": "pro", "nested": {"n": 1}}
    assert sent["context"]["plan"] == "pro" and sent["integrations"] == {"All": True}


def test_the_module_setting_and_recorders_choose_strictness() -> None:
    assert RecordingClient().strict is True
    assert segment_lite.Client("k", send=False).strict is False
    segment_lite.write_key, segment_lite.send, segment_lite.strict = "k", False, True
    with pytest.raises(ValidationError):
        segment_lite.track("u", "")


NAIVE_TIMESTAMPS = textwrap.dedent(
    """
    import datetime, json
    import segment.analytics, segment_lite
    now = datetime.datetime.now()
    stamps = {"now": now, "old": datetime.datetime(2014, 9, 3, 12), "future": now + datetime.timedelta(days=1)}
    ours = {k: segment_lite.Client("k", send=False).track("u", "E", timestamp=v)[1]["timestamp"]
            for k, v in stamps.items()}
    theirs = {k: segment.analytics.Client("k", send=False).track("u", "E", timestamp=v)[1]["timestamp"]
              for k, v in stamps.items()}
    print(json.dumps([ours, theirs]))
    """
)


@pytest.mark.parametrize("zone", ["America/New_York", "Asia/Kolkata", "UTC"])
def test_naive_datetimes_are_read_as_the_reference_reads_them(zone: str) -> None:
    environment = {**os.environ, "TZ": zone}
    result = subprocess.run(
        [sys.executable, "-c", NAIVE_TIMESTAMPS], env=environment, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    ours, theirs = json.loads(result.stdout)
    assert ours == theirs
    assert ours["old"] == "2014-09-03T12:00:00.000+00:00"  # an old naive time is UTC
    if zone == "Asia/Kolkata":
        assert ours["now"].endswith("+05:30")  # datetime.now() is local time


def test_records_reach_handlers_and_levels_set_on_the_segment_logger() -> None:
    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    segment_logger = logging.getLogger("segment")
    handler = Collect()
    saved_level = segment_logger.level
    segment_logger.addHandler(handler)
    try:
        segment_logger.setLevel(logging.WARNING)
        RecordingClient(strict=False).track("u", "")  # a WARNING
        assert [r.levelno for r in records] == [logging.WARNING]
        segment_logger.setLevel(logging.ERROR)
        RecordingClient(strict=False).track("u", "")
        assert len(records) == 1  # the level set on "segment" applies
    finally:
        segment_logger.removeHandler(handler)
        segment_logger.setLevel(saved_level)


def test_debug_sets_the_segment_logger_as_the_reference_does() -> None:
    segment_logger = logging.getLogger("segment")
    saved_level, saved_handlers = segment_logger.level, list(segment_logger.handlers)
    try:
        client = segment_lite.Client("k", debug=True, send=False)
        assert client.log is segment_logger and segment_logger.level == logging.DEBUG
        assert segment_logger.handlers  # a stderr handler when none was set
    finally:
        segment_logger.setLevel(saved_level)
        segment_logger.handlers[:] = saved_handlers


# -- sync mode and on_error: the reference's attempts and exceptions ------------------------------------


@pytest.mark.parametrize("status", [400, 503])
def test_sync_mode_raises_after_the_references_one_attempt(collector, status: int) -> None:
    errors: list[Any] = []
    theirs = reference.Client("write-key", host=collector.url, sync_mode=True)
    collector.fail_next(1, status)
    with pytest.raises(reference_request.APIError) as their_error:
        theirs.track("u", "E")
    ours = segment_lite.Client("write-key", host=collector.url, sync_mode=True, on_error=errors.append)
    collector.fail_next(1, status)
    with pytest.raises(segment_lite.APIError) as our_error:
        ours.track("u", "E")  # the default max_retries would retry a 503 for minutes
    assert len(collector.requests) == 2  # one attempt each
    assert (our_error.value.status, our_error.value.code) == (
        their_error.value.status,
        their_error.value.code,
    )
    assert our_error.value.message == their_error.value.message
    assert errors == []  # raised, not reported
    assert ours.stats()["dropped"]["rejected"] == 1 and ours.stats()["delivered"] == 0
    ours.track("u", "Fine")
    assert ours.stats()["delivered"] == 1 and len(collector.messages()) == 1


def test_sync_mode_without_an_answer_raises_an_api_error_compatible_error(collector) -> None:
    client = segment_lite.Client("write-key", host=collector.url, sync_mode=True)
    collector.go_down()
    with pytest.raises(segment_lite.RetriesExhaustedError) as caught:
        client.track("u", "E")
    error = caught.value
    assert (error.status, error.code, error.attempts) == (None, "retries_exhausted", 1)
    assert error.message == str(error) and "connection refused" in error.message
    assert client.stats()["dropped"]["retries_exhausted"] == 1


def test_on_error_gets_status_code_and_message_when_retries_run_out(collector, make_client) -> None:
    errors: list[Any] = []
    client = make_client(
        max_retries=1,
        clock=FakeClock(),
        on_error=lambda error, batch: errors.append((error, batch)),
    )
    collector.fail_next(2, 503)
    client.track("u", "E")
    assert client.flush(timeout=10)
    [(error, batch)] = errors
    assert (error.status, error.code) == (503, "retries_exhausted") and "503" in error.message
    assert batch[0]["event"] == "E"
    client.shutdown(timeout=1)


# -- upload_size, the queue and attributes -----------------------------------------------------------


def test_upload_size_when_passed_caps_each_request(collector, make_client) -> None:
    client = make_client(upload_size=10, upload_interval=3600)
    client.join()  # stop the consumer so the backlog builds up
    for i in range(35):
        client.track("u", "E", {"i": i})
    assert client.flush(timeout=10)
    assert [len(r.json["batch"]) for r in collector.requests] == [10, 10, 10, 5]


def test_upload_size_left_out_lets_a_backlog_go_in_bigger_batches(collector, make_client) -> None:
    client = make_client(upload_interval=3600)
    assert client.max_batch_size == 2500 and client.upload_size == 100
    collector.delay_next(1, 0.5)  # the first batch is slow to answer: the rest piles up meanwhile
    for i in range(1000):
        client.track("u", "E", {"i": i})
    assert client.flush(timeout=10)
    sizes = [len(r.json["batch"]) for r in collector.requests]
    assert sum(sizes) == 1000 and max(sizes) > 100


def test_max_queue_size_zero_is_unbounded_and_the_queue_answers_queue_reads(collector, make_client) -> None:
    client = make_client(max_queue_size=0, upload_interval=3600)
    client.join()
    assert client.queue.maxsize == 0 and client.queue.empty() and not client.queue.full()
    collector.delay_next(1, 1.0)  # hold the consumer up while the queue grows
    assert all(client.track("u", "E")[0] for _ in range(20_000))  # more than the default 10,000
    assert client.stats()["dropped"]["queue_full"] == 0
    assert client.queue.qsize() > 10_000 and not client.queue.empty() and not client.queue.full()
    client.queue.join()
    assert client.queue.empty() and len(collector.messages()) == 20_000

    small = make_client(max_queue_size=2, upload_interval=3600)
    small.join()
    small.track("u", "A")
    small.track("u", "B")
    assert small.queue.full() and small.queue.maxsize == 2


def test_write_key_can_be_assigned(collector) -> None:
    client = segment_lite.Client("first-key", host=collector.url, sync_mode=True)
    client.track("u", "E")
    client.write_key = "second-key"
    assert client.write_key == "second-key"
    client.track("u", "E")
    keys = [r.json["writeKey"] for r in collector.requests]
    assert keys == ["first-key", "second-key"]
    assert client._pipeline.ledger.redact("second-key and first-key") == "*** and ***"


# -- the module API -------------------------------------------------------------------------------------


@pytest.mark.parametrize("call", ["identify", "track", "alias", "group", "page", "screen"])
def test_module_functions_carry_the_client_signatures(call: str) -> None:
    method = inspect.signature(getattr(segment_lite.Client, call))
    function = inspect.signature(getattr(segment_lite, call))
    assert list(function.parameters.values()) == list(method.parameters.values())[1:]  # all but self
    assert function.return_annotation == method.return_annotation


def test_the_stats_function_is_not_shadowed_by_a_module() -> None:
    import segment_lite.ledger  # importing every core module must not replace it

    assert inspect.isfunction(segment_lite.stats)
    assert importlib.util.find_spec("segment_lite.stats") is None


def test_the_default_client_is_made_once_whatever_the_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[segment_lite.Client] = []

    class SlowToMake(segment_lite.Client):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            time.sleep(0.05)  # widen the window two threads could both see no client in
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(segment_lite, "Client", SlowToMake)
    segment_lite.write_key, segment_lite.send, segment_lite.default_client = "k", False, None
    start = threading.Barrier(8)

    def call() -> None:
        start.wait()
        segment_lite.track("u", "E")

    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(made) == 1 and segment_lite.default_client is made[0]


# -- the reference's module names that tests patch ------------------------------------------------------


def test_patching_consumer_post_sees_every_batch_as_the_reference_passes_it(make_client) -> None:
    import segment_lite.consumer

    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    client = make_client(upload_size=5, upload_interval=3600)
    with mock.patch("segment_lite.consumer.post", side_effect=lambda *a, **kw: calls.append((a, kw))):
        for i in range(10):
            client.track("u", "E", {"i": i})
        assert client.flush(timeout=10)
    assert [len(kwargs["batch"]) for _, kwargs in calls] == [5, 5]
    args, kwargs = calls[0]
    assert args[0] == "test-secret-write-key-1234" and kwargs["batch"][0]["properties"] == {"i": 0}
    assert client.stats()["delivered"] == 10
    assert segment_lite.consumer.MAX_MSG_SIZE == 32 * 1024


def test_a_patched_consumer_post_that_raises_an_api_error_rejects_the_batch(make_client) -> None:
    errors: list[Any] = []
    client = make_client(on_error=lambda error, batch: errors.append(error))
    refusal = segment_lite.APIError(400, "invalid", "no thanks")
    with mock.patch("segment_lite.consumer.post", side_effect=refusal):
        client.track("u", "E")
        assert client.flush(timeout=10)
    [error] = errors
    assert (error.status, error.code, error.message) == (400, "invalid", "no thanks")


def test_patching_the_request_session_sees_the_post_and_its_proxies(collector, make_client) -> None:
    proxies = {"https": "http://proxy.invalid:3128"}
    client = make_client(proxies=proxies)
    answer = mock.Mock(status_code=200)
    with mock.patch("segment_lite.request._session.post", return_value=answer) as post:
        client.track("u", "E")
        assert client.flush(timeout=10)
    post.assert_called_once()
    url, kwargs = post.call_args.args[0], post.call_args.kwargs
    assert url == collector.url + "/v1/batch" and kwargs["proxies"] == proxies
    assert json.loads(kwargs["data"])["batch"][0]["event"] == "E"
    assert collector.requests == []  # the patch answered, nothing reached the network
    client.track("u", "After")
    assert client.flush(timeout=10) and len(collector.messages()) == 1  # unpatched: the real transport


def test_request_post_posts_a_batch_as_the_reference_function_does(collector) -> None:
    from segment_lite import request

    response = request.post(
        "write-key", collector.url, batch=[{"type": "track", "userId": "u", "event": "E"}]
    )
    assert response.status_code == 200 and collector.messages()[0]["event"] == "E"
    collector.fail_next(1, 400)
    with pytest.raises(segment_lite.APIError) as refused:
        request.post("write-key", collector.url, batch=[{"type": "track", "userId": "u", "event": "E"}])
    assert refused.value.status == 400
