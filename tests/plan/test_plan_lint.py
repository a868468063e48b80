"""Linting a plan: event-name form and case, property-name case, the Spec's semantic events."""

from __future__ import annotations

from typing import Any

import pytest

from segment_lite.plan import LintConfig, PlanError, lint_plan, parse_plan


def findings(document: dict[str, Any], config: LintConfig | None = None) -> list[tuple[str, str, str, Any]]:
    return [(f.code, f.event, f.path, f.suggestion) for f in lint_plan(parse_plan(document), config)]


def events(*names: str, **properties: Any) -> dict[str, Any]:
    return {"events": {name: {"properties": properties} for name in names}}


def test_a_plan_following_the_conventions_is_clean() -> None:
    document = events("Order Completed", "Product Added to Wishlist", "Signed Up", "Newsletter Subscribed")
    document["events"]["Order Completed"]["properties"] = {"order_id": "string", "total": "number"}
    document["identify"] = {"traits": {"firstName": "string", "createdAt": "string", "email": "string"}}
    assert findings(document) == []


def test_object_action_and_title_case() -> None:
    result = findings(events("Clicked Button", "Button", "video played", "Logged In"))
    assert ("event-form", "Clicked Button", "", "Button Clicked") in result
    assert ("event-form", "Button", "", None) in result
    assert ("event-case", "video played", "", "Video Played") in result
    assert ("event-form", "Logged In", "", None) in result, "a phrasal verb is not reordered into nonsense"


def test_near_misses_of_semantic_events_get_the_spec_name() -> None:
    result = findings(events("order completed", "Completed Order", "OrderCompleted", "Order Complete"))
    assert [(code, suggestion) for code, _, _, suggestion in result] == [
        ("semantic-event", "Order Completed")
    ] * 4


def test_semantic_event_properties_use_the_spec_names_and_types() -> None:
    document = events("Order Completed")
    document["events"]["Order Completed"]["properties"] = {
        "orderId": "string",
        "total": "string",
        "revenue": "integer",
        "products": {"type": "array", "items": {"type": "object", "properties": {"productID": "string"}}},
    }
    result = findings(document, LintConfig(property_case="any"))
    assert ("semantic-property", "Order Completed", "properties.orderId", "order_id") in result
    assert ("semantic-property", "Order Completed", "properties.total", None) in result
    assert ("semantic-property", "Order Completed", "properties.products[].productID", "product_id") in result
    assert not any(path == "properties.revenue" for _, _, path, _ in result), "an integer is a number"


def test_property_case_is_consistent_per_payload() -> None:
    document = events("Invoice Sent", "Basket Viewed")
    document["events"]["Invoice Sent"]["properties"] = {"invoice_id": "string", "basket_id": "string"}
    document["events"]["Basket Viewed"]["properties"] = {"basketId": "string", "total": "number"}
    document["identify"] = {"traits": {"firstName": "string", "lastName": "string"}}
    result = findings(document)
    assert result == [("property-case", "Basket Viewed", "properties.basketId", "basket_id")], (
        "properties are mostly snake_case; traits are camelCase on their own and that is fine"
    )


def test_configuration_changes_and_disables_checks() -> None:
    document = events("order_completed", "user_signed_up")
    document["events"]["order_completed"]["properties"] = {"orderId": "string"}
    snake = LintConfig(event_case="snake", property_case="camel", semantic_events=False)
    assert findings(document, snake) == []
    assert findings(document, LintConfig(disable=("event-case", "event-form", "semantic-event"))) == []
    assert findings(document, LintConfig(ignore_events=("order_completed", "user_signed_up"))) == []


def test_config_from_a_file_mapping_and_its_errors() -> None:
    config = LintConfig.from_mapping({"event-case": "snake", "disable": ["event-form"]})
    assert config.event_case == "snake" and config.disable == ("event-form",)
    with pytest.raises(PlanError, match="unknown lint option 'event_kase'"):
        LintConfig.from_mapping({"event_kase": "title"})
    with pytest.raises(PlanError, match="event_case must be one of"):
        LintConfig.from_mapping({"event_case": "SCREAMING"})
    with pytest.raises(PlanError, match="unknown check"):
        LintConfig(disable=("nope",))
