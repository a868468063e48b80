"""Turn the runs into medians, ratios and target verdicts, and print them as a table."""

from __future__ import annotations

import dataclasses
import math
import statistics
from typing import Any

from benchmarks.workload import label

__all__ = [
    "DEFAULT_TARGETS",
    "METRICS",
    "TARGETS",
    "Metric",
    "finite_median",
    "format_table",
    "summarize",
    "target",
]


@dataclasses.dataclass(frozen=True)
class Metric:
    """A measured quantity: its key in a run's result, how to show it, and which way is better."""

    key: str
    label: str
    unit: str
    lower_is_better: bool
    digits: int = 1


METRICS: dict[str, Metric] = {
    m.key: m
    for m in (
        Metric("cpu_us_per_msg", "CPU per delivered message", "us", True),
        Metric("msgs_per_s", "end-to-end throughput", "msg/s", False, 0),
        Metric("p50_us", "track() latency p50", "us", True),
        Metric("p99_us", "track() latency p99", "us", True),
        Metric("bytes_per_msg", "memory per queued message", "B", True, 0),
    )
}
#: Extra per-run figures kept in the medians (not targets).
DETAILS = ("caller_cpu_us_per_msg", "msgs_per_request", "max_msgs_per_request", "sink_cpu_pct", "max_us")

#: The first round's targets, as "segment_lite is at least this many times better"
#: factors; they hold for every cell that ``TARGETS`` does not name. p99 "no worse"
#: is a factor of 1; memory "at most half" is a factor of 2.
DEFAULT_TARGETS: dict[str, float] = {
    "cpu_us_per_msg": 4.0,
    "msgs_per_s": 4.0,
    "p50_us": 3.0,
    "p99_us": 1.0,
    "bytes_per_msg": 2.0,
}
#: This round's targets (issue 15), by (scenario, client): standard-library JSON with
#: both clients capped at 100 messages per request; default settings with orjson;
#: realistic memory per queued message (before backlog compression).
TARGETS: dict[tuple[str, str], dict[str, float]] = {
    ("capped100", "lite-json"): {"cpu_us_per_msg": 6.0, "msgs_per_s": 5.0},
    ("single", "lite-orjson"): {"cpu_us_per_msg": 8.0, "msgs_per_s": 5.0, "p50_us": 5.0, "p99_us": 2.0},
    ("memory", "lite-json"): {"bytes_per_msg": 3.0},
    ("memory", "lite-orjson"): {"bytes_per_msg": 3.0},
}


def target(scenario: str, client: str, key: str) -> float:
    """The factor ``client`` must beat the reference by, for ``key`` in ``scenario``."""
    base = client.split("+")[0]
    return TARGETS.get((scenario, base), {}).get(key, DEFAULT_TARGETS[key])


TIMED_METRICS = ("cpu_us_per_msg", "msgs_per_s", "p50_us", "p99_us")
MEMORY_METRICS = ("bytes_per_msg",)


def finite_median(values: list[float]) -> float:
    """The median of the values that are not NaN (NaN when none is)."""
    finite = [value for value in values if not math.isnan(value)]
    return statistics.median(finite) if finite else math.nan


def improvement(metric: Metric, reference: float, candidate: float) -> float:
    """How many times better ``candidate`` is than ``reference`` (> 1 means better)."""
    if math.isnan(reference) or math.isnan(candidate) or reference <= 0 or candidate <= 0:
        return math.nan
    return reference / candidate if metric.lower_is_better else candidate / reference


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians per scenario and client, ratios against the reference, and target verdicts.

    Returns ``{"medians": {scenario: {client: {metric: value}}}, "ratios": {scenario:
    {client: {metric: factor}}}, "targets": {scenario: {client: {metric: {...}}}}}``.
    """
    grouped: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for run in runs:
        grouped.setdefault(run["scenario"], {}).setdefault(run["client"], []).append(run)
    medians: dict[str, dict[str, dict[str, float]]] = {}
    for scenario, by_client in grouped.items():
        for client, client_runs in by_client.items():
            keys = [key for key in (*METRICS, *DETAILS) if key in client_runs[0]]
            medians.setdefault(scenario, {})[client] = {
                key: finite_median([float(run[key]) for run in client_runs]) for key in keys
            }
            medians[scenario][client]["runs"] = len(client_runs)
    ratios: dict[str, dict[str, dict[str, float]]] = {}
    targets: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
    for scenario, by_client in medians.items():
        reference = by_client.get("reference")
        if reference is None:
            continue
        for client, values in by_client.items():
            if client == "reference":
                continue
            for key, metric in METRICS.items():
                if key not in values or key not in reference:
                    continue
                factor = improvement(metric, reference[key], values[key])
                ratios.setdefault(scenario, {}).setdefault(client, {})[key] = factor
                goal = target(scenario, client, key)
                targets.setdefault(scenario, {}).setdefault(client, {})[key] = {
                    "factor": factor,
                    "target": goal,
                    "met": bool(factor >= goal),
                }
    return {"medians": medians, "ratios": ratios, "targets": targets}


def _number(value: float, digits: int) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:,.{digits}f}"


def format_table(
    summary: dict[str, Any], clients: list[str], scenarios: list[str], markdown: bool = False
) -> str:
    """A table: per scenario and metric, each client's median and its factor vs the reference.

    A factor is "times better than the reference" (higher is better for every
    metric), followed by its target and whether it is met ("ok") or not ("MISS").
    Plain text, or with ``markdown`` a Markdown table (for docs/performance.md).
    """
    medians = summary["medians"]
    targets = summary["targets"]
    others = [client for client in clients if client != "reference"]
    header = ["scenario", "metric", "unit"]
    if "reference" in clients:
        header.append(label("reference"))
    for client in others:
        header.append(label(client))
        if "reference" in clients:
            header.append("vs ref")
    rows: list[list[str]] = [header]
    for scenario in scenarios:
        by_client = medians.get(scenario, {})
        keys = MEMORY_METRICS if scenario.startswith("memory") else TIMED_METRICS
        for index, key in enumerate(keys):
            metric = METRICS[key]
            row = [scenario if index == 0 else "", metric.label, metric.unit]
            if "reference" in clients:
                row.append(_number(by_client.get("reference", {}).get(key, math.nan), metric.digits))
            for client in others:
                row.append(_number(by_client.get(client, {}).get(key, math.nan), metric.digits))
                if "reference" in clients:
                    verdict = targets.get(scenario, {}).get(client, {}).get(key)
                    if verdict is None or math.isnan(verdict["factor"]):
                        row.append("-")
                    else:
                        goal = verdict["target"]
                        row.append(
                            f"{verdict['factor']:.2f}x (>= {goal:g}x) {'ok' if verdict['met'] else 'MISS'}"
                        )
            rows.append(row)
    if markdown:
        lines = ["| " + " | ".join(rows[0]) + " |", "|---|---|---|" + "---:|" * (len(header) - 3)]
        lines.extend("| " + " | ".join(row) + " |" for row in rows[1:])
        return "\n".join(lines).replace(">=", "≥").replace(" us ", " µs ").replace("| us |", "| µs |")
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    lines = []
    for number, row in enumerate(rows):
        cells = [
            cell.ljust(widths[column]) if column < 3 else cell.rjust(widths[column])
            for column, cell in enumerate(row)
        ]
        lines.append("  ".join(cells).rstrip())
        if number == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)
