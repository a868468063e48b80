"""Inferring a plan from observed events, and checking the same events against it."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from segment_lite.collector.store import EventStore
from segment_lite.plan import InferOptions, PlanValidator, check_messages, infer_plan, parse_plan
from segment_lite.plan.authoring import to_authoring


def track(event: str, properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "track", "event": event, "userId": "u", "properties": properties}


def test_types_required_enums_and_formats() -> None:
    messages = [
        track(
            "Order Completed",
            {
                "order_id": f"ord-{i}",
                "total": 10 if i % 2 else 10.5,
                "currency": ["USD", "EUR"][i % 2],
                "placed_at": "2024-05-01T10:00:00Z",
                "email": "ada@example.com",
                "coupon": "SPRING" if i % 3 == 0 else None,
                **({"gift": True} if i < 3 else {}),
            },
        )
        for i in range(8)
    ]
    plan = infer_plan(messages, name="Shop")
    properties = to_authoring(plan)["events"]["Order Completed"]["properties"]
    assert properties["order_id"] == {"type": "string", "required": True}, "an id is never an enum"
    assert properties["total"] == {"type": "number", "required": True}, "integers and floats make a number"
    assert properties["currency"] == {"type": "string", "enum": ["EUR", "USD"], "required": True}
    assert properties["placed_at"]["format"] == "date-time"
    assert properties["email"]["format"] == "email"
    assert properties["coupon"]["type"] == ["string", "null"]
    assert properties["gift"] == "boolean", "seen in some events only: not required"


def test_enum_thresholds_are_options() -> None:
    messages = [track("Color Picked", {"color": c}) for c in ["red", "blue"] * 2]
    loose = infer_plan(messages, options=InferOptions(enum_min_samples=1))
    strict = infer_plan(messages)
    color = "events", "Color Picked", "properties", "color"

    def lookup(plan: Any) -> Any:
        node = to_authoring(plan)
        for key in color:
            node = node[key]
        return node

    assert lookup(loose)["enum"] == ["blue", "red"]
    assert "enum" not in lookup(strict), "four samples are under the default minimum of five"
    off = infer_plan(messages * 5, options=InferOptions(enum_max_values=0))
    assert "enum" not in lookup(off)


def test_nested_objects_and_arrays() -> None:
    messages = [
        track("Cart Viewed", {"products": [{"sku": "a", "price": 1.5}, {"sku": "b"}], "meta": {"page": 1}}),
        track("Cart Viewed", {"products": [], "meta": {"page": 2, "sort": "price"}}),
    ]
    properties = to_authoring(infer_plan(messages))["events"]["Cart Viewed"]["properties"]
    item = properties["products"]["items"]["properties"]
    assert item["sku"] == {"type": "string", "required": True}
    assert item["price"] == "number", "missing from one item: optional"
    assert properties["meta"]["properties"]["sort"] == "string"
    assert properties["meta"]["properties"]["page"] == {"type": "integer", "required": True}


def test_one_rule_per_event_and_per_type_alias_excluded() -> None:
    messages = [
        track("B Happened", {}),
        track("A Happened", {}),
        {"type": "identify", "traits": {"email": "a@b.co"}},
        {"type": "group", "groupId": "g", "traits": {}},
        {"type": "page", "name": "Home", "properties": {"path": "/"}},
        {"type": "screen", "properties": {}},
        {"type": "alias", "previousId": "a", "userId": "b"},
        {"type": "track"},  # no event name: nothing to learn from
    ]
    plan = infer_plan(messages)
    assert [rule.label for rule in plan.rules] == [
        'TRACK "A Happened" v1',
        'TRACK "B Happened" v1',
        "IDENTIFY v1",
        "GROUP v1",
        "PAGE v1",
        "SCREEN v1",
    ]


def test_infer_then_check_round_trips_on_the_demo_data(demo_db: str) -> None:
    with EventStore(demo_db) as store:
        messages = store.messages()
    plan = infer_plan(messages, name="Demo")
    report = check_messages(PlanValidator(plan), messages)
    assert report.checked == len(messages) == 18
    assert report.passed(), report.format()
    order = next(rule for rule in plan.rules if rule.key == "Order Completed")
    payload = order.payload_schema()
    assert payload is not None
    assert set(payload["required"]) == {
        "order_id",
        "total",
        "revenue",
        "shipping",
        "currency",
        "coupon",
        "products",
    }
    # And after a round trip through the authoring form, too.
    assert check_messages(PlanValidator(parse_plan(to_authoring(plan))), messages).passed()


_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**9), 10**9)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(["EUR", "USD", "2024-05-01T10:00:00Z", "a@b.co", ""])
    | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from("abcd"), inner, max_size=3),
    max_leaves=10,
)
_messages = st.lists(
    st.builds(
        track,
        st.sampled_from(["Order Completed", "Cart Viewed"]),
        st.dictionaries(st.sampled_from(["x", "y", "total", "currency", "items"]), _values, max_size=4),
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=80, deadline=None)
@given(messages=_messages, enum_min=st.integers(0, 3))
def test_any_inferred_plan_accepts_the_events_it_came_from(
    messages: list[dict[str, Any]], enum_min: int
) -> None:
    plan = infer_plan(messages, options=InferOptions(enum_min_samples=enum_min))
    report = check_messages(PlanValidator(plan), messages)
    assert report.passed(), report.format()
