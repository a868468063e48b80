"""Profile a client on the benchmark's workload, to see where its time goes.

Three ways to use it:

* ``python -m benchmarks.profile --client lite-json --cprofile`` runs rounds of
  10,000 tracks + flush against a sink (started here, in its own process) under
  ``cProfile`` and prints the top functions. cProfile sees only the calling thread
  (the caller's side of ``track()``), and it inflates the cost of small functions.
* ``py-spy record -r 2000 -f raw -o /tmp/prof.txt -- python -m benchmarks.profile
  --client lite-json`` samples every thread, the client's delivery thread too, with
  little overhead; then
* ``python -m benchmarks.profile --summarize /tmp/prof.txt`` prints the hottest
  functions of that sample file (self and inclusive share), per thread.
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import pstats
import subprocess
import sys
import time
from typing import Optional

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
    args = parser.parse_args(argv)
    if args.summarize:
        print(summarize(args.summarize, args.top))
        return
    sink, url = start_sink()
    try:
        if args.cprofile:
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
