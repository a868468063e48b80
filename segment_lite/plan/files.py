"""Reading and writing plan files: Segment's Public API JSON and the authoring form (JSON or YAML)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any, Optional, Union

from segment_lite.plan.authoring import from_authoring, is_authoring, to_authoring
from segment_lite.plan.model import RULE_TYPES, PlanError, Rule, TrackingPlan, format_path, rule_version

__all__ = ["PlanSource", "dump_plan", "load_plan", "parse_plan", "read_document", "write_plan"]

PlanSource = Union[str, "os.PathLike[str]", Mapping[str, Any], TrackingPlan]

_YAML_SUFFIXES = (".yaml", ".yml")


def load_plan(source: PlanSource) -> TrackingPlan:
    """A plan from a file path, a parsed mapping (either form) or a ``TrackingPlan`` (returned as is).

    Every rule's schema is checked against the draft-07 meta-schema, so a
    mistake in the plan is reported here, naming where it is, and not as a
    puzzling violation later. Raises ``PlanError``.
    """
    if isinstance(source, TrackingPlan):
        return source
    if isinstance(source, Mapping):
        return parse_plan(source)
    path = os.fspath(source)
    return parse_plan(read_document(path), path)


def read_document(path: str) -> Any:
    """The parsed content of a JSON or YAML file (YAML for ``.yaml``/``.yml``; else JSON, then YAML)."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise PlanError(f"cannot read: {exc.strerror or exc}", None, path) from None
    return _parse_text(text, path)


def parse_plan(data: Mapping[str, Any], source: Optional[str] = None) -> TrackingPlan:
    """A plan from an already parsed document in either form; ``source`` names it in errors."""
    if not isinstance(data, Mapping):
        raise PlanError(f"a plan must be a mapping, got {type(data).__name__}", None, source)
    plan = from_authoring(data, source) if is_authoring(data) else _from_segment(data, source)
    _check_rules(plan)
    return plan


def _parse_text(text: str, path: str) -> Any:
    if path.lower().endswith(_YAML_SUFFIXES):
        return _parse_yaml(text, path)
    try:
        return json.loads(text)
    except ValueError as exc:
        if path.lower().endswith(".json"):
            raise PlanError(f"not valid JSON: {exc}", None, path) from None
        return _parse_yaml(text, path)  # neither suffix: JSON first, then YAML


def _parse_yaml(text: str, path: str) -> Any:
    try:
        import yaml
    except ImportError:
        raise PlanError(
            "reading a YAML plan needs PyYAML: pip install 'segment-lite[plan]'", None, path
        ) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PlanError(f"not valid YAML: {exc}", None, path) from None


def _from_segment(data: Mapping[str, Any], source: Optional[str]) -> TrackingPlan:
    # Accept the Public API's response envelopes as well as the bare plan.
    inner = data.get("data")
    if isinstance(inner, Mapping) and "rules" not in data:
        data = inner
    details = data.get("trackingPlan")
    details = details if isinstance(details, Mapping) else {}
    raw_rules = data.get("rules")
    if not isinstance(raw_rules, list):
        raise PlanError(
            "expected Segment's plan shape with a 'rules' list, or the authoring form "
            "with 'events', 'identify', 'group', 'page', 'screen' or 'common'",
            None,
            source,
        )
    name = data.get("name") or details.get("name") or _name_from(source)
    if not isinstance(name, str):
        raise PlanError("name must be a string", "name", source)
    description = data.get("description") or details.get("description")
    rules: list[Rule] = []
    for index, raw in enumerate(raw_rules):
        path = f"rules[{index}]"
        if not isinstance(raw, Mapping):
            raise PlanError(f"a rule must be a mapping, got {type(raw).__name__}", path, source)
        if raw.get("deprecatedAt"):
            continue  # Segment no longer enforces a deprecated rule
        rule_type = raw.get("type")
        if not isinstance(rule_type, str) or rule_type.upper() not in RULE_TYPES:
            raise PlanError(f"type must be one of {', '.join(RULE_TYPES)}, got {rule_type!r}", path, source)
        rule_type = rule_type.upper()
        key = raw.get("key") or None
        if key is not None and not isinstance(key, str):
            raise PlanError(f"key must be a string, got {type(key).__name__}", f"{path}.key", source)
        if rule_type == "TRACK" and key is None:
            raise PlanError("a TRACK rule needs a key (the event name)", path, source)
        if rule_type in ("IDENTIFY", "GROUP", "COMMON"):
            key = None
        version = rule_version(raw, path, source)
        schema = raw.get("jsonSchema")
        if not isinstance(schema, Mapping):
            raise PlanError("jsonSchema must be a JSON Schema object", f"{path}.jsonSchema", source)
        rules.append(Rule(rule_type, key, dict(schema), version))
    return TrackingPlan(
        name=name,
        rules=tuple(rules),
        description=description if isinstance(description, str) else None,
        source=source,
    )


def _name_from(source: Optional[str]) -> str:
    if source is None:
        return "Tracking plan"
    return os.path.splitext(os.path.basename(source))[0]


def _check_rules(plan: TrackingPlan) -> None:
    """Refuse duplicate rules and schemas that are not valid draft-07."""
    from jsonschema import Draft7Validator
    from jsonschema.exceptions import SchemaError

    seen: set[tuple[str, Optional[str], int]] = set()
    for rule in plan.rules:
        identity = (rule.type, rule.key, rule.version)
        if identity in seen:
            raise PlanError(f"{rule.label} is defined twice", None, plan.source)
        seen.add(identity)
        try:
            Draft7Validator.check_schema(rule.json_schema)
        except SchemaError as exc:
            where = format_path(["jsonSchema", *exc.absolute_path])
            raise PlanError(
                f"{rule.label}: invalid JSON Schema at {where}: {exc.message}", None, plan.source
            ) from None


def dump_plan(plan: TrackingPlan, form: str = "authoring", fmt: str = "yaml") -> str:
    """The plan as text: ``form`` is ``authoring`` or ``segment``, ``fmt`` is ``yaml`` or ``json``."""
    if form not in ("authoring", "segment"):
        raise ValueError(f"form must be 'authoring' or 'segment', got {form!r}")
    data = to_authoring(plan) if form == "authoring" else plan.to_segment()
    if fmt == "json":
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    if fmt != "yaml":
        raise ValueError(f"fmt must be 'yaml' or 'json', got {fmt!r}")
    return _dump_yaml(data)


def write_plan(plan: TrackingPlan, path: str, form: str = "authoring") -> None:
    """Write the plan to ``path``: YAML for ``.yaml``/``.yml``, JSON otherwise."""
    fmt = "yaml" if path.lower().endswith(_YAML_SUFFIXES) else "json"
    text = dump_plan(plan, form, fmt)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def _dump_yaml(data: Any) -> str:
    try:
        import yaml
    except ImportError:
        raise PlanError("writing YAML needs PyYAML: pip install 'segment-lite[plan]'") from None

    class _Dumper(yaml.SafeDumper):
        pass

    def represent_dict(dumper: yaml.SafeDumper, value: dict[str, Any]) -> Any:
        # A leaf property (only scalars and short lists) on one line reads like a table row.
        flow = bool(value) and all(
            not isinstance(item, dict)
            and (not isinstance(item, list) or all(not isinstance(x, (dict, list)) for x in item))
            for item in value.values()
        )
        return dumper.represent_mapping("tag:yaml.org,2002:map", value.items(), flow_style=flow)

    _Dumper.add_representer(dict, represent_dict)
    return str(yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100))
