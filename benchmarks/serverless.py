"""What ``flush_after`` costs a serverless invocation: ``python -m benchmarks.serverless``.

Measures, as a median over repetitions of many calls each:

* ``empty``: a handler that tracks nothing, wrapped in ``@flush_after`` (sync and
  async, bare and with ``client=``), minus the same handler unwrapped: what every
  invocation pays when nothing is queued;
* ``client.flush()`` alone with nothing queued;
* ``one event``: a handler that tracks one event, wrapped, against the benchmark
  sink on loopback (each invocation waits for the sink's acknowledgement): the
  floor of an invocation that tracks, without the network of a real region.

Prints a table (microseconds per invocation) and, with ``--json PATH``, writes it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any, Callable

import segment_lite
from benchmarks.run import start_sink
from benchmarks.sink import DEFAULT_WRITE_KEY
from segment_lite import flush_after


def _per_call_us(call: Callable[[], Any], n: int, reps: int) -> float:
    """Median over ``reps`` of the mean time of ``n`` calls, in microseconds."""
    samples = []
    for _ in range(reps):
        started = time.perf_counter_ns()
        for _ in range(n):
            call()
        samples.append((time.perf_counter_ns() - started) / n / 1000)
    return statistics.median(samples)


def _async_per_call_us(handler: Callable[[], Any], n: int, reps: int) -> float:
    """As ``_per_call_us`` for a coroutine function, awaited ``n`` times in one event loop."""

    async def loop() -> list[float]:
        samples = []
        for _ in range(reps):
            started = time.perf_counter_ns()
            for _ in range(n):
                await handler()
            samples.append((time.perf_counter_ns() - started) / n / 1000)
        return samples

    return statistics.median(asyncio.run(loop()))


def measure(n: int, reps: int, n_events: int) -> dict[str, float]:
    """Every figure of the table, in microseconds per invocation."""
    sink, url = start_sink(DEFAULT_WRITE_KEY)
    try:
        client = segment_lite.Client(DEFAULT_WRITE_KEY, host=url)

        def plain() -> int:
            return 1

        async def plain_async() -> int:
            return 1

        bare, with_client = flush_after(plain), flush_after(client=client, timeout=2.0)(plain)
        bare_async = flush_after(plain_async)
        async_with_client = flush_after(client=client, timeout=2.0)(plain_async)
        baseline = _per_call_us(plain, n, reps)
        async_baseline = _async_per_call_us(plain_async, n, reps)

        @flush_after(client=client, timeout=2.0)
        def one_event() -> None:
            client.track("user-1", "Invoked", {"plan": "pro"})

        results = {
            "empty, @flush_after (every client)": _per_call_us(bare, n, reps) - baseline,
            "empty, @flush_after(client=...)": _per_call_us(with_client, n, reps) - baseline,
            "empty, async @flush_after": _async_per_call_us(bare_async, n, reps) - async_baseline,
            "empty, async @flush_after(client=...)": _async_per_call_us(async_with_client, n, reps)
            - async_baseline,
            "client.flush(), nothing queued": _per_call_us(client.flush, n, reps),
            "one event tracked and delivered (loopback)": _per_call_us(one_event, n_events, reps),
        }
        client.shutdown(5)
        return results
    finally:
        sink.terminate()
        sink.wait(10)


def main() -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000, help="calls per repetition (empty handlers)")
    parser.add_argument("--events", type=int, default=300, help="calls per repetition (one event each)")
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args()
    results = measure(args.n, args.reps, args.events)
    width = max(map(len, results))
    print(f"{'per invocation (median of ' + str(args.reps) + ' repetitions)':{width}}  microseconds")
    for name, value in results.items():
        print(f"{name:{width}}  {value:10.2f}")
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"n": args.n, "events": args.events, "reps": args.reps, "us": results}, out, indent=2)


if __name__ == "__main__":
    main()
