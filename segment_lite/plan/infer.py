"""Infer a plan from observed messages: types, required fields, small enums and string formats."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Optional

from segment_lite.plan.model import Rule, TrackingPlan, payload_message_schema
from segment_lite.plan.validate import FORMAT_CHECKS

__all__ = ["InferOptions", "infer_plan"]

# Names of identifiers: their values are unique per entity, never a category.
_ID_NAME = re.compile(r"(^|_|[a-z])(id|Id|ID)$")


@dataclass(frozen=True)
class InferOptions:
    """How eagerly :func:`infer_plan` turns observations into constraints.

    A string field becomes an ``enum`` when it took from two to ``enum_max_values``
    distinct values, was seen at least ``enum_min_samples`` times and on average
    at least twice per value, and its name does not end in ``id``. ``formats``
    are the string formats recognised (a field gets one when every value has it).
    """

    enum_max_values: int = 10
    enum_min_samples: int = 5
    formats: tuple[str, ...] = ("date-time", "email")


@dataclass
class _Shape:
    """What was seen at one place of the messages: how often, of which types, which values."""

    seen: int = 0
    types: dict[str, int] = field(default_factory=dict)
    strings: int = 0
    values: Optional[dict[str, None]] = field(default_factory=dict)  # None once too many to be an enum
    formats: Optional[dict[str, int]] = None
    objects: int = 0
    children: dict[str, _Shape] = field(default_factory=dict)
    items: Optional[_Shape] = None

    def observe(self, value: Any, options: InferOptions) -> None:
        self.seen += 1
        kind = _json_type(value)
        self.types[kind] = self.types.get(kind, 0) + 1
        if kind == "string":
            self.strings += 1
            if self.values is not None:
                self.values.setdefault(value, None)
                if len(self.values) > options.enum_max_values:
                    self.values = None
            if self.formats is None:
                self.formats = dict.fromkeys(options.formats, 0)
            for name in self.formats:
                if FORMAT_CHECKS[name](value):
                    self.formats[name] += 1
        elif kind == "object":
            self.objects += 1
            for key, item in value.items():
                self.children.setdefault(str(key), _Shape()).observe(item, options)
        elif kind == "array":
            if self.items is None:
                self.items = _Shape()
            for item in value:
                self.items.observe(item, options)

    def schema(self, name: str, options: InferOptions) -> dict[str, Any]:
        kinds = sorted(self.types, key=_TYPE_ORDER.index)
        if "integer" in kinds and "number" in kinds:
            kinds.remove("integer")
        schema: dict[str, Any] = {}
        if kinds:
            schema["type"] = kinds[0] if len(kinds) == 1 else kinds
        if "string" in kinds:
            schema.update(self._string_constraints(name, options))
        if "object" in kinds:
            object_schema = self.object_schema(options)
            del object_schema["type"]  # the type (maybe a list with "null") is set above
            schema.update(object_schema)
        if "array" in kinds and self.items is not None and self.items.seen:
            schema["items"] = self.items.schema("", options)
        return schema

    def _string_constraints(self, name: str, options: InferOptions) -> dict[str, Any]:
        for fmt, matched in (self.formats or {}).items():
            if matched == self.strings:
                return {"format": fmt}
        values = self.values
        if (
            values is not None
            and set(self.types) <= {"string", "null"}  # an enum holds every value, of any type
            and len(values) >= 2
            and not _ID_NAME.search(name)
            and self.strings >= max(options.enum_min_samples, 2 * len(values))
        ):
            enum: list[Any] = sorted(values)
            if "null" in self.types:
                enum.append(None)
            return {"enum": enum}
        return {}

    def object_schema(self, options: InferOptions) -> dict[str, Any]:
        properties = {key: child.schema(key, options) for key, child in self.children.items()}
        required = [key for key, child in self.children.items() if child.seen == self.objects]
        schema: dict[str, Any] = {"type": "object", "properties": properties}
        if required:
            schema["required"] = required
        return schema


_TYPE_ORDER = ["string", "integer", "number", "boolean", "object", "array", "null"]


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, (list, tuple)):
        return "array"
    return "string"  # anything else is sent as its string form


_RULES_BY_TYPE = {
    "track": ("TRACK", "properties"),
    "identify": ("IDENTIFY", "traits"),
    "group": ("GROUP", "traits"),
    "page": ("PAGE", "properties"),
    "screen": ("SCREEN", "properties"),
}


def infer_plan(
    messages: Iterable[Mapping[str, Any]],
    name: str = "Inferred plan",
    options: Optional[InferOptions] = None,
) -> TrackingPlan:
    """A plan that accepts every message given: one TRACK rule per event name, one rule per other type.

    ``required`` lists the fields present in every message of a rule; enums and
    formats follow ``options``. Alias messages (which carry no payload) get no rule.
    """
    options = options or InferOptions()
    shapes: dict[tuple[str, Optional[str]], _Shape] = {}
    for message in messages:
        kind = message.get("type")
        if kind not in _RULES_BY_TYPE:
            continue
        key: Optional[str] = None
        if kind == "track":
            event = message.get("event")
            if not isinstance(event, str) or not event:
                continue
            key = event
        payload = message.get(_RULES_BY_TYPE[kind][1])
        shape = shapes.setdefault((kind, key), _Shape())
        shape.observe(payload if isinstance(payload, Mapping) else {}, options)
    order = list(_RULES_BY_TYPE)
    rules = []
    for (kind, key), shape in sorted(
        shapes.items(), key=lambda item: (order.index(item[0][0]), item[0][1] or "")
    ):
        rule_type, payload_name = _RULES_BY_TYPE[kind]
        rules.append(Rule(rule_type, key, payload_message_schema(payload_name, shape.object_schema(options))))
    return TrackingPlan(name=name, rules=tuple(rules))
