"""Importing an integration without its framework raises one error that names the extra to install."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

FRAMEWORK_MODULES = ("django", "flask", "celery", "starlette", "fastapi")


def import_with_hidden(modules: tuple[str, ...], target: str) -> dict[str, object]:
    """Import ``target`` in a fresh interpreter where ``modules`` cannot be imported."""
    script = textwrap.dedent(
        f"""
        import json, sys
        for name in {list(modules)!r}:
            sys.modules[name] = None  # makes "import name" fail as if it were not installed
        try:
            import {target}
        except BaseException as exc:
            from segment_lite.errors import SegmentLiteError
            print(json.dumps({{
                "type": type(exc).__name__,
                "message": str(exc),
                "segment_lite_error": isinstance(exc, SegmentLiteError),
                "import_error": isinstance(exc, ImportError),
                "extra": getattr(exc, "extra", None),
                "shows_cause": exc.__cause__ is not None or not exc.__suppress_context__,
            }}))
        else:
            print(json.dumps({{"type": None}}))
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    report: dict[str, object] = json.loads(result.stdout)
    return report


@pytest.mark.parametrize(
    ("integration", "framework", "display_name"),
    [("django", "django", "Django"), ("flask", "flask", "Flask"), ("celery", "celery", "Celery")],
)
def test_missing_framework_names_the_extra(integration: str, framework: str, display_name: str) -> None:
    report = import_with_hidden((framework,), f"segment_lite.integrations.{integration}")
    assert report == {
        "type": "FrameworkNotInstalledError",
        "message": (
            f"segment_lite.integrations.{integration} needs {display_name}, which is not installed: "
            f'pip install "segment-lite[{integration}]"'
        ),
        "segment_lite_error": True,
        "import_error": True,  # existing `except ImportError` guards keep working
        "extra": integration,
        "shows_cause": False,  # one error, not two chained tracebacks
    }


@pytest.mark.frameworks
def test_a_framework_dependency_failing_is_not_disguised() -> None:
    # Flask is installed but broken (its dependency werkzeug is missing): that is not
    # "install the extra", so the original error comes through unchanged.
    pytest.importorskip("flask")
    report = import_with_hidden(("werkzeug",), "segment_lite.integrations.flask")
    assert report["type"] == "ModuleNotFoundError"
    assert "werkzeug" in str(report["message"])


@pytest.mark.parametrize(
    "target",
    [
        "segment_lite",
        "segment_lite.integrations",
        "segment_lite.integrations.wsgi",
        "segment_lite.integrations.asgi",
    ],
)
def test_framework_free_modules_import_without_any_framework(target: str) -> None:
    assert import_with_hidden(FRAMEWORK_MODULES, target) == {"type": None}
