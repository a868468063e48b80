"""Naming conventions for a plan: Object Action event names, one case for property names, Spec events."""

from __future__ import annotations

import difflib
import re
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, Optional

from segment_lite.plan.model import PlanError, Rule, TrackingPlan
from segment_lite.plan.spec_events import PRODUCT_PROPERTIES, SEMANTIC_EVENTS, SEMANTIC_PROPERTY_TYPES

__all__ = ["CASES", "CHECKS", "Finding", "LintConfig", "lint_plan"]

#: Every check, by the code its findings carry.
CHECKS = {
    "event-case": "event names are written in the configured case (Title Case by default)",
    "event-form": "event names are Object Action: an object, then a past-tense action ('Order Completed')",
    "property-case": "property (and trait) names share one case",
    "semantic-event": "an event that looks like one of the Spec's semantic events uses its exact name",
    "semantic-property": "a semantic event's properties use the Spec's names and types",
}

#: The cases a name can be checked against.
CASES = ("title", "sentence", "snake", "camel", "pascal", "any")
_PROPERTY_CASES = ("consistent", "snake", "camel", "pascal", "any")

# Short words Title Case leaves in lower case ("Product Added to Wishlist").
_MINOR_WORDS = frozenset(
    (
        "a",
        "an",
        "and",
        "as",
        "at",
        "but",
        "by",
        "for",
        "from",
        "in",
        "into",
        "of",
        "on",
        "or",
        "per",
        "the",
        "to",
        "via",
        "vs",
        "with",
    )
)
# Particles of phrasal verbs ("Signed Up"): a reordering would split them from their verb.
_PARTICLES = frozenset(["up", "in", "out", "on", "off", "down", "back", "over", "away"])
# Past tenses that do not end in -ed.
_IRREGULAR_PAST = frozenset(
    (
        "began",
        "begun",
        "bought",
        "brought",
        "built",
        "caught",
        "chose",
        "chosen",
        "cut",
        "dealt",
        "done",
        "drawn",
        "driven",
        "fell",
        "felt",
        "flown",
        "forgot",
        "forgotten",
        "found",
        "froze",
        "frozen",
        "gave",
        "given",
        "gone",
        "got",
        "gotten",
        "grown",
        "heard",
        "held",
        "hid",
        "hidden",
        "hit",
        "kept",
        "knew",
        "known",
        "laid",
        "led",
        "left",
        "lent",
        "lost",
        "made",
        "meant",
        "met",
        "paid",
        "put",
        "quit",
        "ran",
        "read",
        "reset",
        "rode",
        "said",
        "sat",
        "saw",
        "seen",
        "sent",
        "set",
        "shown",
        "shut",
        "sold",
        "spent",
        "split",
        "spoke",
        "spoken",
        "stood",
        "stole",
        "stolen",
        "struck",
        "sung",
        "swept",
        "taken",
        "taught",
        "thought",
        "threw",
        "thrown",
        "told",
        "took",
        "understood",
        "undone",
        "went",
        "withdrawn",
        "won",
        "woke",
        "woken",
        "wore",
        "worn",
        "wrote",
        "written",
    )
)


@dataclass(frozen=True)
class LintConfig:
    """Which conventions :func:`lint_plan` enforces.

    ``event_case``: one of ``title`` (default), ``sentence``, ``snake``, ``camel``,
    ``pascal``, ``any``. ``event_form``: ``object_action`` (default) or ``any``.
    ``property_case`` and ``trait_case``: ``consistent`` (default: the case most
    names use), ``snake``, ``camel``, ``pascal`` or ``any``. ``semantic_events``:
    compare with the Spec's semantic events. ``disable``: check codes to skip;
    ``ignore_events``: event names exempt from every check.
    """

    event_case: str = "title"
    event_form: str = "object_action"
    property_case: str = "consistent"
    trait_case: str = "consistent"
    semantic_events: bool = True
    disable: tuple[str, ...] = ()
    ignore_events: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name, allowed in (
            ("event_case", CASES),
            ("event_form", ("object_action", "any")),
            ("property_case", _PROPERTY_CASES),
            ("trait_case", _PROPERTY_CASES),
        ):
            value = getattr(self, name)
            if value not in allowed:
                raise PlanError(f"{name} must be one of {', '.join(allowed)}, got {value!r}", name)
        for code in self.disable:
            if code not in CHECKS:
                raise PlanError(f"unknown check {code!r}; the checks are {', '.join(CHECKS)}", "disable")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], source: Optional[str] = None) -> LintConfig:
        """A config from a parsed file (keys as the attribute names; dashes allowed)."""
        known = {f.name: f for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, value in data.items():
            name = str(key).replace("-", "_")
            if name not in known:
                raise PlanError(f"unknown lint option {key!r}; options: {', '.join(known)}", str(key), source)
            if name in ("disable", "ignore_events"):
                if isinstance(value, str) or not isinstance(value, list):
                    raise PlanError("must be a list", str(key), source)
                value = tuple(str(item) for item in value)
            elif name == "semantic_events":
                if not isinstance(value, bool):
                    raise PlanError("must be true or false", str(key), source)
            elif not isinstance(value, str):
                raise PlanError("must be a string", str(key), source)
            values[name] = value
        try:
            return cls(**values)
        except PlanError as exc:
            raise PlanError(exc.reason, exc.path, source) from None

    def but(self, **changes: Any) -> LintConfig:
        """A copy with some options changed."""
        return replace(self, **changes)


@dataclass(frozen=True)
class Finding:
    """One convention a plan breaks: where (``event`` and ``path``), which check, what to do."""

    code: str
    event: str
    message: str
    path: str = ""
    suggestion: Optional[str] = None

    def __str__(self) -> str:
        where = f"{self.event}: {self.path}" if self.path else self.event
        hint = f" (use {self.suggestion!r})" if self.suggestion else ""
        return f"{where}: {self.message}{hint} [{self.code}]"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "code": self.code,
            "event": self.event,
            "path": self.path,
            "message": self.message,
            "suggestion": self.suggestion,
        }


def lint_plan(plan: TrackingPlan, config: Optional[LintConfig] = None) -> list[Finding]:
    """Every convention ``plan`` breaks under ``config``, in plan order."""
    from segment_lite.plan.files import load_plan

    plan = load_plan(plan)  # a plan built by hand is checked against the limits first
    config = config or LintConfig()
    findings: list[Finding] = []
    enabled = [code for code in CHECKS if code not in config.disable]
    for rule in plan.rules:
        if rule.type != "TRACK" or rule.key is None or rule.key in config.ignore_events:
            continue
        findings.extend(_event_name_findings(rule.key, config, enabled))
        if "semantic-property" in enabled and config.semantic_events and rule.key in SEMANTIC_EVENTS:
            findings.extend(_semantic_property_findings(rule))
    if "property-case" in enabled:
        for payload, wanted in (("properties", config.property_case), ("traits", config.trait_case)):
            findings.extend(_case_findings(plan, payload, wanted, config))
    return findings


# -- event names ----------------------------------------------------------------------


def _words(name: str) -> list[str]:
    return [word for word in re.split(r"[\s_\-]+|(?<=[a-z0-9])(?=[A-Z])", name) if word]


def _is_past_tense(word: str) -> bool:
    lower = word.lower()
    return (len(lower) > 3 and lower.endswith("ed")) or lower in _IRREGULAR_PAST


def _in_case(name: str, case: str) -> bool:
    words = name.split(" ")
    if case == "title":
        return (
            all(
                word[:1].isupper() or word[:1].isdigit() or (index > 0 and word in _MINOR_WORDS)
                for index, word in enumerate(words)
            )
            and "" not in words
        )
    if case == "sentence":
        return name[:1].isupper() and all(w == w.lower() or w.isupper() for w in words[1:])
    return _fits(_case_of(name), case)


def _to_case(words: list[str], case: str) -> str:
    lower = [word.lower() for word in words]
    if case == "title":
        last = len(lower) - 1
        return " ".join(
            word if 0 < index < last and word in _MINOR_WORDS else word.capitalize()
            for index, word in enumerate(lower)
        )
    if case == "sentence":
        return " ".join(lower).capitalize()
    if case == "snake":
        return "_".join(lower)
    if case == "camel":
        return lower[0] + "".join(word.capitalize() for word in lower[1:]) if lower else ""
    if case == "pascal":
        return "".join(word.capitalize() for word in lower)
    return " ".join(words)


def _event_name_findings(name: str, config: LintConfig, enabled: list[str]) -> Iterator[Finding]:
    if config.semantic_events and name in SEMANTIC_EVENTS:
        return  # the Spec's own names are right by definition ("Signed Up", "Unsubscribed")
    words = _words(name)
    if config.semantic_events and "semantic-event" in enabled:
        match = _semantic_match(words)
        if match is not None:
            yield Finding(
                "semantic-event",
                name,
                f"looks like the Spec's semantic event {match!r}; tools that understand the Spec "
                "only recognise the exact name",
                suggestion=match,
            )
            return
    case = config.event_case
    if "event-case" in enabled and case != "any" and not _in_case(name, case):
        yield Finding("event-case", name, f"event names are {case} case", suggestion=_to_case(words, case))
    if "event-form" in enabled and config.event_form == "object_action":
        form = _object_action_problem(words)
        if form is not None:
            message, reordered = form
            suggestion = _to_case(reordered, case if case != "any" else "title") if reordered else None
            yield Finding("event-form", name, message, suggestion=suggestion)


# The Spec's event names without spaces, in lower case ("ordercompleted"), for close matches.
_SEMANTIC_BY_SQUASHED = {name.replace(" ", "").lower(): name for name in SEMANTIC_EVENTS}


def _semantic_match(words: list[str]) -> Optional[str]:
    squashed = "".join(word.lower() for word in words)
    bag = sorted(word.lower() for word in words)
    for spec_name in SEMANTIC_EVENTS:
        spec_words = [word.lower() for word in spec_name.split()]
        if squashed == "".join(spec_words) or bag == sorted(spec_words):
            return spec_name
    close = difflib.get_close_matches(squashed, list(_SEMANTIC_BY_SQUASHED), 1, 0.9)
    return _SEMANTIC_BY_SQUASHED[close[0]] if close else None


def _object_action_problem(words: list[str]) -> Optional[tuple[str, Optional[list[str]]]]:
    if len(words) < 2:
        return ("event names are Object Action, e.g. 'Order Completed': an object, then what happened", None)
    if any(_is_past_tense(word) for word in words[1:]):
        return None
    if _is_past_tense(words[0]):
        reordered = None if words[1].lower() in _PARTICLES else [*words[1:], words[0]]
        return ("the action comes after the object (Object Action)", reordered)
    return ("event names end in a past-tense action (Object Action, e.g. 'Order Completed')", None)


# -- property names ---------------------------------------------------------------------


def _case_of(name: str) -> str:
    if re.fullmatch(r"[a-z][a-z0-9]*", name):
        return "lower"  # one lower-case word: fits snake_case and camelCase alike
    if re.fullmatch(r"[a-z][a-z0-9]*(_[a-z0-9]+)+", name):
        return "snake"
    if re.fullmatch(r"[a-z][a-z0-9]*([A-Z][a-z0-9]*)+", name):
        return "camel"
    if re.fullmatch(r"([A-Z][a-z0-9]*)+", name):
        return "pascal"
    if re.fullmatch(r"[a-z][a-z0-9]*(-[a-z0-9]+)+", name):
        return "kebab"
    return "other"


def _fits(case: str, wanted: str) -> bool:
    """Whether a name written in ``case`` (as :func:`_case_of` says) is in ``wanted`` case."""
    return case == wanted or (case == "lower" and wanted in ("snake", "camel"))


def _payload_names(rule: Rule, payload: str) -> Iterator[tuple[str, str]]:
    """(path, name) of every property the rule declares under ``payload``, nested ones too."""
    if rule.payload_field != payload:
        return
    schema = rule.payload_schema()
    if schema is not None:
        yield from _walk(schema, payload)


def _walk(schema: Mapping[str, Any], path: str) -> Iterator[tuple[str, str]]:
    properties = schema.get("properties")
    if isinstance(properties, Mapping):
        for name, child in properties.items():
            yield f"{path}.{name}", str(name)
            if isinstance(child, Mapping):
                yield from _walk(child, f"{path}.{name}")
    items = schema.get("items")
    if isinstance(items, Mapping):
        yield from _walk(items, f"{path}[]")


def _rule_name(rule: Rule) -> str:
    return rule.key if rule.type == "TRACK" and rule.key else rule.label


_SINGULAR = {"properties": "property", "traits": "trait"}


def _case_findings(plan: TrackingPlan, payload: str, wanted: str, config: LintConfig) -> Iterator[Finding]:
    if wanted == "any":
        return
    names = [
        (rule, path, name)
        for rule in plan.rules
        if rule.key not in config.ignore_events
        for path, name in _payload_names(rule, payload)
    ]
    if wanted == "consistent":
        counts = Counter(_case_of(name) for _, _, name in names)
        for neutral in ("lower", "other"):
            counts.pop(neutral, None)
        if not counts:
            return
        top = counts.most_common()
        wanted = top[0][0]
        if len(top) > 1 and top[1][1] == top[0][1]:
            wanted = (
                "snake" if "snake" in dict(top) else wanted
            )  # a tie: the Spec's properties are snake_case
        described = f"most {_SINGULAR[payload]} names in this plan are {wanted} case"
    else:
        described = f"{_SINGULAR[payload]} names are {wanted} case"
    for rule, path, name in names:
        if _fits(_case_of(name), wanted):
            continue
        yield Finding(
            "property-case",
            _rule_name(rule),
            f"{name!r} is not {wanted} case ({described})",
            path=path,
            suggestion=_to_case(_words(name), wanted) if wanted != "kebab" else None,
        )


# -- semantic event properties ---------------------------------------------------------------


def _squash(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _semantic_property_findings(rule: Rule) -> Iterator[Finding]:
    event = str(rule.key)
    schema = rule.payload_schema()
    if schema is None:
        return
    expected = SEMANTIC_EVENTS[event]
    yield from _compare_properties(event, schema, expected, "properties")
    products = (
        schema.get("properties", {}).get("products")
        if isinstance(schema.get("properties"), Mapping)
        else None
    )
    if isinstance(products, Mapping) and isinstance(products.get("items"), Mapping):
        yield from _compare_properties(event, products["items"], PRODUCT_PROPERTIES, "properties.products[]")


def _compare_properties(
    event: str, schema: Mapping[str, Any], expected: tuple[str, ...], path: str
) -> Iterator[Finding]:
    properties = schema.get("properties")
    if not isinstance(properties, Mapping):
        return
    by_squash = {_squash(name): name for name in expected}
    for name, child in properties.items():
        name = str(name)
        if name in expected:
            wanted_type = SEMANTIC_PROPERTY_TYPES.get(name)
            declared = child.get("type") if isinstance(child, Mapping) else None
            declared_types = declared if isinstance(declared, list) else [declared] if declared else []
            if wanted_type and declared_types and not _type_fits(wanted_type, declared_types):
                yield Finding(
                    "semantic-property",
                    event,
                    f"the Spec gives {name!r} the type {wanted_type}, "
                    f"the plan says {'/'.join(declared_types)}",
                    path=f"{path}.{name}",
                )
            continue
        spec_name = by_squash.get(_squash(name))
        if spec_name is None and _squash(name).endswith("id"):
            spec_name = by_squash.get(_squash(name)[:-2] + "id")
        if spec_name is not None:
            yield Finding(
                "semantic-property",
                event,
                f"{name!r} is the Spec's {spec_name!r} under another name",
                path=f"{path}.{name}",
                suggestion=spec_name,
            )


def _type_fits(wanted: str, declared: list[str]) -> bool:
    real = [kind for kind in declared if kind != "null"]
    if wanted == "number":
        return all(kind in ("number", "integer") for kind in real)
    return all(kind == wanted for kind in real)
