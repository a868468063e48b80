"""Validation against a plan: each violation names its path, its rule and the offending value."""

from __future__ import annotations

import datetime
import decimal
import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from plan_helpers import OMIT, order, shop_plan

from segment_lite.plan import PlanValidator, parse_plan
from segment_lite.plan.validate import FORMAT_CHECKS

RULE = 'TRACK "Order Completed" v1'


@pytest.fixture(scope="module")
def validator() -> PlanValidator:
    return PlanValidator(parse_plan(shop_plan()))


def test_a_valid_message_passes(validator: PlanValidator) -> None:
    verdict = validator.check(order(products=[{"sku": "A", "price": 1, "quantity": 2}]))
    assert verdict.ok
    assert verdict.rule is not None and verdict.rule.label == RULE


def test_wrong_type_names_path_rule_and_value(validator: PlanValidator) -> None:
    (violation,) = validator.check(order(total="27.5")).violations
    assert (violation.path, violation.rule, violation.keyword, violation.value) == (
        "properties.total",
        RULE,
        "type",
        "27.5",
    )
    assert str(violation) == "properties.total: '27.5' is not of type 'number' [TRACK \"Order Completed\" v1]"


def test_missing_required_property_names_the_missing_field(validator: PlanValidator) -> None:
    (violation,) = validator.check(order(order_id=OMIT)).violations
    assert violation.path == "properties.order_id"
    assert violation.keyword == "required"
    assert violation.missing and violation.value is None
    assert violation.to_dict()["missing"] is True


def test_nested_paths_use_indexes(validator: PlanValidator) -> None:
    message = order(products=[{"sku": "A"}, {"price": "cheap"}])
    found = {(v.path, v.keyword) for v in validator.check(message).violations}
    assert found == {("properties.products[1].sku", "required"), ("properties.products[1].price", "type")}


def test_every_problem_is_reported_sorted_by_path(validator: PlanValidator) -> None:
    message = order(total=None, currency="GBP", order_id=OMIT)
    violations = validator.check(message).violations
    assert [v.path for v in violations] == ["properties.currency", "properties.order_id", "properties.total"]
    currency = violations[0]
    assert currency.keyword == "enum" and currency.value == "GBP"
    assert "'GBP' is not one of ['USD', 'EUR']" in currency.message


def test_formats_are_checked(validator: PlanValidator) -> None:
    assert validator.check(order(placed_at="2024-05-01T10:00:00Z")).ok
    assert validator.check(order(placed_at="2024-05-01T10:00:00.123+02:00")).ok
    (violation,) = validator.check(order(placed_at="yesterday")).violations
    assert (violation.path, violation.keyword) == ("properties.placed_at", "format")
    (bad_email,) = validator.check({"type": "identify", "traits": {"email": "ada.example.com"}}).violations
    assert (bad_email.path, bad_email.rule, bad_email.value) == (
        "traits.email",
        "IDENTIFY v1",
        "ada.example.com",
    )


def test_python_values_are_checked_as_they_will_be_sent(validator: PlanValidator) -> None:
    """A datetime is a date-time string on the wire, a Decimal a number, a UUID a string."""
    moment = datetime.datetime(2024, 5, 1, 10, tzinfo=datetime.timezone.utc)
    assert validator.check(order(placed_at=moment, total=decimal.Decimal("27.50"), coupon=uuid.uuid4())).ok
    (violation,) = validator.check(order(total=moment)).violations
    assert violation.path == "properties.total" and violation.value == "2024-05-01T10:00:00+00:00"


def test_unplanned_track_events_and_uncovered_types(validator: PlanValidator) -> None:
    unplanned = validator.check({"type": "track", "event": "Cart Abandoned", "properties": {}})
    assert unplanned.unplanned and not unplanned.ok and unplanned.rule is None
    alias = validator.check({"type": "alias", "previousId": "a", "userId": "b"})
    assert alias.ok and alias.rule is None, "no rule covers alias: nothing to violate"
    page = validator.check({"type": "page", "properties": {"anything": 1}})
    assert page.ok and not page.unplanned, "a page is never 'unplanned' (only track events are)"


def test_additional_properties_false_names_each_extra_property() -> None:
    plan = shop_plan()
    plan["events"]["Product Viewed"]["additionalProperties"] = False
    validator = PlanValidator(parse_plan(plan))
    message = {"type": "track", "event": "Product Viewed", "properties": {"product_id": "p", "colour": "red"}}
    (violation,) = validator.check(message).violations
    assert (violation.path, violation.keyword, violation.value) == (
        "properties.colour",
        "additionalProperties",
        "red",
    )


def test_common_rules_apply_to_every_message() -> None:
    common = {
        "type": "COMMON",
        "jsonSchema": {
            "type": "object",
            "properties": {"context": {"type": "object", "required": ["app"]}},
            "required": ["context"],
        },
    }
    validator = PlanValidator(parse_plan({"rules": [common]}))
    (violation,) = validator.check({"type": "alias", "context": {}}).violations
    assert (violation.rule, violation.path, violation.keyword) == ("COMMON v1", "context.app", "required")
    assert validator.check({"type": "screen", "context": {"app": {}}}).ok


def test_versions_pick_the_requested_or_the_newest() -> None:
    def rule(version: int, wanted: str) -> dict[str, Any]:
        schema = {"properties": {"properties": {"properties": {"n": {"type": wanted}}}}}
        return {"type": "TRACK", "key": "N Counted", "version": version, "jsonSchema": schema}

    validator = PlanValidator(parse_plan({"rules": [rule(1, "string"), rule(2, "integer")]}))
    message: dict[str, Any] = {"type": "track", "event": "N Counted", "properties": {"n": 3}}
    assert validator.check(message).ok, "version 2 (the newest) wants an integer"
    message["context"] = {"protocols": {"event_version": 1}}
    (violation,) = validator.check(message).violations
    assert violation.rule == 'TRACK "N Counted" v1'


def test_named_page_rules_win_over_the_unnamed_one() -> None:
    plan = parse_plan(
        {
            "page": {"properties": {"path": {"type": "string", "required": True}}},
            "pages": {"Cart": {"properties": {"items": {"type": "integer", "required": True}}}},
        }
    )
    validator = PlanValidator(plan)
    (cart,) = validator.check({"type": "page", "name": "Cart", "properties": {}}).violations
    assert (cart.rule, cart.path) == ('PAGE "Cart" v1', "properties.items")
    (other,) = validator.check({"type": "page", "name": "Home", "properties": {}}).violations
    assert (other.rule, other.path) == ("PAGE v1", "properties.path")


def test_hostile_messages_never_crash_the_validator(validator: PlanValidator) -> None:
    loop: dict[str, Any] = {}
    loop["self"] = loop
    for message in (
        {},
        {"type": None},
        {"type": "track", "event": ["not", "a", "name"]},
        {"type": "track", "event": "Order Completed", "properties": None},
        {
            "type": "track",
            "event": "Order Completed",
            "properties": {1: "int key", "order_id": "x", "total": 1},
        },
        order(products=loop),
        order(total=float("nan")),
        order(order_id="x" * 100_000),
    ):
        validator.check(message)  # a verdict, never an exception


def test_long_values_are_shortened_in_messages(validator: PlanValidator) -> None:
    (violation,) = validator.check(order(total="9" * 5000)).violations
    assert len(violation.message) <= 200
    assert len(violation.to_dict(max_value_chars=50)["value"]) == 50


# The fast (compiled) validator and the precise one must agree on what is valid:
# whatever the fast one rejects, the precise one explains (never an empty list).
_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=150, deadline=None)
@given(
    total=_json_values,
    currency=_json_values,
    placed_at=st.one_of(
        st.text(max_size=30), st.just("2024-02-30T00:00:00Z"), st.just("2024-02-29T23:59:60Z")
    ),
    products=_json_values,
)
def test_fast_and_precise_validators_agree(total: Any, currency: Any, placed_at: Any, products: Any) -> None:
    validator = _shared_validator()
    message = order(total=total, currency=currency, placed_at=placed_at, products=products)
    verdict = validator.check(message)
    rule = validator.rule_for(message)
    assert rule is not None
    compiled = validator._events["Order Completed"][0]
    precise = compiled.explain(message, None)
    assert bool(verdict.violations) == bool(precise), (verdict.violations, precise)


_VALIDATOR: list[PlanValidator] = []


def _shared_validator() -> PlanValidator:
    if not _VALIDATOR:
        _VALIDATOR.append(PlanValidator(parse_plan(shop_plan())))
    return _VALIDATOR[0]


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("2024-05-01T10:00:00Z", True),
        ("2024-05-01t10:00:00.5z", True),
        ("2024-05-01T10:00:00+05:30", True),
        ("2024-05-01T10:00:00", False),
        ("2024-13-01T10:00:00Z", False),
        ("2024-05-01 10:00:00Z", False),
        ("2024-05-01T10:00:00+24:00", False),
    ],
)
def test_date_time_format(value: str, valid: bool) -> None:
    assert FORMAT_CHECKS["date-time"](value) is valid
