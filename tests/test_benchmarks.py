"""The side-by-side benchmark runs end to end, and its sink counts what it receives.

The benchmark runs on a tiny N with one repetition: these tests check that it
completes, that every run delivered exactly what it sent, and that the report
carries every metric. They assert nothing about timings.
"""

from __future__ import annotations

import asyncio
import gzip
import http.client
import json
import math
import re
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from benchmarks import run as bench_run
from benchmarks.report import METRICS, TIMED_METRICS, format_table
from benchmarks.sink import Sink, serve
from benchmarks.worker import DEFAULT_SCENARIOS, SCENARIOS
from benchmarks.workload import CLIENTS, unavailable_reason

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    """One tiny run of the whole benchmark, with every client that is installed."""
    return bench_run.run_benchmark(n=300, warmup=50, reps=1)


def test_benchmark_completes_and_every_run_delivered_what_it_sent(report: dict[str, Any]) -> None:
    runs = report["runs"]
    clients = report["meta"]["clients"]
    assert "lite-json" in clients
    assert {(run["scenario"], run["client"]) for run in runs} == {
        (scenario, client) for scenario in DEFAULT_SCENARIOS for client in clients
    }
    for run in runs:
        assert run["accepted"] == run["sent"], run
        if not SCENARIOS[run["scenario"]].memory:
            assert run["delivered_unique"] == run["sent"] == run["delivered_total"], run
            assert run["bad_requests"] == 0


def test_report_has_every_metric(report: dict[str, Any]) -> None:
    medians = report["medians"]
    for scenario in DEFAULT_SCENARIOS:
        spec = SCENARIOS[scenario]
        for client in report["meta"]["clients"]:
            values = medians[scenario][client]
            keys = ["bytes_per_msg"] if spec.memory else [*TIMED_METRICS, "caller_cpu_us_per_msg"]
            for key in keys:
                assert key in values and not math.isnan(values[key]) and values[key] > 0, (
                    scenario,
                    client,
                    key,
                )
    json.dumps(report)  # the report is written as JSON
    table = bench_run.render(report)
    for metric in METRICS.values():
        assert metric.label in table


def test_report_has_ratios_against_the_reference(report: dict[str, Any]) -> None:
    reason = unavailable_reason("reference")
    if reason:
        pytest.skip(f"reference side skipped: {reason}")
    assert "reference" in report["meta"]["clients"]
    for scenario in DEFAULT_SCENARIOS:
        spec = SCENARIOS[scenario]
        for client in report["meta"]["clients"]:
            if client == "reference":
                continue
            keys = ["bytes_per_msg"] if spec.memory else TIMED_METRICS
            for key in keys:
                verdict = report["targets"][scenario][client][key]
                assert verdict["factor"] > 0 and isinstance(verdict["met"], bool)
    assert "vs ref" in format_table(report, report["meta"]["clients"], list(DEFAULT_SCENARIOS))


def test_the_capped_scenario_sends_at_most_100_messages_per_request(report: dict[str, Any]) -> None:
    capped = [run for run in report["runs"] if run["scenario"] == "capped100"]
    assert capped and all(0 < run["max_msgs_per_request"] <= 100 for run in capped)


def test_this_rounds_targets_apply_to_their_cells(report: dict[str, Any]) -> None:
    targets = report["targets"]
    if "capped100" not in targets:
        pytest.skip("reference side skipped")
    assert targets["capped100"]["lite-json"]["cpu_us_per_msg"]["target"] == 6.0
    assert targets["capped100"]["lite-json"]["msgs_per_s"]["target"] == 5.0
    assert targets["memory"]["lite-json"]["bytes_per_msg"]["target"] == 3.0
    if "lite-orjson" in targets["single"]:
        assert targets["single"]["lite-orjson"]["p99_us"]["target"] == 2.0


def test_quick_mode_is_small() -> None:
    assert bench_run.QUICK["n"] + bench_run.QUICK["warmup"] <= 1_500 and bench_run.QUICK["reps"] == 1
    assert set(CLIENTS) == {"reference", "lite-json", "lite-orjson"}


# -- the sink ----------------------------------------------------------------------


@pytest.fixture
def sink_url() -> Iterator[tuple[Sink, str]]:
    """A sink served on a loopback port from a thread of this process."""
    sink = Sink("key")
    ready = threading.Event()
    port: list[int] = []
    loop = asyncio.new_event_loop()

    def on_ready(bound: int) -> None:
        port.append(bound)
        ready.set()

    task_holder: list[asyncio.Task[None]] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        task = loop.create_task(serve(sink, port=0, ready=on_ready, max_seconds=60))
        task_holder.append(task)
        try:
            loop.run_until_complete(task)
        except asyncio.CancelledError:
            pass

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(10)
    yield sink, f"127.0.0.1:{port[0]}"
    loop.call_soon_threadsafe(task_holder[0].cancel)
    thread.join(10)


def _post(address: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    host, port = address.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("POST", path, body=body, headers=headers)
    response = conn.getresponse()
    result = response.status, response.read()
    conn.close()
    return result


def test_sink_counts_unique_message_ids_in_plain_and_gzip_bodies(sink_url: tuple[Sink, str]) -> None:
    sink, address = sink_url
    batch = {"batch": [{"messageId": "a"}, {"messageId": "b"}], "writeKey": "key"}
    body = json.dumps(batch).encode()
    assert _post(address, "/v1/batch", body, {}) == (200, b'{"success": true}')
    status, _ = _post(address, "/v1/batch", gzip.compress(body), {"Content-Encoding": "gzip"})
    assert status == 200
    assert (sink.stats()["unique"], sink.messages, sink.batches) == (2, 4, 2)
    assert _post(address, "/v1/batch", b"not json", {})[0] == 400
    assert _post(address, "/v1/batch", json.dumps({"batch": [], "writeKey": "wrong"}).encode(), {})[0] == 401
    assert sink.bad_requests == 2
    assert _post(address, "/reset", b"", {})[0] == 200
    assert sink.stats()["unique"] == 0


def test_the_per_request_delivery_profile_runs() -> None:
    from benchmarks import profile
    from segment_lite import encoding

    orjson_before = encoding.HAVE_ORJSON

    sink, url = profile.start_sink()
    try:
        text = profile.per_request("lite-json", url, 1_000, 100, "urllib3")
    finally:
        sink.terminate()
        sink.wait(10)
    assert re.match(r"\d+ requests, \d+ messages each", text), text
    assert encoding.HAVE_ORJSON is orjson_before  # the profile ran in this process and put everything back
    for stage in ("queue take", "body", "transport post", "the rest", "total"):
        assert stage in text


def test_the_async_benchmark_runs_every_client_and_renders_its_ratios() -> None:
    pytest.importorskip("httpx")
    pytest.importorskip("posthog")
    from benchmarks import async_bench

    report = async_bench.run(n=300, reps=1)  # run() fails unless each client delivered all 300
    medians = report["medians"]
    assert set(medians) == {
        "lite-async",
        "lite-threads",
        "posthog-async",
        "lite-async/lag",
        "lite-threads/lag",
        "none/lag",
    }
    assert medians["lite-async/lag"]["delivered"] == async_bench.LAG_MESSAGES
    table = async_bench.render(report)
    assert "AsyncClient CPU/msg vs Client" in table and "| posthog-async |" in table
