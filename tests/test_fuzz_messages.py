"""Property-based fuzzing of message building and encoding, each run held to a few seconds.

Whatever a caller passes, a call either queues a message that is valid JSON within
the nesting limit and says what was passed, or raises one of the library's own
errors (``ValidationError``, ``EncodeError``) and counts it: never another
exception, never a message the server would choke on, never a lost value.
"""

from __future__ import annotations

import datetime
import decimal
import json
import math
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segment_lite import EncodeError, ValidationError, encoding
from segment_lite.limits import MAX_NESTING_DEPTH
from segment_lite.message import build_alias, build_group, build_identify, build_track, build_view
from segment_lite.shape import key_text
from segment_lite.testing import RecordingClient

# derandomize: CI explores the same examples every run, so a pass or a failure is reproducible.
FUZZ = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
LIBRARY_ERRORS = (ValidationError, EncodeError)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),  # surrogates included: not valid Unicode, refused with the path
    st.decimals(allow_nan=False, allow_infinity=False, places=3, min_value=-(10**6), max_value=10**6),
    st.datetimes(timezones=st.none() | st.just(datetime.timezone.utc)),
    st.uuids(),
    st.binary(max_size=8),
)
keys = st.one_of(st.text(max_size=6), st.integers(-3, 3), st.booleans(), st.none(), st.floats(-2, 2))


def values(max_leaves: int = 20) -> st.SearchStrategy[Any]:
    return st.recursive(
        scalars,
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.tuples(children, children),
            st.dictionaries(keys, children, max_size=4),
        ),
        max_leaves=max_leaves,
    )


def deeply_nested(depth: int, kind: str) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"k": value} if kind == "dict" else [value]
    return value


nesting = st.builds(deeply_nested, st.integers(0, 3 * MAX_NESTING_DEPTH), st.sampled_from(["dict", "list"]))
ids = st.one_of(st.none(), st.text(max_size=10), st.integers(), st.floats(), st.booleans(), st.uuids())
timestamps = st.one_of(
    st.none(),
    st.datetimes(),
    st.datetimes(timezones=st.timezones()),
    st.dates(),
    st.text(max_size=30),
    st.datetimes().map(lambda moment: moment.isoformat()),
    st.integers(),
)


def depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    return 0


def as_json(value: Any) -> Any:
    """What a value means once sent: the JSON the encoders agree on."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, dict):
        return {key_text(k): as_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [as_json(v) for v in value]
    return value


@FUZZ
@given(properties=st.one_of(values(), nesting, st.dictionaries(st.text(max_size=5), nesting, max_size=2)))
def test_encoding_either_sends_what_was_given_or_names_what_is_wrong(properties: Any) -> None:
    message = {"type": "track", "properties": properties}
    try:
        data = encoding.encode(message)
    except EncodeError as exc:
        assert exc.path and str(exc).startswith(f"cannot encode {exc.path}: ")
        return
    sent = json.loads(data)
    assert depth(sent) <= MAX_NESTING_DEPTH
    assert sent == {"type": "track", "properties": as_json(properties)}, "no value lost or changed"


@pytest.mark.skipif(not encoding.HAVE_ORJSON, reason="orjson is not installed")
@FUZZ
@given(properties=values(12))
def test_both_encoders_agree(properties: Any) -> None:
    message = {"properties": properties}
    outcomes = []
    try:
        for orjson_on in (True, False):
            encoding.HAVE_ORJSON = orjson_on
            try:
                outcomes.append(("sent", json.loads(encoding.encode(message))))
            except EncodeError as exc:
                outcomes.append(("refused", exc.path))
    finally:
        encoding.HAVE_ORJSON = True
    assert outcomes[0] == outcomes[1]


@FUZZ
@given(
    kind=st.sampled_from(["track", "identify", "group", "alias", "page", "screen"]),
    user_id=ids,
    anonymous_id=ids,
    name=st.one_of(st.none(), st.text(max_size=10), st.integers()),
    fields=st.one_of(st.none(), values(8), st.dictionaries(st.text(max_size=5), values(6), max_size=3)),
    context=st.one_of(
        st.none(), st.dictionaries(st.text(max_size=5), values(4), max_size=3), st.text(max_size=3)
    ),
    timestamp=timestamps,
    message_id=st.one_of(st.none(), st.text(max_size=120), st.integers()),
)
def test_building_a_message_raises_only_the_librarys_errors(
    kind: str,
    user_id: Any,
    anonymous_id: Any,
    name: Any,
    fields: Any,
    context: Any,
    timestamp: Any,
    message_id: Any,
) -> None:
    try:
        if kind == "track":
            message = build_track(user_id, name, fields, context, timestamp, anonymous_id, None, message_id)
        elif kind == "identify":
            message = build_identify(user_id, fields, context, timestamp, anonymous_id, None, message_id)
        elif kind == "group":
            message = build_group(user_id, name, fields, context, timestamp, anonymous_id, None, message_id)
        elif kind == "alias":
            message = build_alias(anonymous_id, user_id, context, timestamp, None, message_id)
        else:
            message = build_view(
                kind, user_id, None, name, fields, context, timestamp, anonymous_id, None, message_id
            )
        data = encoding.encode(message)
    except LIBRARY_ERRORS as exc:
        assert getattr(exc, "path", None) is not None or isinstance(exc, ValidationError)
        return
    sent = json.loads(data)
    assert sent["type"] == kind and sent["messageId"]
    assert datetime.datetime.fromisoformat(sent["timestamp"]).tzinfo is not None  # an offset, always
    assert sent.get("userId") or sent.get("anonymousId")
    assert depth(sent) <= MAX_NESTING_DEPTH


@FUZZ
@given(calls=st.lists(st.tuples(ids, st.one_of(st.text(max_size=8), st.none()), values(10)), max_size=8))
def test_every_call_is_recorded_or_refused_and_the_books_balance(calls: list[tuple[Any, Any, Any]]) -> None:
    client = RecordingClient()
    sent = refused = 0
    try:
        for user_id, event, properties in calls:
            try:
                ok, _ = client.track(user_id, event, properties)
            except LIBRARY_ERRORS:
                refused += 1
            else:
                assert ok
                sent += 1
        stats = client.stats()
        assert len(client.messages) == sent == stats["delivered"] == stats["accepted"]
        assert stats["dropped"]["invalid"] + stats["dropped"]["encode_error"] == refused
    finally:
        client.shutdown()
