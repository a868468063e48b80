"""The collector's shape: modules import each other one way, nothing reaches into another's privates."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

from segment_lite.cli import build_parser
from segment_lite.collector import Collector, RequestError
from segment_lite.collector.http_server import ClientGone
from segment_lite.errors import SegmentLiteError

PACKAGE = Path(__file__).resolve().parents[2] / "segment_lite" / "collector"
MODULES = {path.stem: path for path in PACKAGE.glob("*.py") if path.stem != "__init__"}


def collector_imports(path: Path) -> set[str]:
    """The collector modules ``path`` imports, at module level or inside functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            prefix = "segment_lite.collector."
            if name.startswith(prefix) and name[len(prefix) :].split(".")[0] in MODULES:
                found.add(name[len(prefix) :].split(".")[0])
    return found


def test_collector_modules_import_each_other_one_way() -> None:
    graph = {name: collector_imports(path) - {name} for name, path in MODULES.items()}
    assert graph["demo"] and "cli" not in graph["demo"], "demo must not import the cli (a cycle)"
    # Depth-first search for a cycle, naming it if found.
    state: dict[str, str] = {}

    def visit(name: str, trail: list[str]) -> None:
        state[name] = "open"
        for target in sorted(graph[name]):
            if state.get(target) == "open":
                pytest.fail("import cycle: " + " -> ".join([*trail, name, target]))
            if target not in state:
                visit(target, [*trail, name])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [])


def test_the_http_plumbing_knows_no_endpoint() -> None:
    assert collector_imports(MODULES["http_server"]) <= {"processing", "text"}
    for lower in ("faults", "http_server", "recording", "tracking", "debugger", "store", "processing"):
        assert "server" not in collector_imports(MODULES[lower]), f"{lower} imports the Collector"


def test_no_module_touches_another_objects_private_attributes() -> None:
    offenders = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
            ):
                offenders.append(f"{name}.py:{node.lineno} {ast.unparse(node)}")
    assert not offenders


def test_collector_errors_derive_from_segment_lite_error() -> None:
    assert issubclass(RequestError, SegmentLiteError)
    assert issubclass(ClientGone, SegmentLiteError)


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a socket listening on ``port``, from the kernel's tables (Linux)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        with open(table) as f:
            next(f)
            for line in f:
                local, state = line.split()[1], line.split()[3]
                address, port_hex = local.split(":")
                if state == "0A" and int(port_hex, 16) == port:  # 0A: LISTEN
                    raw = bytes.fromhex(address)
                    # The kernel prints each 32-bit word in host (little-endian) order.
                    words = [raw[i : i + 4][::-1] for i in range(0, len(raw), 4)]
                    found.add(".".join(str(b) for b in words[0]) if len(raw) == 4 else b"".join(words).hex())
    return found


def test_binds_to_loopback_by_default() -> None:
    if not os.path.exists("/proc/net/tcp"):
        pytest.skip("reads Linux's /proc/net/tcp")
    with Collector() as c:
        # What the kernel says the socket listens on, not what the object says about itself.
        assert listening_addresses(c.port) == {"127.0.0.1"}
    serve = build_parser().parse_args(["serve"])
    assert serve.host == "127.0.0.1"
