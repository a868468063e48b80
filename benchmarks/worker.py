"""One measured run of one client, in a fresh process: ``python -m benchmarks.worker SPEC_JSON``.

A fresh process per run keeps the runs independent (no shared HTTP session, no
leftover threads, a clean heap for ``tracemalloc``) and makes ``time.process_time()``
the CPU of exactly one client: the process holds nothing else, and the sink runs
in another process. The result is printed as one ``RESULT {json}`` line.

Timed scenarios (``capped100``, ``single``, ``gzip``, ``threads4``):

1. build the client with default settings (``host`` = the sink; ``gzip=True`` for
   ``gzip``; at most 100 messages per request for ``capped100``: the reference's
   ``upload_size=100``, which is its default, and segment_lite's
   ``max_batch_size=100``), send a warm-up of ``warmup`` tracks and flush, so the
   connection is open and every code path has run once;
2. read the sink's counters, then start the clocks (wall and process CPU);
3. call ``track()`` ``n`` times (from 4 threads for ``threads4``), timing each call
   with ``perf_counter_ns`` while the client's own thread is delivering;
4. ``flush()``, stop the clocks, read the sink's counters again.

``props5`` and ``plan5`` (run by name: ``--scenarios props5,plan5``) are ``single``
with a five-property event (``workload.PROPERTIES5``), without and with a tracking
plan that describes it (``workload.PLAN5``; the reference has no plans, so it runs
``plan5`` like ``props5``). The difference of their latencies is what validation
costs a call.

The memory scenarios aim the client at a closed port, so nothing can be
delivered, and measure with ``tracemalloc`` how many bytes ``n`` more queued
tracks hold, once the server has been down for ``OUTAGE_S`` (after a warm-up of
200 queued tracks that starts the client's thread and its connection attempts).
``memory``: arguments built anew for each call, as in an app, and segment_lite's
backlog compression off (its figure for any backlog younger than ``STALL_S``);
``memory-packed``: the same with compression on (the outage is past ``STALL_S``);
``memory-shared``: compression on, the same argument objects every call.
"""

from __future__ import annotations

import dataclasses
import gc
import http.client
import json
import math
import os
import socket
import sys
import threading
import time
import tracemalloc
from typing import Any, Callable, Optional
from urllib.parse import urlsplit

from benchmarks.workload import (
    CONTEXT,
    EVENT,
    EVENT5,
    PLAN5,
    PROPERTIES,
    PROPERTIES5,
    USER_IDS,
    fresh_call_args,
    make_client,
    preload,
)

__all__ = ["DEFAULT_SCENARIOS", "SCENARIOS", "Scenario", "WorkerSpec", "percentile", "run_spec"]

#: Queued before the memory baseline is taken, so lazy one-time allocations are not counted.
MEMORY_WARMUP = 200
#: How long the server has been down when the measured messages are queued: past
#: segment_lite's stall threshold (queue.STALL_S, 1 s), as in any outage that
#: lasts long enough for memory to matter.
OUTAGE_S = 1.5
#: The reference's default queue holds 10,000 messages; more would be refused.
MAX_QUEUED = 10_000


@dataclasses.dataclass(frozen=True)
class Scenario:
    """One way of driving the clients."""

    name: str
    description: str
    threads: int = 1
    gzip: bool = False
    memory: bool = False
    #: Most messages per request, for both clients (None: each client's default).
    batch_cap: Optional[int] = None
    #: Memory scenarios: whether segment_lite may pack (compress) its backlog.
    packing: bool = True
    #: Memory scenarios: each call gets newly built arguments, as in an app.
    fresh_arguments: bool = True
    #: Track workload.EVENT5 (five properties) instead of workload.EVENT.
    five_properties: bool = False
    #: segment_lite checks each call against workload.PLAN5.
    plan: bool = False


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "capped100", "1 producer thread, both clients capped at 100 messages per request", batch_cap=100
        ),
        Scenario("single", "1 producer thread, default settings"),
        Scenario("gzip", "1 producer thread, gzip=True", gzip=True),
        Scenario("threads4", "4 producer threads, default settings", threads=4),
        Scenario(
            "memory",
            "server down: bytes held per queued message, fresh arguments, before backlog compression",
            memory=True,
            packing=False,
        ),
        Scenario(
            "memory-packed",
            "server down past queue.STALL_S: bytes held per queued message, fresh arguments, backlog compressed",
            memory=True,
        ),
        Scenario(
            "memory-shared",
            "server down past queue.STALL_S: bytes per queued message, the same argument objects every call",
            memory=True,
            fresh_arguments=False,
        ),
        Scenario("props5", "1 producer thread, a five-property event", five_properties=True),
        Scenario(
            "plan5",
            "as props5, segment_lite with a tracking plan loaded (the reference has none)",
            five_properties=True,
            plan=True,
        ),
    )
}
#: What a full run measures (``memory-shared`` flatters the reference; run it by name).
DEFAULT_SCENARIOS = ("capped100", "single", "gzip", "threads4", "memory", "memory-packed")


@dataclasses.dataclass
class WorkerSpec:
    """What one worker run does."""

    client: str
    scenario: str
    n: int
    warmup: int
    sink_url: str
    write_key: str

    def to_json(self) -> str:
        """The spec as the JSON argument of ``python -m benchmarks.worker``."""
        return json.dumps(dataclasses.asdict(self))


class SinkControl:
    """Talks to the sink's control endpoints over a connection of its own."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self._conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)

    def _call(self, method: str, path: str) -> dict[str, Any]:
        self._conn.request(method, path, body=b"" if method == "POST" else None)
        response = self._conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"sink answered {response.status} to {method} {path}: {body[:200]!r}")
        result: dict[str, Any] = json.loads(body)
        return result

    def stats(self) -> dict[str, Any]:
        """The sink's counters."""
        return self._call("GET", "/stats")

    def reset(self) -> None:
        """Zero the sink's counters."""
        self._call("POST", "/reset")


def percentile(sorted_values: list[int], q: float) -> float:
    """The nearest-rank ``q`` percentile (0 < q <= 1) of an ascending list."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q * len(sorted_values)))
    return float(sorted_values[rank - 1])


def _produce(
    track: Callable[..., Any],
    start: int,
    count: int,
    latencies: Optional[list[int]],
    cpu: Optional[list[float]] = None,
    five_properties: bool = False,
) -> int:
    """Call ``track`` ``count`` times; store each call's duration (ns) in ``latencies``; count accepted.

    When ``cpu`` is given, the CPU time this thread spent in the loop is appended to it.
    """
    clock = time.perf_counter_ns
    user_ids = USER_IDS
    n_ids = len(user_ids)
    event, properties, context = (
        (EVENT5, PROPERTIES5, CONTEXT) if five_properties else (EVENT, PROPERTIES, CONTEXT)
    )
    accepted = 0
    cpu0 = time.thread_time()
    if latencies is None:
        for index in range(start, start + count):
            accepted += track(user_ids[index % n_ids], event, properties, context)[0]
        return accepted
    for offset in range(count):
        user_id = user_ids[(start + offset) % n_ids]
        began = clock()
        ok = track(user_id, event, properties, context)[0]
        latencies[offset] = clock() - began
        accepted += ok
    if cpu is not None:
        cpu.append(time.thread_time() - cpu0)
    return accepted


def _produce_threads(
    track: Callable[..., Any], n: int, threads: int, cpu: list[float]
) -> tuple[list[int], int]:
    shares = [n // threads + (1 if index < n % threads else 0) for index in range(threads)]
    lists = [[0] * share for share in shares]
    accepted = [0] * threads
    start_gate = threading.Barrier(threads)

    def producer(index: int) -> None:
        start_gate.wait()
        accepted[index] = _produce(track, sum(shares[:index]), shares[index], lists[index], cpu)

    workers = [threading.Thread(target=producer, args=(index,)) for index in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return [value for values in lists for value in values], sum(accepted)


def run_timed(spec: WorkerSpec, scenario: Scenario) -> dict[str, Any]:
    """N tracks + flush against the sink: CPU, wall, per-call latency, and what the sink got."""
    if spec.n + spec.warmup > MAX_QUEUED:
        raise ValueError(f"n + warmup must be at most {MAX_QUEUED} (the reference's default queue size)")
    sink = SinkControl(spec.sink_url)
    sink.reset()
    plan = scenario.plan and spec.client != "reference"
    options = {"tracking_plan": PLAN5, "on_violation": "raise"} if plan else {}
    client, track = make_client(
        spec.client, spec.sink_url, spec.write_key, scenario.gzip, scenario.batch_cap, **options
    )
    plan_enforced = plan and _refuses_a_violation(track)
    five = scenario.five_properties
    warm_accepted = _produce(track, 0, spec.warmup, None, five_properties=five)
    client.flush()
    before = sink.stats()
    gc.collect()

    caller_cpu: list[float] = []
    cpu0, wall0 = time.process_time(), time.perf_counter()
    if scenario.threads == 1:
        latencies = [0] * spec.n
        accepted = _produce(track, spec.warmup, spec.n, latencies, caller_cpu, five_properties=five)
    else:
        latencies, accepted = _produce_threads(track, spec.n, scenario.threads, caller_cpu)
    client.flush()
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0

    after = sink.stats()
    latencies.sort()
    sent = spec.warmup + spec.n
    requests = after["batches"] - before["batches"]
    return {
        "sent": sent,
        "accepted": warm_accepted + accepted,
        "delivered_unique": after["unique"],
        "delivered_total": after["messages"],
        "bad_requests": after["bad_requests"],
        "cpu_us_per_msg": cpu / spec.n * 1e6,
        "caller_cpu_us_per_msg": sum(caller_cpu) / spec.n * 1e6,
        "msgs_per_s": spec.n / wall,
        "p50_us": percentile(latencies, 0.50) / 1e3,
        "p99_us": percentile(latencies, 0.99) / 1e3,
        "max_us": latencies[-1] / 1e3 if latencies else math.nan,
        "wall_s": wall,
        "cpu_s": cpu,
        "requests": requests,
        "msgs_per_request": spec.n / requests if requests else math.nan,
        "max_msgs_per_request": after["max_batch"],
        "sink_cpu_pct": (after["cpu_s"] - before["cpu_s"]) / wall * 100.0,
        "plan_enforced": plan_enforced,
    }


def _refuses_a_violation(track: Callable[..., Any]) -> bool:
    """Whether the client refuses an event that breaks its plan (so the plan really is checked)."""
    from segment_lite import PlanViolationError

    try:
        track(USER_IDS[0], EVENT5, dict(PROPERTIES5, price="free"), CONTEXT)
    except PlanViolationError:
        return True  # refused at the call: nothing was queued
    raise RuntimeError("the plan scenario's client accepted an event that breaks its plan")


def closed_port() -> int:
    """A loopback port with nothing listening (connections are refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _produce_fresh(track: Callable[..., Any], start: int, count: int) -> int:
    """Call ``track`` ``count`` times, each with newly built arguments; count accepted."""
    accepted = 0
    for index in range(start, start + count):
        accepted += track(*fresh_call_args(index))[0]
    return accepted


def run_memory(spec: WorkerSpec, scenario: Scenario, **lite_options: Any) -> dict[str, Any]:
    """Bytes held per queued message (``tracemalloc``), with the server unreachable.

    With ``scenario.fresh_arguments``, each call gets newly built arguments (see
    ``workload.fresh_call_args``), else the same objects every call. Without
    ``scenario.packing``, segment_lite's queue never counts delivery as stalled, so
    its backlog stays as encoded (what it holds in the first ``STALL_S`` of an
    outage, or in any backlog of a healthy pipeline). ``lite_options`` are more
    ``segment_lite.Client`` arguments (``spool_dir`` for benchmarks.spool).
    """
    fresh = scenario.fresh_arguments
    n = min(spec.n, MAX_QUEUED - MEMORY_WARMUP - 100)  # the reference's consumer holds up to 100 more
    preload(spec.client)
    if not scenario.packing and spec.client != "reference":
        import segment_lite.queue

        segment_lite.queue.STALL_S = math.inf  # read at each put
    tracemalloc.start()
    client, track = make_client(
        spec.client, f"http://127.0.0.1:{closed_port()}", spec.write_key, False, **lite_options
    )
    warm_accepted = _produce(track, 0, MEMORY_WARMUP, None)
    time.sleep(OUTAGE_S)  # the client's thread has taken a batch and keeps failing to connect
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    accepted = _produce_fresh(track, MEMORY_WARMUP, n) if fresh else _produce(track, MEMORY_WARMUP, n, None)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del client
    return {
        "sent": MEMORY_WARMUP + n,
        "accepted": warm_accepted + accepted,
        "queued_n": n,
        "bytes_per_msg": (after - before) / n,
    }


def run_spec(spec: WorkerSpec) -> dict[str, Any]:
    """Run ``spec`` in this process and return its measurements."""
    scenario = SCENARIOS[spec.scenario]
    result = run_memory(spec, scenario) if scenario.memory else run_timed(spec, scenario)
    result.update(client=spec.client, scenario=spec.scenario, n=spec.n, pid=os.getpid())
    return result


def main(argv: Optional[list[str]] = None) -> None:
    """Entry point: run the spec given as JSON, print ``RESULT {json}``, and exit at once.

    The process exits with ``os._exit`` so neither client's exit handler waits on
    what is left (an unreachable server in the memory scenario).
    """
    args = sys.argv[1:] if argv is None else argv
    spec = WorkerSpec(**json.loads(args[0]))
    try:
        result = run_spec(spec)
    except BaseException as exc:  # report it to the driver, whatever it is
        print("ERROR " + json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
        os._exit(1)
    print("RESULT " + json.dumps(result), flush=True)
    os._exit(0)


if __name__ == "__main__":
    main()
