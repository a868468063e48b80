"""The package's layers: the core imports no tool, and tools use only the core's public names.

``lint-imports`` (the contracts in pyproject.toml) checks the first rule and that no two top-level
units import each other, in CI. This test checks the same split by reading every module's imports,
with the core derived as "every module that is not a tool", so a new module is covered the day it
lands, and checks what import-linter cannot see: which names cross a unit's border.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "segment_lite"

#: The tools: they sit beside the message path and use only its public names.
TOOLS = (
    "segment_lite.cli",
    "segment_lite.cli_common",
    "segment_lite.collector",
    "segment_lite.importer",
    "segment_lite.integrations",
    "segment_lite.plan_cli",
    "segment_lite.spark",
    "segment_lite.spool_cli",
    "segment_lite.audiences",
    "segment_lite.metrics",
)
#: Private modules every unit of the package may use (the lazy-export helper of package __init__s).
SHARED_PRIVATE = {"segment_lite._lazy"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def unit_of(module: str) -> str:
    """The tool a module belongs to, or ``core``."""
    for tool in TOOLS:
        if module == tool or module.startswith(tool + "."):
            return tool
    return "core"


def imports_of(module: str) -> list[tuple[int, str, str]]:
    """``(line, module imported, name imported or "")`` for every import in ``module``, nested ones too."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[int, str, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name, "") for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                if submodule in MODULES:  # ``from package import module``
                    found.append((node.lineno, submodule, ""))
                else:
                    found.append((node.lineno, base, alias.name))
    return [entry for entry in found if entry[1] == "segment_lite" or entry[1].startswith("segment_lite.")]


def test_every_tool_named_exists_or_is_optional() -> None:
    present = {tool for tool in TOOLS if any(unit_of(m) == tool for m in MODULES)}
    assert set(TOOLS) - present <= {"segment_lite.audiences"}


def test_the_core_imports_no_tool() -> None:
    offenders = [
        f"{module} line {line} imports {target}"
        for module in MODULES
        if unit_of(module) == "core"
        for line, target, _ in imports_of(module)
        if unit_of(target) != "core"
    ]
    assert not offenders, "\n".join(offenders)


def test_imports_across_units_use_public_names_only() -> None:
    offenders = []
    for module in MODULES:
        for line, target, name in imports_of(module):
            if unit_of(target) == unit_of(module) or target in SHARED_PRIVATE:
                continue
            private = [part for part in [*target.split("."), name] if part.startswith("_") and part != "__"]
            private = [part for part in private if not (part.startswith("__") and part.endswith("__"))]
            if private:
                offenders.append(f"{module} line {line}: {target} {name}".rstrip())
    assert not offenders, "private names used across a unit's border:\n" + "\n".join(offenders)


def test_the_import_contracts_list_every_core_module() -> None:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        tomllib = pytest.importorskip("tomli")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]
    forbidden = next(c for c in config["contracts"] if c["type"] == "forbidden")
    listed = set(forbidden["source_modules"])

    def covered(module: str) -> bool:
        return module in listed or any(
            entry.endswith(".**") and module.startswith(entry[:-2]) for entry in listed
        )

    core = [m for m in MODULES if unit_of(m) == "core"]
    assert [m for m in core if not covered(m)] == [], "add new core modules to pyproject's contract"
    tools = set(forbidden["forbidden_modules"])
    assert {t for t in TOOLS if t in MODULES} <= tools
