"""Messages a server would choke on are refused at the call: nesting past the limit, keys that collide."""

from __future__ import annotations

import collections
import datetime
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import segment_lite
from segment_lite import EncodeError, ValidationError, encoding, shape
from segment_lite.errors import NestingTooDeepError
from segment_lite.limits import MAX_NESTING_DEPTH
from segment_lite.message import (
    CALLER_FIELDS,
    build_alias,
    build_group,
    build_identify,
    build_track,
    build_view,
)
from segment_lite.shape import check_shape, key_text
from segment_lite.testing import RecordingClient

ENCODERS = [pytest.param(True, id="orjson"), pytest.param(False, id="stdlib")]


@pytest.fixture(params=ENCODERS)
def encoder(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    if request.param and not encoding.HAVE_ORJSON:
        pytest.skip("orjson is not installed")
    monkeypatch.setattr(encoding, "HAVE_ORJSON", request.param)
    return bool(request.param)


def nested(levels: int, leaf: object = 1, kind: str = "dict") -> object:
    """``levels`` objects (or arrays) inside each other around ``leaf``."""
    value = leaf
    for _ in range(levels):
        value = {"a": value} if kind == "dict" else [value]
    return value


def message_nested(total_depth: int, kind: str = "dict") -> dict:
    """A message whose deepest container is ``total_depth`` levels deep (the message is level 1)."""
    return {"type": "track", "properties": nested(total_depth - 1, kind=kind)}


# -- nesting ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["dict", "list"])
def test_the_limit_itself_is_accepted_and_one_more_refused(encoder, kind) -> None:
    assert json.loads(encoding.encode(message_nested(MAX_NESTING_DEPTH, kind)))
    with pytest.raises(NestingTooDeepError) as refused:
        encoding.encode(message_nested(MAX_NESTING_DEPTH + 1, kind))
    assert refused.value.limit == MAX_NESTING_DEPTH == 32
    assert refused.value.path.startswith("properties")
    assert "nested deeper than 32 levels" in str(refused.value)


@pytest.mark.parametrize("levels", [100, 985, 10_000])
def test_very_deep_nesting_is_the_librarys_error_never_a_recursion_error(encoder, levels) -> None:
    with pytest.raises(NestingTooDeepError):
        encoding.encode(message_nested(levels))


def test_track_refuses_deep_nesting_and_counts_it() -> None:
    drops = []
    client = RecordingClient(on_drop=lambda reason, exc, msgs: drops.append((reason, exc)))
    with pytest.raises(NestingTooDeepError, match=r"cannot encode properties(\.a)+: nested deeper than 32"):
        client.track("u", "Deep", nested(10_000))
    with pytest.raises(EncodeError):  # the same error users already catch
        client.identify("u", {"tree": nested(40)})
    client.track("u", "Shallow", nested(20))
    assert [m["event"] for m in client.messages] == ["Shallow"]
    assert client.stats()["dropped"]["encode_error"] == 2
    assert [reason for reason, _ in drops] == ["encode_error", "encode_error"][: len(drops)]
    client.shutdown()


def test_brackets_inside_strings_do_not_count() -> None:
    text = "[{" * 200
    assert json.loads(encoding.encode({"properties": {"s": text}}))["properties"]["s"] == text


def test_lenient_client_leaves_out_only_what_is_past_the_limit() -> None:
    warnings = []
    client = RecordingClient(
        strict=False, on_drop=lambda reason, exc, msgs: warnings.append((reason, getattr(exc, "path", "")))
    )
    properties = {"ok": [1, {"fine": True}], "deep": nested(50), "n": 1}
    ok, _ = client.track("u", "Deep", properties)
    assert ok
    [sent] = client.messages
    assert sent["properties"]["ok"] == [1, {"fine": True}] and sent["properties"]["n"] == 1
    kept = sent["properties"]["deep"]
    depth = 3  # the message, properties, deep
    while isinstance(kept, dict) and "a" in kept:
        kept, depth = kept["a"], depth + 1
    assert depth == MAX_NESTING_DEPTH, "everything up to the limit is kept"
    check_shape(sent)
    assert properties["deep"] == nested(50), "the caller's message is not changed"
    assert [reason for reason, _ in warnings] == ["value_dropped"]
    assert warnings[0][1].startswith("properties.deep.a")
    assert client.stats()["warnings"]["value_dropped"] == 1
    client.shutdown()


# -- keys that collide once written -----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "path", "text"),
    [
        ({"properties": {1: "a", "1": "b"}}, "properties.1", "1"),
        ({"traits": {"x": [{"true": 1, True: 2}]}}, "traits.x[0].true", "true"),
        ({"properties": {None: 1, "null": 2}}, "properties.null", "null"),
        ({"properties": {1.5: 1, "1.5": 2}}, "properties.1.5", "1.5"),
    ],
)
def test_keys_that_collide_once_written_are_an_encode_error(encoder, value, path, text) -> None:
    with pytest.raises(EncodeError) as refused:
        encoding.encode(value)
    assert refused.value.path == path
    assert f"are both written as {text!r}: one value would be lost" in str(refused.value)


def test_track_refuses_colliding_keys() -> None:
    client = RecordingClient()
    with pytest.raises(EncodeError, match=r"cannot encode properties\.1: keys"):
        client.track("u", "Collide", {1: "a", "1": "b"})
    assert client.messages == [] and client.stats()["dropped"]["encode_error"] == 1
    client.shutdown()


def test_non_str_keys_that_do_not_collide_are_written_as_strings(encoder) -> None:
    value = {"properties": {1: "a", "2": "b", 2.5: "c", False: "d", None: "e"}}
    assert json.loads(encoding.encode(value)) == {
        "properties": {"1": "a", "2": "b", "2.5": "c", "false": "d", "null": "e"}
    }


def test_dict_subclasses_are_checked_too(encoder) -> None:
    ordered = collections.OrderedDict([(1, "a"), ("1", "b")])
    with pytest.raises(EncodeError):
        encoding.encode({"properties": ordered})
    with pytest.raises(NestingTooDeepError):
        encoding.encode({"properties": collections.OrderedDict(a=nested(40))})


@pytest.mark.parametrize(
    ("key", "text"),
    [(1, "1"), (-7, "-7"), (2.5, "2.5"), (1e20, "1e+20"), (True, "true"), (False, "false"), (None, "null")],
)
def test_key_text_matches_the_json_encoder(key, text) -> None:
    assert key_text(key) == text
    assert json.dumps({key: 0}) == json.dumps({text: 0})


# -- timestamps out of range -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "timestamp",
    [
        datetime.datetime(1, 1, 1, tzinfo=datetime.timezone(datetime.timedelta(hours=1))),
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-01:00",
    ],
)
def test_a_timestamp_out_of_range_in_utc_is_a_validation_error(timestamp) -> None:
    # Was: a bare OverflowError from datetime, counted nowhere.
    client = RecordingClient()
    with pytest.raises(ValidationError, match="timestamp is out of range once converted to UTC") as refused:
        client.track("u", "Ancient", timestamp=timestamp)
    assert refused.value.path == "timestamp"
    assert client.stats()["dropped"]["invalid"] == 1
    client.shutdown()


def test_the_limit_is_exported_and_documented() -> None:
    assert segment_lite.limits.MAX_NESTING_DEPTH == MAX_NESTING_DEPTH


@pytest.mark.parametrize("key", [6.103515625e-05, 5.960464477539063e-08, 1e16, -0.0, 3])
def test_non_str_keys_are_written_alike_by_both_encoders(key) -> None:
    # orjson writes float keys its own way ("0.00006103515625"): such messages take the
    # standard library's path, which writes them as segment-analytics-python does.
    expected = json.dumps({key: 1}, separators=(",", ":")).encode()
    outputs = set()
    for orjson_on in [True, False] if encoding.HAVE_ORJSON else [False]:
        saved = encoding.HAVE_ORJSON
        encoding.HAVE_ORJSON = orjson_on
        try:
            outputs.add(encoding.encode({key: 1}))
        finally:
            encoding.HAVE_ORJSON = saved
    assert outputs == {expected}


# -- the fast pass: exact by construction --------------------------------------------------------
#
# ``check_shape`` walks only when ``is_plain`` (its fast pass) says no, and the
# client skips the top level of a message its builders made (``CALLER_FIELDS``).
# Both must say yes only for what the full walk passes without a word.

_SHAPE_FUZZ = settings(max_examples=300, deadline=None, derandomize=True)
_shape_keys = st.one_of(st.text(max_size=3), st.integers(-2, 2), st.booleans(), st.none(), st.floats(-2, 2))
_shape_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=3)),
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.tuples(children),
        st.dictionaries(_shape_keys, children, max_size=3),
        st.builds(collections.OrderedDict, st.dictionaries(_shape_keys, children, max_size=2)),
    ),
    max_leaves=12,
)


def _reference_plain(value: object, depth: int, limit: int) -> bool:
    """The fast pass as first written (before it was made faster): the oracle for the current one."""
    if depth > limit:
        return False
    if isinstance(value, dict):
        if any(type(key) is not str for key in value):
            return False
        children: object = value.values()
    else:
        children = value
    for child in children:  # type: ignore[attr-defined]
        if isinstance(child, (dict, list, tuple)) and child and not _reference_plain(child, depth + 1, limit):
            return False
    return True


def _outcome(check, value: object) -> str:
    try:
        check(value)
    except EncodeError as exc:
        return f"{type(exc).__name__}: {exc}"
    return ""


@_SHAPE_FUZZ
@given(value=_shape_values, limit=st.integers(1, 4))
def test_the_fast_pass_agrees_with_the_first_one(value, limit) -> None:
    message = {"properties": value}
    plain = _reference_plain(message, 1, limit)
    assert shape.is_plain(message, limit=limit) == plain
    assert shape.is_plain(message, CALLER_FIELDS, limit=limit) == plain

    def reference_check(checked: object) -> None:
        if not plain:
            shape._walk(checked, "", 1, limit, True, set())

    assert _outcome(lambda m: check_shape(m, limit=limit), message) == _outcome(reference_check, message)


@_SHAPE_FUZZ
@given(properties=_shape_values, context=_shape_values, integrations=_shape_values)
def test_a_built_message_needs_its_caller_fields_only(properties, context, integrations) -> None:
    for message in (
        build_track("u", "E", {"p": properties}, {"c": context}, integrations={"i": integrations}),
        build_identify("u", {"t": properties}, {"c": context}),
    ):
        assert shape.is_plain(message, CALLER_FIELDS) == shape.is_plain(message)
        for orjson_on in [True, False] if encoding.HAVE_ORJSON else [False]:
            saved = encoding.HAVE_ORJSON
            encoding.HAVE_ORJSON = orjson_on
            try:
                assert encoding.encode_plain(message, CALLER_FIELDS) == encoding.encode_plain(message)
            finally:
                encoding.HAVE_ORJSON = saved


def test_builders_put_containers_only_in_the_caller_fields() -> None:
    given_dict = {"nested": {"a": [1]}}
    messages = [
        build_track("u", "E", given_dict, given_dict, integrations=given_dict),
        build_identify("u", given_dict, given_dict, integrations=given_dict),
        build_group("u", "g", given_dict, given_dict, integrations=given_dict),
        build_alias("p", "u", given_dict, integrations=given_dict),
        build_view("page", "u", "cat", "name", given_dict, given_dict, integrations=given_dict),
        build_view("screen", "u", None, "name", given_dict, given_dict, integrations=given_dict),
    ]
    for message in messages:
        for key, value in message.items():
            assert type(key) is str
            assert key in CALLER_FIELDS or value is None or isinstance(value, str), (message["type"], key)


def test_the_caller_fields_are_still_checked() -> None:
    deep = build_track("u", "Deep", {"tree": nested(40)})
    colliding = build_identify("u", {1: "a", "1": "b"})
    context_deep = build_track("u", "E", None, {"x": nested(40)})
    for message in (deep, colliding, context_deep):
        assert not shape.is_plain(message, CALLER_FIELDS)
    assert shape.is_plain(build_track("u", "E", {1: "a"}), CALLER_FIELDS) is False  # walked, then passed
    check_shape(build_track("u", "E", {1: "a"}))


@pytest.mark.parametrize(
    ("encoded", "too_deep"),
    [
        (b"{}", False),
        (b"[" * 32, False),
        (b"[" * 33, True),
        (b"{" * 16 + b"[" * 17, True),
        (b'{"a":"{[x"}', False),
    ],
)
def test_may_be_too_deep_counts_both_opening_brackets(encoded, too_deep) -> None:
    assert shape.may_be_too_deep(encoded) is too_deep
    assert shape.may_be_too_deep(encoded, limit=2) is (encoded.count(b"{") + encoded.count(b"[") > 2)


def test_the_client_passes_caller_fields_only_for_messages_its_builders_made(monkeypatch) -> None:
    from segment_lite import client as client_module

    seen: list[bool] = []

    def checked_encode_plain(message, fields=None):
        if fields is not None:  # the client vouches for the message's shape outside these fields
            for key, value in message.items():
                assert type(key) is str
                assert key in fields or value is None or isinstance(value, str), key
            assert shape.is_plain(message, fields) == shape.is_plain(message)
        seen.append(fields is not None)
        return encoding.encode_plain(message, fields)

    monkeypatch.setattr(client_module, "encode_plain", checked_encode_plain)
    plan = {"events": {"Order Completed": {"properties": {"total": {"type": "number", "required": True}}}}}
    planned = RecordingClient(tracking_plan=plan, tag_violations=True)
    planned.track("u", "Order Completed", {"total": "27.5"}, {"protocols": {"sourceId": "s"}})  # tagged
    planned.track("u", "Cart Abandoned", {"items": [{"sku": 1}]})  # unplanned: tagged
    planned.track("u", "Order Completed", {"total": 27.5})
    hooked = RecordingClient(before_send=lambda message: dict(message, extra={1: "a", "1": "b"}))
    with pytest.raises(EncodeError):  # the hook's colliding keys are still found
        hooked.track("u", "E")
    assert seen == [True, True, True, False]
    assert planned.messages[0]["context"]["protocols"]["violations"], "the plan did tag it"
    planned.shutdown()
    hooked.shutdown()
