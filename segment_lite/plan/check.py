"""Check a set of stored messages against a plan and summarise the result per event name."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Optional

from segment_lite.plan.tags import untagged
from segment_lite.plan.validate import PlanValidator, Violation

__all__ = ["EventReport", "PlanReport", "Problem", "check_messages"]


@dataclass
class Problem:
    """One kind of violation (rule, path, keyword) seen in messages of one event, with an example."""

    rule: str
    path: str
    keyword: str
    count: int
    example: Violation
    example_message_id: Optional[str]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "rule": self.rule,
            "path": self.path,
            "keyword": self.keyword,
            "count": self.count,
            "example": {"messageId": self.example_message_id, **self.example.to_dict(max_value_chars=200)},
        }


@dataclass
class EventReport:
    """What checking found for one event name (or one non-track message type)."""

    name: str
    type: str
    rule: Optional[str]
    count: int = 0
    violating: int = 0
    unplanned: bool = False
    problems: dict[tuple[str, str, str], Problem] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """No message of this event violates, and the event is planned."""
        return not self.violating and not self.unplanned

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "name": self.name,
            "type": self.type,
            "rule": self.rule,
            "count": self.count,
            "violating": self.violating,
            "unplanned": self.unplanned,
            "problems": [problem.to_dict() for problem in self.problems.values()],
        }


@dataclass
class PlanReport:
    """The result of :func:`check_messages`: per-event reports and totals."""

    plan: str
    events: list[EventReport]

    @property
    def checked(self) -> int:
        """How many messages were checked."""
        return sum(event.count for event in self.events)

    @property
    def violating(self) -> int:
        """How many messages have at least one violation."""
        return sum(event.violating for event in self.events)

    @property
    def unplanned(self) -> int:
        """How many track messages name an event the plan does not list."""
        return sum(event.count for event in self.events if event.unplanned)

    def passed(self, allow_unplanned: bool = False) -> bool:
        """No violations and (unless allowed) no unplanned events."""
        return not self.violating and (allow_unplanned or not self.unplanned)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "plan": self.plan,
            "checked": self.checked,
            "violating": self.violating,
            "unplanned": self.unplanned,
            "events": [event.to_dict() for event in self.events],
        }

    def format(self) -> str:
        """A readable summary, one block per event name."""
        lines = [
            f'Plan "{self.plan}": {self.checked} message(s) checked, '
            f"{self.violating} with violations, {self.unplanned} unplanned"
        ]
        width = max([len(event.name) for event in self.events] + [10])
        for event in self.events:
            if event.unplanned:
                status = "UNPLANNED (not in the plan)"
            elif event.rule is None and not event.violating:
                status = "no rule"
            elif event.violating:
                status = f"{event.violating} with violations"
            else:
                status = "ok"
            noun = "message" if event.count == 1 else "messages"
            lines.append(
                f"{event.name.ljust(width)}  {(event.rule or '-').ljust(28)}  {event.count} {noun}, {status}"
            )
            for problem in event.problems.values():
                which = "" if problem.rule == event.rule else f" [{problem.rule}]"
                where = problem.path or "(message)"
                lines.append(
                    f"    {problem.count:>5}  {where}  {problem.keyword}{which}"
                    f"  e.g. {problem.example_message_id or '?'}: {problem.example.message}"
                )
        return "\n".join(lines)


def check_messages(validator: PlanValidator, messages: Iterable[Mapping[str, Any]]) -> PlanReport:
    """Check every message; events are reported in plan order, then unplanned ones by name."""
    reports: dict[tuple[str, str], EventReport] = {}
    for message in messages:
        kind = str(message.get("type"))
        name = str(message.get("event")) if kind == "track" else kind
        verdict = validator.check(untagged(message))  # recorded violations are not part of it
        report = reports.get((kind, name))
        if report is None:
            label = None if verdict.rule is None else verdict.rule.label
            report = EventReport(name=name, type=kind, rule=label, unplanned=verdict.unplanned)
            reports[(kind, name)] = report
        report.count += 1
        if verdict.violations:
            report.violating += 1
            for violation in verdict.violations:
                identity = (violation.rule, violation.path, violation.keyword)
                problem = report.problems.get(identity)
                if problem is None:
                    message_id = message.get("messageId")
                    report.problems[identity] = Problem(
                        violation.rule,
                        violation.path,
                        violation.keyword,
                        1,
                        violation,
                        None if message_id is None else str(message_id),
                    )
                else:
                    problem.count += 1
    planned = {rule.key: index for index, rule in enumerate(validator.plan.rules) if rule.type == "TRACK"}
    order = ["track", "identify", "group", "page", "screen", "alias"]

    def position(report: EventReport) -> tuple[int, int, str]:
        kind_index = order.index(report.type) if report.type in order else len(order)
        return (kind_index, planned.get(report.name, len(planned)), report.name)

    return PlanReport(validator.plan.name, sorted(reports.values(), key=position))
