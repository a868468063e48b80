"""Violations recorded in the message itself, under ``context.protocols.violations``, as Protocols does."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from segment_lite.plan.validate import Violation

__all__ = ["TAG_VALUE_CHARS", "tag_message", "unplanned_violation", "untagged"]

#: Longest string value copied into a tag (the message must stay under 32 KB).
TAG_VALUE_CHARS = 100


def unplanned_violation(plan_name: str, event: Any) -> Violation:
    """The problem of a track event the plan does not list, as a violation of the plan itself."""
    return Violation(f'plan "{plan_name}"', "event", "unplanned", f"{event!r} is not in the plan", event)


def tag_message(message: dict[str, Any], problems: Sequence[Violation]) -> dict[str, Any]:
    """Record ``problems`` in ``context.protocols.violations`` (replacing earlier ones); empty removes them.

    The message dict is changed in place; its ``context`` and ``protocols`` are
    copied first, so a caller's dict inside the message is never changed.
    """
    context = message.get("context")
    context = dict(context) if isinstance(context, Mapping) else {}
    protocols = context.get("protocols")
    protocols = dict(protocols) if isinstance(protocols, Mapping) else {}
    if problems:
        protocols["violations"] = [problem.to_dict(max_value_chars=TAG_VALUE_CHARS) for problem in problems]
    else:
        protocols.pop("violations", None)
    if protocols:
        context["protocols"] = protocols
    else:
        context.pop("protocols", None)
    if context or "context" in message:
        message["context"] = context
    return message


def untagged(message: Mapping[str, Any]) -> Mapping[str, Any]:
    """``message`` without recorded violations (a shallow copy when it had some), to check it afresh."""
    context = message.get("context")
    if not isinstance(context, Mapping):
        return message
    protocols = context.get("protocols")
    if not isinstance(protocols, Mapping) or "violations" not in protocols:
        return message
    protocols = {key: value for key, value in protocols.items() if key != "violations"}
    context = {key: value for key, value in context.items() if key != "protocols"}
    if protocols:
        context["protocols"] = protocols
    return {**message, "context": context}
