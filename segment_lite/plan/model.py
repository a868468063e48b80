"""A tracking plan in memory: its rules, each a JSON Schema (draft-07) of the whole message."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Optional

from segment_lite.errors import PlanError

__all__ = [
    "DRAFT_07",
    "RULE_TYPES",
    "PlanError",
    "Rule",
    "TrackingPlan",
    "format_path",
    "payload_message_schema",
    "payload_only",
    "rule_version",
]

DRAFT_07 = "http://json-schema.org/draft-07/schema#"

#: The rule types of Segment's Public API, in the order plans list them.
RULE_TYPES = ("TRACK", "IDENTIFY", "GROUP", "PAGE", "SCREEN", "COMMON")


# Keys a whole-message schema may have and still say nothing beyond which fields it declares.
_MESSAGE_KEYS = frozenset({"$schema", "type", "description", "title", "properties", "required"})


@dataclass(frozen=True)
class Rule:
    """One rule of a plan: which messages it covers and the JSON Schema they must match.

    ``key`` is the event name of a TRACK rule and the page or screen name of a
    PAGE/SCREEN rule that covers one name only; it is None for the rules that
    cover every message of their type (IDENTIFY, GROUP, COMMON, an unnamed PAGE).
    """

    type: str
    key: Optional[str]
    json_schema: Mapping[str, Any]
    version: int = 1

    @property
    def label(self) -> str:
        """How violations name the rule, e.g. ``TRACK "Order Completed" v1`` or ``IDENTIFY v1``."""
        key = f' "{self.key}"' if self.key is not None else ""
        return f"{self.type}{key} v{self.version}"

    @property
    def description(self) -> Optional[str]:
        """The rule's description (the schema's own ``description``), if any."""
        text = self.json_schema.get("description")
        return text if isinstance(text, str) and text else None

    @property
    def payload_field(self) -> Optional[str]:
        """The message field that holds what this rule is mostly about: ``properties`` or ``traits``."""
        if self.type in ("TRACK", "PAGE", "SCREEN"):
            return "properties"
        if self.type in ("IDENTIFY", "GROUP"):
            return "traits"
        return None

    def payload_schema(self) -> Optional[Mapping[str, Any]]:
        """The schema of ``properties`` (or ``traits``) inside the message schema, if the rule has one."""
        name = self.payload_field
        fields = self.json_schema.get("properties")
        if name is None or not isinstance(fields, Mapping):
            return None
        schema = fields.get(name)
        return schema if isinstance(schema, Mapping) else None

    def to_segment(self) -> dict[str, Any]:
        """This rule in the shape of Segment's Public API."""
        rule: dict[str, Any] = {"type": self.type}
        if self.key is not None:
            rule["key"] = self.key
        rule["version"] = self.version
        rule["jsonSchema"] = _plain(self.json_schema)
        return rule


@dataclass(frozen=True)
class TrackingPlan:
    """A named list of rules. Build one with :func:`segment_lite.plan.load_plan`."""

    name: str
    rules: tuple[Rule, ...]
    description: Optional[str] = None
    source: Optional[str] = field(default=None, compare=False)
    #: The documents of the remote ``$ref`` s that ``ref_bases`` allowed, fetched once when the plan
    #: was loaded (address -> schema); validators resolve references from here, never the network.
    remote_schemas: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def rules_of(self, rule_type: str) -> list[Rule]:
        """The rules of one type (``"TRACK"``, ``"COMMON"``, ...), in plan order."""
        return [rule for rule in self.rules if rule.type == rule_type]

    def event_names(self) -> list[str]:
        """The names of the planned track events, each once, in plan order."""
        names: dict[str, None] = {}
        for rule in self.rules:
            if rule.type == "TRACK" and rule.key is not None:
                names.setdefault(rule.key, None)
        return list(names)

    def to_segment(self) -> dict[str, Any]:
        """The plan in the shape of Segment's Public API: ``{"name", "rules": [...]}``."""
        plan: dict[str, Any] = {"name": self.name}
        if self.description:
            plan["description"] = self.description
        plan["rules"] = [rule.to_segment() for rule in self.rules]
        return plan


def format_path(parts: Iterable[Any]) -> str:
    """A path from its parts: ``("properties", "items", 0)`` -> ``properties.items[0]``."""
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text = f"{text}.{part}" if text else str(part)
    return text


def rule_version(entry: Mapping[str, Any], path: str, source: Optional[str] = None) -> int:
    """The ``version`` of the rule at ``path``: 1 when absent; ``PlanError`` if not a positive integer."""
    version = entry.get("version", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise PlanError(f"version must be a positive integer, got {version!r}", f"{path}.version", source)
    return version


def payload_message_schema(
    payload: str, payload_schema: dict[str, Any], description: Optional[str] = None
) -> dict[str, Any]:
    """The whole-message schema of a rule about one field (``properties``, ``traits`` or ``context``).

    The message must have the field when the field's own schema requires keys.
    """
    message: dict[str, Any] = {"$schema": DRAFT_07, "type": "object"}
    if description is not None:
        message["description"] = description
    message["properties"] = {payload: payload_schema}
    if payload_schema.get("required"):
        message["required"] = [payload]
    return message


def payload_only(message_schema: Mapping[str, Any], payload: str) -> Optional[tuple[Any, bool]]:
    """(the schema of ``payload``, whether it is required) when ``message_schema`` constrains nothing else.

    That is the shape :func:`payload_message_schema` builds and most of Segment's
    rules have; the other fields may be there as the empty placeholders of
    Segment's exported schemas. The payload's schema is None when it is not
    declared. Any other schema gives None.
    """
    fields = message_schema.get("properties", {})
    required = message_schema.get("required", [])
    if (
        not set(message_schema) <= _MESSAGE_KEYS
        or message_schema.get("type", "object") != "object"
        or not isinstance(fields, Mapping)
        or any(name != payload and item not in ({}, None) for name, item in fields.items())
        or not isinstance(required, list)
        or not set(required) <= {payload}
    ):
        return None
    return fields.get(payload), payload in required


def _plain(value: Any) -> Any:
    """A deep copy of a schema made of plain dicts and lists (ready for JSON or YAML)."""
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value
