"""The client's use of a plan: check each built message, then count, log, tag, drop or raise."""

from __future__ import annotations

import logging
from typing import Any, Optional

from segment_lite.errors import PlanViolationError, ValidationError
from segment_lite.ledger import Ledger
from segment_lite.plan.files import PlanSource
from segment_lite.plan.tags import tag_message, unplanned_violation
from segment_lite.plan.validate import PlanValidator, Verdict, Violation

__all__ = ["ON_UNPLANNED", "ON_VIOLATION", "PlanEnforcer"]

#: What the client may do with a message that breaks the plan.
ON_VIOLATION = ("send", "warn", "drop", "raise")
#: What the client may do with a track event the plan does not list.
ON_UNPLANNED = ("send", "warn", "drop")
log = logging.getLogger("segment")  # the client's logger, as segment-analytics-python names it


class PlanEnforcer:
    """Applies a plan to each message, as ``Client(tracking_plan=...)`` asks.

    ``on_violation``: ``send`` (send it; count and report it as the warning
    ``plan_violation_sent``, logged at debug level), ``warn`` (the same, and log a
    warning for each message), ``drop`` (refuse it: dropped as ``plan_violation``)
    or ``raise`` (as ``drop``, then raise ``PlanViolationError``). ``on_unplanned``
    does the same for a track event the plan does not list (``unplanned_sent``,
    ``unplanned``), without ``raise``. Reports go to ``on_drop`` with a
    ``PlanViolationError``. ``tag``: record the problems of a message that is sent
    in its ``context.protocols.violations``, where the collector shows them.
    """

    def __init__(
        self,
        plan: PlanSource,
        on_violation: str = "send",
        on_unplanned: str = "send",
        tag: bool = False,
    ) -> None:
        if on_violation not in ON_VIOLATION:
            raise ValidationError(
                f"on_violation must be one of {', '.join(ON_VIOLATION)}, got {on_violation!r}", "on_violation"
            )
        if on_unplanned not in ON_UNPLANNED:
            raise ValidationError(
                f"on_unplanned must be one of {', '.join(ON_UNPLANNED)}, got {on_unplanned!r}", "on_unplanned"
            )
        self.validator = PlanValidator(plan)
        self.on_violation = on_violation
        self.on_unplanned = on_unplanned
        self.tag = tag

    def apply(self, message: dict[str, Any], ledger: Ledger) -> Optional[dict[str, Any]]:
        """The message to send (tagged if asked), or None when it is dropped; may raise."""
        verdict = self.validator.check(message)
        if not verdict.violations and not verdict.unplanned:
            return message
        return self._handle(message, verdict, ledger)

    def _handle(self, message: dict[str, Any], verdict: Verdict, ledger: Ledger) -> Optional[dict[str, Any]]:
        problems = list(verdict.violations)  # of its rule, and of COMMON rules
        unplanned: list[Violation] = []
        if verdict.unplanned:
            unplanned.append(unplanned_violation(self.validator.plan.name, message.get("event")))
            if self.on_unplanned == "drop":
                ledger.drop("unplanned", PlanViolationError([*unplanned, *problems]), [message])
                return None
        if problems and self.on_violation in ("drop", "raise"):
            error = PlanViolationError(problems)
            ledger.drop("plan_violation", error, [message])
            if self.on_violation == "raise":
                raise error
            return None
        if self.tag:
            tag_message(message, [*unplanned, *problems])
        if unplanned:
            _report("unplanned_sent", self.on_unplanned, message, unplanned, ledger)
        if problems:
            _report("plan_violation_sent", self.on_violation, message, problems, ledger)
        return message


def _report(
    reason: str, mode: str, message: dict[str, Any], problems: list[Violation], ledger: Ledger
) -> None:
    """Count and report a message sent despite ``problems``; ``warn`` also logs a warning for it."""
    if mode == "warn":
        what = message.get("event") if message.get("type") == "track" else message.get("type")
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        log.warning("%s", ledger.redact(f"tracking plan: {what!r} sent with {problems[0]}{more}"))
    ledger.warn(reason, PlanViolationError(problems), [message])
