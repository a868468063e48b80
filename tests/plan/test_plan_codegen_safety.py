"""Generated modules from hostile plans: nothing in the plan runs at import, every text reads back exactly."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segment_lite.plan import generate_module, parse_plan

REPO = Path(__file__).resolve().parents[2]
INJECTION = "\"\"\"; _ = {__import__('os').system('touch PWNED'): 1, ''' #"


def hostile_plan() -> dict[str, Any]:
    return {
        "name": 'Shop """ \\ \' Plan',
        "description": INJECTION + '\nC:\\Users\\ada\\new \\N{x} \\u00e9 ends with a quote"',
        "events": {
            "Order Completed": {
                "description": INJECTION,
                "properties": {
                    "properties": {"type": "string", "required": True, "description": "C:\\Users"},
                    "_properties": "integer",
                    "user_id": "string",
                    'quote"d': {"type": "string", "enum": ['"""', "'''", "\\", "\x00\r\u2028"]},
                    "🎉": {"type": "number", "description": "'''\"\"\" \\"},
                },
            },
            'Evil """ \\ Event': {"properties": {"x": "string"}},
        },
        "page": {"description": INJECTION, "properties": {"properties": "string", "name": "string"}},
        "identify": {"description": "\\", "traits": {"email": {"type": "string", "description": INJECTION}}},
    }


def assert_safe_module(source: str, document: dict[str, Any]) -> ast.Module:
    """The module parses; at module level it only imports, defines and assigns plain data."""
    tree = ast.parse(source)
    plan = parse_plan(document)
    docstring = ast.get_docstring(tree, clean=False) or ""
    assert plan.name.split("\n")[0].strip() in docstring or " ".join(plan.name.split()) in docstring
    if plan.description:
        for line in plan.description.split("\n"):
            assert line.strip() in docstring, (line, docstring)
    allowed = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef, ast.If, ast.Assign, ast.AnnAssign)
    for index, statement in enumerate(tree.body):
        if index == 0 and isinstance(statement, ast.Expr):
            continue  # the docstring
        assert isinstance(statement, allowed), ast.dump(statement)[:200]
        if isinstance(statement, (ast.FunctionDef, ast.ClassDef)):
            for decorator in statement.decorator_list:
                raise AssertionError(f"a decorator runs at import: {ast.dump(decorator)}")
            continue
        for node in ast.walk(statement):
            if isinstance(node, ast.Call):
                assert isinstance(node.func, ast.Name) and node.func.id in ("TypedDict", "float"), ast.dump(
                    node
                )
    plan_value = next(
        statement.value
        for statement in tree.body
        if isinstance(statement, ast.AnnAssign) and getattr(statement.target, "id", None) == "PLAN"
    )
    assert plan_value is not None
    assert ast.literal_eval(plan_value) == plan.to_segment()
    return tree


def import_in_subprocess(directory: Path, name: str, code: str = "") -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{directory}")
    return subprocess.run(
        [sys.executable, "-c", f"import {name}\n{code}"],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_plan_text_cannot_run_code_at_import(tmp_path: Path) -> None:
    document = hostile_plan()
    source = generate_module(parse_plan(document), 'shop """.yaml')
    assert_safe_module(source, document)
    (tmp_path / "shop_events.py").write_text(source, encoding="utf-8")
    result = import_in_subprocess(
        tmp_path,
        "shop_events",
        "import segment_lite\n"
        "client = segment_lite.Client('key', send=False)\n"
        "ok, message = shop_events.order_completed('u', properties='p', client=client)\n"
        "print(sorted(message['properties']))\n"
        "ok, message = shop_events.page('u', name='Home', properties='x', client=client)\n"
        "print(message['name'], sorted(message['properties']))\n"
        "print(shop_events.__doc__.splitlines()[2])\n",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert not (tmp_path / "PWNED").exists(), "the plan's text ran as code"
    lines = result.stdout.splitlines()
    assert lines[0] == "['properties']", "a property named 'properties' is sent, not shadowed"
    assert lines[1] == "Home ['properties']"
    assert lines[2].startswith(INJECTION[:20])


def test_a_backslash_in_the_plan_gives_a_valid_module() -> None:
    document = {
        "name": "Win",
        "description": "C:\\Users\\x",
        "events": {"Saved": {"description": "C:\\Users"}},
    }
    source = generate_module(parse_plan(document))
    namespace: dict[str, Any] = {}
    exec(compile(source, "win.py", "exec"), namespace)
    assert "C:\\Users\\x" in namespace["__doc__"]
    assert namespace["saved"].__doc__.startswith("C:\\Users")


# Any text at all, including quotes, backslashes, control characters and lone surrogates.
_TEXT = st.text(st.characters(exclude_categories=()), min_size=1, max_size=30)
_PROPERTY = st.one_of(
    st.sampled_from(["string", "number", "integer", "boolean", "any"]),
    st.builds(
        lambda description, enum, required: {
            "type": "string",
            "description": description,
            "enum": enum,
            "required": required,
        },
        _TEXT,
        st.lists(_TEXT, min_size=1, max_size=4, unique=True),
        st.booleans(),
    ),
)
_PLANS = st.fixed_dictionaries(
    {
        "name": _TEXT,
        "description": _TEXT,
        "events": st.dictionaries(
            _TEXT,
            st.fixed_dictionaries(
                {"description": _TEXT, "properties": st.dictionaries(_TEXT, _PROPERTY, max_size=4)}
            ),
            min_size=1,
            max_size=3,
        ),
    }
)


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(_PLANS)
def test_fuzzed_plans_generate_safe_modules_that_import(document: dict[str, Any]) -> None:
    source = generate_module(parse_plan(document), "fuzz.yaml")
    assert_safe_module(source, document)
    module: dict[str, Any] = {"__name__": "fuzzed"}
    exec(compile(source, "fuzzed.py", "exec"), module)
    assert module["PLAN"] == parse_plan(document).to_segment()


def test_fuzzed_and_hostile_modules_pass_mypy_strict(tmp_path: Path) -> None:
    modules = {"hostile_events": hostile_plan()}

    @settings(max_examples=3, deadline=None, derandomize=True, database=None)
    @given(_PLANS)
    def collect(document: dict[str, Any]) -> None:
        modules[f"fuzzed_{len(modules)}"] = document

    collect()
    for name, document in modules.items():
        (tmp_path / f"{name}.py").write_text(
            generate_module(parse_plan(document), "x.yaml"), encoding="utf-8"
        )
    env = dict(os.environ, PYTHONPATH=str(REPO), MYPYPATH=str(REPO))
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path / ".mypy_cache")]
        + [f"{name}.py" for name in modules],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-4000:]
