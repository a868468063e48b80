"""Hostile plans: alias bombs, self-containing values, deep nesting, huge enums, backtracking patterns, remote $ref.

Each is refused with a ``PlanError`` naming the file, the line where YAML knows
it, and the path; the ones that exhausted memory or CPU run in a subprocess
with a memory limit and a timeout, so a regression fails the test, not the machine.
"""

from __future__ import annotations

import http.server
import json
import os
import resource
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import segment_lite
from segment_lite.plan import PlanError, PlanValidator, generate_module, lint_plan, load_plan, parse_plan

REPO = Path(__file__).resolve().parents[2]
MEMORY_LIMIT_BYTES = 1536 * 1024 * 1024


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT_BYTES, MEMORY_LIMIT_BYTES))


def run_bounded(code: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``code`` in a fresh interpreter with 1.5 GB of address space and a timeout."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    try:
        return subprocess.run(
            [sys.executable, "-c", code, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            preexec_fn=_limit_memory,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running after {timeout} s")


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return run_bounded("import sys; from segment_lite.cli import main; sys.exit(main(sys.argv[1:]))", *args)


def bomb_yaml(keyword: str) -> str:
    """A billion laughs: nine levels of ten aliases under ``keyword`` of a property (10**9 strings)."""
    lines = [
        "name: Bomb",
        "events:",
        "  Order Completed:",
        "    properties:",
        "      total:",
        "        type: string",
        f"        {keyword}:",
        "          - &a [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]",
    ]
    previous = "a"
    for name in "bcdefghi":
        lines.append(f"          - &{name} [{', '.join([f'*{previous}'] * 10)}]")
        previous = name
    return "\n".join(lines) + "\n"


# -- 14: alias bombs ---------------------------------------------------------------------


@pytest.mark.parametrize("keyword", ["examples", "enum", "description"])
def test_alias_bomb_is_refused_by_every_entry_point(tmp_path: Path, keyword: str) -> None:
    plan = tmp_path / "bomb.yaml"
    plan.write_text(bomb_yaml(keyword))
    db = tmp_path / "events.db"
    for command in (
        ["plan", "lint", str(plan)],
        ["plan", "codegen", str(plan), "-o", str(tmp_path / "m.py")],
    ):
        result = cli(*command)
        assert result.returncode == 2, (command, result.stderr[-2000:])
        assert "Traceback" not in result.stderr
        assert (
            f"{plan}:" in result.stderr
            and f"events.Order Completed.properties.total.{keyword}" in result.stderr
        )
        assert "YAML alias" in result.stderr and "1,000,000" in result.stderr
    result = cli("plan", "check", str(plan), "--db", str(db))
    assert result.returncode == 2 and "YAML alias" in result.stderr, result.stderr[-2000:]
    result = run_bounded(
        "import sys, segment_lite\n"
        "from segment_lite.plan import PlanError\n"
        "try:\n"
        "    segment_lite.Client('key', send=False, tracking_plan=sys.argv[1])\n"
        "except PlanError as exc:\n"
        "    print('refused:', exc)\n",
        str(plan),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("refused:") and f"{plan}:" in result.stdout


def test_alias_bomb_names_the_line_of_the_repeated_value(tmp_path: Path) -> None:
    plan = tmp_path / "bomb.yaml"
    plan.write_text(bomb_yaml("examples"))
    with pytest.raises(PlanError) as caught:
        load_plan(str(plan))
    # The innermost part above the limit is &f (10**5 strings in 11,111 lists), on line 13.
    assert caught.value.line == 13
    assert caught.value.path == "events.Order Completed.properties.total.examples[5]"
    assert str(caught.value).startswith(f"{plan}:13: events.Order Completed")
    assert "holds 1,111,111 values" in str(caught.value)


def test_shared_values_within_the_limit_still_load(tmp_path: Path) -> None:
    plan = tmp_path / "shared.yaml"
    plan.write_text(
        "name: Shared\n"
        "events:\n"
        "  Order Completed:\n"
        "    properties:\n"
        "      currency: &currency {type: string, enum: [USD, EUR]}\n"
        "  Order Refunded:\n"
        "    properties:\n"
        "      currency: *currency\n"
    )
    validator = PlanValidator(str(plan))
    assert not validator.check(
        {"type": "track", "event": "Order Refunded", "properties": {"currency": "EUR"}}
    ).violations
    assert validator.check(
        {"type": "track", "event": "Order Refunded", "properties": {"currency": "GBP"}}
    ).violations


def test_recursive_alias_is_refused_at_the_alias(tmp_path: Path) -> None:
    plan = tmp_path / "loop.yaml"
    plan.write_text("name: Loop\nevents:\n  Order Completed: &event\n    properties:\n      again: *event\n")
    with pytest.raises(PlanError) as caught:
        load_plan(str(plan))
    assert caught.value.line == 5 and caught.value.path == "events.Order Completed.properties.again"
    assert "*event" in str(caught.value) and "contain itself" in str(caught.value)
    result = cli("plan", "lint", str(plan))
    assert result.returncode == 2 and "Traceback" not in result.stderr and ":5:" in result.stderr


def test_a_mapping_that_contains_itself_is_refused() -> None:
    event: dict[str, Any] = {"properties": {}}
    event["properties"]["again"] = event
    with pytest.raises(PlanError) as caught:
        parse_plan({"name": "Loop", "events": {"Order Completed": event}})
    assert caught.value.path == "events.Order Completed.properties.again"
    assert "contains itself" in str(caught.value)


def deep_properties(levels: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(levels):
        schema = {"type": "object", "properties": {"inner": schema}}
    return {"name": "Deep", "events": {"Order Completed": {"properties": {"root": schema}}}}


def test_deep_properties_are_refused_in_every_form(tmp_path: Path) -> None:
    document = deep_properties(300)
    with pytest.raises(PlanError, match="nests deeper than 64 levels") as caught:
        parse_plan(document)
    assert caught.value.path.startswith("events.Order Completed.properties.root.properties.inner")
    path = tmp_path / "deep.json"
    path.write_text(json.dumps(document))
    for command in ("lint", "codegen"):
        result = (
            cli("plan", command, str(path), "-o", str(tmp_path / "m.py"))
            if command == "codegen"
            else cli("plan", command, str(path))
        )
        assert result.returncode == 2 and "nests deeper than 64 levels" in result.stderr, result.stderr[
            -2000:
        ]
        assert "Traceback" not in result.stderr


def test_deep_yaml_flow_is_refused_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "flow.yaml"
    path.write_text(
        "name: Deep\nevents:\n  E:\n    properties:\n      x: {examples: " + "[" * 5000 + "]" * 5000 + "}\n"
    )
    with pytest.raises(PlanError, match="nests deeper than 64 levels") as caught:
        load_plan(str(path))
    assert caught.value.line == 5 and caught.value.path.startswith("events.E.properties.x.examples[0]")


def test_a_plan_within_the_depth_limit_works_everywhere() -> None:
    plan = parse_plan(deep_properties(25))
    PlanValidator(plan)
    compile(generate_module(plan), "deep.py", "exec")
    lint_plan(plan)


def test_a_hand_built_plan_is_checked_too() -> None:
    schema: dict[str, Any] = {"type": "object", "properties": {}}
    schema["properties"]["self"] = schema
    plan = segment_lite.plan.TrackingPlan("Hand", (segment_lite.plan.Rule("TRACK", "E", schema),))
    for use in (PlanValidator, generate_module, lint_plan):
        with pytest.raises(PlanError, match="contains itself"):
            use(plan)


# -- 17: huge enums ------------------------------------------------------------------------


def test_a_200000_value_enum_is_refused_with_the_limit(tmp_path: Path) -> None:
    values = [f"v{index}" for index in range(200_000)]
    document = {
        "name": "Big",
        "events": {"Order Completed": {"properties": {"sku": {"type": "string", "enum": values}}}},
    }
    path = tmp_path / "big.json"
    path.write_text(json.dumps(document))
    result = run_bounded(
        "import sys\n"
        "from segment_lite.plan import PlanError, PlanValidator\n"
        "try:\n"
        "    PlanValidator(sys.argv[1])\n"
        "except PlanError as exc:\n"
        "    print(exc)\n",
        str(path),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "jsonSchema.properties.properties.properties.sku.enum" in result.stdout
    assert "200,000 values, more than the limit of 5,000" in result.stdout


def test_an_enum_at_the_limit_is_accepted() -> None:
    values = [f"v{index}" for index in range(5_000)]
    validator = PlanValidator({"name": "Big", "events": {"E": {"properties": {"sku": {"enum": values}}}}})
    assert not validator.check({"type": "track", "event": "E", "properties": {"sku": "v4999"}}).violations
    assert validator.check({"type": "track", "event": "E", "properties": {"sku": "v5000"}}).violations


# -- 16: catastrophic backtracking -------------------------------------------------------------

BACKTRACKING = "^(a+)+$"


def pattern_plan(pattern: str) -> dict[str, Any]:
    return {"name": "P", "events": {"E": {"properties": {"code": {"type": "string", "pattern": pattern}}}}}


def test_a_backtracking_pattern_cannot_stall_track() -> None:
    # On re, 40 characters would take days: the check must answer at once, or refuse the plan.
    code = (
        "import sys, segment_lite\n"
        "from segment_lite.plan import PlanError\n"
        f"plan = {pattern_plan(BACKTRACKING)!r}\n"
        "if sys.argv[1] == 'without-re2':\n"
        "    sys.modules['re2'] = None  # as if google-re2 were not installed\n"
        "try:\n"
        "    client = segment_lite.Client('key', send=False, tracking_plan=plan, on_violation='drop')\n"
        "except PlanError as exc:\n"
        "    print('refused:', exc)\n"
        "    sys.exit(0)\n"
        "bad, good = client.track('u', 'E', {'code': 'a' * 40 + '!'}), client.track('u', 'E', {'code': 'aaa'})\n"
        "print('accepted:', bad[0], good[0], client.stats()['dropped']['plan_violation'])\n"
        "client.shutdown()\n"
    )
    without = run_bounded(code, "without-re2", timeout=30)
    assert without.returncode == 0, without.stderr[-2000:]
    assert without.stdout.startswith("refused:"), without.stdout
    assert "jsonSchema.properties.properties.properties.code.pattern" in without.stdout
    assert "a quantifier inside a quantified group" in without.stdout
    try:
        import re2  # noqa: F401
    except ImportError:
        return
    with_re2 = run_bounded(code, "with-re2", timeout=30)
    assert with_re2.returncode == 0, with_re2.stderr[-2000:]
    assert with_re2.stdout.startswith("accepted: False True 1"), with_re2.stdout


def test_without_re2_safe_patterns_work_and_long_values_are_not_tried(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from segment_lite.plan import patterns

    monkeypatch.setattr(patterns, "_re2", None)
    patterns.compile_pattern.cache_clear()
    try:
        validator = PlanValidator(pattern_plan("^[A-Z]{3}-[0-9]+$"))
        good = {"type": "track", "event": "E", "properties": {"code": "ABC-123"}}
        assert not validator.check(good).violations
        long_value = "ABC-" + "1" * patterns.MAX_BACKTRACKING_VALUE_CHARS
        (violation,) = validator.check(
            {"type": "track", "event": "E", "properties": {"code": long_value}}
        ).violations
        assert (violation.path, violation.keyword) == ("properties.code", "pattern")
        for refused in ("(a|ab)*c", "(x*)*y", "(a)\\1"):
            with pytest.raises(PlanError, match="could take exponential time"):
                parse_plan(pattern_plan(refused))
    finally:
        patterns.compile_pattern.cache_clear()


def test_pattern_properties_are_bounded_as_well() -> None:
    document = {
        "name": "P",
        "rules": [
            {
                "type": "TRACK",
                "key": "E",
                "jsonSchema": {
                    "properties": {"properties": {"patternProperties": {BACKTRACKING: {"type": "integer"}}}}
                },
            }
        ],
    }
    try:
        import re2  # noqa: F401
    except ImportError:
        with pytest.raises(PlanError, match="patternProperties"):
            parse_plan(document)
        return
    validator = PlanValidator(document)
    verdict = validator.check({"type": "track", "event": "E", "properties": {"a" * 40 + "!": "x", "aa": "x"}})
    assert [(v.path, v.keyword) for v in verdict.violations] == [("properties.aa", "type")]


def test_an_over_long_or_invalid_pattern_is_refused() -> None:
    with pytest.raises(PlanError, match="1001 characters long; the limit is 1000"):
        parse_plan(pattern_plan("a" * 1001))
    with pytest.raises(PlanError, match="not a valid regular expression"):
        parse_plan(pattern_plan("(unclosed"))


# -- 15: remote $ref --------------------------------------------------------------------------


class _SchemaServer(http.server.ThreadingHTTPServer):
    """Serves one JSON schema on 127.0.0.1 and counts the requests it gets."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self.schema = schema
        self.requests: list[str] = []
        super().__init__(("127.0.0.1", 0), _SchemaHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/schemas/"


class _SchemaHandler(http.server.BaseHTTPRequestHandler):
    server: _SchemaServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.server.requests.append(self.path)
        body = json.dumps(self.server.schema).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def schema_server() -> Iterator[_SchemaServer]:
    server = _SchemaServer({"type": "string", "pattern": "^[A-Z]{3}$"})
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def ref_plan(address: str) -> dict[str, Any]:
    return {"name": "R", "events": {"E": {"properties": {"currency": {"$ref": address}}}}}


def test_a_remote_ref_is_refused_without_a_request(schema_server: _SchemaServer, tmp_path: Path) -> None:
    address = schema_server.base + "currency.json"
    with pytest.raises(PlanError) as caught:
        PlanValidator(ref_plan(address))
    assert "points outside the plan" in str(caught.value) and address in str(caught.value)
    assert caught.value.path == 'TRACK "E" v1: jsonSchema.properties.properties.properties.currency.$ref'
    path = tmp_path / "remote.json"
    path.write_text(json.dumps(ref_plan(address)))
    result = cli("plan", "codegen", str(path), "-o", str(tmp_path / "m.py"))
    assert result.returncode == 2 and "points outside the plan" in result.stderr
    result = run_bounded(
        "import sys, segment_lite\n"
        "from segment_lite.plan import PlanError\n"
        "try:\n"
        "    segment_lite.Client('key', send=False, tracking_plan=sys.argv[1])\n"
        "except PlanError as exc:\n"
        "    print('refused:', exc)\n",
        str(path),
    )
    assert result.stdout.startswith("refused:"), result.stderr[-2000:]
    assert schema_server.requests == [], "nothing may be fetched"


def test_a_relative_ref_without_a_base_is_refused() -> None:
    with pytest.raises(PlanError, match="points outside the plan"):
        parse_plan(ref_plan("currency.json"))


def test_local_refs_still_resolve() -> None:
    document = {
        "name": "L",
        "rules": [
            {
                "type": "TRACK",
                "key": "E",
                "jsonSchema": {
                    "definitions": {"currency": {"type": "string", "enum": ["USD", "EUR"]}},
                    "properties": {
                        "properties": {"properties": {"currency": {"$ref": "#/definitions/currency"}}}
                    },
                },
            }
        ],
    }
    validator = PlanValidator(document)
    assert not validator.check({"type": "track", "event": "E", "properties": {"currency": "EUR"}}).violations
    (violation,) = validator.check(
        {"type": "track", "event": "E", "properties": {"currency": "GBP"}}
    ).violations
    assert violation.path == "properties.currency"


def test_an_allowed_base_is_fetched_once_at_load(schema_server: _SchemaServer) -> None:
    address = schema_server.base + "currency.json"
    plan = load_plan(ref_plan(address), ref_bases=[schema_server.base])
    assert schema_server.requests == ["/schemas/currency.json"]
    validator = PlanValidator(plan)
    assert not validator.check({"type": "track", "event": "E", "properties": {"currency": "EUR"}}).violations
    (violation,) = validator.check(
        {"type": "track", "event": "E", "properties": {"currency": "euro"}}
    ).violations
    assert (violation.path, violation.keyword) == ("properties.currency", "pattern")
    client = segment_lite.Client("key", send=False, tracking_plan=plan, on_violation="drop")
    try:
        assert client.track("u", "E", {"currency": "EUR"})[0]
        assert not client.track("u", "E", {"currency": "euro"})[0]
    finally:
        client.shutdown()
    assert schema_server.requests == ["/schemas/currency.json"], "validators never fetch"


def test_an_unreachable_allowed_base_is_a_plan_error() -> None:
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    base = f"http://127.0.0.1:{port}/"
    with pytest.raises(PlanError, match=f"cannot fetch \\$ref {base}currency.json") as caught:
        load_plan(ref_plan(base + "currency.json"), ref_bases=[base])
    assert caught.value.path == 'TRACK "E" v1: jsonSchema.properties.properties.properties.currency.$ref'


def test_the_commands_take_ref_bases(schema_server: _SchemaServer, tmp_path: Path) -> None:
    path = tmp_path / "remote.json"
    path.write_text(json.dumps(ref_plan(schema_server.base + "currency.json")))
    refused = cli("plan", "lint", str(path))
    assert refused.returncode == 2 and "points outside the plan" in refused.stderr
    assert schema_server.requests == []
    module = tmp_path / "m.py"
    allowed = cli("plan", "codegen", str(path), "-o", str(module), "--ref-base", schema_server.base)
    assert allowed.returncode == 0, allowed.stderr
    assert schema_server.requests == ["/schemas/currency.json"]


def test_patterns_of_a_fetched_document_are_bounded_too() -> None:
    server = _SchemaServer({"type": "string", "pattern": BACKTRACKING})
    try:
        document = ref_plan(server.base + "code.json")
        try:
            import re2  # noqa: F401
        except ImportError:
            with pytest.raises(PlanError, match="could take exponential time"):
                load_plan(document, ref_bases=[server.base])
            return
        validator = PlanValidator(load_plan(document, ref_bases=[server.base]))
        # On re this would not finish (2**40 steps); the suite's timeout turns a regression into a failure.
        (violation,) = validator.check(
            {"type": "track", "event": "E", "properties": {"currency": "a" * 40 + "!"}}
        ).violations
        assert violation.keyword == "pattern"
    finally:
        server.shutdown()
        server.server_close()


def test_long_values_go_to_re2_and_both_engines_read_patterns_alike() -> None:
    pytest.importorskip("re2")
    validator = PlanValidator(pattern_plan("^[0-9]+$"))

    def violations(code: str) -> list[str]:
        verdict = validator.check({"type": "track", "event": "E", "properties": {"code": code}})
        return [violation.keyword for violation in verdict.violations]

    assert violations("1" * 2000) == [], "a long value is matched (on RE2), not refused"
    assert violations("1" * 2000 + "x") == ["pattern"]
    assert violations("12\n") == ["pattern"], "$ is the end of the value on re as on RE2"
    digits = PlanValidator(pattern_plan("^\\d+$"))
    for value in ("\u0661\u0662", "\u0661" * 2000):  # Arabic-Indic digits: not \d in ECMA-262, nor on RE2
        verdict = digits.check({"type": "track", "event": "E", "properties": {"code": value}})
        assert [violation.keyword for violation in verdict.violations] == ["pattern"]
