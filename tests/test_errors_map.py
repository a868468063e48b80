"""errors.py holds every exception the library raises, and its docstring lists each one."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import segment_lite
from segment_lite import errors
from segment_lite.errors import InvalidStateError, SegmentLiteError, ValidationError


def _import_everything() -> None:
    for info in pkgutil.walk_packages(segment_lite.__path__, "segment_lite."):
        if info.name.endswith("__main__"):
            continue
        try:
            importlib.import_module(info.name)
        except Exception:  # an optional framework that is absent or needs settings (Django)
            continue


def _subclasses(cls: type) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        found.add(sub)
        found |= _subclasses(sub)
    return found


def test_every_error_of_the_package_lives_in_errors_and_is_in_its_map() -> None:
    _import_everything()
    public = sorted(
        (cls for cls in _subclasses(SegmentLiteError) if cls.__module__.startswith("segment_lite")),
        key=lambda cls: cls.__name__,
    )
    public = [cls for cls in public if not cls.__name__.startswith("_")]
    assert len(public) > 25
    assert [cls.__qualname__ for cls in public if getattr(errors, cls.__name__, None) is not cls] == []
    doc = errors.__doc__ or ""
    assert [cls.__name__ for cls in public if f"``{cls.__name__}``" not in doc] == []


def test_the_errors_module_loads_no_other_part_of_the_library() -> None:
    source = errors.__file__
    assert source is not None
    with open(source, encoding="utf-8") as handle:
        assert "from segment_lite" not in handle.read()


def test_state_and_argument_errors_keep_their_builtin_bases() -> None:
    from segment_lite.collector import Collector
    from segment_lite.collector.faults import Failure, FaultPlan
    from segment_lite.plan import dump_plan, parse_plan

    with pytest.raises(InvalidStateError, match="not started") as raised:
        _ = Collector().port
    assert isinstance(raised.value, RuntimeError)
    with pytest.raises(ValidationError, match="fail_rate") as refused:
        FaultPlan(Failure.make(500), fail_rate=2.0)
    with pytest.raises(ValueError, match="final HTTP status"):
        Failure.make(99)
    assert isinstance(refused.value, ValueError)
    plan = parse_plan({"events": {"Signed Up": {}}})
    with pytest.raises(ValueError, match="fmt must be"):
        dump_plan(plan, fmt="toml")
