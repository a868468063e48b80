"""The hand-written form of a plan (events -> properties) and its translation to and from rules.

A person writes::

    name: Shop
    events:
      Order Completed:
        description: A customer completed an order.
        properties:
          order_id: {type: string, required: true}
          total: number
          currency: {type: string, enum: [USD, EUR]}
    identify:
      traits:
        email: {type: string, format: email, required: true}

Each property is a type name (``number``) or a JSON Schema (draft-07) with one
addition, ``required: true``. The translation builds the same whole-message
schemas Segment's Public API returns, so both forms validate alike.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any, Optional

from segment_lite.plan.model import (
    PlanError,
    Rule,
    TrackingPlan,
    payload_message_schema,
    payload_only,
    rule_version,
)

__all__ = ["AUTHORING_SECTIONS", "from_authoring", "is_authoring", "to_authoring"]

#: Top-level keys of the authoring form.
AUTHORING_SECTIONS = (
    "name",
    "description",
    "events",
    "identify",
    "group",
    "page",
    "pages",
    "screen",
    "screens",
    "common",
)

JSON_TYPES = ("string", "number", "integer", "boolean", "object", "array", "null")

# Draft-07 keywords accepted in a property; anything else is most likely a typo
# (a validator would silently ignore it), so it is refused with a suggestion.
_SCHEMA_KEYWORDS = frozenset(
    {
        "$comment",
        "$id",
        "$ref",
        "additionalItems",
        "additionalProperties",
        "allOf",
        "anyOf",
        "const",
        "contains",
        "contentEncoding",
        "contentMediaType",
        "default",
        "definitions",
        "dependencies",
        "description",
        "else",
        "enum",
        "examples",
        "exclusiveMaximum",
        "exclusiveMinimum",
        "format",
        "if",
        "items",
        "maxItems",
        "maxLength",
        "maxProperties",
        "maximum",
        "minItems",
        "minLength",
        "minProperties",
        "minimum",
        "multipleOf",
        "not",
        "oneOf",
        "pattern",
        "patternProperties",
        "properties",
        "propertyNames",
        "readOnly",
        "required",
        "then",
        "title",
        "type",
        "uniqueItems",
        "writeOnly",
    }
)

# Which payload field each section describes, and which rule type it becomes.
_SECTIONS: dict[str, tuple[str, str]] = {
    "events": ("TRACK", "properties"),
    "identify": ("IDENTIFY", "traits"),
    "group": ("GROUP", "traits"),
    "page": ("PAGE", "properties"),
    "pages": ("PAGE", "properties"),
    "screen": ("SCREEN", "properties"),
    "screens": ("SCREEN", "properties"),
    "common": ("COMMON", "context"),
}
_ENTRY_KEYS = ("description", "version", "additionalProperties", "jsonSchema")
_PAYLOAD_KEYS = frozenset({"type", "description", "title", "properties", "required", "additionalProperties"})


def is_authoring(data: Mapping[str, Any]) -> bool:
    """Whether ``data`` looks like the authoring form rather than Segment's ``rules`` list."""
    return "rules" not in data and any(key in data for key in _SECTIONS)


def from_authoring(data: Mapping[str, Any], source: Optional[str] = None) -> TrackingPlan:
    """Translate the authoring form into a plan of whole-message rules."""
    _refuse_unknown(data, AUTHORING_SECTIONS, "", source, "section")
    name = data.get("name", "Tracking plan")
    if not isinstance(name, str) or not name:
        raise PlanError("name must be a non-empty string", "name", source)
    description = data.get("description")
    if description is not None and not isinstance(description, str):
        raise PlanError("description must be a string", "description", source)
    rules: list[Rule] = []
    for section in ("events", "identify", "group", "page", "pages", "screen", "screens", "common"):
        body = data.get(section)
        if body is None:
            continue
        if not isinstance(body, Mapping):
            raise PlanError(f"must be a mapping, got {type(body).__name__}", section, source)
        rule_type, payload = _SECTIONS[section]
        if section in ("events", "pages", "screens"):
            for key, entry in body.items():
                if not isinstance(key, str) or not key:
                    raise PlanError(f"names must be non-empty strings, got {key!r}", section, source)
                rules.append(_rule(rule_type, key, payload, entry, f"{section}.{key}", source))
        else:
            rules.append(_rule(rule_type, None, payload, body, section, source))
    return TrackingPlan(name=name, rules=tuple(rules), description=description, source=source)


def _rule(
    rule_type: str, key: Optional[str], payload: str, entry: Any, path: str, source: Optional[str]
) -> Rule:
    if entry is None:
        entry = {}
    if not isinstance(entry, Mapping):
        raise PlanError(f"must be a mapping, got {type(entry).__name__}", path, source)
    _refuse_unknown(entry, (payload, *_ENTRY_KEYS), path, source, "key")
    version = rule_version(entry, path, source)
    description = entry.get("description")
    if description is not None and not isinstance(description, str):
        raise PlanError("description must be a string", f"{path}.description", source)
    raw = entry.get("jsonSchema")
    if raw is not None:
        if payload in entry:
            raise PlanError(f"give either {payload} or jsonSchema, not both", path, source)
        if not isinstance(raw, Mapping):
            raise PlanError("jsonSchema must be a mapping", f"{path}.jsonSchema", source)
        schema = dict(raw)
        if description is not None:
            schema.setdefault("description", description)
        return Rule(rule_type, key, schema, version)

    fields = entry.get(payload) or {}
    if not isinstance(fields, Mapping):
        raise PlanError("must be a mapping of names to types", f"{path}.{payload}", source)
    payload_schema = _object_schema(fields, f"{path}.{payload}", source)
    extra = entry.get("additionalProperties")
    if extra is not None:
        if not isinstance(extra, (bool, Mapping)):
            raise PlanError("additionalProperties must be true, false or a schema", path, source)
        payload_schema["additionalProperties"] = (
            extra
            if isinstance(extra, bool)
            else _property_schema(extra, f"{path}.additionalProperties", source)[0]
        )
    return Rule(rule_type, key, payload_message_schema(payload, payload_schema, description), version)


def _object_schema(fields: Mapping[str, Any], path: str, source: Optional[str]) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    required: list[str] = []
    for name, spec in fields.items():
        if not isinstance(name, str):
            raise PlanError(f"property names must be strings, got {name!r}", path, source)
        schema, is_required = _property_schema(spec, f"{path}.{name}", source)
        properties[name] = schema
        if is_required:
            required.append(name)
    result: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        result["required"] = required
    return result


def _property_schema(spec: Any, path: str, source: Optional[str]) -> tuple[dict[str, Any], bool]:
    """The JSON Schema of one property, and whether it was marked ``required: true``."""
    if spec is None or spec == "any":
        return {}, False
    if isinstance(spec, str):
        if spec not in JSON_TYPES:
            raise PlanError(_unknown_type(spec), path, source)
        return {"type": spec}, False
    if isinstance(spec, list):
        for item in spec:
            if item not in JSON_TYPES:
                raise PlanError(_unknown_type(item), path, source)
        return {"type": list(spec)}, False
    if not isinstance(spec, Mapping):
        raise PlanError(f"must be a type name or a mapping, got {type(spec).__name__}", path, source)
    _refuse_unknown(spec, _SCHEMA_KEYWORDS, path, source, "keyword")
    schema = dict(spec)
    is_required = False
    marker = schema.get("required")
    if isinstance(marker, bool):
        is_required = marker
        del schema["required"]
    elif marker is not None and not isinstance(marker, list):
        raise PlanError("required must be true or false", f"{path}.required", source)
    kinds = schema.get("type")
    for kind in kinds if isinstance(kinds, list) else [kinds] if kinds is not None else []:
        if kind not in JSON_TYPES:
            raise PlanError(_unknown_type(kind), f"{path}.type", source)
    children = schema.get("properties")
    if isinstance(children, Mapping) and not isinstance(marker, list):
        nested = _object_schema(children, f"{path}.properties", source)
        schema["properties"] = nested["properties"]
        if "required" in nested:
            schema["required"] = nested["required"]
        schema.setdefault("type", "object")
    items = schema.get("items")
    if isinstance(items, (str, Mapping)):
        schema["items"] = _property_schema(items, f"{path}.items", source)[0]
    return schema, is_required


def _unknown_type(kind: Any) -> str:
    return f"unknown type {kind!r}; use one of {', '.join(JSON_TYPES)} (or any)"


def _refuse_unknown(
    data: Mapping[str, Any], allowed: Any, path: str, source: Optional[str], what: str
) -> None:
    for key in data:
        if key not in allowed:
            hint = difflib.get_close_matches(str(key), [str(a) for a in allowed], n=1)
            suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
            where = f"{path}.{key}" if path else str(key)
            raise PlanError(f"unknown {what} {key!r}{suggestion}", where, source)


# -- rules back to the authoring form ---------------------------------------------


def to_authoring(plan: TrackingPlan) -> dict[str, Any]:
    """The plan in the authoring form (a rule it cannot express stays a ``jsonSchema``).

    The authoring form holds one version per name; a plan with several versions
    of one event raises ``PlanError`` (write it in Segment's form instead).
    """
    out: dict[str, Any] = {"name": plan.name}
    if plan.description:
        out["description"] = plan.description
    seen: set[tuple[str, Optional[str]]] = set()
    for rule in plan.rules:
        identity = (rule.type, rule.key)
        if identity in seen:
            raise PlanError(
                f"{rule.label}: the authoring form holds one version per name; use Segment's form",
                None,
                plan.source,
            )
        seen.add(identity)
        section, keyed = _section_of(rule)
        entry = _entry(rule)
        if keyed:
            out.setdefault(section, {})[rule.key] = entry
        else:
            out[section] = entry
    return out


def _section_of(rule: Rule) -> tuple[str, bool]:
    if rule.type == "TRACK":
        return "events", True
    if rule.type in ("PAGE", "SCREEN"):
        return (rule.type.lower() + "s", True) if rule.key is not None else (rule.type.lower(), False)
    return rule.type.lower(), False


def _entry(rule: Rule) -> dict[str, Any]:
    payload = "context" if rule.type == "COMMON" else (rule.payload_field or "properties")
    entry: dict[str, Any] = {}
    if rule.description:
        entry["description"] = rule.description
    if rule.version != 1:
        entry["version"] = rule.version
    fields = _reverse_message(rule.json_schema, payload)
    if fields is None:
        entry["jsonSchema"] = dict(rule.json_schema)
        return entry
    spec, extra = fields
    if spec:
        entry[payload] = spec
    if extra is not None:
        entry["additionalProperties"] = extra
    return entry


def _reverse_message(schema: Mapping[str, Any], payload: str) -> Optional[tuple[dict[str, Any], Any]]:
    found = payload_only(schema, payload)
    if found is None:
        return None
    body = found[0] or {}
    if (
        not isinstance(body, Mapping)
        or not set(body) <= _PAYLOAD_KEYS
        or body.get("type", "object") != "object"
    ):
        return None
    children = _reverse_object(body)
    if children is None:
        return None
    extra = body.get("additionalProperties")
    if isinstance(extra, Mapping):
        extra = _reverse_property(extra, False)
    return children, extra


def _reverse_object(schema: Mapping[str, Any]) -> Optional[dict[str, Any]]:
    properties = schema.get("properties", {})
    required = schema.get("required", [])
    if not isinstance(properties, Mapping) or not isinstance(required, list):
        return None
    if not set(required) <= set(properties):
        return None
    return {name: _reverse_property(item, name in required) for name, item in properties.items()}


def _reverse_property(schema: Any, is_required: bool) -> Any:
    if not isinstance(schema, Mapping):
        return schema
    spec = dict(schema)
    if isinstance(spec.get("properties"), Mapping) and spec.get("type", "object") == "object":
        children = _reverse_object(spec)
        if children is not None:
            spec["properties"] = children
            spec.pop("required", None)
    if isinstance(spec.get("items"), Mapping):
        spec["items"] = _reverse_property(spec["items"], False)
    if is_required:
        if any(isinstance(value, Mapping) for value in spec.values()):
            # A spec that spans lines reads better with the marker next to its type.
            position = list(spec).index("type") + 1 if "type" in spec else 0
            items = list(spec.items())
            items.insert(position, ("required", True))
            spec = dict(items)
        else:
            spec["required"] = True
    elif list(spec) == ["type"] and isinstance(spec["type"], str):
        return spec["type"]
    elif not spec:
        return "any"
    return spec
