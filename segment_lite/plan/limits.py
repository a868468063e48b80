"""The bounds a plan must keep (size, depth, enum length, patterns, references), checked before it is used.

A plan is data from outside (a file in a repository, an export): each bound
keeps one hostile or mistaken plan from exhausting memory, the stack or the
CPU in the tools that read it, and names the place that broke it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Callable, Optional
from urllib.parse import urldefrag, urljoin

from segment_lite.plan.model import PlanError, Rule, format_path
from segment_lite.plan.patterns import pattern_problem

__all__ = [
    "MAX_DEPTH",
    "MAX_ENUM_VALUES",
    "MAX_PLAN_BYTES",
    "MAX_PLAN_VALUES",
    "MAX_RULE_VALUES",
    "check_document",
    "check_rule",
    "check_schema",
    "measure",
    "short_path",
]

#: The largest plan file read.
MAX_PLAN_BYTES = 32 * 1024 * 1024
#: How deep mappings and lists may nest in a plan (YAML aliases followed).
MAX_DEPTH = 64
#: How many values (mappings, lists, scalars and keys) a plan may hold, each YAML alias counted
#: as a copy of what it points to.
MAX_PLAN_VALUES = 1_000_000
#: How many values one rule's schema may hold: its compiled validator grows with it
#: (20,000 values, 2,200 properties with an enum each, take 2 s and 200 MB to compile).
MAX_RULE_VALUES = 20_000
#: How many values one ``enum`` may list.
MAX_ENUM_VALUES = 5_000

Children = Callable[[Any], Optional[Iterable[tuple[Any, Any]]]]


def short_path(parts: Sequence[Any]) -> str:
    """A path of at most a dozen parts: the first and the last ones around an ellipsis."""
    if len(parts) > 12:
        head = format_path(parts[:6])
        tail = format_path(parts[-4:])
        return f"{head}…({len(parts) - 10} more)…{tail if tail.startswith('[') else '.' + tail}"
    return format_path(parts)


def python_children(value: Any) -> Optional[Iterable[tuple[Any, Any]]]:
    """(label, child) of a mapping (its keys count as values too) or a list; None for a scalar."""
    if isinstance(value, Mapping):
        return [pair for key, item in value.items() for pair in (((None, key)), (key, item))]
    if isinstance(value, (list, tuple)):
        return list(enumerate(value))
    return None


def measure(
    root: Any,
    children: Children = python_children,
    line_of: Callable[[Any], Optional[int]] = lambda value: None,
    source: Optional[str] = None,
    prefix: Sequence[Any] = (),
) -> int:
    """The number of values in ``root`` with shared parts counted each time they occur.

    Raises ``PlanError`` at a value that contains itself or nests deeper than
    :data:`MAX_DEPTH`. Shared parts (YAML aliases) are measured once, so the walk
    costs what the document holds, not what it expands to.
    """
    known: dict[int, tuple[int, int]] = {}  # id -> (values, height)
    active: set[int] = set()

    def visit(value: Any, path: list[Any]) -> tuple[int, int]:
        items = children(value)
        if items is None:
            return 1, 0
        key = id(value)
        if key in active:
            raise PlanError(
                "contains itself (a recursive alias or reference)", short_path(path), source, line_of(value)
            )
        found = known.get(key)
        if found is None:
            if len(path) > MAX_DEPTH:
                raise PlanError(
                    f"nests deeper than {MAX_DEPTH} levels", short_path(path), source, line_of(value)
                )
            active.add(key)
            size, height = 1, 0
            for label, child in items:
                child_size, child_height = visit(child, path if label is None else [*path, label])
                size += child_size
                height = max(height, child_height + 1)
            active.discard(key)
            found = known[key] = (size, height)
        if len(path) + found[1] > MAX_DEPTH:
            raise PlanError(
                f"nests deeper than {MAX_DEPTH} levels (through a YAML alias)",
                short_path(path),
                source,
                line_of(value),
            )
        return found

    return visit(root, list(prefix))[0]


def check_document(
    root: Any,
    children: Children = python_children,
    line_of: Callable[[Any], Optional[int]] = lambda value: None,
    source: Optional[str] = None,
) -> None:
    """Refuse a document that contains itself, nests too deep or holds more than :data:`MAX_PLAN_VALUES`."""
    total = measure(root, children, line_of, source)
    if total <= MAX_PLAN_VALUES:
        return
    # Name the innermost part that alone is too big: with aliases, the one they repeat.
    path: list[Any] = []
    value = root
    while True:
        for label, child in children(value) or ():
            if children(child) is not None and measure(child, children) > MAX_PLAN_VALUES:
                path, value = (path if label is None else [*path, label]), child
                break
        else:
            break
    size = measure(value, children)
    raise PlanError(
        f"holds {size:,} values counting each YAML alias as a copy, more than the limit of "
        f"{MAX_PLAN_VALUES:,}",
        short_path(path),
        source,
        line_of(value),
    )


# -- one rule's schema ---------------------------------------------------------------------

# Keywords whose value is a schema, a list of schemas or a mapping of names to schemas.
_ONE_SCHEMA = (
    "additionalItems",
    "additionalProperties",
    "contains",
    "propertyNames",
    "not",
    "if",
    "then",
    "else",
)
_SCHEMA_LISTS = ("allOf", "anyOf", "oneOf")
_SCHEMA_MAPS = ("properties", "patternProperties", "definitions", "dependencies")


def check_rule(
    rule: Rule, source: Optional[str], ref_bases: Sequence[str] = ()
) -> tuple[set[str], dict[str, str]]:
    """Check one rule's schema against the limits; return its patterns and its remote documents."""
    return check_schema(rule.json_schema, f"{rule.label}: jsonSchema", source, ref_bases)


def check_schema(
    schema: Any, where: str, source: Optional[str], ref_bases: Sequence[str] = ()
) -> tuple[set[str], dict[str, str]]:
    """Check a schema against the limits; return its patterns and the remote documents it refers to.

    The documents are a mapping of each address to the path of a ``$ref`` that names it.

    ``where`` is the start of the paths in errors (``TRACK "X" v1: jsonSchema``). A
    ``$ref`` must point inside the plan, or start with one of ``ref_bases``.
    """
    size = measure(schema, source=source, prefix=[where])  # first: the walk below needs a bounded depth
    if not isinstance(schema, Mapping):
        return set(), {}
    patterns: set[str] = set()
    remote: dict[str, str] = {}
    ids = _ids(schema)

    def visit(node: Any, path: list[Any], scope: str) -> None:
        if not isinstance(node, Mapping):
            return
        here = node.get("$id")
        if isinstance(here, str):
            scope = urljoin(scope, here)
        enum = node.get("enum")
        if isinstance(enum, list) and len(enum) > MAX_ENUM_VALUES:
            raise PlanError(
                f"lists {len(enum):,} values, more than the limit of {MAX_ENUM_VALUES:,}",
                short_path([*path, "enum"]),
                source,
            )
        pattern = node.get("pattern")
        if isinstance(pattern, str):
            _check_pattern(pattern, [*path, "pattern"], source)
            patterns.add(pattern)
        named = node.get("patternProperties")
        if isinstance(named, Mapping):
            for key in named:
                if isinstance(key, str):
                    _check_pattern(key, [*path, "patternProperties", key], source)
                    patterns.add(key)
        ref = node.get("$ref")
        if isinstance(ref, str):
            target = _remote_target(ref, scope, ids)
            if target is not None:
                if not any(target.startswith(base) for base in ref_bases):
                    allowed = f"allowed: {', '.join(ref_bases)}" if ref_bases else "ref_bases allows none"
                    raise PlanError(
                        f"$ref {ref!r} points outside the plan, to {target}; only references inside "
                        f"the plan are resolved ({allowed})",
                        short_path([*path, "$ref"]),
                        source,
                    )
                remote.setdefault(target, short_path([*path, "$ref"]))
        for key in _ONE_SCHEMA:
            visit(node.get(key), [*path, key], scope)
        items = node.get("items")
        if isinstance(items, list):
            for index, item in enumerate(items):
                visit(item, [*path, "items", index], scope)
        else:
            visit(items, [*path, "items"], scope)
        for key in _SCHEMA_LISTS:
            group = node.get(key)
            if isinstance(group, list):
                for index, item in enumerate(group):
                    visit(item, [*path, key, index], scope)
        for key in _SCHEMA_MAPS:
            group = node.get(key)
            if isinstance(group, Mapping):
                for name, item in group.items():
                    visit(item, [*path, key, name], scope)

    root_id = schema.get("$id")
    visit(schema, [where], root_id if isinstance(root_id, str) else "")
    if size > MAX_RULE_VALUES:  # after the walk, so an over-long enum is named as such
        raise PlanError(
            f"holds {size:,} values, more than the limit of {MAX_RULE_VALUES:,} for one rule's schema",
            where,
            source,
        )
    return patterns, remote


def _check_pattern(pattern: str, path: list[Any], source: Optional[str]) -> None:
    problem = pattern_problem(pattern)
    if problem is not None:
        raise PlanError(f"the pattern {pattern[:80]!r} {problem}", short_path(path), source)


def _ids(schema: Any) -> set[str]:
    """Every ``$id`` in a schema, as a validator registers them (references to them stay inside)."""
    found: set[str] = set()
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, Mapping):
            here = node.get("$id")
            if isinstance(here, str):
                found.add(urldefrag(here).url)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


def _remote_target(ref: str, scope: str, ids: set[str]) -> Optional[str]:
    """The document a ``$ref`` needs from outside the plan, or None when it points inside."""
    document = urldefrag(urljoin(scope, ref)).url
    if not document or document in ids:
        return None
    return document
