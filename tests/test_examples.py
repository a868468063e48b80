"""The examples run as documented, say how to install and run them, and their extras cover their imports."""

from __future__ import annotations

import ast
import importlib.metadata
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_quickstart_runs_and_delivers() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py")],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines[:3]] == ["identify", "track", "page"]
    assert "'accepted': 3, 'delivered': 3, 'dropped_total': 0" in lines[3]


# -- each example says how to install and run it, and its extra installs what it imports --

EXAMPLE_FILES = sorted(Path(ROOT, "examples").rglob("*.py"))
INSTALL_LINE = re.compile(r'^\s*pip install "?\.(?:\[(?P<extras>[\w,-]+)\])?"?(?:\s|$)', re.MULTILINE)
#: How many lines of the docstring, after its summary, may come before the commands.
COMMANDS_WITHIN_LINES = 6


def example_id(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def docstring_of(path: Path) -> str:
    docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
    assert docstring, f"{example_id(path)} has no module docstring"
    return docstring


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=example_id)
def test_each_example_opens_with_its_install_and_run_commands(path: Path) -> None:
    opening = "\n".join(docstring_of(path).splitlines()[: 1 + COMMANDS_WITHIN_LINES])
    assert INSTALL_LINE.search(opening), f"{example_id(path)}: no `pip install .[extra]` line at the top"
    run_line = re.compile(rf"^\s*python {re.escape(example_id(path))}(?:\s|$)", re.MULTILINE)
    assert run_line.search(opening), f"{example_id(path)}: no `python {example_id(path)}` line at the top"


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pyproject() -> dict[str, Any]:
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        import tomli as tomllib  # type: ignore[no-redef]
    with open(ROOT / "pyproject.toml", "rb") as file:
        data: dict[str, Any] = tomllib.load(file)
    return data


def _catches_import_errors_quietly(node: ast.Try) -> bool:
    """A try whose ImportError handler does not re-raise: what it imports is optional."""
    for handler in node.handlers:
        caught = handler.type
        names = {n.id for n in ast.walk(caught) if isinstance(n, ast.Name)} if caught is not None else {"*"}
        if names & {"ImportError", "ModuleNotFoundError", "Exception", "*"}:
            if not any(isinstance(stmt, ast.Raise) for stmt in handler.body):
                return True
    return False


def _imported_modules(tree: ast.AST, *, module_level_only: bool) -> set[str]:
    """Dotted names of the modules a file imports for sure (optional imports left out)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                found.update(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level == 0 and child.module:
                    found.add(child.module)
                    found.update(f"{child.module}.{alias.name}" for alias in child.names)
            elif (
                (isinstance(child, ast.Try) and _catches_import_errors_quietly(child))
                or (isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test))
                or (
                    module_level_only
                    and isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
                )
            ):
                continue
            else:
                visit(child)

    visit(tree)
    return found


def _segment_lite_file(module: str) -> Optional[Path]:
    base = Path(ROOT, *module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def third_party_imports(path: Path) -> set[str]:
    """Top-level third-party modules the example imports, directly or through segment_lite's modules."""
    pending = [(path, False)]
    seen: set[Path] = set()
    top_level: set[str] = set()
    while pending:
        current, module_level_only = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        tree = ast.parse(current.read_text(encoding="utf-8"))
        for module in _imported_modules(tree, module_level_only=module_level_only):
            root = module.partition(".")[0]
            if root == "segment_lite":
                found = _segment_lite_file(module)
                if found is not None:
                    pending.append((found, True))  # its lazy imports run only when used
            elif root not in sys.stdlib_module_names:
                top_level.add(root)
    return top_level


def _top_level_modules(distribution: importlib.metadata.Distribution) -> set[str]:
    """What ``packages_distributions()`` gives from 3.11 on; 3.10's reads only top_level.txt, which
    wheels built without setuptools (backoff, urllib3) lack, so the installed files are read too."""
    listed = (distribution.read_text("top_level.txt") or "").split()
    if listed:
        return set(listed)
    names = set()
    for file in distribution.files or ():
        parts = file.parts
        name = parts[0] if len(parts) > 1 else inspect.getmodulename(parts[0]) or parts[0]
        if "." not in name:
            names.add(name)
    return names


def _modules_by_distribution() -> dict[str, set[str]]:
    by_distribution: dict[str, set[str]] = {}
    for distribution in importlib.metadata.distributions():
        name = _normalize(distribution.metadata["Name"])
        by_distribution.setdefault(name, set()).update(_top_level_modules(distribution))
    return by_distribution


def modules_installed_by(requirements: list[str]) -> tuple[set[str], list[str]]:
    """Top-level modules that installing ``requirements`` provides, read from installed metadata.

    Walks the requirements' own dependencies too (a FastAPI install brings Starlette).
    Returns the modules and the requirements that are not installed here (not walked).
    """
    from packaging.requirements import Requirement

    by_distribution = _modules_by_distribution()
    modules: set[str] = set()
    not_installed: list[str] = []
    pending = [Requirement(text) for text in requirements]
    walked: set[tuple[str, frozenset[str]]] = set()
    while pending:
        requirement = pending.pop()
        name = _normalize(requirement.name)
        key = (name, frozenset(requirement.extras))
        if key in walked:
            continue
        walked.add(key)
        modules.update(by_distribution.get(name, ()))
        try:
            dependencies = importlib.metadata.requires(requirement.name) or []
        except importlib.metadata.PackageNotFoundError:
            not_installed.append(str(requirement))
            continue
        for text in dependencies:
            dependency = Requirement(text)
            wanted_extras = {"", *requirement.extras}
            if dependency.marker is None or any(
                dependency.marker.evaluate({"extra": e}) for e in wanted_extras
            ):
                pending.append(dependency)
    return modules, not_installed


@pytest.mark.skipif(sys.version_info < (3, 10), reason="needs sys.stdlib_module_names")
@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=example_id)
def test_each_examples_extra_installs_what_the_example_imports(path: Path) -> None:
    # No network: the extras come from pyproject.toml, what they install from the
    # metadata of the packages installed here (the dev extra installs every one).
    match = INSTALL_LINE.search(docstring_of(path))
    assert match, f"{example_id(path)} names no install command"
    extras = [e for e in (match.group("extras") or "").split(",") if e]
    project = _pyproject()["project"]
    requirements = list(project["dependencies"])
    for extra in extras:
        assert extra in project["optional-dependencies"], f"{example_id(path)}: no extra [{extra}]"
        requirements += project["optional-dependencies"][extra]
    provided, not_installed = modules_installed_by(requirements)
    if not_installed:
        pytest.skip(f"not installed here, so what they bring cannot be read: {not_installed}")
    missing = third_party_imports(path) - provided
    assert not missing, (
        f"{example_id(path)} imports {sorted(missing)}, which its install command does not install"
    )


@pytest.mark.frameworks
def test_the_extras_check_catches_a_missing_package() -> None:
    # The check itself can fail: FastAPI's example needs fastapi and uvicorn, which
    # Starlette alone (what [fastapi] used to install) does not bring.
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    provided, _ = modules_installed_by(["starlette>=0.27"])
    missing = third_party_imports(Path(ROOT, "examples", "fastapi_app", "app.py")) - provided
    assert {"fastapi", "uvicorn"} <= missing
