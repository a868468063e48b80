"""Plan files: Segment's Public API shape and the authoring form, both ways, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from plan_helpers import shop_plan

from segment_lite.plan import PlanError, dump_plan, load_plan, parse_plan
from segment_lite.plan.authoring import to_authoring

SEGMENT_PLAN: dict[str, Any] = {
    "name": "Segment export",
    "rules": [
        {
            "type": "TRACK",
            "key": "Order Completed",
            "version": 2,
            "createdAt": "2024-01-01T00:00:00Z",
            "jsonSchema": {
                "$schema": "http://json-schema.org/draft-07/schema#",
                "type": "object",
                "properties": {
                    "context": {},
                    "traits": {},
                    "properties": {
                        "type": "object",
                        "properties": {"order_id": {"type": "string"}, "total": {"type": "number"}},
                        "required": ["order_id"],
                    },
                },
                "required": ["properties"],
            },
        },
        {"type": "IDENTIFY", "key": "", "version": 1, "jsonSchema": {"type": "object"}},
        {"type": "TRACK", "key": "Old Event", "version": 1, "deprecatedAt": "2024-02-01", "jsonSchema": {}},
    ],
}


def test_segment_shape_is_read_with_types_keys_versions() -> None:
    plan = parse_plan(SEGMENT_PLAN)
    assert plan.name == "Segment export"
    assert [(r.type, r.key, r.version) for r in plan.rules] == [
        ("TRACK", "Order Completed", 2),
        ("IDENTIFY", None, 1),
    ], "the deprecated rule is skipped and an empty key means 'no key'"
    assert plan.rules[0].label == 'TRACK "Order Completed" v2'
    assert (
        plan.rules[0].payload_schema() == SEGMENT_PLAN["rules"][0]["jsonSchema"]["properties"]["properties"]
    )


def test_public_api_envelope_is_unwrapped() -> None:
    plan = parse_plan({"data": {"trackingPlan": {"name": "Wrapped"}, "rules": SEGMENT_PLAN["rules"]}})
    assert plan.name == "Wrapped"
    assert len(plan.rules) == 2


def test_authoring_form_builds_whole_message_schemas() -> None:
    plan = parse_plan(shop_plan())
    order = plan.rules_of("TRACK")[0]
    schema = order.json_schema
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert schema["description"] == "A customer completed an order."
    assert schema["required"] == ["properties"]
    payload = schema["properties"]["properties"]
    assert payload["required"] == ["order_id", "total"]
    assert payload["properties"]["coupon"] == {"type": "string"}
    assert payload["properties"]["products"]["items"]["required"] == ["sku"]
    identify = plan.rules_of("IDENTIFY")[0]
    assert identify.json_schema["properties"]["traits"]["properties"]["email"]["format"] == "email"


def test_authoring_and_segment_forms_round_trip() -> None:
    plan = parse_plan(shop_plan())
    again = parse_plan(json.loads(dump_plan(plan, "segment", "json")))
    assert again == plan
    assert to_authoring(again) == to_authoring(plan)
    back = parse_plan(to_authoring(plan))
    assert back == plan


def test_yaml_and_json_files_load_the_same_plan(tmp_path: Path) -> None:
    plan = parse_plan(shop_plan())
    yaml_file = tmp_path / "shop.yaml"
    yaml_file.write_text(dump_plan(plan, "authoring", "yaml"))
    json_file = tmp_path / "shop.json"
    json_file.write_text(dump_plan(plan, "segment", "json"))
    assert load_plan(str(yaml_file)).rules == plan.rules
    assert load_plan(json_file).rules == plan.rules
    assert "total: {type: number, required: true}" in yaml_file.read_text(), (
        "leaf properties stay on one line"
    )


def test_a_segment_rule_the_authoring_form_cannot_express_stays_a_json_schema() -> None:
    odd = {"type": "object", "properties": {"context": {"required": ["ip"]}}}
    plan = parse_plan({"rules": [{"type": "TRACK", "key": "X Happened", "jsonSchema": odd}]})
    entry = to_authoring(plan)["events"]["X Happened"]
    assert entry == {"jsonSchema": odd}
    assert parse_plan(to_authoring(plan)).rules[0].json_schema == odd


@pytest.mark.parametrize(
    ("document", "where", "what"),
    [
        (
            {"events": {"A Happened": {"properties": {"x": "strng"}}}},
            "events.A Happened.properties.x",
            "unknown type",
        ),
        (
            {"events": {"A Happened": {"properties": {"x": {"enume": [1]}}}}},
            "events.A Happened.properties.x.enume",
            "did you mean 'enum'",
        ),
        ({"evnts": {}, "events": {}}, "evnts", "did you mean 'events'"),
        (
            {"events": {"A Happened": {"propertys": {}}}},
            "events.A Happened.propertys",
            "did you mean 'properties'",
        ),
        ({"events": {"A Happened": {"version": 0}}}, "events.A Happened.version", "positive integer"),
        (
            {"events": {"A Happened": {"properties": {"x": {"type": "string", "required": "yes"}}}}},
            "events.A Happened.properties.x.required",
            "true or false",
        ),
        ({"rules": [{"type": "TRAK", "key": "x", "jsonSchema": {}}]}, "rules[0]", "TRACK, IDENTIFY"),
        ({"rules": [{"type": "TRACK", "jsonSchema": {}}]}, "rules[0]", "needs a key"),
        ({"rules": [{"type": "TRACK", "key": "x"}]}, "rules[0].jsonSchema", "JSON Schema object"),
        ({"rules": "nope"}, None, "'rules' list"),
        ({"something": 1}, None, "authoring form"),
    ],
)
def test_bad_plans_are_refused_naming_the_place(document: dict[str, Any], where: str, what: str) -> None:
    with pytest.raises(PlanError) as caught:
        parse_plan(document)
    assert caught.value.path == where
    assert what in str(caught.value)


def test_invalid_json_schema_is_refused_with_the_rule_and_the_path() -> None:
    bad = {
        "rules": [
            {"type": "TRACK", "key": "A Happened", "jsonSchema": {"properties": {"x": {"type": "strin"}}}}
        ]
    }
    with pytest.raises(
        PlanError, match=r'TRACK "A Happened" v1: invalid JSON Schema at jsonSchema\.properties\.x\.type'
    ):
        parse_plan(bad)


def test_duplicate_rules_are_refused() -> None:
    rule = {"type": "TRACK", "key": "A Happened", "version": 1, "jsonSchema": {}}
    with pytest.raises(PlanError, match="defined twice"):
        parse_plan({"rules": [rule, dict(rule)]})


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(PlanError) as caught:
        load_plan(str(tmp_path / "missing.yaml"))
    assert caught.value.source and caught.value.source.endswith("missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("events: [unclosed\n")
    with pytest.raises(PlanError, match="not valid YAML"):
        load_plan(str(broken))
    not_json = tmp_path / "broken.json"
    not_json.write_text("{")
    with pytest.raises(PlanError, match="not valid JSON"):
        load_plan(str(not_json))


def test_several_versions_cannot_be_written_in_the_authoring_form() -> None:
    rules = [{"type": "TRACK", "key": "A Happened", "version": v, "jsonSchema": {}} for v in (1, 2)]
    plan = parse_plan({"rules": rules})
    with pytest.raises(PlanError, match="one version per name"):
        to_authoring(plan)
    assert json.loads(dump_plan(plan, "segment", "json"))["rules"][1]["version"] == 2
