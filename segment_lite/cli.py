"""The ``segment-lite`` command: one entry point, one subcommand module each."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Callable, Optional

from segment_lite.version import VERSION

# Each entry names a module that defines ``register(subparsers)``. Modules are
# imported only to build the parser, and each keeps its heavy imports inside the
# command it runs, so ``segment-lite --help`` stays fast.
SUBCOMMAND_MODULES = (
    "segment_lite.audiences.cli",
    "segment_lite.collector.cli",
    "segment_lite.importer.cli",
    "segment_lite.plan_cli",
    "segment_lite.spool_cli",
)


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every available subcommand."""
    parser = argparse.ArgumentParser(
        prog="segment-lite",
        description="Send, collect and inspect Segment Spec events locally.",
    )
    parser.add_argument("--version", action="version", version=f"segment-lite {VERSION}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # a bug or missing dependency inside the module: say so
                raise
            continue  # a subcommand whose module is absent is simply not offered
        module.register(subparsers)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Optional[Callable[[argparse.Namespace], int]] = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    return int(handler(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
