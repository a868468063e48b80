"""Every option the ``segment-lite`` command offers is documented in docs/ (help and docs never drift)."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from pathlib import Path

from segment_lite.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent


def _options(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[tuple[str, str, str]]:
    """(command path, long option, help text) for every option of every subcommand."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _options(sub, (*path, name))
            continue
        for option in action.option_strings:
            if option.startswith("--") and option not in ("--help", "--version"):
                yield " ".join(path) or "segment-lite", option, action.help or ""


def test_every_command_line_option_appears_in_the_docs() -> None:
    docs = "\n".join(path.read_text() for path in sorted((ROOT / "docs").glob("*.md")))
    options = list(_options(build_parser()))
    assert len(options) > 20, "the walk must find the subcommands' options"
    missing = [
        f"{command} {option}"
        for command, option, _ in options
        if not re.search(re.escape(option) + r"(?![\w-])", docs)
    ]
    assert not missing, f"options missing from docs/: {missing}"
