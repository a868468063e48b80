"""The collector's use of a plan: mark each stored message with its violations (``serve --plan``)."""

from __future__ import annotations

from typing import Any

from segment_lite.plan.files import PlanSource
from segment_lite.plan.tags import tag_message, unplanned_violation, untagged
from segment_lite.plan.validate import PlanValidator

__all__ = ["PlanAnnotator"]


class PlanAnnotator:
    """A collector annotator: ``Collector(annotators=[PlanAnnotator("shop.yaml")])``.

    Each message is checked against the plan as it is stored; its problems (an
    unplanned track event included) replace whatever ``context.protocols.violations``
    it arrived with, and a message without problems is stored without them. The
    debugger page and ``segment-lite events`` show them.
    """

    def __init__(self, plan: PlanSource) -> None:
        self.validator = PlanValidator(plan)

    def __call__(self, message: dict[str, Any], index: int) -> dict[str, Any]:
        """Tag (or untag) ``message``; ``index`` is its place in the request (unused)."""
        clean = untagged(message)
        verdict = self.validator.check(clean)
        problems = list(verdict.violations)
        if verdict.unplanned:
            problems.insert(0, unplanned_violation(self.validator.plan.name, message.get("event")))
        if not problems and clean is message:
            return message
        return tag_message(message, problems)
