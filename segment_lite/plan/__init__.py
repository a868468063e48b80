"""Tracking plans: load a plan, check messages against it, infer, lint and generate code from it.

Needs the ``[plan]`` extra (fastjsonschema, jsonschema, PyYAML)::

    from segment_lite.plan import PlanValidator

    validator = PlanValidator("tracking-plan.yaml")
    verdict = validator.check(message)
    for violation in verdict.violations:
        print(violation)   # properties.total: '27.5' is not of type 'number' [TRACK "Order Completed" v1]

The names below are imported on first use, so ``import segment_lite`` and
``segment-lite --help`` never load a validator. See docs/tracking-plans.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from segment_lite._lazy import lazy_exports

if TYPE_CHECKING:
    from segment_lite.plan.annotate import PlanAnnotator
    from segment_lite.plan.check import EventReport, PlanReport, check_messages
    from segment_lite.plan.codegen import generate_module
    from segment_lite.plan.files import dump_plan, load_plan, parse_plan, write_plan
    from segment_lite.plan.infer import InferOptions, infer_plan
    from segment_lite.plan.lint import Finding, LintConfig, lint_plan
    from segment_lite.plan.model import RULE_TYPES, PlanError, Rule, TrackingPlan
    from segment_lite.plan.validate import PlanValidator, Verdict, Violation

__all__ = [
    "RULE_TYPES",
    "EventReport",
    "Finding",
    "InferOptions",
    "LintConfig",
    "PlanAnnotator",
    "PlanError",
    "PlanReport",
    "PlanValidator",
    "Rule",
    "TrackingPlan",
    "Verdict",
    "Violation",
    "check_messages",
    "dump_plan",
    "generate_module",
    "infer_plan",
    "lint_plan",
    "load_plan",
    "parse_plan",
    "write_plan",
]

_HOMES = {
    "PlanAnnotator": "annotate",
    "EventReport": "check",
    "PlanReport": "check",
    "check_messages": "check",
    "generate_module": "codegen",
    "dump_plan": "files",
    "load_plan": "files",
    "parse_plan": "files",
    "write_plan": "files",
    "InferOptions": "infer",
    "infer_plan": "infer",
    "Finding": "lint",
    "LintConfig": "lint",
    "lint_plan": "lint",
    "RULE_TYPES": "model",
    "PlanError": "model",
    "Rule": "model",
    "TrackingPlan": "model",
    "PlanValidator": "validate",
    "Verdict": "validate",
    "Violation": "validate",
}

__getattr__, __dir__ = lazy_exports(__name__, _HOMES, globals(), __all__)
