"""What a request context costs ``track()``: ``python -m benchmarks.context``.

Variants, timed call by call (``time.perf_counter_ns`` around each ``track()``), in
rounds that alternate their order so drift hits every variant alike:

* ``none``: no context active (the cost is one ``ContextVar.get()``);
* ``explicit``: no context, the call passes ``anonymous_id`` and ``context={ip,
  userAgent, page, campaign, locale}`` itself (what a web integration puts in a
  request's context): the cost of a bigger message, whoever fills it;
* ``context``: the same values from one active ``segment_lite.context(...)``;
* ``nested``: that context plus an inner one adding properties;
* ``defaults``: no context, a client with ``defaults`` (properties and context).

A context's own cost is ``context`` minus ``explicit`` (same message, same
bytes); ``none`` against a build without contexts would be the cost of the one
``ContextVar.get()``, below what this method resolves.

The client does not send (``send=False``): it builds, validates and encodes each
call, which is where a context acts; the queue costs the same for every variant.
Prints p50/p99 per variant, each one's p50 minus ``none``'s, and the context's own cost.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import statistics
import time
from collections.abc import Iterator
from typing import Any

import segment_lite

_REQUEST_CONTEXT: dict[str, Any] = {
    "ip": "203.0.113.9",
    "userAgent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/126.0",
    "locale": "en-GB",
    "page": {
        "path": "/checkout",
        "referrer": "https://example.com/cart",
        "search": "?utm_source=news",
        "url": "https://shop.example.com/checkout?utm_source=news",
    },
    "campaign": {"source": "news"},
}
_PROPERTIES = {"order_id": "o-1", "revenue": 42.5, "currency": "EUR"}


def _measure(client: segment_lite.Client, n: int, setup: Any) -> list[int]:
    samples = []
    track = client.track
    clock = time.perf_counter_ns
    explicit = setup is _explicit
    with setup():
        for _ in range(n):
            if explicit:
                started = clock()
                track("user-1", "Order Completed", _PROPERTIES, _REQUEST_CONTEXT, anonymous_id="anon-1")
            else:
                started = clock()
                track("user-1", "Order Completed", _PROPERTIES)
            samples.append(clock() - started)
    return samples


@contextlib.contextmanager
def _explicit() -> Iterator[None]:
    yield


@contextlib.contextmanager
def _nothing() -> Iterator[None]:
    yield


@contextlib.contextmanager
def _one() -> Iterator[None]:
    with segment_lite.context(anonymous_id="anon-1", context=_REQUEST_CONTEXT):
        yield


@contextlib.contextmanager
def _nested() -> Iterator[None]:
    outer = segment_lite.context(anonymous_id="anon-1", context=_REQUEST_CONTEXT)
    with outer, segment_lite.context(properties={"tenant": "acme"}):
        yield


def run(n: int = 20000, rounds: int = 5) -> dict[str, Any]:
    """Time every variant; returns ``{variant: {"p50_ns", "p99_ns", "p50_over_none_ns"}}``."""
    plain = segment_lite.Client("bench", send=False)
    with_defaults = segment_lite.Client(
        "bench", send=False, defaults={"properties": {"app": "shop"}, "context": {"app": {"name": "shop"}}}
    )
    variants = {
        "none": (plain, _nothing),
        "explicit": (plain, _explicit),
        "context": (plain, _one),
        "nested": (plain, _nested),
        "defaults": (with_defaults, _nothing),
    }
    samples: dict[str, list[int]] = {name: [] for name in variants}
    for client, setup in variants.values():  # warm-up
        _measure(client, 2000, setup)
    gc.disable()
    try:
        for round_number in range(rounds):
            names = list(variants)
            if round_number % 2:
                names.reverse()
            for name in names:
                client, setup = variants[name]
                samples[name].extend(_measure(client, n, setup))
    finally:
        gc.enable()
    plain.shutdown()
    with_defaults.shutdown()
    base = statistics.median(samples["none"])
    result: dict[str, Any] = {}
    for name, values in samples.items():
        values.sort()
        p50 = statistics.median(values)
        result[name] = {
            "p50_ns": p50,
            "p99_ns": values[int(len(values) * 0.99)],
            "p50_over_none_ns": p50 - base,
        }
    result["context_cost_p50_ns"] = result["context"]["p50_ns"] - result["explicit"]["p50_ns"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20000, help="timed calls per variant per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", help="also write the result here")
    args = parser.parse_args()
    result = run(args.n, args.rounds)
    print(f"{'variant':<10} {'p50 ns':>8} {'p99 ns':>8} {'p50 - none':>11}")
    for name, row in result.items():
        if isinstance(row, dict):
            print(f"{name:<10} {row['p50_ns']:>8.0f} {row['p99_ns']:>8.0f} {row['p50_over_none_ns']:>11.0f}")
    print(f"a context's own cost (context - explicit), p50: {result['context_cost_p50_ns']:.0f} ns")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(result, out, indent=2)


if __name__ == "__main__":
    main()
