"""Computed traits, attribution and audiences read from one YAML or JSON file, validated with line numbers."""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional, Union

from segment_lite.audiences.errors import DefinitionError

__all__ = [
    "ATTRIBUTION_MODELS",
    "COMPARISONS",
    "MAX_DEFINITIONS_BYTES",
    "MAX_DEPTH",
    "TRAIT_KINDS",
    "AttributionDef",
    "AudienceDef",
    "Condition",
    "Definitions",
    "Filter",
    "TraitDef",
    "load_definitions",
    "parse_definitions",
    "snake_case",
]

#: Largest definitions file read (bytes); definitions are reviewed like code, not generated data.
MAX_DEFINITIONS_BYTES = 1 << 20
#: Deepest nesting of mappings and lists accepted (conditions nest; nothing sensible goes deeper).
MAX_DEPTH = 32
TRAIT_KINDS = (
    "count",
    "first_time",
    "last_time",
    "distinct_count",
    "sum",
    "min",
    "max",
    "last",
    "days_since",
)
ATTRIBUTION_MODELS = ("first_touch", "last_touch", "linear", "time_decay")
MESSAGE_TYPES = ("track", "page", "screen", "identify", "group")
CAMPAIGN_FIELDS = ("source", "medium", "name", "term", "content")
#: Comparisons of an audience condition; ``exists``/``missing`` take no value, ``in``/``not_in`` a list.
COMPARISONS = (">", ">=", "<", "<=", "==", "!=", "in", "not_in", "exists", "missing")
FILTER_OPS = ("==", "!=", "in", "not_in", ">", ">=", "<", "<=", "exists", "missing")
#: Trait and audience keys become Segment trait names and SQL column names: plain identifiers only.
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")
_MAX_TEXT = 1000

Scalar = Union[str, int, float, bool]


def snake_case(name: str) -> str:
    """``"Re-engagement Audience"`` -> ``"re_engagement_audience"`` (how Engage names audience traits)."""
    text = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name.strip())
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower()


@dataclass(frozen=True)
class Filter:
    """A condition on an event property: ``property`` (dots for nesting) ``op`` ``value``."""

    property: str
    op: str
    value: Any


@dataclass(frozen=True)
class TraitDef:
    """One computed trait: an aggregate of a user's events (see ``TRAIT_KINDS``)."""

    name: str
    kind: str
    events: tuple[str, ...] = ()  # track event names; empty: any event of ``types``
    types: tuple[str, ...] = ()  # message types; empty: track when ``events`` is set, else every type
    filters: tuple[Filter, ...] = ()
    within_days: Optional[float] = None
    property: Optional[str] = None
    of: str = "last"  # days_since: since the last (or first) matching event
    identify_trait: Optional[str] = None  # days_since: since a timestamp-valued identify trait
    sync: bool = True


@dataclass(frozen=True)
class AttributionDef:
    """Conversions credited to campaign channels: ``prefix+channel`` shares and ``prefix+top_channel``."""

    name: str
    model: str
    conversions: tuple[str, ...]
    prefix: str = "atb_"
    lookback_days: float = 30.0
    half_life_days: float = 7.0
    touch_types: tuple[str, ...] = ("page", "track")
    channel: str = "source"
    channels: Optional[tuple[str, ...]] = None
    within_days: Optional[float] = None
    sync: bool = True

    @property
    def top_key(self) -> str:
        """The trait naming the channel with the largest share."""
        return f"{self.prefix}top_channel"


@dataclass(frozen=True)
class Condition:
    """A node of an audience condition: ``all``/``any``/``not`` over children, or a comparison leaf."""

    op: str  # "all", "any", "not" or a comparison from COMPARISONS
    children: tuple[Condition, ...] = ()
    source: str = ""  # leaf: "trait" (computed) or "identify" (last identify value)
    name: str = ""
    value: Any = None

    def references(self) -> list[tuple[str, str]]:
        """Every ``(source, name)`` the condition reads."""
        if self.children:
            return [ref for child in self.children for ref in child.references()]
        return [(self.source, self.name)]


@dataclass(frozen=True)
class AudienceDef:
    """An audience: members are users for whom ``condition`` holds; the trait is ``key`` true/false."""

    name: str
    key: str
    condition: Condition
    entered_event: Optional[str] = None
    exited_event: Optional[str] = None


@dataclass(frozen=True)
class Definitions:
    """Everything in a definitions file; ``version`` takes part in every derived messageId."""

    version: str
    traits: tuple[TraitDef, ...] = ()
    attributions: tuple[AttributionDef, ...] = ()
    audiences: tuple[AudienceDef, ...] = ()
    source: str = "<definitions>"
    digest: str = field(default="", compare=False)

    def trait(self, name: str) -> Optional[TraitDef]:
        """The computed trait called ``name``, or None."""
        return next((t for t in self.traits if t.name == name), None)


# -- reading -------------------------------------------------------------------


class _Where:
    """Line numbers of the nodes of a YAML document, by path of keys and indexes."""

    def __init__(self, source: str, lines: Mapping[tuple[Any, ...], int]) -> None:
        self.source = source
        self.lines = lines

    def error(self, reason: str, path: Sequence[Any], definition: Optional[str] = None) -> DefinitionError:
        line = None
        for cut in range(len(path), -1, -1):
            line = self.lines.get(tuple(path[:cut]))
            if line is not None:
                break
        # the field is the path below the definition (traits[3].where.plan -> where.plan)
        inner = list(path[2:]) if len(path) >= 2 and path[0] in ("traits", "audiences") else list(path)
        return DefinitionError(
            reason, line=line, definition=definition, field=_dotted(inner) or None, path=self.source
        )


def _dotted(path: Sequence[Any]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _compose(text: str, source: str) -> tuple[Any, dict[tuple[Any, ...], int]]:
    """Parse YAML (JSON is YAML) safely: no aliases, bounded depth; returns (data, line of each path)."""
    import yaml

    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent):
                line = event.start_mark.line + 1 if event.start_mark else None
                raise DefinitionError("YAML aliases are not accepted", line=line, path=source)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise DefinitionError(f"not valid YAML/JSON: {problem}", line=line, path=source) from None
    lines: dict[tuple[Any, ...], int] = {}

    def walk(n: Any, path: tuple[Any, ...], depth: int) -> None:
        if depth > MAX_DEPTH:
            raise DefinitionError(
                f"nested deeper than {MAX_DEPTH} levels", line=n.start_mark.line + 1, path=source
            )
        lines[path] = n.start_mark.line + 1
        if isinstance(n, yaml.MappingNode):
            for key, value in n.value:
                walk(value, (*path, key.value), depth + 1)
        elif isinstance(n, yaml.SequenceNode):
            for index, value in enumerate(n.value):
                walk(value, (*path, index), depth + 1)

    if node is None:
        return None, lines
    walk(node, (), 0)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:  # pragma: no cover - composed above, so constructing rarely fails
        raise DefinitionError(f"not valid YAML/JSON: {exc}", path=source) from None
    return data, lines


def _load_json(text: str, source: str) -> tuple[Any, dict[tuple[Any, ...], int]]:
    """Parse JSON (tabs and all, which YAML refuses), with YAML's line numbers when YAML can read it too."""
    try:
        data = json.loads(text)
    except RecursionError:
        raise DefinitionError(f"nested deeper than {MAX_DEPTH} levels", path=source) from None
    except ValueError as exc:
        line = getattr(exc, "lineno", None)
        reason = getattr(exc, "msg", str(exc))
        raise DefinitionError(f"not valid JSON: {reason}", line=line, path=source) from None
    pending: list[tuple[Any, int]] = [(data, 0)]
    while pending:
        value, depth = pending.pop()
        if depth > MAX_DEPTH:
            raise DefinitionError(f"nested deeper than {MAX_DEPTH} levels", path=source)
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
        pending.extend((child, depth + 1) for child in children)
    try:
        _, lines = _compose(text, source)
    except DefinitionError:
        lines = {}  # valid JSON that YAML cannot read (tabs): errors name the definition and field only
    return data, lines


def load_definitions(path: Union[str, os.PathLike[str]]) -> Definitions:
    """Read and validate a definitions file (YAML, or JSON); raises :class:`DefinitionError`."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as fh:
            raw = fh.read(MAX_DEFINITIONS_BYTES + 1)
    except OSError as exc:
        raise DefinitionError(f"cannot read: {exc.strerror}", path=name) from None
    if len(raw) > MAX_DEFINITIONS_BYTES:
        raise DefinitionError(f"larger than {MAX_DEFINITIONS_BYTES} bytes", path=name)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise DefinitionError("not UTF-8 text", path=name) from None
    return parse_definitions(text, source=name)


def parse_definitions(text: str, source: str = "<definitions>") -> Definitions:
    """Validate definitions given as YAML or JSON text; raises :class:`DefinitionError`."""
    if len(text.encode("utf-8")) > MAX_DEFINITIONS_BYTES:
        raise DefinitionError(f"larger than {MAX_DEFINITIONS_BYTES} bytes", path=source)
    if source.lower().endswith(".json") or text.lstrip().startswith("{"):
        data, lines = _load_json(text, source)
    else:
        data, lines = _compose(text, source)
    where = _Where(source, lines)
    if not isinstance(data, dict):
        raise where.error("the file must hold a mapping with traits and/or audiences", [])
    _only(data, ("version", "traits", "audiences"), [], where, None)
    version = data.get("version", None)
    if version is not None and (isinstance(version, bool) or not isinstance(version, (str, int))):
        raise where.error("version must be text or an integer", ["version"])
    raw_traits = data.get("traits") or []
    raw_audiences = data.get("audiences") or []
    if not isinstance(raw_traits, list):
        raise where.error("traits must be a list", ["traits"])
    if not isinstance(raw_audiences, list):
        raise where.error("audiences must be a list", ["audiences"])
    traits: list[TraitDef] = []
    attributions: list[AttributionDef] = []
    keys: dict[str, str] = {}  # output key -> the definition that makes it

    def claim(key: str, owner: str, path: list[Any]) -> None:
        if key in keys:
            raise where.error(f"key {key!r} is already produced by {keys[key]!r}", path, owner)
        keys[key] = owner

    for index, item in enumerate(raw_traits):
        path: list[Any] = ["traits", index]
        if not isinstance(item, dict):
            raise where.error("a trait must be a mapping", path)
        name = _name(item, path, where)
        kind = item.get("kind")
        if kind == "attribution":
            attribution = _attribution(item, name, path, where)
            attributions.append(attribution)
            claim(attribution.top_key, name, path)
            for channel in attribution.channels or ():
                claim(attribution.prefix + channel, name, path)
        else:
            trait = _trait(item, name, path, where)
            traits.append(trait)
            claim(trait.name, name, path)
    names = {t.name for t in traits}
    audiences: list[AudienceDef] = []
    for index, item in enumerate(raw_audiences):
        path = ["audiences", index]
        if not isinstance(item, dict):
            raise where.error("an audience must be a mapping", path)
        name = _name(item, path, where)
        _only(item, ("name", "key", "where", "entered_event", "exited_event"), path, where, name)
        key = item.get("key")
        if key is None:
            key = snake_case(name)
        if not isinstance(key, str) or not _KEY.match(key):
            raise where.error(
                f"key must be a plain identifier (letters, digits, _), got {key!r}", [*path, "key"], name
            )
        claim(key, name, path)
        if "where" not in item:
            raise where.error("an audience needs a 'where' condition", path, name)
        condition = _condition(item["where"], [*path, "where"], where, name, names, attributions)
        events = {}
        for event_field in ("entered_event", "exited_event"):
            value = item.get(event_field)
            if value is not None and not _text_ok(value):
                raise where.error("must be a non-empty event name", [*path, event_field], name)
            events[event_field] = value
        audiences.append(AudienceDef(name, key, condition, events["entered_event"], events["exited_event"]))
    if not traits and not attributions and not audiences:
        raise where.error("defines no traits and no audiences", [])
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    digest = hashlib.sha256(canonical.encode()).hexdigest()[:16]
    return Definitions(
        version=str(version) if version is not None else digest,
        traits=tuple(traits),
        attributions=tuple(attributions),
        audiences=tuple(audiences),
        source=source,
        digest=digest,
    )


def _text_ok(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= _MAX_TEXT


def _only(item: Mapping[str, Any], allowed: Sequence[str], path: list[Any], where: _Where, name: Any) -> None:
    for key in item:
        if key not in allowed:
            raise where.error(
                f"unknown field {key!r} (expected one of: {', '.join(allowed)})", [*path, key], name
            )


def _name(item: Mapping[str, Any], path: list[Any], where: _Where) -> str:
    name = item.get("name")
    if not isinstance(name, str) or not name.strip():
        raise where.error("needs a non-empty 'name'", [*path, "name"])
    if len(name) > 100:
        raise where.error("name is longer than 100 characters", [*path, "name"])
    return name


def _number(
    item: Mapping[str, Any], key: str, path: list[Any], where: _Where, name: str, *, positive: bool = True
) -> Optional[float]:
    value = item.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise where.error("must be a number", [*path, key], name)
    if positive and not 0 < value <= 36500:
        raise where.error("must be more than 0 and at most 36500", [*path, key], name)
    return float(value)


def _names_list(
    value: Any, path: list[Any], where: _Where, name: str, allowed: Optional[Sequence[str]] = None
) -> tuple[str, ...]:
    items = value if isinstance(value, list) else [value]
    if not items:
        raise where.error("must name at least one", path, name)
    for index, entry in enumerate(items):
        at = [*path, index] if isinstance(value, list) else path
        if not _text_ok(entry):
            raise where.error("must be a non-empty name", at, name)
        if allowed is not None and entry not in allowed:
            raise where.error(f"{entry!r} is not one of: {', '.join(allowed)}", at, name)
    return tuple(items)


def _filters(value: Any, path: list[Any], where: _Where, name: str) -> tuple[Filter, ...]:
    """``where:`` as a mapping (property: value, or a list for any of) or a list of {property, op, value}."""
    out: list[Filter] = []
    if isinstance(value, dict):
        for prop, expected in value.items():
            if not _text_ok(prop):
                raise where.error("property names must be non-empty text", [*path, prop], name)
            if isinstance(expected, list):
                out.append(Filter(prop, "in", _scalars(expected, [*path, prop], where, name)))
            else:
                out.append(Filter(prop, "==", _scalar(expected, [*path, prop], where, name)))
        return tuple(out)
    if not isinstance(value, list):
        raise where.error(
            "must be a mapping of property: value, or a list of {property, op, value}", path, name
        )
    for index, entry in enumerate(value):
        at = [*path, index]
        if not isinstance(entry, dict):
            raise where.error("must be a mapping {property, op, value}", at, name)
        _only(entry, ("property", "op", "value"), at, where, name)
        prop = entry.get("property")
        if not _text_ok(prop):
            raise where.error("needs a non-empty 'property'", [*at, "property"], name)
        op = entry.get("op", "==")
        if op not in FILTER_OPS:
            raise where.error(f"op must be one of: {', '.join(FILTER_OPS)}", [*at, "op"], name)
        out.append(Filter(str(prop), op, _operand(op, entry, at, where, name)))
    return tuple(out)


def _scalar(value: Any, path: list[Any], where: _Where, name: str) -> Scalar:
    if isinstance(value, float) and value != value:
        raise where.error("NaN is not a value", path, name)
    if isinstance(value, str) and len(value) > _MAX_TEXT:
        raise where.error(f"text longer than {_MAX_TEXT} characters", path, name)
    if not isinstance(value, (str, int, float, bool)):
        raise where.error("must be text, a number or true/false", path, name)
    return value


def _scalars(value: Any, path: list[Any], where: _Where, name: str) -> tuple[Scalar, ...]:
    if not isinstance(value, list) or not value:
        raise where.error("must be a non-empty list", path, name)
    return tuple(_scalar(v, [*path, i], where, name) for i, v in enumerate(value))


def _operand(op: str, entry: Mapping[str, Any], path: list[Any], where: _Where, name: str) -> Any:
    if op in ("exists", "missing"):
        if "value" in entry:
            raise where.error(f"{op!r} takes no value", [*path, "value"], name)
        return None
    if "value" not in entry:
        raise where.error(f"{op!r} needs a value", path, name)
    if op in ("in", "not_in"):
        return _scalars(entry["value"], [*path, "value"], where, name)
    value = _scalar(entry["value"], [*path, "value"], where, name)
    if op in (">", ">=", "<", "<=") and (isinstance(value, bool) or not isinstance(value, (int, float, str))):
        raise where.error(f"{op!r} needs a number or text", [*path, "value"], name)
    return value


def _selection(
    item: Mapping[str, Any], path: list[Any], where: _Where, name: str
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    events: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    if item.get("event") is not None:
        events = _names_list(item["event"], [*path, "event"], where, name)
    if item.get("type") is not None:
        types = _names_list(item["type"], [*path, "type"], where, name, MESSAGE_TYPES)
    if events and not types:
        types = ("track",)
    return events, types


_TRAIT_FIELDS = (
    "name",
    "kind",
    "event",
    "type",
    "where",
    "within_days",
    "property",
    "of",
    "identify_trait",
    "sync",
)


def _trait(item: Mapping[str, Any], name: str, path: list[Any], where: _Where) -> TraitDef:
    kind = item.get("kind")
    if kind not in TRAIT_KINDS:
        raise where.error(
            f"kind must be one of: {', '.join((*TRAIT_KINDS, 'attribution'))}", [*path, "kind"], name
        )
    _only(item, _TRAIT_FIELDS, path, where, name)
    if not _KEY.match(name):
        raise where.error(
            "a computed trait's name is its trait key: letters, digits and _ only", [*path, "name"], name
        )
    events, types = _selection(item, path, where, name)
    filters = _filters(item["where"], [*path, "where"], where, name) if item.get("where") is not None else ()
    prop = item.get("property")
    needs_property = kind in ("distinct_count", "sum", "min", "max", "last")
    if needs_property and not _text_ok(prop):
        raise where.error(f"kind {kind!r} needs a 'property'", [*path, "property"], name)
    if not needs_property and prop is not None:
        raise where.error(f"kind {kind!r} takes no 'property'", [*path, "property"], name)
    of = item.get("of", "last")
    if of not in ("last", "first") or (of != "last" and kind != "days_since"):
        raise where.error("'of' is 'last' or 'first', for days_since only", [*path, "of"], name)
    identify_trait = item.get("identify_trait")
    if identify_trait is not None:
        if kind != "days_since":
            raise where.error("'identify_trait' applies to days_since only", [*path, "identify_trait"], name)
        if not _text_ok(identify_trait):
            raise where.error("must be a non-empty trait name", [*path, "identify_trait"], name)
        if events or types or filters:
            raise where.error("days_since an identify trait takes no event, type or where", path, name)
    sync = item.get(
        "sync", kind != "days_since"
    )  # days since changes daily for everyone: not sent by default
    if not isinstance(sync, bool):
        raise where.error("must be true or false", [*path, "sync"], name)
    return TraitDef(
        name=name,
        kind=kind,
        events=events,
        types=types,
        filters=filters,
        within_days=_number(item, "within_days", path, where, name),
        property=prop,
        of=of,
        identify_trait=identify_trait,
        sync=sync,
    )


_ATTRIBUTION_FIELDS = (
    "name",
    "kind",
    "model",
    "conversion",
    "prefix",
    "lookback_days",
    "half_life_days",
    "touch_type",
    "channel",
    "channels",
    "within_days",
    "sync",
)


def _attribution(item: Mapping[str, Any], name: str, path: list[Any], where: _Where) -> AttributionDef:
    _only(item, _ATTRIBUTION_FIELDS, path, where, name)
    model = item.get("model")
    if model not in ATTRIBUTION_MODELS:
        raise where.error(f"model must be one of: {', '.join(ATTRIBUTION_MODELS)}", [*path, "model"], name)
    if item.get("conversion") is None:
        raise where.error("needs 'conversion': the track event name(s) that convert", path, name)
    conversions = _names_list(item["conversion"], [*path, "conversion"], where, name)
    prefix = item.get("prefix", "atb_")
    if not isinstance(prefix, str) or not re.match(r"^[A-Za-z_][A-Za-z0-9_]{0,40}$", prefix):
        raise where.error("prefix must be letters, digits and _ (e.g. atb_)", [*path, "prefix"], name)
    half_life = _number(item, "half_life_days", path, where, name)
    if model == "time_decay" and half_life is None:
        raise where.error("time_decay needs 'half_life_days'", path, name)
    if model != "time_decay" and half_life is not None:
        raise where.error("'half_life_days' applies to time_decay only", [*path, "half_life_days"], name)
    touch_types: tuple[str, ...] = ("page", "track")
    if item.get("touch_type") is not None:
        touch_types = _names_list(
            item["touch_type"], [*path, "touch_type"], where, name, ("page", "track", "screen")
        )
    channel = item.get("channel", "source")
    if channel not in CAMPAIGN_FIELDS:
        raise where.error(f"channel must be one of: {', '.join(CAMPAIGN_FIELDS)}", [*path, "channel"], name)
    channels = None
    if item.get("channels") is not None:
        listed = _names_list(item["channels"], [*path, "channels"], where, name)
        channels = tuple(dict.fromkeys(channel_key(c) for c in listed))
        for index, key in enumerate(channels):
            if not key or key in ("top_channel", "other"):
                raise where.error(
                    f"channel {listed[index]!r} cannot be a trait key", [*path, "channels"], name
                )
        channels = (*channels, "other")
    sync = item.get("sync", True)
    if not isinstance(sync, bool):
        raise where.error("must be true or false", [*path, "sync"], name)
    return AttributionDef(
        name=name,
        model=model,
        conversions=conversions,
        prefix=prefix,
        lookback_days=_number(item, "lookback_days", path, where, name) or 30.0,
        half_life_days=half_life or 7.0,
        touch_types=touch_types,
        channel=channel,
        channels=channels,
        within_days=_number(item, "within_days", path, where, name),
        sync=sync,
    )


def channel_key(value: str) -> str:
    """A channel as it appears in trait keys: lower case, runs of other characters as one ``_``.

    The SQL engines apply the same rule to campaign values (see ``compile``).
    """
    return re.sub(r"[^a-z0-9]+", "_", value.strip().lower()).strip("_")


def _condition(
    value: Any,
    path: list[Any],
    where: _Where,
    name: str,
    traits: set[str],
    attributions: Sequence[AttributionDef],
) -> Condition:
    if not isinstance(value, dict):
        raise where.error(
            "a condition is a mapping: {all: [...]}, {any: [...]}, {not: ...} or a comparison", path, name
        )
    for group in ("all", "any"):
        if group in value:
            _only(value, (group,), path, where, name)
            items = value[group]
            if not isinstance(items, list) or not items:
                raise where.error(f"'{group}' needs a non-empty list of conditions", [*path, group], name)
            children = tuple(
                _condition(c, [*path, group, i], where, name, traits, attributions)
                for i, c in enumerate(items)
            )
            return Condition(group, children)
    if "not" in value:
        _only(value, ("not",), path, where, name)
        return Condition(
            "not", (_condition(value["not"], [*path, "not"], where, name, traits, attributions),)
        )
    _only(value, ("trait", "identify_trait", "op", "value"), path, where, name)
    if ("trait" in value) == ("identify_trait" in value):
        raise where.error("a comparison names exactly one of 'trait' or 'identify_trait'", path, name)
    source = "trait" if "trait" in value else "identify"
    field_name = "trait" if source == "trait" else "identify_trait"
    target = value[field_name]
    if not _text_ok(target):
        raise where.error("must be a non-empty name", [*path, field_name], name)
    if source == "trait":
        produced = set(traits)
        for attribution in attributions:
            produced.add(attribution.top_key)
            if attribution.channels:
                produced.update(attribution.prefix + c for c in attribution.channels)
            elif target.startswith(attribution.prefix):
                produced.add(target)  # channels are found in the data: any prefixed key may exist
        if target not in produced:
            raise where.error(f"no computed trait is called {target!r}", [*path, field_name], name)
    op = value.get("op")
    if op not in COMPARISONS:
        raise where.error(f"op must be one of: {', '.join(COMPARISONS)}", [*path, "op"], name)
    return Condition(op, (), source, target, _operand(op, value, path, where, name))
