"""Reading and writing plan files: Segment's Public API JSON and the authoring form (JSON or YAML)."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any, Optional, Union

from segment_lite.errors import ValidationError
from segment_lite.plan.authoring import from_authoring, is_authoring, to_authoring
from segment_lite.plan.limits import MAX_DEPTH, MAX_PLAN_BYTES, check_document, check_rule, short_path
from segment_lite.plan.model import RULE_TYPES, PlanError, Rule, TrackingPlan, format_path, rule_version
from segment_lite.plan.remote import fetch_remote_schemas

__all__ = ["PlanSource", "dump_plan", "load_plan", "parse_plan", "read_document", "write_plan"]

PlanSource = Union[str, "os.PathLike[str]", Mapping[str, Any], TrackingPlan]

_YAML_SUFFIXES = (".yaml", ".yml")


def load_plan(source: PlanSource, ref_bases: Sequence[str] = ()) -> TrackingPlan:
    """A plan from a file path, a parsed mapping (either form) or a ``TrackingPlan`` (returned as is).

    Every rule's schema is checked against the draft-07 meta-schema and the
    limits of docs/tracking-plans.md (size, depth, enum length, patterns), so a
    mistake in the plan is reported here, naming where it is, and not as a
    puzzling violation or an exhausted machine later. A ``$ref`` must point
    inside the plan, or start with one of ``ref_bases`` (e.g.
    ``["https://schemas.example.com/"]``): such documents are fetched here, once.
    Raises ``PlanError``.
    """
    if isinstance(source, TrackingPlan):
        for rule in source.rules:  # built by hand: it has not been through parse_plan's checks
            check_rule(rule, source.source, tuple(source.remote_schemas))
        return source
    if isinstance(source, Mapping):
        return parse_plan(source, ref_bases=ref_bases)
    path = os.fspath(source)
    return parse_plan(read_document(path), path, ref_bases)


def read_document(path: str) -> Any:
    """The parsed content of a JSON or YAML file (YAML for ``.yaml``/``.yml``; else JSON, then YAML)."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read(MAX_PLAN_BYTES + 1)
    except OSError as exc:
        raise PlanError(f"cannot read: {exc.strerror or exc}", None, path) from None
    except UnicodeDecodeError as exc:
        raise PlanError(f"not UTF-8 text: {exc.reason} at byte {exc.start}", None, path) from None
    if len(text) > MAX_PLAN_BYTES:
        raise PlanError(f"larger than the limit of {MAX_PLAN_BYTES // (1024 * 1024)} MiB", None, path)
    return _parse_text(text, path)


def parse_plan(
    data: Mapping[str, Any], source: Optional[str] = None, ref_bases: Sequence[str] = ()
) -> TrackingPlan:
    """A plan from an already parsed document in either form; ``source`` names it in errors.

    ``ref_bases`` are the address prefixes a ``$ref`` may point to outside the plan
    (none by default); see :func:`load_plan`.
    """
    if not isinstance(data, Mapping):
        raise PlanError(f"a plan must be a mapping, got {type(data).__name__}", None, source)
    check_document(data, source=source)
    plan = from_authoring(data, source) if is_authoring(data) else _from_segment(data, source)
    remote = _check_rules(plan, tuple(ref_bases))
    if remote:
        plan = dataclasses.replace(
            plan, remote_schemas=fetch_remote_schemas(remote, tuple(ref_bases), source)
        )
    return plan


def _parse_text(text: str, path: str) -> Any:
    if path.lower().endswith(_YAML_SUFFIXES):
        return _parse_yaml(text, path)
    try:
        return json.loads(text)
    except RecursionError:
        raise PlanError(f"nests deeper than {MAX_DEPTH} levels", None, path) from None
    except ValueError as exc:
        if path.lower().endswith(".json"):
            raise PlanError(f"not valid JSON: {exc}", None, path) from None
        return _parse_yaml(text, path)  # neither suffix: JSON first, then YAML


def _parse_yaml(text: str, path: str) -> Any:
    """The document in ``text``, checked against the limits before a Python value is built from it.

    Aliases are measured as the copies they stand for, on the composed nodes, so
    an alias bomb is refused before it is expanded anywhere.
    """
    try:
        import yaml
    except ImportError:
        raise PlanError(
            "reading a YAML plan needs PyYAML: pip install 'segment-lite[plan]'", None, path
        ) from None
    loader = _guarded_loader(yaml)(text, path)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        check_document(node, _yaml_children, _yaml_line, path)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise PlanError(f"not valid YAML: {exc}", None, path) from None
    finally:
        loader.dispose()


def _yaml_children(node: Any) -> Any:
    import yaml

    if isinstance(node, yaml.MappingNode):
        return [pair for key, value in node.value for pair in ((None, key), (_yaml_label(key), value))]
    if isinstance(node, yaml.SequenceNode):
        return list(enumerate(node.value))
    return None


def _yaml_label(key: Any) -> str:
    value = getattr(key, "value", None)
    return value if isinstance(value, str) else "?"


def _yaml_line(node: Any) -> Optional[int]:
    mark = getattr(node, "start_mark", None)
    return None if mark is None else int(mark.line) + 1


def _guarded_loader(yaml: Any) -> Any:
    """A safe loader whose composer refuses a recursive alias and nesting past ``MAX_DEPTH``.

    PyYAML composes recursively: without the bound, a deep ``[[[[...`` is a RecursionError.
    """

    class GuardedLoader(yaml.SafeLoader):  # type: ignore[misc,name-defined]
        def __init__(self, stream: str, source: str) -> None:
            super().__init__(stream)
            self._source = source
            self._path: list[Any] = []
            self._open_anchors: set[str] = set()

        def compose_node(self, parent: Any, index: Any) -> Any:
            label = index if isinstance(index, int) else _yaml_label(index) if index is not None else None
            path = self._path if label is None else [*self._path, label]
            event = self.peek_event()
            if isinstance(event, yaml.AliasEvent):
                if event.anchor in self._open_anchors:
                    raise PlanError(
                        f"the alias *{event.anchor} is inside the value it names, which would contain itself",
                        short_path(path),
                        self._source,
                        _yaml_line(event),
                    )
                return super().compose_node(parent, index)
            if len(path) > MAX_DEPTH:
                raise PlanError(
                    f"nests deeper than {MAX_DEPTH} levels", short_path(path), self._source, _yaml_line(event)
                )
            anchor = event.anchor
            saved, self._path = self._path, path
            if anchor is not None:
                self._open_anchors.add(anchor)
            try:
                return super().compose_node(parent, index)
            finally:
                self._path = saved
                if anchor is not None:
                    self._open_anchors.discard(anchor)

    return GuardedLoader


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


def _check_rules(plan: TrackingPlan, ref_bases: tuple[str, ...]) -> dict[str, str]:
    """Refuse duplicate rules, schemas past the limits and schemas that are not valid draft-07.

    Returns the addresses of the remote documents the rules refer to (all under ``ref_bases``),
    each with the path of a ``$ref`` to it.
    """
    from jsonschema import Draft7Validator
    from jsonschema.exceptions import SchemaError

    seen: set[tuple[str, Optional[str], int]] = set()
    remote: dict[str, str] = {}
    for rule in plan.rules:
        identity = (rule.type, rule.key, rule.version)
        if identity in seen:
            raise PlanError(f"{rule.label} is defined twice", None, plan.source)
        seen.add(identity)
        for address, where in check_rule(rule, plan.source, ref_bases)[1].items():
            remote.setdefault(address, where)
        try:
            Draft7Validator.check_schema(rule.json_schema)
        except SchemaError as exc:
            where = format_path(["jsonSchema", *exc.absolute_path])
            raise PlanError(
                f"{rule.label}: invalid JSON Schema at {where}: {exc.message[:300]}", None, plan.source
            ) from None
    return remote


def dump_plan(plan: TrackingPlan, form: str = "authoring", fmt: str = "yaml") -> str:
    """The plan as text: ``form`` is ``authoring`` or ``segment``, ``fmt`` is ``yaml`` or ``json``."""
    if form not in ("authoring", "segment"):
        raise ValidationError(f"form must be 'authoring' or 'segment', got {form!r}", "form")
    data = to_authoring(plan) if form == "authoring" else plan.to_segment()
    if fmt == "json":
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    if fmt != "yaml":
        raise ValidationError(f"fmt must be 'yaml' or 'json', got {fmt!r}", "fmt")
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
