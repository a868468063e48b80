"""Message building and validation: every call's fields, required fields and error messages."""

from __future__ import annotations

import datetime
import uuid

import pytest

from segment_lite import MessageTooLargeError, ValidationError
from segment_lite.testing import RecordingClient

LIBRARY = {"name": "segment-lite", "version": __import__("segment_lite").VERSION}


@pytest.fixture
def recorder() -> RecordingClient:
    return RecordingClient()


def only(recorder: RecordingClient) -> dict:
    assert len(recorder.messages) == 1
    return recorder.messages[0]


def test_track_has_every_spec_field(recorder: RecordingClient) -> None:
    ok, returned = recorder.track(
        "user-1",
        "Order Completed",
        {"total": 12.5},
        context={"ip": "10.0.0.1"},
        timestamp=datetime.datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=datetime.timezone.utc),
        anonymous_id="anon-1",
        integrations={"All": False, "Attribution": True},
        message_id="msg-1",
    )
    assert ok
    sent = only(recorder)
    assert sent == {
        "type": "track",
        "event": "Order Completed",
        "userId": "user-1",
        "anonymousId": "anon-1",
        "properties": {"total": 12.5},
        "messageId": "msg-1",
        "timestamp": "2024-05-01T12:00:00.123+00:00",
        "context": {"ip": "10.0.0.1", "library": LIBRARY},
        "integrations": {"All": False, "Attribution": True},
    }
    assert returned == sent


def test_defaults_message_id_timestamp_and_library(recorder: RecordingClient) -> None:
    recorder.track(anonymous_id="a", event="E")
    sent = only(recorder)
    assert uuid.UUID(sent["messageId"]).version == 4
    stamp = datetime.datetime.fromisoformat(sent["timestamp"])
    assert abs((datetime.datetime.now(datetime.timezone.utc) - stamp).total_seconds()) < 60
    assert sent["timestamp"].endswith("+00:00") and len(sent["timestamp"].split(".")[1]) == 9  # 123+00:00
    assert sent["context"] == {"library": LIBRARY}
    assert sent["properties"] == {}
    assert sent["integrations"] == {}
    assert sent["userId"] is None  # present, as segment-analytics-python sends it


def test_caller_context_is_not_mutated_and_own_library_wins(recorder: RecordingClient) -> None:
    context = {"locale": "fr-FR"}
    recorder.track("u", "E", context=context)
    assert context == {"locale": "fr-FR"}
    recorder.track("u", "E", context={"library": {"name": "wrapper", "version": "9"}})
    assert recorder.messages[1]["context"]["library"] == {"name": "wrapper", "version": "9"}


def test_ids_are_stringified(recorder: RecordingClient) -> None:
    recorder.identify(42, {"plan": "pro"}, anonymous_id=uuid.UUID(int=7))
    sent = only(recorder)
    assert sent["userId"] == "42"
    assert sent["anonymousId"] == "00000000-0000-0000-0000-000000000007"
    assert sent["traits"] == {"plan": "pro"}


@pytest.mark.parametrize(
    ("call", "kwargs", "message", "path"),
    [
        ("track", {"event": "E"}, "track: user_id or anonymous_id is required", "userId"),
        ("track", {"user_id": "u"}, "track: event must be a non-empty string, got None", "event"),
        ("track", {"user_id": "u", "event": 5}, "track: event must be a non-empty string, got int", "event"),
        (
            "track",
            {"user_id": "u", "event": "E", "properties": [1]},
            "track: properties must be a dict, got list",
            "properties",
        ),
        ("identify", {}, "identify: user_id or anonymous_id is required", "userId"),
        ("identify", {"user_id": "u", "traits": "x"}, "identify: traits must be a dict, got str", "traits"),
        ("group", {"user_id": "u"}, "group: group_id is required", "groupId"),
        ("group", {"group_id": "g"}, "group: user_id or anonymous_id is required", "userId"),
        ("alias", {"user_id": "u"}, "alias: previous_id is required", "previousId"),
        ("alias", {"previous_id": "p"}, "alias: user_id is required", "userId"),
        ("page", {}, "page: user_id or anonymous_id is required", "userId"),
        ("page", {"user_id": "u", "name": 3}, "page: name must be a string, got int", "name"),
        (
            "screen",
            {"user_id": "u", "category": 1.5},
            "screen: category must be a string, got float",
            "category",
        ),
        (
            "track",
            {"user_id": True, "event": "E"},
            "track: userId must be a string or number, got bool",
            "userId",
        ),
        (
            "track",
            {"user_id": "u", "event": "E", "context": "c"},
            "track: context must be a dict, got str",
            "context",
        ),
        (
            "track",
            {"user_id": "u", "event": "E", "integrations": ["All"]},
            "track: integrations must be a dict, got list",
            "integrations",
        ),
        (
            "track",
            {"user_id": "u", "event": "E", "message_id": "x" * 101},
            "track: messageId must be 1 to 100 characters, got 101",
            "messageId",
        ),
        (
            "track",
            {"user_id": "u", "event": "E", "timestamp": "yesterday"},
            "timestamp must be an ISO-8601 date-time, got 'yesterday'",
            "timestamp",
        ),
        (
            "track",
            {"user_id": "u", "event": "E", "timestamp": 1700000000},
            "timestamp must be a datetime, date or ISO-8601 string, got int",
            "timestamp",
        ),
    ],
)
def test_validation_errors_name_the_field(
    recorder: RecordingClient, call: str, kwargs: dict, message: str, path: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        getattr(recorder, call)(**kwargs)
    assert str(caught.value) == message
    assert caught.value.path == path
    assert recorder.messages == []
    assert recorder.stats()["dropped"]["invalid"] == 1


def test_validation_error_is_an_assertion_error_like_the_reference(recorder: RecordingClient) -> None:
    with pytest.raises(AssertionError):
        recorder.track("u")
    with pytest.raises(ValueError):
        recorder.track("u")


def test_every_call_type_builds_its_fields(recorder: RecordingClient) -> None:
    recorder.identify("u", {"email": "a@b.c"})
    recorder.group("u", "g1", {"name": "Acme"})
    recorder.alias("anon-9", "u")
    recorder.page("u", "Docs", "Install", {"path": "/install"})
    recorder.screen(anonymous_id="a", name="Home", properties={"tab": 1})
    identify, group, alias, page, screen = recorder.messages
    assert identify["type"] == "identify" and identify["traits"] == {"email": "a@b.c"}
    assert group["type"] == "group" and group["groupId"] == "g1" and group["traits"] == {"name": "Acme"}
    assert alias["type"] == "alias" and alias["previousId"] == "anon-9" and alias["userId"] == "u"
    assert (page["type"], page["category"], page["name"], page["properties"]) == (
        "page",
        "Docs",
        "Install",
        {"path": "/install"},
    )
    assert screen["type"] == "screen" and screen["name"] == "Home" and screen["category"] is None
    assert screen["anonymousId"] == "a" and screen["userId"] is None


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (  # the offset is kept, as segment-analytics-python writes it
            datetime.datetime(2024, 1, 1, 12, tzinfo=datetime.timezone(datetime.timedelta(hours=2))),
            "2024-01-01T12:00:00.000+02:00",
        ),
        (datetime.datetime(2024, 1, 1, 12, 30, 1, 999999), "2024-01-01T12:30:01.999+00:00"),  # old naive: UTC
        (datetime.date(2024, 2, 29), "2024-02-29T00:00:00.000+00:00"),
        ("2024-03-01T08:00:00-05:00", "2024-03-01T08:00:00.000-05:00"),
        ("2024-03-01T08:00:00.25", "2024-03-01T08:00:00.250+00:00"),
        ("2024-03-01T08:00:00Z", "2024-03-01T08:00:00.000+00:00"),
        ("2024-03-01", "2024-03-01T00:00:00.000+00:00"),
    ],
)
def test_timestamps_have_milliseconds_and_keep_their_offset(
    recorder: RecordingClient, given, expected
) -> None:
    recorder.track("u", "E", timestamp=given)
    assert only(recorder)["timestamp"] == expected


def test_message_over_32kb_is_refused_at_the_call(recorder: RecordingClient) -> None:
    errors = []
    client = RecordingClient(on_drop=lambda reason, exc, msgs: errors.append((exc, msgs)))
    with pytest.raises(MessageTooLargeError) as caught:
        client.track("u", "Big", {"blob": "x" * 33000})
    assert str(caught.value).startswith("track message is 33")
    assert "over the 32768-byte limit" in str(caught.value)
    assert caught.value.limit_bytes == 32768
    assert client.messages == []
    assert client.stats()["dropped"]["oversize"] == 1
    assert len(errors) == 1 and errors[0][1][0]["event"] == "Big"
    # just under the limit is fine
    client.track("u", "Big", {"blob": "x" * 32000})
    assert len(client.messages) == 1
