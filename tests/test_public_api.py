"""The public surface: what ``segment_lite`` exports, and one base class for every error it raises."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import segment_lite
from segment_lite.errors import SegmentLiteError, ValidationError

# Modules that need an optional dependency (or its configuration) to import; checked when they import.
OPTIONAL = ("segment_lite.integrations.", "segment_lite.spark", "segment_lite.oauth", "segment_lite.plan")


def _library_modules() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(segment_lite.__path__, "segment_lite."):
        if info.name.endswith("__main__"):
            continue
        try:
            importlib.import_module(info.name)
        except Exception:  # a framework that is absent or needs settings (Django) to import
            if info.name.startswith(OPTIONAL):
                continue
            raise
        names.append(info.name)
    return names


def test_every_name_in_all_exists() -> None:
    missing = [name for name in segment_lite.__all__ if not hasattr(segment_lite, name)]
    assert not missing


@pytest.mark.parametrize(
    "name", ["Transport", "TransportError", "TransportResponse", "Clock", "RetryPolicy", "SegmentLiteError"]
)
def test_what_users_implement_or_catch_is_exported_at_the_top(name: str) -> None:
    assert name in segment_lite.__all__


def test_every_public_exception_derives_from_segment_lite_error() -> None:
    offenders = []
    for module_name in _library_modules():
        module = importlib.import_module(module_name)
        for name, value in vars(module).items():
            # type() and not isinstance(): lazy objects (Django's settings) resolve themselves on __class__.
            if (
                name.startswith("_")
                or not issubclass(type(value), type)
                or not issubclass(value, BaseException)
            ):
                continue
            if value.__module__.startswith("segment_lite") and not issubclass(value, SegmentLiteError):
                offenders.append(f"{value.__module__}.{name}")
    assert not offenders, f"exceptions not deriving from SegmentLiteError: {sorted(set(offenders))}"


def test_configuration_errors_are_validation_errors() -> None:
    with pytest.raises(ValidationError, match="region"):
        segment_lite.Client("key", region="mars")
    with pytest.raises(ValidationError, match="on_full"):
        segment_lite.Client("key", on_full="explode")


def test_retry_policy_and_max_retries_together_are_refused() -> None:
    with pytest.raises(ValidationError, match="either retry_policy or max_retries"):
        segment_lite.Client("key", max_retries=3, retry_policy=segment_lite.RetryPolicy())
    # Either alone is fine.
    segment_lite.Client("key", max_retries=3, send=False).shutdown()
    segment_lite.Client("key", retry_policy=segment_lite.RetryPolicy(max_retries=3), send=False).shutdown()


def test_every_client_option_is_documented() -> None:
    import inspect
    from pathlib import Path

    doc = (Path(__file__).resolve().parent.parent / "docs" / "configuration.md").read_text()
    options = list(inspect.signature(segment_lite.Client.__init__).parameters)[1:]
    assert len(options) > 30
    assert [name for name in options if f"`{name}`" not in doc] == []
