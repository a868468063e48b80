"""Generate a typed Python module from a plan: one function per event, TypedDict traits, docstrings.

The output depends on the plan alone (functions sorted by name, no dates, no
paths), so regenerating from the same plan gives the same bytes. It passes
``mypy --strict`` and needs only segment_lite at runtime (and the ``[plan]``
extra when validation is switched on with ``configure(validate=True)``).
"""

from __future__ import annotations

import ast
import keyword
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Optional

from segment_lite.plan.model import Rule, TrackingPlan

__all__ = ["generate_module"]

# Parameters every generated function has besides the plan's fields.
_SHARED_PARAMETERS = (
    "user_id",
    "anonymous_id",
    "context",
    "timestamp",
    "integrations",
    "message_id",
    "client",
)
# Module-level names of the generated code that a function or a TypedDict must not shadow.
_HEADER_NAMES = frozenset(
    {
        "PLAN",
        "TYPE_CHECKING",
        "Any",
        "Literal",
        "Mapping",
        "Optional",
        "PlanValidator",
        "PlanViolationError",
        "Result",
        "Sequence",
        "Timestamp",
        "TypedDict",
        "Union",
        "configure",
        "datetime",
        "segment_lite",
    }
)


@dataclass
class _Field:
    """One property (or trait) of a rule, as a parameter or a TypedDict key."""

    name: str  # as in the plan
    parameter: str  # a Python identifier
    annotation: str
    required: bool
    description: Optional[str]


class _Writer:
    """Collects the module's parts: TypedDicts (in dependency order), functions and names."""

    def __init__(self) -> None:
        self.typed_dicts: list[str] = []
        self.functions: list[tuple[str, str]] = []
        self.exports: list[str] = []
        self._type_names: set[str] = set()
        self._function_names: set[str] = set(_HEADER_NAMES)
        self.uses_literal = False
        self.uses_sequence = False
        self.rule_label = ""  # the rule being generated, for the docstrings of its TypedDicts

    def type_name(self, wanted: str) -> str:
        name = _pascal(wanted) or "Payload"
        candidate, counter = name, 2
        while candidate in self._type_names or candidate in _HEADER_NAMES:
            candidate, counter = f"{name}{counter}", counter + 1
        self._type_names.add(candidate)
        return candidate

    def function_name(self, wanted: str) -> str:
        name = _snake(wanted) or "event"
        if name[0].isdigit():
            name = f"event_{name}"
        if keyword.iskeyword(name):
            name += "_"
        candidate, counter = name, 2
        while candidate in self._function_names:
            candidate, counter = f"{name}_{counter}", counter + 1
        self._function_names.add(candidate)
        return candidate


def generate_module(plan: TrackingPlan, source_name: Optional[str] = None) -> str:
    """The source of a typed module for ``plan``; ``source_name`` is mentioned in its docstring."""
    from segment_lite.plan.files import load_plan

    plan = load_plan(plan)  # a plan built by hand is checked against the limits first
    writer = _Writer()
    # identify, group, page and screen claim their names before an event could; of two
    # events with the same function name, the shorter name ("Order Completed", not
    # "Order  Completed!") gets it plain and the other a number.
    rules = sorted(
        (rule for rule in _newest(plan.rules) if rule.type != "COMMON"),
        key=lambda rule: (
            _FUNCTION_ORDER[rule.type],
            rule.key is not None,
            _snake(rule.key or ""),
            len(rule.key or ""),
            rule.key or "",
        ),
    )
    for rule in rules:
        writer.rule_label = rule.label
        if rule.type == "TRACK":
            _track_function(writer, rule)
        elif rule.type in ("IDENTIFY", "GROUP"):
            _traits_function(writer, rule)
        else:
            _view_function(writer, rule)
    writer.functions.sort(key=lambda item: item[0])
    return _assemble(plan, writer, source_name)


_FUNCTION_ORDER = {"IDENTIFY": 0, "GROUP": 1, "PAGE": 2, "SCREEN": 3, "TRACK": 4}


def _newest(rules: tuple[Rule, ...]) -> list[Rule]:
    """One rule per name: the newest version (what the client checks a message without a version against)."""
    newest: dict[tuple[str, Optional[str]], Rule] = {}
    for rule in rules:
        known = newest.get((rule.type, rule.key))
        if known is None or rule.version > known.version:
            newest[(rule.type, rule.key)] = rule
    return list(newest.values())


# -- names -----------------------------------------------------------------------------


def _words(text: str) -> list[str]:
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", text)
    return [word for word in re.split(r"[^A-Za-z0-9]+", spaced) if word]


def _snake(text: str) -> str:
    return "_".join(word.lower() for word in _words(text))


def _pascal(text: str) -> str:
    name = "".join(word[:1].upper() + word[1:] for word in _words(text))
    return f"T{name}" if name[:1].isdigit() else name


def _string(text: str) -> str:
    """A Python string literal of ``text``: ``repr`` escapes whatever a literal cannot hold as is."""
    return repr(str(text))


# -- types -------------------------------------------------------------------------------


def _annotation(writer: _Writer, schema: Any, type_name: str, where: str) -> str:
    """The Python type of a value matching ``schema``; nested objects become TypedDicts."""
    if not isinstance(schema, Mapping):
        return "Any"
    nullable = False
    for choice_key in ("enum", "const"):
        if choice_key in schema:
            choices = schema[choice_key] if choice_key == "enum" else [schema[choice_key]]
            if isinstance(choices, list):
                nullable = None in choices
                literal = [c for c in choices if c is not None]
                if literal and all(
                    isinstance(c, str) or (type(c) is int) or isinstance(c, bool) for c in literal
                ):
                    writer.uses_literal = True
                    inner = (
                        "Literal["
                        + ", ".join(_string(c) if isinstance(c, str) else repr(c) for c in literal)
                        + "]"
                    )
                    return f"Optional[{inner}]" if nullable else inner
    kinds = schema.get("type")
    kind_list = kinds if isinstance(kinds, list) else [kinds] if isinstance(kinds, str) else []
    if not kind_list:
        return "Any"
    parts: list[str] = []
    for kind in kind_list:
        if kind == "null":
            nullable = True
            continue
        parts.append(_single(writer, kind, schema, type_name, where))
    unique = list(dict.fromkeys(parts))
    if not unique:
        return "None"
    inner = unique[0] if len(unique) == 1 else "Union[" + ", ".join(unique) + "]"
    return f"Optional[{inner}]" if nullable else inner


def _single(writer: _Writer, kind: str, schema: Mapping[str, Any], type_name: str, where: str) -> str:
    if kind == "string":
        fmt = schema.get("format")
        if fmt == "date-time":
            return "Union[str, datetime.datetime]"
        if fmt == "date":
            return "Union[str, datetime.date]"
        return "str"
    if kind == "integer":
        return "int"
    if kind == "number":
        return "float"
    if kind == "boolean":
        return "bool"
    if kind == "array":
        writer.uses_sequence = True
        item = _annotation(writer, schema.get("items"), type_name + "Item", f"{where}[]")
        return f"Sequence[{item}]"
    if kind == "object":
        properties = schema.get("properties")
        if isinstance(properties, Mapping) and properties:
            what = f"An item of {where[:-2]}" if where.endswith("[]") else f"The object at {where}"
            return _typed_dict(writer, schema, type_name, f"{what} ({writer.rule_label}).", where)
        return "Mapping[str, Any]"
    return "Any"


def _fields(writer: _Writer, schema: Optional[Mapping[str, Any]], type_name: str, where: str) -> list[_Field]:
    if schema is None:
        return []
    properties = schema.get("properties")
    if not isinstance(properties, Mapping):
        return []
    required = schema.get("required")
    required_names = set(required) if isinstance(required, list) else set()
    result = []
    for name, child in properties.items():
        description = child.get("description") if isinstance(child, Mapping) else None
        result.append(
            _Field(
                name=str(name),
                parameter="",
                annotation=_annotation(writer, child, type_name + _pascal(str(name)), f"{where}.{name}"),
                required=name in required_names,
                description=description if isinstance(description, str) else None,
            )
        )
    return result


def _typed_dict(writer: _Writer, schema: Mapping[str, Any], wanted: str, doc: str, where: str) -> str:
    """Define a TypedDict for an object schema and return its name.

    Keys need not be identifiers, so the required and the optional keys are two
    functional-syntax TypedDicts, and the public class inherits both.
    """
    name = writer.type_name(wanted)
    fields = _fields(writer, schema, name, where)
    required = [f for f in fields if f.required]
    optional = [f for f in fields if not f.required]
    lines: list[str] = []
    bases = []
    for part, suffix, total in ((required, "Required", True), (optional, "Optional", False)):
        if not part:
            continue
        base = f"_{name}{suffix}"
        bases.append(base)
        entries = "".join(f"        {_string(f.name)}: {f.annotation},\n" for f in part)
        total_text = "" if total else ",\n    total=False"
        lines.append(f"{base} = TypedDict(\n    {_string(base)},\n    {{\n{entries}    }}{total_text},\n)")
    if not bases:
        bases.append(f"_{name}Empty")
        lines.append(f"_{name}Empty = TypedDict({_string('_' + name + 'Empty')}, {{}}, total=False)")
    body = _docstring(_typed_dict_doc(doc, fields), "    ")
    lines.append(f"class {name}({', '.join(bases)}):\n{body}")
    writer.typed_dicts.extend(lines)
    writer.exports.append(name)
    return name


def _typed_dict_doc(doc: str, fields: list[_Field]) -> str:
    text = doc
    described = [f for f in fields if f.description]
    if described:
        text += "\n\nKeys:\n" + "\n".join(f"    {f.name}: {_one_line(f.description)}" for f in described)
    return text


# -- functions ---------------------------------------------------------------------------


_SHARED_ARGUMENTS = ["anonymous_id", "context", "timestamp", "integrations", "message_id", "client"]


def _return_call(helper: str, arguments: list[str]) -> str:
    """``return helper(arguments)``, the arguments on their own line(s) as a formatter would lay them out."""
    joined = ", ".join(arguments)
    if len(joined) <= 80:
        return f"    return {helper}(\n        {joined}\n    )\n"
    return f"    return {helper}(\n" + "".join(f"        {argument},\n" for argument in arguments) + "    )\n"


def _add_function(writer: _Writer, name: str, signature: str, doc: str, body: str) -> None:
    writer.functions.append((name, f"def {name}(\n{signature}) -> Result:\n{_docstring(doc, '    ')}{body}"))
    writer.exports.append(name)


def _track_function(writer: _Writer, rule: Rule) -> None:
    event = str(rule.key)
    name = writer.function_name(event)
    fields = _fields(writer, rule.payload_schema(), _pascal(event), "properties")
    _name_parameters(fields)
    intro = rule.description or f'Track "{event}".'
    doc = _function_doc(intro, f'Sends the track event "{event}" ({rule.label}).', fields)
    body = _payload_body(_PAYLOAD_VARIABLE, fields)
    body += _return_call("_track", [_string(event), _PAYLOAD_VARIABLE, "user_id", *_SHARED_ARGUMENTS])
    _add_function(writer, name, _signature(fields, leading=[]), doc, body)


def _traits_function(writer: _Writer, rule: Rule) -> None:
    kind = rule.type.lower()
    name = writer.function_name(kind)
    schema = rule.payload_schema()
    traits_type = _typed_dict(
        writer, schema or {}, f"{kind}Traits", f"The traits of {kind} calls ({rule.label}).", "traits"
    )
    required = bool(schema and isinstance(schema.get("required"), list) and schema.get("required"))
    if kind == "identify":
        intro = rule.description or "Identify a user and record their traits."
        sends = f"Sends an identify call ({rule.label})."
        leading = []
        arguments = ["user_id", "traits"]
    else:
        intro = rule.description or "Associate a user with a group and record the group's traits."
        sends = f"Sends a group call ({rule.label})."
        leading = ["group_id: Union[str, int]"]
        arguments = ["user_id", "group_id", "traits"]
    leading.append(f"traits: {traits_type}" if required else f"traits: Optional[{traits_type}] = None")
    body = _return_call(f"_{kind}", [*arguments, *_SHARED_ARGUMENTS])
    _add_function(writer, name, _signature([], leading=leading), f"{intro}\n\n{sends}", body)


def _view_function(writer: _Writer, rule: Rule) -> None:
    kind = rule.type.lower()
    name = writer.function_name(f"{rule.key} {kind}" if rule.key is not None else kind)
    fields = _fields(writer, rule.payload_schema(), _pascal(f"{rule.key or ''} {kind}"), "properties")
    taken = set(_SHARED_PARAMETERS) | {"category"} | ({"name"} if rule.key is None else set())
    _name_parameters(fields, taken)
    leading = ["category: Optional[str] = None"]
    if rule.key is None:
        leading.insert(0, "name: Optional[str] = None")
        view_name = "name"
        intro = rule.description or f"Record a {kind} view."
    else:
        view_name = _string(rule.key)
        intro = rule.description or f'Record a view of the {kind} "{rule.key}".'
    doc = _function_doc(intro, f"Sends a {kind} call ({rule.label}).", fields)
    body = _payload_body(_PAYLOAD_VARIABLE, fields)
    arguments = [_string(kind), "user_id", "category", view_name, _PAYLOAD_VARIABLE, *_SHARED_ARGUMENTS]
    body += _return_call("_view", arguments)
    _add_function(writer, name, _signature(fields, leading=leading), doc, body)


def _name_parameters(fields: list[_Field], taken: Optional[set[str]] = None) -> None:
    """Give each field a parameter name: a Python identifier, no keyword, none of ``taken``."""
    taken = set(taken or _SHARED_PARAMETERS)
    for field_ in fields:
        parameter = _snake(field_.name) or "value"
        if parameter[0].isdigit():
            parameter = f"p_{parameter}"
        while keyword.iskeyword(parameter) or parameter in taken:
            parameter += "_"
        taken.add(parameter)
        field_.parameter = parameter


def _signature(fields: list[_Field], leading: list[str]) -> str:
    parameters = ["user_id: Union[str, int, None] = None", "*", "anonymous_id: Union[str, int, None] = None"]
    parameters += leading
    parameters += [f"{f.parameter}: {f.annotation}" for f in fields if f.required]
    parameters += [f"{f.parameter}: {_optional(f.annotation)} = None" for f in fields if not f.required]
    parameters += [
        "context: Optional[Mapping[str, Any]] = None",
        "timestamp: Timestamp = None",
        "integrations: Optional[Mapping[str, Any]] = None",
        "message_id: Optional[str] = None",
        "client: Optional[segment_lite.Client] = None",
    ]
    return "".join(f"    {p},\n" for p in parameters)


def _optional(annotation: str) -> str:
    if annotation.startswith("Optional[") or annotation in ("Any", "None"):
        return annotation
    return f"Optional[{annotation}]"


# The local dict a generated function fills: a parameter name never starts with "_", so none shadows it.
_PAYLOAD_VARIABLE = "_properties"


def _payload_body(variable: str, fields: list[_Field]) -> str:
    required = [f for f in fields if f.required]
    optional = [f for f in fields if not f.required]
    if required:
        entries = "".join(f"        {_string(f.name)}: {f.parameter},\n" for f in required)
        body = f"    {variable}: dict[str, Any] = {{\n{entries}    }}\n"
    else:
        body = f"    {variable}: dict[str, Any] = {{}}\n"
    for f in optional:
        body += f"    if {f.parameter} is not None:\n        {variable}[{_string(f.name)}] = {f.parameter}\n"
    return body


def _function_doc(intro: str, sends: str, fields: list[_Field]) -> str:
    text = f"{intro}\n\n{sends}"
    if fields:
        lines = []
        for f in sorted(fields, key=lambda f: not f.required):  # the signature's order
            what = _one_line(f.description) if f.description else ("Required." if f.required else "Optional.")
            renamed = f" (sent as {f.name!r})" if f.parameter != f.name else ""
            lines.append(f"    {f.parameter}: {what}{renamed}")
        text += "\n\nArgs:\n" + "\n".join(lines)
    return text


def _one_line(text: Optional[str]) -> str:
    return " ".join((text or "").split())


def _docstring(text: str, indent: str) -> str:
    """A docstring literal of ``text``, its lines indented; ``ast`` reads back exactly ``text``'s lines.

    Plan text reaches it (names, descriptions), so every character a literal could
    misread is escaped: backslashes, every quote, and anything not printable but
    the newline (NUL, a carriage return, a lone surrogate).
    """
    lines = [_escape_docstring_line(line) for line in text.split("\n")]
    if len(lines) == 1:
        literal = f'"""{lines[0]}"""'
    else:
        body = "\n".join(f"{indent}{line}" if line else "" for line in lines[1:])
        literal = f'"""{lines[0]}\n{body}\n{indent}"""'
    read_back = ast.literal_eval(literal).split("\n")[: len(lines)]
    if [line.strip() for line in read_back] != [line.strip() for line in text.split("\n")]:
        raise AssertionError(f"docstring does not read back: {text!r}")  # a bug here, never plan input
    return f"{indent}{literal}\n"


def _escape_docstring_line(line: str) -> str:
    out = []
    for char in line:
        if char == "\\":
            out.append("\\\\")
        elif char == '"':
            out.append('\\"')
        elif char.isprintable():
            out.append(char)
        else:
            out.append(repr(char)[1:-1])  # \x00, \r, \t, \u2028, \udc80
    return "".join(out)


# -- the module -----------------------------------------------------------------------------


def _literal(value: Any, indent: str = "") -> str:
    """``value`` (JSON data) as a Python literal: on one line when short, else one item per line."""
    flat = _flat_literal(value)
    if len(indent) + len(flat) <= 80 or not isinstance(value, (Mapping, list, tuple)) or not value:
        return flat  # short, a scalar or empty: one line whatever its length
    inner = indent + "    "
    if isinstance(value, Mapping):
        items = "".join(f"{inner}{_string(str(k))}: {_literal(v, inner)},\n" for k, v in value.items())
        return "{\n" + items + indent + "}"
    items = "".join(f"{inner}{_literal(v, inner)},\n" for v in value)
    return "[\n" + items + indent + "]"


def _flat_literal(value: Any) -> str:
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_string(str(k))}: {_flat_literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_flat_literal(v) for v in value) + "]"
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, float) and not math.isfinite(value):
        return f"float({str(value)!r})"  # nan and inf have no literal
    if value is None or isinstance(value, (bool, int, float)):
        return repr(value)
    return _string(str(value))


_RUNTIME = '''
Result = tuple[bool, Optional[dict[str, Any]]]
Timestamp = Union[datetime.datetime, datetime.date, str, None]

_client: Optional[segment_lite.Client] = None
_validator: Optional[PlanValidator] = None


def configure(client: Optional[segment_lite.Client] = None, *, validate: bool = False) -> None:
    """Choose where calls go and whether they are checked first.

    ``client``: the ``segment_lite.Client`` to send through (None: segment_lite's
    module-level client). A ``client=`` argument of a single call wins over it.
    ``validate``: check each message against the plan before sending it and raise
    ``segment_lite.PlanViolationError`` (nothing is sent) when it breaks a rule.
    Needs the ``[plan]`` extra.
    """
    global _client, _validator
    _client = client
    if validate:
        from segment_lite.plan import PlanValidator

        _validator = PlanValidator(PLAN)
    else:
        _validator = None


def _check(message: dict[str, Any]) -> None:
    if _validator is not None:
        verdict = _validator.check(message)
        if verdict.violations:
            raise PlanViolationError(list(verdict.violations))


def _target(client: Optional[segment_lite.Client]) -> Any:
    if client is not None:
        return client
    return _client if _client is not None else segment_lite


def _track(
    event: str,
    properties: dict[str, Any],
    user_id: Any,
    anonymous_id: Any,
    context: Any,
    timestamp: Any,
    integrations: Any,
    message_id: Any,
    client: Optional[segment_lite.Client],
) -> Result:
    if _validator is not None:
        _check(build_track(user_id, event, properties, context, timestamp, anonymous_id, integrations))
    result: Result = _target(client).track(
        user_id, event, properties, context, timestamp, anonymous_id, integrations, message_id
    )
    return result
'''

_IDENTIFY_RUNTIME = """

def _identify(
    user_id: Any,
    traits: Any,
    anonymous_id: Any,
    context: Any,
    timestamp: Any,
    integrations: Any,
    message_id: Any,
    client: Optional[segment_lite.Client],
) -> Result:
    traits = dict(traits or {})
    if _validator is not None:
        _check(build_identify(user_id, traits, context, timestamp, anonymous_id, integrations))
    result: Result = _target(client).identify(
        user_id, traits, context, timestamp, anonymous_id, integrations, message_id
    )
    return result
"""

_GROUP_RUNTIME = """

def _group(
    user_id: Any,
    group_id: Any,
    traits: Any,
    anonymous_id: Any,
    context: Any,
    timestamp: Any,
    integrations: Any,
    message_id: Any,
    client: Optional[segment_lite.Client],
) -> Result:
    traits = dict(traits or {})
    if _validator is not None:
        _check(build_group(user_id, group_id, traits, context, timestamp, anonymous_id, integrations))
    result: Result = _target(client).group(
        user_id, group_id, traits, context, timestamp, anonymous_id, integrations, message_id
    )
    return result
"""

_VIEW_RUNTIME = """

def _view(
    kind: str,
    user_id: Any,
    category: Optional[str],
    name: Optional[str],
    properties: dict[str, Any],
    anonymous_id: Any,
    context: Any,
    timestamp: Any,
    integrations: Any,
    message_id: Any,
    client: Optional[segment_lite.Client],
) -> Result:
    if _validator is not None:
        message = build_view(
            kind, user_id, category, name, properties, context, timestamp, anonymous_id, integrations
        )
        _check(message)
    target = _target(client)
    send = target.page if kind == "page" else target.screen
    result: Result = send(
        user_id, category, name, properties, context, timestamp, anonymous_id, integrations, message_id
    )
    return result
"""


def _assemble(plan: TrackingPlan, writer: _Writer, source_name: Optional[str]) -> str:
    kinds = {rule.type for rule in plan.rules}
    builders = ["build_track"]
    runtime = _RUNTIME
    if "IDENTIFY" in kinds:
        builders.append("build_identify")
        runtime += _IDENTIFY_RUNTIME
    if "GROUP" in kinds:
        builders.append("build_group")
        runtime += _GROUP_RUNTIME
    if kinds & {"PAGE", "SCREEN"}:
        builders.append("build_view")
        runtime += _VIEW_RUNTIME
    typing_names = ["TYPE_CHECKING", "Any", "Optional", "TypedDict", "Union"]
    if writer.uses_literal:
        typing_names.insert(2, "Literal")
    abc_names = ["Mapping"] + (["Sequence"] if writer.uses_sequence else [])
    origin = f" from {_one_line(source_name)}" if source_name else ""
    description = f"\n\n{plan.description}" if plan.description else ""
    docstring = _docstring(
        f'Typed tracking calls for the plan "{_one_line(plan.name)}".{description}\n\n'
        f"Generated by ``segment-lite plan codegen``{origin}. Do not edit: change the plan and\n"
        "regenerate. Call ``configure()`` to choose a client or to check each message at runtime.",
        "",
    )
    header = (
        f"{docstring}\n"
        "from __future__ import annotations\n\n"
        "import datetime\n"
        f"from collections.abc import {', '.join(abc_names)}\n"
        f"from typing import {', '.join(typing_names)}\n\n"
        "import segment_lite\n"
        "from segment_lite.errors import PlanViolationError\n"
        f"from segment_lite.message import {', '.join(sorted(builders))}\n\n"
        "if TYPE_CHECKING:\n"
        "    from segment_lite.plan import PlanValidator\n\n"
    )
    exports = sorted(["PLAN", "configure", *writer.exports])
    all_list = "__all__ = [\n" + "".join(f"    {_string(name)},\n" for name in exports) + "]\n\n"
    plan_literal = (
        "#: The plan this module was generated from (Segment's form), for runtime checks.\n"
        f"PLAN: dict[str, Any] = {_literal(plan.to_segment())}\n"
    )
    parts = [header + all_list + plan_literal + runtime]
    parts.extend(writer.typed_dicts)
    parts.extend(code for _, code in writer.functions)
    return "\n\n".join(part.strip("\n") + "\n" for part in parts)
