"""Column mappings and row conversion: targets, conversions, wildcard, constants, archive stripping."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pytest

from segment_lite.importer import FieldMapping, ImportConfigError, RowConverter, RowError, RowOptions


def test_parse_targets_sources_and_conversions() -> None:
    mapping = FieldMapping.parse(
        "userId=user_id, event=action,timestamp=created_at,properties.plan=plan,properties.seats:int=seats"
    )
    row = {"user_id": "u1", "action": "Upgraded", "created_at": "2024-01-01", "plan": "pro", "seats": "12"}
    assert mapping.apply(row) == {
        "userId": "u1",
        "event": "Upgraded",
        "timestamp": "2024-01-01",
        "properties": {"plan": "pro", "seats": 12},
    }


def test_several_specs_and_dict_form_agree() -> None:
    a = FieldMapping.parse(["userId=id", "traits.email=mail"])
    b = FieldMapping.parse({"userId": "id", "traits.email": "mail"})
    row = {"id": "7", "mail": "a@example.com"}
    assert a.apply(row) == b.apply(row) == {"userId": "7", "traits": {"email": "a@example.com"}}


def test_empty_and_missing_columns_are_left_out() -> None:
    mapping = FieldMapping.parse("userId=id,anonymousId=anon,properties.plan=plan")
    assert mapping.apply({"id": "", "anon": "a-1"}) == {"anonymousId": "a-1"}


@pytest.mark.parametrize(
    ("conversion", "text", "expected"),
    [
        ("int", "42", 42),
        ("int", "42.0", 42),
        ("float", "19.99", 19.99),
        ("bool", "yes", True),
        ("bool", "FALSE", False),
        ("bool", "0", False),
        ("json", '{"a": [1, 2]}', {"a": [1, 2]}),
        ("str", 5, "5"),
    ],
)
def test_conversions(conversion: str, text: object, expected: object) -> None:
    mapping = FieldMapping.parse(f"properties.value:{conversion}=col")
    assert mapping.apply({"col": text}) == {"properties": {"value": expected}}


@pytest.mark.parametrize(
    ("conversion", "text"), [("int", "4.5"), ("float", "abc"), ("bool", "maybe"), ("json", "{")]
)
def test_failed_conversions_name_the_field(conversion: str, text: str) -> None:
    mapping = FieldMapping.parse(f"properties.value:{conversion}=col")
    with pytest.raises(RowError) as info:
        mapping.apply({"col": text})
    assert info.value.field == "properties.value"
    assert "col" in info.value.reason


def test_wildcard_takes_every_other_column() -> None:
    mapping = FieldMapping.parse("userId=id,event=action,properties.*=*")
    row = {"id": "u", "action": "Viewed", "color": "red", "size": "", "page": "/x"}
    assert mapping.apply(row) == {
        "userId": "u",
        "event": "Viewed",
        "properties": {"color": "red", "page": "/x"},
    }


def test_constants_fill_every_message_and_are_not_shared() -> None:
    mapping = FieldMapping.parse(
        "userId=id,properties.plan=plan", constants={"event": "Signed Up", "properties": {}}
    )
    first = mapping.apply({"id": "1", "plan": "pro"})
    second = mapping.apply({"id": "2"})
    assert first == {"event": "Signed Up", "properties": {"plan": "pro"}, "userId": "1"}
    assert second == {"event": "Signed Up", "properties": {}, "userId": "2"}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("user=id", "unknown mapping target"),
        ("userId.x=id", "is not an object"),
        ("properties.n:decimal=id", "unknown conversion"),
        ("userId", "must look like target=column"),
        ("properties.*=col", "wildcard"),
        ("userId=*", "wildcard source"),
        ("properties..a=b", "empty part"),
    ],
)
def test_bad_specs_are_config_errors(spec: str, message: str) -> None:
    with pytest.raises(ImportConfigError, match=message):
        FieldMapping.parse(spec)


def test_mapping_file(tmp_path: Path) -> None:
    path = tmp_path / "map.json"
    path.write_text(json.dumps({"userId": "user_id", "properties.amount:float": "amount"}))
    assert FieldMapping.from_file(str(path)).apply({"user_id": "u", "amount": "3.5"}) == {
        "userId": "u",
        "properties": {"amount": 3.5},
    }
    path.write_text("[1]")
    with pytest.raises(ImportConfigError, match="JSON object"):
        FieldMapping.from_file(str(path))
    with pytest.raises(ImportConfigError, match="cannot read"):
        FieldMapping.from_file(str(tmp_path / "missing.json"))


UTC = datetime.timezone.utc


def test_converter_builds_call_arguments_per_type() -> None:
    convert = RowConverter(RowOptions(integrations={"All": False, "Amplitude": True})).convert
    method, kwargs = convert(
        {
            "type": "page",
            "userId": "u",
            "name": "Home",
            "category": "Docs",
            "properties": {"path": "/"},
            "timestamp": 1700000000000,
            "integrations": {"Amplitude": False, "Mixpanel": True},
            "messageId": "m-1",
            "receivedAt": "ignored",
        }
    )
    assert method == "page"
    assert kwargs == {
        "user_id": "u",
        "anonymous_id": None,
        "category": "Docs",
        "name": "Home",
        "properties": {"path": "/"},
        "context": None,
        "timestamp": datetime.datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC),
        "integrations": {"Amplitude": True, "Mixpanel": True, "All": False},
        "message_id": "m-1",
    }
    assert (
        convert({"type": "alias", "previousId": "a", "userId": "b", "timestamp": "2024-01-01"})[1][
            "previous_id"
        ]
        == "a"
    )
    assert (
        convert({"type": "group", "userId": "b", "groupId": "g", "timestamp": "2024-01-01"})[1]["group_id"]
        == "g"
    )


def test_converter_type_default_timestamp_rules_and_archive() -> None:
    convert = RowConverter(RowOptions(type="identify")).convert
    method, kwargs = convert({"userId": "u", "traits": {"a": 1}, "originalTimestamp": "2024-01-01T00:00:00Z"})
    assert method == "identify"
    assert kwargs["timestamp"] == datetime.datetime(2024, 1, 1, tzinfo=UTC)
    with pytest.raises(RowError, match="timestamp is missing") as info:
        convert({"userId": "u"})
    assert info.value.field == "timestamp"
    with pytest.raises(RowError, match="type must be one of"):
        convert({"type": "click", "userId": "u", "timestamp": "2024-01-01"})
    with pytest.raises(RowError) as bad_time:
        convert({"userId": "u", "timestamp": "soon"})
    assert bad_time.value.field == "timestamp"
    assert (
        RowConverter(RowOptions(type="track", allow_now=True)).convert({"userId": "u", "event": "E"})[1][
            "timestamp"
        ]
        is None
    )
    archive = RowConverter(RowOptions(from_archive=True)).convert(
        {"type": "track", "event": "E", "userId": "u", "messageId": "orig", "timestamp": "2024-01-01"}
    )
    assert archive[1]["message_id"] is None
    with pytest.raises(ImportConfigError):
        RowOptions(type="click")
