"""Column mappings: how a flat record (a CSV row, a database export) becomes a Spec message."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

from segment_lite.importer.errors import ImportConfigError, RowError

__all__ = ["CONTAINERS", "CONVERSIONS", "SCALAR_FIELDS", "FieldMapping", "FieldRule"]

#: Top-level message fields a column can fill.
SCALAR_FIELDS = frozenset(
    {
        "type",
        "userId",
        "anonymousId",
        "event",
        "name",
        "category",
        "groupId",
        "previousId",
        "timestamp",
        "messageId",
    }
)
#: Objects a column can fill a key of (``properties.plan``), or, with ``:json``, entirely.
CONTAINERS = frozenset({"properties", "traits", "context", "integrations"})

#: Longest conversion error quoted in a rejected row's reason.
_MAX_REASON_CHARS = 160
_TRUE = frozenset({"true", "t", "yes", "y", "1"})
_FALSE = frozenset({"false", "f", "no", "n", "0"})


def _to_str(value: Any) -> Any:
    return value if isinstance(value, str) else str(value)


def _to_int(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("a boolean is not an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"{value!r} is not a whole number")
        return int(value)
    text = str(value).strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an integer") from None
    if not number.is_integer():
        raise ValueError(f"{text!r} is not a whole number")
    return int(number)


def _to_float(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("a boolean is not a number")
    if isinstance(value, (int, float)):
        return value
    text = str(value).strip()
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None


def _to_bool(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{value!r} is not a boolean (true/false, yes/no, 1/0)")


def _to_json(value: Any) -> Any:
    if isinstance(value, str):
        return json.loads(value)
    return value


#: Conversions a rule can name with ``target:conversion``.
CONVERSIONS: dict[str, Callable[[Any], Any]] = {
    "str": _to_str,
    "int": _to_int,
    "float": _to_float,
    "bool": _to_bool,
    "json": _to_json,
}


@dataclass(frozen=True)
class FieldRule:
    """Fill message field ``target`` (a dotted path) from column ``source``, converted by ``conversion``.

    ``target`` ending in ``.*`` with ``source`` ``*`` copies every column no other
    rule reads into that object, under the column's own name.
    """

    target: str
    source: str
    conversion: Optional[str] = None

    @property
    def path(self) -> tuple[str, ...]:
        """``target`` split at the dots."""
        return tuple(self.target.split("."))

    @property
    def is_wildcard(self) -> bool:
        """True for ``properties.*=*`` style rules."""
        return self.source == "*"


Spec = Union[str, Iterable[str], Mapping[str, Any]]


class FieldMapping:
    """A set of :class:`FieldRule` and constant values, applied to each record.

    Build it from command-line text (``userId=user_id,properties.plan=plan``), a
    dict (the JSON of ``--map-file``: ``{"userId": "user_id", "properties.amount:float":
    "amount"}``) or rules. ``constants`` sets fields to the same value on every
    message (``{"event": "Signed Up"}``).
    """

    def __init__(
        self, rules: Iterable[FieldRule] = (), constants: Optional[Mapping[str, Any]] = None
    ) -> None:
        self.rules = list(rules)
        self.constants = dict(constants or {})
        for rule in self.rules:
            _check_target(rule.target, rule.conversion, rule.source)
        for target in self.constants:
            _check_target(target, None, "")
        wildcards = [r for r in self.rules if r.is_wildcard]
        if len(wildcards) > 1:
            raise ImportConfigError("only one wildcard rule (such as properties.*=*) is allowed")
        self._wildcard: Optional[tuple[str, ...]] = wildcards[0].path[:-1] if wildcards else None
        self._used = frozenset(r.source for r in self.rules if not r.is_wildcard)
        self._compiled: list[tuple[tuple[str, ...], str, str, Optional[Callable[[Any], Any]]]] = [
            (r.path, r.source, r.target, CONVERSIONS[r.conversion] if r.conversion else None)
            for r in self.rules
            if not r.is_wildcard
        ]
        self._constants = [(tuple(k.split(".")), v) for k, v in self.constants.items()]

    def __repr__(self) -> str:
        rules = ",".join(
            f"{r.target}{':' + r.conversion if r.conversion else ''}={r.source}" for r in self.rules
        )
        return f"FieldMapping({rules!r}, constants={self.constants!r})"

    def __bool__(self) -> bool:
        return bool(self.rules or self.constants)

    @classmethod
    def parse(cls, spec: Spec, constants: Optional[Mapping[str, Any]] = None) -> FieldMapping:
        """Build a mapping from ``"target=source,..."`` text, several such texts, or a dict."""
        rules: list[FieldRule] = []
        if isinstance(spec, Mapping):
            for target, source in spec.items():
                if not isinstance(target, str) or not isinstance(source, str):
                    raise ImportConfigError(
                        f'mapping entries must be "target": "column" strings, got {target!r}: {source!r}'
                    )
                rules.append(_rule(target, source))
        else:
            texts = [spec] if isinstance(spec, str) else list(spec)
            for text in texts:
                for item in text.split(","):
                    item = item.strip()
                    if not item:
                        continue
                    target, sep, source = item.partition("=")
                    if not sep or not target.strip() or not source.strip():
                        raise ImportConfigError(f"mapping entry {item!r} must look like target=column")
                    rules.append(_rule(target.strip(), source.strip()))
        return cls(rules, constants)

    @classmethod
    def from_file(cls, path: str, constants: Optional[Mapping[str, Any]] = None) -> FieldMapping:
        """Read a mapping from the JSON file ``path``.

        Either ``{"target": "column", ...}`` or ``{"map": {"target": "column", ...},
        "set": {"target": constant, ...}}``.
        """
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
        except OSError as exc:
            raise ImportConfigError(f"cannot read mapping file {path}: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise ImportConfigError(f"mapping file {path} is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ImportConfigError(f"mapping file {path} must hold a JSON object of target: column")
        if "map" in data and set(data) <= {"map", "set"}:
            # The long form: {"map": {target: column}, "set": {target: constant}}.
            rules, fixed = data["map"], data.get("set") or {}
            if not isinstance(rules, dict) or not isinstance(fixed, dict):
                raise ImportConfigError(f'mapping file {path}: "map" and "set" must be JSON objects')
            return cls.parse(rules, {**fixed, **(constants or {})})
        return cls.parse(data, constants)

    @classmethod
    def identity(cls, columns: Iterable[str]) -> FieldMapping:
        """Map each column to the field it is named after (``userId``, ``event``, ``properties.plan``).

        For CSV files whose header already uses Spec names. A column that names
        no field raises ``ImportConfigError`` rather than being silently dropped.
        """
        rules: list[FieldRule] = []
        unknown: list[str] = []
        for column in columns:
            name, _, conversion = column.partition(":")
            try:
                _check_target(name, conversion or None, column)
            except ImportConfigError:
                unknown.append(column)
                continue
            rules.append(FieldRule(name, column, conversion or None))
        if unknown:
            raise ImportConfigError(
                f"without --map, CSV columns must be named after message fields (userId, event, timestamp,"
                f" properties.NAME, ...); these are not: {', '.join(repr(c) for c in unknown)}."
                " Pass --map (e.g. --map 'userId=user_id,properties.*=*') or --map-file"
            )
        return cls(rules)

    def source_of(self, target: str) -> Optional[str]:
        """The column that fills ``target`` (None when no rule does, or only a constant)."""
        for rule in self.rules:
            if rule.target == target and not rule.is_wildcard:
                return rule.source
        return None

    def sources(self) -> set[str]:
        """The column names the rules read (the wildcard excepted)."""
        return set(self._used)

    def apply(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """Build the message fields for ``row``; empty and missing columns are left out.

        Raises ``RowError`` naming the field when a conversion fails.
        """
        out: dict[str, Any] = {}
        for path, value in self._constants:
            _put(out, path, copy.deepcopy(value) if isinstance(value, (dict, list)) else value)
        for path, source, target, convert in self._compiled:
            value = row.get(source)
            if value is None or value == "":
                continue
            if convert is not None:
                try:
                    value = convert(value)
                except (ValueError, TypeError, OverflowError) as exc:
                    reason = str(exc)
                    if len(reason) > _MAX_REASON_CHARS:  # a 5,000-digit value is quoted in the row, not here
                        reason = reason[:_MAX_REASON_CHARS] + f"... ({len(str(value)):,} characters)"
                    raise RowError(f"{target}: cannot convert column {source!r}: {reason}", target) from None
                except RecursionError:  # :json of a value nested thousands deep
                    raise RowError(
                        f"{target}: cannot convert column {source!r}: nested too deep", target
                    ) from None
            _put(out, path, value)
        if self._wildcard is not None:
            used = self._used
            base = self._wildcard
            for column, value in row.items():
                if column in used or value is None or value == "":
                    continue
                _put(out, (*base, str(column)), value)
        return out


def _rule(target: str, source: str) -> FieldRule:
    name, _, conversion = target.partition(":")
    return FieldRule(name.strip(), source, conversion.strip() or None)


def _check_target(target: str, conversion: Optional[str], source: str) -> None:
    if conversion is not None and conversion not in CONVERSIONS:
        raise ImportConfigError(
            f"unknown conversion {conversion!r} in {target}:{conversion}; use one of {', '.join(CONVERSIONS)}"
        )
    parts = target.split(".")
    if any(not part for part in parts):
        raise ImportConfigError(f"mapping target {target!r} has an empty part")
    head = parts[0]
    if head in SCALAR_FIELDS:
        if len(parts) > 1:
            raise ImportConfigError(f"mapping target {target!r}: {head} is not an object")
    elif head not in CONTAINERS:
        allowed = ", ".join(sorted(SCALAR_FIELDS)) + ", " + ", ".join(f"{c}.KEY" for c in sorted(CONTAINERS))
        raise ImportConfigError(f"unknown mapping target {target!r}; targets are {allowed}")
    if "*" in parts:
        if parts[-1] != "*" or len(parts) < 2 or source != "*" or "*" in parts[:-1]:
            raise ImportConfigError(
                f"wildcard rule {target}={source}: write it as OBJECT.*=* (e.g. properties.*=*)"
            )
    elif source == "*":
        raise ImportConfigError(f"rule {target}=*: a wildcard source needs a target like properties.*")


def _put(out: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    if len(path) == 1:
        out[path[0]] = value
        return
    node = out
    for key in path[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = node[key] = {}
        node = child
    node[path[-1]] = value
