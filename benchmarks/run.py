"""The benchmark driver: ``python -m benchmarks.run [--quick] [--json PATH]``.

It starts the sink in its own process, then for each repetition runs every
scenario for every client, each run in a fresh worker process, alternating the
order of the clients from one repetition to the next so that a slow patch of a
shared machine is spread over all of them. Every timed run must deliver exactly
what it sent (counted by unique messageId at the sink), or the benchmark fails.
It prints the medians, the ratios against the reference and the target verdicts
as a table, and writes every run and the summary as JSON.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

from benchmarks.report import format_table, summarize
from benchmarks.sink import DEFAULT_WRITE_KEY
from benchmarks.worker import DEFAULT_SCENARIOS, MAX_QUEUED, SCENARIOS, WorkerSpec
from benchmarks.workload import CLIENTS, EXPERIMENTS, available_clients

__all__ = ["BenchmarkError", "main", "run_benchmark", "run_in_fresh_process"]

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_JSON = REPO_ROOT / "benchmarks" / "results" / "latest.json"
#: Full run: 9,500 timed tracks after 500 of warm-up fill the reference's default
#: 10,000-message queue exactly (it drops what does not fit), 7 repetitions.
FULL = {"n": 9_500, "warmup": 500, "reps": 7}
QUICK = {"n": 1_000, "warmup": 100, "reps": 1}
WORKER_TIMEOUT_S = 300.0
#: Above this share of one core, the sink could be slowing the clients down.
SINK_CPU_WARN_PCT = 70.0


class BenchmarkError(AssertionError):
    """A run failed, or did not deliver exactly what it sent."""


def _worker_env() -> dict[str, str]:
    env = dict(os.environ)
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + path if path else "")
    return env


def start_sink(write_key: str) -> tuple[subprocess.Popen[str], str]:
    """Start the sink in its own process; returns the process and its base URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.sink", "--write-key", write_key, "--max-seconds", "3600"],
        stdout=subprocess.PIPE,
        cwd=REPO_ROOT,
        env=_worker_env(),
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("PORT "):
        process.kill()
        raise BenchmarkError(f"the sink did not start (it said {line!r})")
    return process, f"http://127.0.0.1:{int(line.split()[1])}"


def run_worker(spec: WorkerSpec) -> dict[str, Any]:
    """Run one measured run in a fresh process and return its result."""
    return run_in_fresh_process(["benchmarks.worker", spec.to_json()], f"{spec.client}/{spec.scenario}")


def run_in_fresh_process(module_and_arguments: list[str], where: str) -> dict[str, Any]:
    """Run ``python -m MODULE ARGUMENTS...`` and return the ``RESULT {json}`` it prints.

    A worker that prints ``ERROR {"error": ...}`` instead, or nothing, fails with
    ``BenchmarkError`` naming ``where`` (the run).
    """
    completed = subprocess.run(
        [sys.executable, "-m", *module_and_arguments],
        capture_output=True,
        cwd=REPO_ROOT,
        env=_worker_env(),
        text=True,
        timeout=WORKER_TIMEOUT_S,
    )
    for line in completed.stdout.splitlines():
        if line.startswith("RESULT "):
            result: dict[str, Any] = json.loads(line[len("RESULT ") :])
            return result
        if line.startswith("ERROR "):
            raise BenchmarkError(f"{where}: {json.loads(line[6:])['error']}")
    raise BenchmarkError(
        f"{where}: the worker exited with {completed.returncode} and no result; "
        f"stderr: {completed.stderr[-2000:]}"
    )


def check_delivery(result: dict[str, Any]) -> None:
    """Fail unless the run got every message accepted and (timed runs) delivered exactly once."""
    where = f"{result['client']}/{result['scenario']}"
    if result["accepted"] != result["sent"]:
        raise BenchmarkError(f"{where}: {result['sent']} sent but only {result['accepted']} accepted")
    if "delivered_unique" not in result:
        return
    if result["delivered_unique"] != result["sent"]:
        raise BenchmarkError(
            f"{where}: {result['sent']} sent but {result['delivered_unique']} unique messageIds delivered"
        )
    cap = SCENARIOS[result["scenario"]].batch_cap
    if cap is not None and result["max_msgs_per_request"] > cap:
        raise BenchmarkError(
            f"{where}: {result['max_msgs_per_request']} messages in a request, above the cap of {cap}"
        )
    if result["delivered_total"] != result["delivered_unique"] or result["bad_requests"]:
        raise BenchmarkError(
            f"{where}: {result['delivered_total'] - result['delivered_unique']} duplicates, "
            f"{result['bad_requests']} bad requests"
        )


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on."""
    model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions: dict[str, str] = {}
    for module in ("segment_lite", "segment.analytics", "orjson", "requests"):
        try:
            versions[module] = str(getattr(__import__(module, fromlist=["x"]), "__version__", "?"))
        except ImportError:
            versions[module] = "not installed"
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cpu_model": model,
        "versions": versions,
    }


def run_benchmark(
    n: int = FULL["n"],
    reps: int = FULL["reps"],
    warmup: int = FULL["warmup"],
    clients: tuple[str, ...] = CLIENTS,
    scenarios: tuple[str, ...] = DEFAULT_SCENARIOS,
    progress: Optional[Callable[[str], None]] = None,
) -> dict[str, Any]:
    """Run the whole benchmark and return the report (runs, medians, ratios, targets, meta).

    Raises ``BenchmarkError`` if a run fails or does not deliver exactly what it sent.
    """
    if n + warmup > MAX_QUEUED:
        raise ValueError(f"n + warmup must be at most {MAX_QUEUED}, the reference's default queue size")
    say = progress or (lambda text: None)
    runnable, skipped = available_clients(clients)
    for client, reason in skipped.items():
        say(f"skipping {client}: {reason}")
    started = time.time()
    sink, url = start_sink(DEFAULT_WRITE_KEY)
    runs: list[dict[str, Any]] = []
    try:
        for rep in range(reps):
            order = runnable if rep % 2 == 0 else runnable[::-1]
            for scenario in scenarios:
                for client in order:
                    spec = WorkerSpec(client, scenario, n, warmup, url, DEFAULT_WRITE_KEY)
                    result = run_worker(spec)
                    result["rep"] = rep
                    result["loadavg_1m"] = os.getloadavg()[0]
                    check_delivery(result)
                    runs.append(result)
                    say(_progress_line(rep, reps, result))
    finally:
        sink.terminate()
        sink.wait(10)
    summary = summarize(runs)
    sink_peak = max((run.get("sink_cpu_pct", 0.0) for run in runs), default=0.0)
    return {
        "meta": {
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "duration_s": round(time.time() - started, 1),
            "n": n,
            "warmup": warmup,
            "reps": reps,
            "clients": runnable,
            "skipped": skipped,
            "scenarios": list(scenarios),
            "scenario_descriptions": {name: SCENARIOS[name].description for name in scenarios},
            "sink_cpu_peak_pct": sink_peak,
            "sink_cpu_ok": sink_peak < SINK_CPU_WARN_PCT,
            "loadavg_1m_median": summary_load(runs),
            "machine": machine_info(),
        },
        **summary,
        "runs": runs,
    }


def summary_load(runs: list[dict[str, Any]]) -> float:
    """The median 1-minute load average seen after each run (how busy the machine was)."""
    loads = sorted(run["loadavg_1m"] for run in runs)
    return loads[len(loads) // 2] if loads else 0.0


def _progress_line(rep: int, reps: int, result: dict[str, Any]) -> str:
    head = f"[{rep + 1}/{reps}] {result['scenario']:<13} {result['client']:<12}"
    if "bytes_per_msg" in result:
        return f"{head} {result['bytes_per_msg']:8.0f} B/queued msg"
    return (
        f"{head} {result['cpu_us_per_msg']:7.1f} us CPU/msg {result['msgs_per_s']:9.0f} msg/s "
        f"p50 {result['p50_us']:6.1f} us p99 {result['p99_us']:8.1f} us "
        f"({result['msgs_per_request']:.0f} msg/request, sink {result['sink_cpu_pct']:.0f}% CPU)"
    )


def render(report: dict[str, Any]) -> str:
    """The report as text: a header, the table, and the notes that go with it."""
    meta = report["meta"]
    machine = meta["machine"]
    lines = [
        f"segment_lite vs segment-analytics-python: medians of {meta['reps']} run(s) per cell, "
        f"N={meta['n']:,} tracks per run (+{meta['warmup']} warm-up)",
        f"machine: {machine['cpu_count']} cores ({machine['cpu_model'] or 'unknown CPU'}), "
        f"Python {machine['python']}, median load {meta['loadavg_1m_median']:.2f}; "
        f"run took {meta['duration_s']:.0f}s",
        "",
        format_table(report, meta["clients"], meta["scenarios"]),
        "",
        "'vs ref' = times better than the reference (higher is better for every metric).",
        f"sink CPU peaked at {meta['sink_cpu_peak_pct']:.0f}% of one core"
        + ("" if meta["sink_cpu_ok"] else " -- WARNING: the sink may have been a bottleneck"),
    ]
    for client, reason in meta["skipped"].items():
        lines.append(f"skipped {client}: {reason}")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description="Benchmark segment_lite against the reference client.")
    parser.add_argument("--quick", action="store_true", help=f"a short run: {QUICK}")
    parser.add_argument("-n", type=int, help="timed tracks per run")
    parser.add_argument("--warmup", type=int, help="warm-up tracks per run")
    parser.add_argument("--reps", type=int, help="repetitions (medians are taken over them)")
    parser.add_argument(
        "--clients", default=",".join(CLIENTS), help=f"comma-separated, of {CLIENTS + EXPERIMENTS}"
    )
    parser.add_argument(
        "--scenarios",
        default=",".join(DEFAULT_SCENARIOS),
        help=f"comma-separated, of {tuple(SCENARIOS)}",
    )
    parser.add_argument("--json", default=str(DEFAULT_JSON), help="where to write the full report")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    parser.add_argument(
        "--markdown", metavar="REPORT_JSON", help="print the table of a written report as Markdown and exit"
    )
    args = parser.parse_args(argv)
    if args.markdown:
        report = json.loads(Path(args.markdown).read_text(encoding="utf-8"))
        meta = report["meta"]
        print(format_table(report, meta["clients"], meta["scenarios"], markdown=True))
        return 0
    base = QUICK if args.quick else FULL
    clients = tuple(name for name in args.clients.split(",") if name)
    scenarios = tuple(name for name in args.scenarios.split(",") if name)
    for name in scenarios:
        if name not in SCENARIOS:
            parser.error(f"unknown scenario {name!r}")
    try:
        report = run_benchmark(
            n=args.n or base["n"],
            reps=args.reps or base["reps"],
            warmup=args.warmup if args.warmup is not None else base["warmup"],
            clients=clients,
            scenarios=scenarios,
            progress=None if args.quiet else lambda text: print(text, file=sys.stderr, flush=True),
        )
    except BenchmarkError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    print(render(report))
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        print(f"full report: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
