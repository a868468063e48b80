"""The repository's own files: no merge left half done."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARKER = re.compile(r"^(<{7}|>{7}) ", re.MULTILINE)


def tracked_text_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=False
    ).stdout.decode("utf-8", "replace")
    paths = [ROOT / name for name in listed.split("\0") if name]
    if not paths:  # not a git checkout (an sdist): read the usual text files instead
        paths = [
            p for suffix in ("*.py", "*.md", "*.toml") for p in ROOT.rglob(suffix) if ".venv" not in str(p)
        ]
    return [p for p in paths if p.suffix in {".py", ".md", ".toml", ".txt", ".yaml", ".yml", ".cfg", ""}]


def test_no_file_holds_merge_conflict_markers() -> None:
    offenders = []
    for path in tracked_text_files():
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        for match in MARKER.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            offenders.append(f"{path.relative_to(ROOT)}:{line}")
    assert not offenders, "merge conflict markers left in: " + ", ".join(offenders)
