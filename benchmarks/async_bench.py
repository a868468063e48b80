"""AsyncClient against Client and PostHog's AsyncPosthog, to one local sink: CPU, throughput, enqueue, loop lag.

Each measurement runs in a fresh process (so CPU time is that client's alone)
against the sink of benchmarks/sink.py in another process:

* ``throughput``: ``N`` tracks enqueued inside ``asyncio.run`` (each enqueue timed),
  then ``shutdown``; CPU seconds of the client's process per delivered message,
  messages delivered per second of wall time, enqueue p50/p99.
* ``lag``: a ticker task sleeping 1 ms measures how late it wakes (and how much CPU
  the loop's thread spent between two wake-ups: the loop held rather than the
  process descheduled by a busy machine) while 10,000
  tracks (10 per loop turn) are delivered to a sink answering each batch in
  200 ms; p99 of its lateness. ``Client`` delivers from its thread; the loop feels
  it through the GIL.

Run ``python -m benchmarks.async_bench [--n 20000] [--markdown]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from typing import Any, Optional

from benchmarks.run import REPO_ROOT, _worker_env

WRITE_KEY = "bench-write-key"
CLIENTS = ("lite-async", "lite-threads", "posthog-async")
LAG_CLIENTS = ("lite-async", "lite-threads", "none")  # none: the ticker alone, the machine's own noise
LAG_MESSAGES = 10_000
LAG_DELAY_MS = 200.0
TICK_S = 0.001
#: Tracks per loop turn in the lag run: small, so the lag is the client's, not the producer's.
LAG_BURST = 10


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def _sink_stats(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url + "/stats", timeout=10) as answer:
        return json.loads(answer.read())  # type: ignore[no-any-return]


def _make(client: str, url: str) -> Any:
    if client == "lite-async":
        from segment_lite import AsyncClient

        return AsyncClient(WRITE_KEY, host=url, shutdown_timeout=120, max_queue_size=1_000_000)
    if client == "lite-threads":
        from segment_lite import Client

        return Client(WRITE_KEY, host=url, shutdown_timeout=120, max_queue_size=1_000_000)
    from posthog import AsyncPosthog

    return AsyncPosthog(WRITE_KEY, host=url, flush_at=100, max_queue_size=1_000_000)


def _enqueue(client: str, sdk: Any, i: int) -> None:
    if client == "posthog-async":
        sdk.capture("Bench Event", distinct_id=f"user-{i % 100}", properties={"i": i, "plan": "pro"})
    else:
        sdk.track(f"user-{i % 100}", "Bench Event", {"i": i, "plan": "pro"})


async def _stop(client: str, sdk: Any) -> None:
    if client == "lite-threads":
        await asyncio.get_running_loop().run_in_executor(None, sdk.shutdown, 120)
    elif client == "posthog-async":
        await sdk.flush(120)
        await sdk.shutdown()
    else:
        await sdk.shutdown(120)


async def _throughput(client: str, url: str, n: int) -> dict[str, Any]:
    sdk = _make(client, url)  # made, like the imports, before anything is measured
    sink_before = _sink_stats(url)
    before = sink_before["unique"]
    enqueue_ns: list[int] = []
    clock = time.perf_counter_ns
    cpu, wall = time.process_time(), time.perf_counter()
    for i in range(n):
        started = clock()
        _enqueue(client, sdk, i)
        enqueue_ns.append(clock() - started)
        if i % 1000 == 999:
            await asyncio.sleep(0)  # let the delivery tasks run, as a server's loop would
    await _stop(client, sdk)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    sink_after = _sink_stats(url)
    delivered = sink_after["unique"] - before
    return {
        "delivered": delivered,
        "requests": sink_after["batches"] - sink_before["batches"],
        "cpu_us_per_msg": cpu / max(1, delivered) * 1e6,
        "msgs_per_s": delivered / wall,
        "enqueue_p50_us": _percentile([ns / 1000 for ns in enqueue_ns], 0.50),
        "enqueue_p99_us": _percentile([ns / 1000 for ns in enqueue_ns], 0.99),
    }


async def _lag(client: str, url: str) -> dict[str, Any]:
    sdk = None if client == "none" else _make(client, url)
    loop = asyncio.get_running_loop()
    lateness: list[float] = []
    busy: list[float] = []  # CPU the loop's thread spent between two ticks: the loop held, not descheduled
    running = True

    async def ticker() -> None:
        while running:
            expected = loop.time() + TICK_S
            cpu = time.thread_time()
            await asyncio.sleep(TICK_S)
            lateness.append(loop.time() - expected)
            busy.append(time.thread_time() - cpu)

    before = _sink_stats(url)["unique"]
    ticking = asyncio.ensure_future(ticker())
    if sdk is None:
        await asyncio.sleep(2.0)
    else:
        for i in range(LAG_MESSAGES):
            _enqueue(client, sdk, i)
            if i % LAG_BURST == LAG_BURST - 1:
                await asyncio.sleep(0)
        await _stop(client, sdk)
    running = False
    await ticking
    return {
        "delivered": _sink_stats(url)["unique"] - before,
        "lag_p50_ms": _percentile(lateness, 0.50) * 1000,
        "lag_p99_ms": _percentile(lateness, 0.99) * 1000,
        "lag_max_ms": max(lateness) * 1000,
        "busy_p99_ms": _percentile(busy, 0.99) * 1000,
        "ticks": len(lateness),
    }


def _one(kind: str, client: str, url: str, n: int) -> None:
    # Imports are a one-time cost, not a per-message one: done before the loop starts.
    import segment_lite.async_client  # noqa: F401

    if client == "posthog-async":
        import posthog  # noqa: F401
    result = asyncio.run(_throughput(client, url, n) if kind == "throughput" else _lag(client, url))
    print(json.dumps(result))


def _start_sink(delay_ms: float) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.sink", "--write-key", WRITE_KEY, "--delay-ms", str(delay_ms)],
        stdout=subprocess.PIPE,
        cwd=REPO_ROOT,
        env=_worker_env(),
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    return process, f"http://127.0.0.1:{int(line.split()[1])}"


def _measure(kind: str, client: str, url: str, n: int) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.async_bench", "--one", kind, client, url, str(n)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=_worker_env(),
        timeout=600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{client}/{kind} failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def run(n: int, reps: int) -> dict[str, Any]:
    """Every client's throughput runs and the lag runs, ``reps`` times each, interleaved; medians."""
    fast, fast_url = _start_sink(0.0)
    slow, slow_url = _start_sink(LAG_DELAY_MS)
    runs: dict[str, list[dict[str, Any]]] = {}
    try:
        for _ in range(reps):
            for client in CLIENTS:
                result = _measure("throughput", client, fast_url, n)
                if result["delivered"] != n:
                    raise RuntimeError(f"{client} delivered {result['delivered']} of {n}")
                runs.setdefault(client, []).append(result)
            for client in LAG_CLIENTS:
                runs.setdefault(f"{client}/lag", []).append(_measure("lag", client, slow_url, n))
    finally:
        for process in (fast, slow):
            process.terminate()
            process.wait(10)
    medians = {
        name: {key: statistics.median(r[key] for r in results) for key in results[0]}
        for name, results in runs.items()
    }
    return {"n": n, "reps": reps, "medians": medians}


def render(report: dict[str, Any]) -> str:
    """The report as a Markdown table, with the issue's ratios."""
    m = report["medians"]
    lines = [
        f"{report['n']} tracks per throughput run, {report['reps']} run(s) each, medians; "
        f"lag: {LAG_MESSAGES} tracks to a sink answering in {LAG_DELAY_MS:.0f} ms.",
        "",
        "| client | CPU µs/msg | msgs/s | enqueue p50 µs | enqueue p99 µs | loop lag p99 ms | lag max ms "
        "| loop busy p99 ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for client in (*CLIENTS, "none"):
        if client == "none":
            lag = m["none/lag"]
            lines.append(
                f"| (no client: the ticker alone) | - | - | - | - | {lag['lag_p99_ms']:.2f} "
                f"| {lag['lag_max_ms']:.2f} | {lag['busy_p99_ms']:.2f} |"
            )
            continue
        row = m[client]
        lag = m.get(f"{client}/lag")
        lag_p99 = f"{lag['lag_p99_ms']:.2f}" if lag else "-"
        lag_max = f"{lag['lag_max_ms']:.2f}" if lag else "-"
        busy = f"{lag['busy_p99_ms']:.2f}" if lag else "-"
        lines.append(
            f"| {client} | {row['cpu_us_per_msg']:.1f} | {row['msgs_per_s']:,.0f} | "
            f"{row['enqueue_p50_us']:.1f} | {row['enqueue_p99_us']:.1f} | {lag_p99} | {lag_max} | {busy} |"
        )
    a, t, p = m["lite-async"], m["lite-threads"], m["posthog-async"]
    lines += [
        "",
        f"- AsyncClient CPU/msg vs Client: {a['cpu_us_per_msg'] / t['cpu_us_per_msg']:.2f}x (target <= 1.5x)",
        f"- AsyncPosthog CPU/msg vs AsyncClient: {p['cpu_us_per_msg'] / a['cpu_us_per_msg']:.1f}x (target >= 5x)",
        f"- AsyncClient throughput vs AsyncPosthog: {a['msgs_per_s'] / p['msgs_per_s']:.1f}x (target >= 5x)",
        f"- AsyncClient loop lag p99: {m['lite-async/lag']['lag_p99_ms']:.2f} ms (target < 2 ms); "
        f"Client {m['lite-threads/lag']['lag_p99_ms']:.2f} ms; no client {m['none/lag']['lag_p99_ms']:.2f} ms; "
        f"loop busy p99 {m['lite-async/lag']['busy_p99_ms']:.2f} ms",
    ]
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    """Command line entry point: ``python -m benchmarks.async_bench``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--reps", type=int, default=1)
    parser.add_argument("--one", nargs=4, metavar=("KIND", "CLIENT", "URL", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        kind, client, url, n = args.one
        _one(kind, client, url, int(n))
        return 0
    os.environ.setdefault("PYTHONHASHSEED", "0")
    print(render(run(args.n, args.reps)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
