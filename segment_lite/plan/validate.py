"""Check messages against a plan: a compiled validator per rule, and precise errors when one fails.

The hot path is one call of code that fastjsonschema generated from the rule's
schema. Only a message that fails it pays for the rest: its JSON form is checked
again (a ``datetime`` in the message is a string on the wire) and, if it still
fails, jsonschema walks it to name every problem with its path.
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Callable, Optional

from segment_lite.encoding import encode
from segment_lite.errors import EncodeError
from segment_lite.plan.files import PlanSource, load_plan
from segment_lite.plan.limits import check_rule, check_schema
from segment_lite.plan.model import Rule, TrackingPlan, format_path, payload_only
from segment_lite.plan.patterns import harden_fast_validator, search
from segment_lite.plan.remote import fast_handlers, registry

__all__ = ["FORMAT_CHECKS", "PlanValidator", "Verdict", "Violation"]

MAX_MESSAGE_CHARS = 200


# -- formats ------------------------------------------------------------------
#
# Both validators get the same format checks, so the fast one and the precise
# one agree on what a date-time or an email is.

_DATE_TIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.\d+)?(?:[Zz]|[+-](\d{2}):(\d{2}))\Z"
)
_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})\Z")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+\Z")


def _is_date_time(value: str) -> bool:
    match = _DATE_TIME.match(value)
    if match is None:
        return False
    year, month, day, hour, minute, second = (int(part) for part in match.groups()[:6])
    offset_hours, offset_minutes = match.group(7), match.group(8)
    if offset_hours is not None and (int(offset_hours) > 23 or int(offset_minutes) > 59):
        return False
    try:
        datetime.datetime(year, month, day, hour, minute, min(second, 59))  # RFC 3339 allows a leap second
    except ValueError:
        return False
    return second <= 60


def _is_date(value: str) -> bool:
    match = _DATE.match(value)
    if match is None:
        return False
    try:
        datetime.date(*(int(part) for part in match.groups()))
    except ValueError:
        return False
    return True


def _is_email(value: str) -> bool:
    return _EMAIL.match(value) is not None


#: The formats checked the same way by both validators (others use each validator's own check).
FORMAT_CHECKS: dict[str, Callable[[str], bool]] = {
    "date-time": _is_date_time,
    "date": _is_date,
    "email": _is_email,
}


# -- results --------------------------------------------------------------------


@dataclass(frozen=True)
class Violation:
    """One way a message breaks its rule.

    ``path`` is the field in the message (``properties.products[0].price``; empty
    for the message itself), ``rule`` the rule's label, ``keyword`` the schema
    keyword that failed (``type``, ``required``, ``enum``, ``format``, ...),
    ``value`` the offending value (None when ``missing``).
    """

    rule: str
    path: str
    keyword: str
    message: str
    value: Any = None
    missing: bool = False

    def __str__(self) -> str:
        return f"{self.path or '(message)'}: {self.message} [{self.rule}]"

    def to_dict(self, max_value_chars: Optional[int] = None) -> dict[str, Any]:
        """A JSON-ready dict; with ``max_value_chars`` only a scalar value is kept, shortened."""
        out: dict[str, Any] = {
            "rule": self.rule,
            "path": self.path,
            "keyword": self.keyword,
            "message": self.message,
        }
        if self.missing:
            out["missing"] = True
            return out
        value = self.value
        if max_value_chars is not None:
            if isinstance(value, (dict, list)):
                return out
            if isinstance(value, str):
                value = _shorten(value, max_value_chars)
        out["value"] = value
        return out


@dataclass(frozen=True)
class Verdict:
    """What the plan says about one message.

    ``rule`` is the rule that covers it (None when no rule does), ``unplanned``
    is True for a track event the plan does not list, and ``violations`` are
    the problems found (also those of COMMON rules).
    """

    rule: Optional[Rule]
    unplanned: bool = False
    violations: tuple[Violation, ...] = ()

    @property
    def ok(self) -> bool:
        """Planned and without violations."""
        return not self.unplanned and not self.violations


_UNCOVERED = Verdict(None)
_UNPLANNED = Verdict(None, unplanned=True)


def _shorten(text: str, max_chars: int = MAX_MESSAGE_CHARS) -> str:
    """``text``, or its first ``max_chars - 1`` characters and an ellipsis when it is longer."""
    return text if len(text) <= max_chars else text[: max_chars - 1] + "…"


# -- compiled rules ---------------------------------------------------------------


class _CompiledRule:
    """One rule's fast validator, its precise validator (built on first use) and its clean verdict."""

    __slots__ = ("_documents", "_precise", "fast", "ok", "rule")

    def __init__(self, rule: Rule, plan: TrackingPlan) -> None:
        import fastjsonschema

        self.rule = rule
        self._documents = plan.remote_schemas
        bases = tuple(plan.remote_schemas)
        patterns = check_rule(rule, plan.source, bases)[0]
        for address, document in plan.remote_schemas.items():  # a $ref brings their patterns in too
            patterns |= check_schema(document, address, plan.source, bases)[0]
        handlers = fast_handlers(plan.remote_schemas)
        payload = _payload_only(rule)
        try:
            if payload is None:
                fast = fastjsonschema.compile(
                    dict(rule.json_schema), handlers=handlers, formats=FORMAT_CHECKS, use_default=False
                )
                harden_fast_validator(fast, patterns)
                self.fast: Callable[[Any], Any] = fast
            else:
                self.fast = _payload_check(*payload, patterns)
        except fastjsonschema.JsonSchemaDefinitionException as exc:
            from segment_lite.plan.model import PlanError

            raise PlanError(f"{rule.label}: cannot compile its jsonSchema: {exc}") from None
        self.ok = Verdict(rule)
        self._precise: Any = None

    def explain(self, instance: Any, fast_error: Optional[BaseException]) -> list[Violation]:
        """Every problem of ``instance``, each with its path."""
        if self._precise is None:
            from jsonschema import FormatChecker

            checker = FormatChecker()
            for name, check in FORMAT_CHECKS.items():
                checker.checks(name)(_strings_only(check))
            self._precise = _precise_validator_class()(
                self.rule.json_schema, format_checker=checker, registry=registry(self._documents)
            )
        label = self.rule.label
        found: list[Violation] = []
        seen: set[tuple[str, str]] = set()
        try:
            errors = sorted(
                self._precise.iter_errors(instance),
                key=lambda e: (format_path(e.absolute_path), str(e.validator)),
            )
        except Exception as exc:  # a value jsonschema cannot walk: report what the fast check saw
            errors = []
            fast_error = fast_error or exc
        for error in errors:
            base = list(error.absolute_path)
            target = error.instance
            if error.validator == "required" and isinstance(target, Mapping):
                for name in error.validator_value:
                    path = format_path([*base, name])
                    if name not in target and (path, "required") not in seen:
                        seen.add((path, "required"))
                        found.append(
                            Violation(label, path, "required", f"{name!r} is required", None, missing=True)
                        )
            elif (
                error.validator == "additionalProperties"
                and error.validator_value is False
                and isinstance(target, Mapping)
            ):
                declared = error.schema.get("properties", {})
                patterns = list(error.schema.get("patternProperties", {}))
                for name in target:
                    if name in declared or any(search(p, str(name)) for p in patterns):
                        continue
                    found.append(
                        Violation(
                            label,
                            format_path([*base, name]),
                            "additionalProperties",
                            f"{str(name)!r} is not in the plan",
                            target[name],
                        )
                    )
            else:
                found.append(
                    Violation(label, format_path(base), str(error.validator), _shorten(error.message), target)
                )
        if not found and fast_error is not None:
            found.append(_from_fast_error(label, fast_error))
        found.sort(key=lambda violation: violation.path)
        return found


def _payload_only(rule: Rule) -> Optional[tuple[str, Mapping[str, Any], bool]]:
    """(field, its schema, required) when the rule constrains nothing but ``properties`` or ``traits``.

    That is the shape of most rules, and checking the field alone skips the work
    fastjsonschema does on the message's other fields (a quarter of the time).
    """
    field = rule.payload_field
    if field is None:
        return None
    found = payload_only(rule.json_schema, field)
    if (
        found is None
        or not isinstance(found[0], Mapping)
        or "$ref" in json.dumps(rule.json_schema, default=str)  # a reference may point outside the field
    ):
        return None
    return field, found[0], found[1]


class _MissingField(Exception):
    """The message lacks the required ``properties`` (or ``traits``); the precise check says so."""


def _payload_check(
    field: str, schema: Mapping[str, Any], required: bool, patterns: set[str]
) -> Callable[[Any], Any]:
    import fastjsonschema

    check_field = fastjsonschema.compile(
        dict(schema), handlers=fast_handlers({}), formats=FORMAT_CHECKS, use_default=False
    )
    harden_fast_validator(check_field, patterns)
    missing = object()

    def check(message: Any) -> Any:
        value = message.get(field, missing)
        if value is missing:
            if required:
                raise _MissingField(field)
            return message
        return check_field(value)

    return check


_PRECISE: list[Any] = []


def _precise_validator_class() -> Any:
    """Draft-07 from jsonschema, its pattern keywords matched as the fast check matches them.

    jsonschema calls ``re.search`` itself; these keywords use the plan's bounded
    patterns (RE2 when installed) instead, with jsonschema's own messages.
    """
    if _PRECISE:
        return _PRECISE[0]
    from jsonschema import Draft7Validator, ValidationError, validators

    def pattern(validator: Any, expected: str, instance: Any, schema: Any) -> Iterator[Any]:
        if validator.is_type(instance, "string") and not search(expected, instance):
            yield ValidationError(f"{instance!r} does not match {expected!r}")

    def pattern_properties(validator: Any, table: Any, instance: Any, schema: Any) -> Iterator[Any]:
        if not validator.is_type(instance, "object"):
            return
        for expected, subschema in table.items():
            for key, value in instance.items():
                if search(expected, key):
                    yield from validator.descend(value, subschema, path=key, schema_path=expected)

    def additional_properties(validator: Any, extra: Any, instance: Any, schema: Any) -> Iterator[Any]:
        if not validator.is_type(instance, "object"):
            return
        declared = schema.get("properties", {})
        table = schema.get("patternProperties", {})
        extras = [
            key
            for key in instance
            if key not in declared and not any(search(expected, key) for expected in table)
        ]
        if validator.is_type(extra, "object"):
            for key in extras:
                yield from validator.descend(instance[key], extra, path=key)
        elif not extra and extras:
            names = ", ".join(repr(key) for key in sorted(extras, key=str))
            verb = "was" if len(extras) == 1 else "were"
            yield ValidationError(f"Additional properties are not allowed ({names} {verb} unexpected)")

    keywords = {
        "pattern": pattern,
        "patternProperties": pattern_properties,
        "additionalProperties": additional_properties,
    }
    extend: Any = validators.extend  # untyped in jsonschema
    _PRECISE.append(extend(Draft7Validator, keywords))
    return _PRECISE[0]


def _strings_only(check: Callable[[str], bool]) -> Callable[[Any], bool]:
    def checker(value: Any) -> bool:
        return not isinstance(value, str) or check(value)

    return checker


def _from_fast_error(label: str, error: BaseException) -> Violation:
    name = str(getattr(error, "name", "data"))
    path = name[5:] if name.startswith("data.") else "" if name == "data" else name
    message = str(getattr(error, "message", error))
    if message.startswith(name + " "):
        message = message[len(name) + 1 :]
    return Violation(
        label,
        path,
        str(getattr(error, "rule", "") or "schema"),
        _shorten(message),
        getattr(error, "value", None),
    )


# -- the validator -----------------------------------------------------------------


class PlanValidator:
    """Checks messages against a plan; build one per plan and reuse it (it compiles every rule).

    Thread-safe: checking keeps no state between messages.
    """

    def __init__(self, plan: PlanSource) -> None:
        self.plan: TrackingPlan = load_plan(plan)
        self._events: dict[str, list[_CompiledRule]] = {}
        self._views: dict[str, dict[Optional[str], list[_CompiledRule]]] = {"page": {}, "screen": {}}
        self._singles: dict[str, list[_CompiledRule]] = {}
        self._common: list[_CompiledRule] = []
        for rule in self.plan.rules:
            compiled = _CompiledRule(rule, self.plan)
            if rule.type == "TRACK":
                self._events.setdefault(str(rule.key), []).append(compiled)
            elif rule.type in ("PAGE", "SCREEN"):
                self._views[rule.type.lower()].setdefault(rule.key, []).append(compiled)
            elif rule.type == "COMMON":
                self._common.append(compiled)
            else:
                self._singles.setdefault(rule.type.lower(), []).append(compiled)
        tables: list[dict[Any, list[_CompiledRule]]] = [self._events, self._singles, *self._views.values()]
        for table in tables:
            for versions in table.values():
                versions.sort(key=lambda c: -c.rule.version)

    def rule_for(self, message: Mapping[str, Any]) -> Optional[Rule]:
        """The rule (not COMMON) that covers ``message``, or None."""
        entry, _ = self._select(message)
        return None if entry is None else entry.rule

    def _select(self, message: Mapping[str, Any]) -> tuple[Optional[_CompiledRule], bool]:
        """The rule for ``message`` and whether it is an unplanned track event."""
        kind = message.get("type")
        if kind == "track":
            event = message.get("event")
            versions = self._events.get(event) if type(event) is str else None
            if versions is None:
                return None, True
        elif kind == "page" or kind == "screen":
            named = self._views[kind]
            if not named:
                return None, False
            name = message.get("name")
            versions = (named.get(name) if type(name) is str else None) or named.get(None)
            if versions is None:
                return None, False
        else:
            versions = self._singles.get(kind) if type(kind) is str else None
            if versions is None:
                return None, False
        if len(versions) == 1:
            return versions[0], False
        return _pick_version(versions, message), False

    def check(self, message: Mapping[str, Any]) -> Verdict:
        """The verdict on one message (as built by the client or as stored by the collector)."""
        entry, unplanned = self._select(message)
        violations: list[Violation] = []
        if entry is not None:
            try:
                entry.fast(message)
            except Exception as exc:
                violations.extend(self._explain(entry, message, exc))
            else:
                if not self._common:
                    return entry.ok
        for common in self._common:
            try:
                common.fast(message)
            except Exception as exc:
                violations.extend(self._explain(common, message, exc))
        if not violations:
            if entry is not None:
                return entry.ok
            return _UNPLANNED if unplanned else _UNCOVERED
        return Verdict(None if entry is None else entry.rule, unplanned, tuple(violations))

    @staticmethod
    def _explain(entry: _CompiledRule, message: Mapping[str, Any], error: BaseException) -> list[Violation]:
        # The message as it will be sent: datetimes, UUIDs, Decimals and the like
        # become JSON strings and numbers. Only a failure that survives is real.
        try:
            instance: Any = json.loads(encode(message))
        except (EncodeError, ValueError):
            instance = message
        else:
            try:
                entry.fast(instance)
            except Exception as exc:
                error = exc
            else:
                return []
        return entry.explain(instance, error)


def _pick_version(versions: Sequence[_CompiledRule], message: Mapping[str, Any]) -> _CompiledRule:
    """The version the message asks for in ``context.protocols.event_version``, else the newest."""
    context = message.get("context")
    protocols = context.get("protocols") if isinstance(context, Mapping) else None
    wanted = protocols.get("event_version") if isinstance(protocols, Mapping) else None
    for entry in versions:
        if entry.rule.version == wanted:
            return entry
    return versions[0]
