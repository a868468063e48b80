"""The disk spool's cost, side by side with the reference and the memory queue: ``python -m benchmarks.spool``.

Separate from ``benchmarks.run`` (the main table), with the same sink, workload and
method: every run is a fresh process, the order of the variants alternates from
one repetition to the next, and each cell is a median. Variants:

* ``reference``: segment-analytics-python 2.4.0, default settings;
* ``lite-json memory`` / ``lite-orjson memory``: segment_lite with its memory queue;
* ``lite-json spool`` / ``lite-orjson spool``: segment_lite with ``spool_dir`` and
  the default ``spool_fsync="batch"``;
* ``lite-orjson spool always`` / ``... never``: the other fsync policies.

Timed runs (``single``): ``warmup`` tracks and a flush, then ``n`` tracks, each
timed, then ``flush()`` (delivered and acknowledged): p50/p99 of ``track()``,
end-to-end messages per second, CPU per message, and for the spool the number of
fsyncs and the time spent in them (counted on whichever thread made them). Every
run must deliver exactly what it sent, or the benchmark fails.

Memory runs (``memory``): the server is unreachable; ``n`` tracks with freshly
built arguments are queued and ``tracemalloc`` gives the bytes held per queued
message (segment_lite's backlog compression off, as in a fresh outage).

Kill rounds (``kill``): ``kill_rounds`` times, a process with the default spool
settings tracks as fast as it can against a live collector, appending each
accepted messageId to a file, and is killed with SIGKILL at a random moment;
a last process delivers what they left. Reports accepted messages lost (the
target is 0) and duplicates (only batches in flight at a kill may come twice).

Prints a table and writes the runs and medians as JSON (``--json PATH``).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import math
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Optional

from benchmarks.report import finite_median
from benchmarks.run import REPO_ROOT, run_in_fresh_process, start_sink
from benchmarks.sink import DEFAULT_WRITE_KEY
from benchmarks.worker import SCENARIOS, SinkControl, WorkerSpec, _produce, percentile
from benchmarks.worker import run_memory as worker_run_memory
from benchmarks.workload import make_client, unavailable_reason

DEFAULT_JSON = REPO_ROOT / "benchmarks" / "results" / "spool-run.json"
FULL = {"n": 9_500, "warmup": 500, "reps": 5}
QUICK = {"n": 1_000, "warmup": 100, "reps": 1}

#: (name, client kind, spool fsync policy or None for the memory queue)
VARIANTS: tuple[tuple[str, str, Optional[str]], ...] = (
    ("reference", "reference", None),
    ("lite-json memory", "lite-json", None),
    ("lite-json spool", "lite-json", "batch"),
    ("lite-orjson memory", "lite-orjson", None),
    ("lite-orjson spool", "lite-orjson", "batch"),
    ("lite-orjson spool always", "lite-orjson", "always"),
    ("lite-orjson spool never", "lite-orjson", "never"),
)
TIMED_METRICS = (
    "p50_us",
    "p99_us",
    "msgs_per_s",
    "cpu_us_per_msg",
    "fsyncs",
    "fsync_ms_total",
    "fsync_us_each",
)
MEMORY_METRICS = ("bytes_per_msg",)


@dataclasses.dataclass
class SpoolSpec:
    """One measured run."""

    variant: str
    kind: str
    fsync: Optional[str]
    scenario: str  # "single" or "memory"
    n: int
    warmup: int
    sink_url: str
    write_key: str
    spool_root: str


class FsyncMeter:
    """Counts and times the spool's fsyncs (``store.fdatasync``, patched): of the journal and the WAL.

    Under ``"always"`` they are the journal's, one per call, made before it returns
    (SQLite's own fsyncs of its commits under ``synchronous=FULL`` are not seen).
    """

    def __init__(self) -> None:
        self.count = 0
        self.seconds = 0.0
        self._lock = threading.Lock()

    def install(self) -> None:
        from segment_lite.spool import store

        real = store.fdatasync

        def timed(fd: int) -> None:
            began = time.perf_counter()
            try:
                real(fd)
            finally:
                with self._lock:
                    self.count += 1
                    self.seconds += time.perf_counter() - began

        store.fdatasync = timed  # type: ignore[assignment]


def _options(spec: SpoolSpec) -> dict[str, Any]:
    if spec.fsync is None:
        return {}
    return {"spool_dir": tempfile.mkdtemp(dir=spec.spool_root), "spool_fsync": spec.fsync}


def run_timed(spec: SpoolSpec) -> dict[str, Any]:
    """warmup + n tracks and a flush against the sink, as benchmarks.worker's timed scenarios."""
    sink = SinkControl(spec.sink_url)
    sink.reset()
    meter = FsyncMeter()
    if spec.fsync is not None:
        meter.install()
    client, track = make_client(spec.kind, spec.sink_url, spec.write_key, False, **_options(spec))
    warm_accepted = _produce(track, 0, spec.warmup, None)
    client.flush()
    fsyncs0, fsync_s0 = meter.count, meter.seconds
    gc.collect()
    latencies = [0] * spec.n
    cpu0, wall0 = time.process_time(), time.perf_counter()
    accepted = _produce(track, spec.warmup, spec.n, latencies)
    client.flush()
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    after = sink.stats()
    fsyncs, fsync_s = meter.count - fsyncs0, meter.seconds - fsync_s0
    latencies.sort()
    result = {
        "sent": spec.warmup + spec.n,
        "accepted": warm_accepted + accepted,
        "delivered_unique": after["unique"],
        "p50_us": percentile(latencies, 0.50) / 1e3,
        "p99_us": percentile(latencies, 0.99) / 1e3,
        "msgs_per_s": spec.n / wall,
        "cpu_us_per_msg": cpu / spec.n * 1e6,
        "fsyncs": float(fsyncs),
        "fsync_ms_total": fsync_s * 1e3,
        "fsync_us_each": fsync_s / fsyncs * 1e6 if fsyncs and not math.isnan(fsync_s) else math.nan,
    }
    if spec.fsync is not None:
        client.shutdown(timeout=10)
    return result


def run_memory(spec: SpoolSpec) -> dict[str, Any]:
    """Bytes held per queued message while the server is unreachable: benchmarks.worker's ``memory``."""
    worker_spec = WorkerSpec(spec.kind, "memory", spec.n, spec.warmup, spec.sink_url, spec.write_key)
    return worker_run_memory(worker_spec, SCENARIOS["memory"], **_options(spec))


def worker_main(spec_json: str) -> None:
    """Run one spec in this (fresh) process and print ``RESULT {json}``; exits at once."""
    spec = SpoolSpec(**json.loads(spec_json))
    try:
        result = run_memory(spec) if spec.scenario == "memory" else run_timed(spec)
    except BaseException as exc:
        print("ERROR " + json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
        os._exit(1)
    result.update(variant=spec.variant, scenario=spec.scenario, n=spec.n)
    print("RESULT " + json.dumps(result), flush=True)
    os._exit(0)


def _run(spec: SpoolSpec) -> dict[str, Any]:
    arguments = ["benchmarks.spool", "--worker", json.dumps(dataclasses.asdict(spec))]
    return run_in_fresh_process(arguments, f"{spec.variant} {spec.scenario}")


#: A process that tracks until it is killed, appending each accepted messageId to a file.
KILLED_CHILD = r"""
import os, sys
import segment_lite

host, spool_dir, ids_path, write_key = sys.argv[1:5]
client = segment_lite.Client(write_key, host=host, spool_dir=spool_dir)
fd = os.open(ids_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
print("ready", flush=True)
i = 0
while True:
    ok, message = client.track("u", "Killed", {"i": i})
    if ok:
        os.write(fd, (message["messageId"] + "\n").encode())  # once accepted
    i += 1
"""


def run_kill_rounds(rounds: int, spool_root: str, seed: int = 22) -> dict[str, Any]:
    """``rounds`` processes killed with SIGKILL at random moments; a last one delivers what they left."""
    import random
    import signal
    import subprocess

    import segment_lite
    from segment_lite.collector import Collector
    from segment_lite.sender import MAX_BATCH_COUNT

    rng = random.Random(seed)
    spool_dir = tempfile.mkdtemp(dir=spool_root)
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    accepted: set[str] = set()
    with Collector() as collector:
        for index in range(rounds):
            ids_path = os.path.join(spool_root, f"kill-ids-{index}")
            child = subprocess.Popen(
                [sys.executable, "-c", KILLED_CHILD, collector.url, spool_dir, ids_path, DEFAULT_WRITE_KEY],
                stdout=subprocess.PIPE,
                text=True,
                env=env,
            )
            assert child.stdout is not None
            child.stdout.readline()
            time.sleep(rng.uniform(0.05, 1.0))
            os.kill(child.pid, signal.SIGKILL)
            child.wait()
            child.stdout.close()
            with open(ids_path, encoding="ascii") as handle:
                accepted.update(handle.read().split())
        last = segment_lite.Client(DEFAULT_WRITE_KEY, host=collector.url, spool_dir=spool_dir)
        last.flush(timeout=120)
        corrupt = last.stats()["dropped"]["spool_corrupt"]
        last.shutdown(timeout=10)
        delivered = collector.message_ids()
        duplicates = collector.stats.duplicates
    return {
        "rounds": rounds,
        "accepted": len(accepted),
        "lost": len(accepted - delivered),
        "duplicates": duplicates,
        # One sender thread, whose batches grow with a backlog to MAX_BATCH_COUNT: the most a kill
        # can have in flight, so the most it can send twice.
        "duplicates_bound": rounds * MAX_BATCH_COUNT,
        "spool_corrupt": corrupt,
    }


def run_benchmark(
    n: int, warmup: int, reps: int, spool_root: str, log: Any = sys.stderr, kill_rounds: int = 20
) -> dict[str, Any]:
    """Every variant, ``reps`` times, alternating the order, then the kill rounds; returns runs and medians."""
    variants = [v for v in VARIANTS if not unavailable_reason(v[1])]
    sink, url = start_sink(DEFAULT_WRITE_KEY)
    runs: list[dict[str, Any]] = []
    try:
        for rep in range(reps):
            order = variants if rep % 2 == 0 else list(reversed(variants))
            for scenario in ("single", "memory"):
                for name, kind, fsync in order:
                    if scenario == "memory" and fsync not in (None, "batch"):
                        continue  # fsync does not change what is held in memory
                    spec = SpoolSpec(
                        name, kind, fsync, scenario, n, warmup, url, DEFAULT_WRITE_KEY, spool_root
                    )
                    result = _run(spec)
                    if scenario == "single" and result["delivered_unique"] != result["sent"]:
                        raise RuntimeError(
                            f"{name}: delivered {result['delivered_unique']} of {result['sent']}"
                        )
                    runs.append(result)
                    if log is not None:
                        print(f"rep {rep + 1}/{reps} {scenario:6} {name:26} done", file=log, flush=True)
    finally:
        sink.terminate()
        sink.wait(10)
    medians: dict[str, dict[str, dict[str, float]]] = {}
    for scenario, metrics in (("single", TIMED_METRICS), ("memory", MEMORY_METRICS)):
        for name, _, _ in variants:
            mine = [r for r in runs if r["variant"] == name and r["scenario"] == scenario]
            if mine:
                medians.setdefault(scenario, {})[name] = {
                    m: finite_median([float(r[m]) for r in mine]) for m in metrics
                }
    kill = run_kill_rounds(kill_rounds, spool_root) if kill_rounds else None
    if log is not None and kill is not None:
        print(f"kill rounds: {kill}", file=log, flush=True)
    return {"runs": runs, "medians": medians, "n": n, "warmup": warmup, "reps": reps, "kill": kill}


def format_table(report: dict[str, Any]) -> str:
    """The medians as a Markdown table, with the spool's ratios to the memory queue and the reference."""
    single = report["medians"]["single"]
    memory = report["medians"].get("memory", {})
    lines = [
        "| variant | `track()` p50 (µs) | p99 (µs) | end-to-end (msg/s) | vs ref | CPU/msg (µs) "
        "| fsyncs | time in fsync (ms) | per fsync (µs) | memory per queued msg (B) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    ref = single.get("reference", {}).get("msgs_per_s", math.nan)
    for name, values in single.items():
        mem = memory.get(name, {}).get("bytes_per_msg", math.nan)
        lines.append(
            f"| {name} | {values['p50_us']:.1f} | {values['p99_us']:.1f} | {values['msgs_per_s']:,.0f} "
            f"| {values['msgs_per_s'] / ref:.2f}x | {values['cpu_us_per_msg']:.1f} "
            f"| {_num(values['fsyncs'], '{:,.0f}')} | {_num(values['fsync_ms_total'], '{:,.1f}')} "
            f"| {_num(values['fsync_us_each'], '{:,.0f}')} | {_num(mem, '{:,.0f}')} |"
        )
    ratios = []
    for encoder in ("json", "orjson"):
        base = single.get(f"lite-{encoder} memory")
        spooled = single.get(f"lite-{encoder} spool")
        if base and spooled:
            ratios.append(
                f"{encoder}: spool p50 / memory p50 = {spooled['p50_us'] / base['p50_us']:.2f} (target ≤ 2), "
                f"spool throughput / reference = {spooled['msgs_per_s'] / ref:.2f}x (target ≥ 3x)"
            )
    kill = report.get("kill")
    if kill:
        ratios.append(
            f"kill -9 x {kill['rounds']}: {kill['accepted']:,} accepted, {kill['lost']} lost (target 0), "
            f"{kill['duplicates']} duplicate(s) (at most {kill['duplicates_bound']:,}: batches in flight), "
            f"{kill['spool_corrupt']} spool_corrupt"
        )
    return "\n".join([*lines, "", *ratios])


def _num(value: float, fmt: str) -> str:
    return "-" if math.isnan(value) or value == 0 else fmt.format(value)


def main(argv: Optional[list[str]] = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.spool", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N=1,000, one repetition")
    parser.add_argument("-n", type=int, help="timed tracks per run")
    parser.add_argument("--reps", type=int, help="repetitions")
    parser.add_argument("--json", default=str(DEFAULT_JSON), help="where to write the report")
    parser.add_argument("--spool-root", help="directory for the spools (default: a temporary one)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker_main(args.worker)
    plan = dict(QUICK if args.quick else FULL)
    if args.n:
        plan["n"] = args.n
    if args.reps:
        plan["reps"] = args.reps
    root = args.spool_root or tempfile.mkdtemp(prefix="segment-lite-spool-bench-")
    try:
        report = run_benchmark(plan["n"], plan["warmup"], plan["reps"], root)
    finally:
        if not args.spool_root:
            shutil.rmtree(root, ignore_errors=True)
    report["machine"] = {"python": sys.version.split()[0], "cpus": os.cpu_count(), "spool_root": root}
    report["date"] = time.strftime("%Y-%m-%d")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=2))
    print(format_table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
