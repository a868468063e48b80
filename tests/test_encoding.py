"""JSON encoding of user values: the types users expect, and errors that name the path."""

from __future__ import annotations

import datetime
import decimal
import enum
import json
import tracemalloc
import uuid

import pytest

from benchmarks.workload import fresh_call_args
from segment_lite import EncodeError, encoding, message
from segment_lite.testing import RecordingClient


class Plan(enum.Enum):
    PRO = "pro"


class Level(enum.IntEnum):
    HIGH = 3


SAMPLE = {
    "when": datetime.datetime(2024, 1, 2, 3, 4, 5, 600000, tzinfo=datetime.timezone.utc),
    "naive": datetime.datetime(2024, 1, 2, 3, 4, 5),
    "day": datetime.date(2024, 1, 2),
    "price": decimal.Decimal("19.99"),
    "id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "plan": Plan.PRO,
    "level": Level.HIGH,
    "tags": {"only"},
    "pair": (1, "two"),
    "nested": {"deep": {"list": [1, 2.5, None, True]}},
    "unicode": "café ✓",
    "big": 2**70,
    "nan": float("nan"),
    "inf": float("-inf"),
    7: "int key",
}

EXPECTED = {
    "when": "2024-01-02T03:04:05.600000+00:00",
    "naive": "2024-01-02T03:04:05",
    "day": "2024-01-02",
    "price": 19.99,
    "id": "12345678-1234-5678-1234-567812345678",
    "plan": "pro",
    "level": 3,
    "tags": ["only"],
    "pair": [1, "two"],
    "nested": {"deep": {"list": [1, 2.5, None, True]}},
    "unicode": "café ✓",
    "big": 2**70,
    "nan": None,
    "inf": None,
    "7": "int key",
}


def test_user_types_encode_as_expected() -> None:
    assert json.loads(encoding.encode(SAMPLE)) == EXPECTED


def test_stdlib_and_orjson_paths_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    fast = json.loads(encoding.encode(SAMPLE))
    monkeypatch.setattr(encoding, "HAVE_ORJSON", False)
    plain_bytes = encoding.encode(SAMPLE)
    assert json.loads(plain_bytes) == fast == EXPECTED
    assert b"NaN" not in plain_bytes and b"Infinity" not in plain_bytes


def test_output_is_compact_utf8(monkeypatch: pytest.MonkeyPatch) -> None:
    for orjson_on in (encoding.HAVE_ORJSON, False):
        monkeypatch.setattr(encoding, "HAVE_ORJSON", orjson_on)
        assert encoding.encode({"a": [1, "é"]}) == '{"a":[1,"é"]}'.encode()


def test_strings_containing_nan_are_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(encoding, "HAVE_ORJSON", False)
    assert json.loads(encoding.encode({"s": "NaN and Infinity", "f": 1.5})) == {
        "s": "NaN and Infinity",
        "f": 1.5,
    }


class Owner:
    pass


@pytest.mark.parametrize("orjson_on", [True, False])
@pytest.mark.parametrize(
    ("value", "path", "reason"),
    [
        ({"properties": {"cart": {"owner": Owner()}}}, "properties.cart.owner", "test_encoding.Owner"),
        ({"traits": {"tags": ["a", "b", object()]}}, "traits.tags[2]", "builtins.object"),
        ({"properties": {"raw": b"\xff\xfe"}}, "properties.raw", "bytes are not valid UTF-8"),
        ({"properties": {(1, 2): "tuple key"}}, "properties.(1, 2)", "dict key of type tuple"),
        ({"properties": {"s": "\ud800"}}, "properties.s", "string is not valid Unicode"),
    ],
)
def test_unencodable_value_names_its_path(monkeypatch, orjson_on, value, path, reason) -> None:
    if orjson_on and not encoding.HAVE_ORJSON:
        pytest.skip("orjson is not installed")
    monkeypatch.setattr(encoding, "HAVE_ORJSON", orjson_on)
    with pytest.raises(EncodeError) as caught:
        encoding.encode(value)
    assert caught.value.path == path
    assert str(caught.value).startswith(f"cannot encode {path}: ")
    assert reason in str(caught.value)
    assert isinstance(caught.value, TypeError)


def test_circular_reference_is_reported() -> None:
    loop: dict = {}
    loop["self"] = loop
    with pytest.raises(EncodeError, match=r"cannot encode properties.self: circular reference"):
        encoding.encode({"properties": loop})


def test_unencodable_property_never_reaches_the_queue() -> None:
    errors = []
    client = RecordingClient(on_drop=lambda reason, exc, msgs: errors.append(exc))
    with pytest.raises(TypeError, match=r"properties\.cart\.owner"):
        client.track("u", "Checkout", {"cart": {"owner": Owner()}})
    client.track("u", "Fine", {"cart": {"owner": "bob"}})
    assert [m["event"] for m in client.messages] == ["Fine"]
    assert "<" not in json.dumps(client.messages)  # no "<object at 0x...>" strings anywhere
    assert client.stats()["dropped"]["encode_error"] == 1
    assert len(errors) == 1 and errors[0].path == "properties.cart.owner"


# -- the encoded bytes the queue keeps ------------------------------------------------


def test_encoded_messages_are_exact_size_and_identical_on_both_encoders(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    built = message.build_track(*fresh_call_args(7))
    first = encoding.encode(built)
    monkeypatch.setattr(encoding, "HAVE_ORJSON", False)
    assert encoding.encode(built) == first
    assert json.loads(first)["properties"]["added_at"] == "2024-05-17T09:30:12.345000+00:00"


@pytest.mark.parametrize("orjson_on", [True, False])
def test_encoded_bytes_hold_no_more_memory_than_their_length(
    monkeypatch: pytest.MonkeyPatch, orjson_on: bool
) -> None:
    # The queue keeps each encoded message: it must not keep an encoder's larger
    # working buffer with it (orjson returns one of 1 KB to 4 KB or more).
    if orjson_on and not encoding.HAVE_ORJSON:
        pytest.skip("orjson is not installed")
    monkeypatch.setattr(encoding, "HAVE_ORJSON", orjson_on)
    built = message.build_track(*fresh_call_args(7))
    size = len(encoding.encode(built))
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = [encoding.encode(built) for _ in range(200)]
        per_item = (tracemalloc.get_traced_memory()[0] - before) / len(kept)
    finally:
        tracemalloc.stop()
    assert per_item < size + 128  # the bytes object's header and the list's slot


def test_non_finite_floats_take_the_exact_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(encoding, "HAVE_ORJSON", False)
    assert encoding.encode({"a": float("nan"), "b": [float("inf"), 1.5], "s": "NaN"}) == (
        b'{"a":null,"b":[null,1.5],"s":"NaN"}'
    )
