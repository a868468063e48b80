"""Profile a client on the benchmark's workload, to see where its time goes.

Four ways to use it:

* ``python -m benchmarks.profile --client lite-json --cprofile`` runs rounds of
  10,000 tracks + flush against a sink (started here, in its own process) under
  ``cProfile`` and prints the top functions. cProfile sees only the calling thread
  (the caller's side of ``track()``), and it inflates the cost of small functions.
* ``py-spy record -r 2000 -f raw -o /tmp/prof.txt -- python -m benchmarks.profile
  --client lite-json`` samples every thread, the client's delivery thread too, with
  little overhead; then
* ``python -m benchmarks.profile --summarize /tmp/prof.txt`` prints the hottest
  functions of that sample file (self and inclusive share), per thread;
* ``python -m benchmarks.profile --client lite-json --per-request [--cap 100]
  [--transport requests]`` measures segment_lite's delivery thread alone, per
  request: the tracks are queued while delivery is held back, then the thread
  sends them with the caller idle, and its CPU time (``time.thread_time``) is
  split into taking the batch from the queue, building the body, the transport's
  ``post`` and the rest (settling, the worker loop).
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import functools
import pstats
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Optional

from benchmarks.sink import DEFAULT_WRITE_KEY
from benchmarks.workload import CLIENTS, CONTEXT, EVENT, PROPERTIES, USER_IDS, make_client

__all__ = ["main", "summarize"]


def start_sink() -> tuple[subprocess.Popen[str], str]:
    """Start the sink in its own process; returns the process and its base URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.sink", "--max-seconds", "900"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("PORT "):
        process.kill()
        raise RuntimeError(f"the sink did not start: {line!r}")
    return process, f"http://127.0.0.1:{int(line.split()[1])}"


def workload(client_kind: str, url: str, seconds: float, gzip: bool) -> int:
    """Rounds of 10,000 tracks + flush for about ``seconds``; returns the number of tracks."""
    client, track = make_client(client_kind, url, DEFAULT_WRITE_KEY, gzip)
    sent = 0
    deadline = time.monotonic() + seconds
    user_ids = USER_IDS
    while time.monotonic() < deadline:
        for index in range(10_000):
            track(user_ids[index % 1000], EVENT, PROPERTIES, CONTEXT)
        client.flush()
        sent += 10_000
    return sent


def per_request(client_kind: str, url: str, n: int, cap: Optional[int], transport: Optional[str]) -> str:
    """CPU of segment_lite's delivery thread per request, by stage (see the module docstring)."""
    import segment_lite.encoding
    import segment_lite.queue
    import segment_lite.sender
    import segment_lite.transport

    spent: collections.Counter[str] = collections.Counter()
    gate = threading.Event()
    marks: dict[str, float] = {}
    patched: list[tuple[Any, str, Any]] = []  # restored at the end: the process may go on (tests)

    def timed(owner: Any, name: str, stage: str) -> None:
        original: Callable[..., Any] = getattr(owner, name)
        patched.append((owner, name, original))

        @functools.wraps(original)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.thread_time()
            try:
                return original(*args, **kwargs)
            finally:
                if gate.is_set():
                    spent[stage] += time.thread_time() - started

        setattr(owner, name, wrapper)

    original_deliver = segment_lite.sender.BatchSender.deliver

    def deliver(self: Any, *args: Any, **kwargs: Any) -> None:
        if "start" not in marks:  # the first batch waits until every track is queued
            gate.wait()
            marks["start"] = time.thread_time()
        original_deliver(self, *args, **kwargs)
        marks["end"] = time.thread_time()
        spent["requests"] += 1

    patched.append((segment_lite.sender.BatchSender, "deliver", original_deliver))
    patched.append(
        (segment_lite.encoding, "HAVE_ORJSON", segment_lite.encoding.HAVE_ORJSON)
    )  # lite-json sets it
    segment_lite.sender.BatchSender.deliver = deliver  # type: ignore[method-assign]
    timed(segment_lite.queue.MemoryQueue, "take", "queue take")
    timed(segment_lite.sender.BatchSender, "_body", "body")
    timed(segment_lite.transport.Urllib3Transport, "post", "transport post")
    timed(segment_lite.transport.RequestsTransport, "post", "transport post")
    try:
        options: dict[str, Any] = {}
        if transport == "requests":
            options["transport"] = segment_lite.transport.RequestsTransport
        client, track = make_client(client_kind, url, DEFAULT_WRITE_KEY, False, cap, **options)
        user_ids = USER_IDS
        for index in range(n):
            track(user_ids[index % 1000], EVENT, PROPERTIES, CONTEXT)
        time.sleep(0.2)  # the worker has taken its first batch and waits at the gate
        gate.set()
        client.flush()
        client.shutdown()
    finally:
        gate.set()
        for owner, name, original in reversed(patched):
            setattr(owner, name, original)
    requests = spent.pop("requests") - 1  # the first batch was taken before the gate opened
    total = marks["end"] - marks["start"]
    lines = [f"{requests} requests, {n / (requests + 1):.0f} messages each: delivery thread CPU per request"]
    for stage in ("queue take", "body", "transport post"):
        lines.append(f"  {stage:<15} {spent[stage] / requests * 1e6:7.1f} us")
    rest = total - sum(spent.values())
    lines.append(f"  {'the rest':<15} {rest / requests * 1e6:7.1f} us")
    lines.append(f"  {'total':<15} {total / requests * 1e6:7.1f} us ({total / n * 1e6:.2f} us per message)")
    return "\n".join(lines)


def summarize(path: str, top: int = 25) -> str:
    """The hottest functions of a py-spy ``raw`` (collapsed stacks) file, per thread."""
    per_thread_self: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    per_thread_incl: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    per_thread_total: collections.Counter[str] = collections.Counter()
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            stack, _, count_text = line.rstrip("\n").rpartition(" ")
            if not stack:
                continue
            count = int(count_text)
            frames = stack.split(";")
            if frames[0].startswith(("thread ", "process ")):  # py-spy --threads
                thread, frames = frames[0].partition(": ")[2] or frames[0], frames[1:]
            else:
                thread = "all threads"
            names = [frame.split(" (")[0] for frame in frames if frame]
            if not names:
                continue
            per_thread_total[thread] += count
            per_thread_self[thread][names[-1]] += count
            for name in set(names):
                per_thread_incl[thread][name] += count
    lines = []
    for thread, total in per_thread_total.most_common():
        lines.append(f"== {thread}: {total} samples")
        lines.append(f"{'self %':>7} {'incl %':>7}  function")
        ranked = sorted(per_thread_incl[thread], key=lambda n: -per_thread_self[thread][n])[:top]
        for name in ranked:
            self_pct = per_thread_self[thread][name] / total * 100
            incl_pct = per_thread_incl[thread][name] / total * 100
            lines.append(f"{self_pct:7.1f} {incl_pct:7.1f}  {name}")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> None:
    """Command line entry point: ``python -m benchmarks.profile``."""
    parser = argparse.ArgumentParser(description="Profile a client on the benchmark workload.")
    parser.add_argument("--client", choices=CLIENTS, default="lite-json")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--gzip", action="store_true")
    parser.add_argument("--cprofile", action="store_true", help="profile the calling thread with cProfile")
    parser.add_argument("--summarize", metavar="RAW_FILE", help="summarize a py-spy raw file and exit")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--per-request", action="store_true", help="the delivery thread's CPU per request")
    parser.add_argument("--cap", type=int, help="with --per-request: most messages per request")
    parser.add_argument("--transport", choices=("urllib3", "requests"), default="urllib3")
    parser.add_argument("-n", type=int, default=9_500, help="with --per-request: tracks queued")
    args = parser.parse_args(argv)
    if args.summarize:
        print(summarize(args.summarize, args.top))
        return
    sink, url = start_sink()
    try:
        if args.per_request:
            if args.client == "reference":
                parser.error("--per-request measures segment_lite's delivery thread")
            print(per_request(args.client, url, args.n, args.cap, args.transport))
        elif args.cprofile:
            profiler = cProfile.Profile()
            profiler.enable()
            sent = workload(args.client, url, args.seconds, args.gzip)
            profiler.disable()
            pstats.Stats(profiler).sort_stats("tottime").print_stats(args.top)
        else:
            started = time.perf_counter()
            sent = workload(args.client, url, args.seconds, args.gzip)
            print(f"{sent} tracks in {time.perf_counter() - started:.2f}s")
    finally:
        sink.terminate()
        sink.wait(10)


if __name__ == "__main__":
    main()
