"""Process life: delivery at interpreter exit (subprocesses) and after os.fork()."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

import segment_lite

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Forking a process that runs threads (the collector's, the client's) is the very
# case under test: gunicorn and celery do it. Python 3.12+ warns about it.
pytestmark = pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")


def run_script(source: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(source), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def test_script_that_never_flushes_delivers_everything_at_exit(collector) -> None:
    started = time.monotonic()
    result = run_script(
        """
        import sys
        import segment_lite as analytics
        analytics.write_key = "exit-key"
        analytics.host = sys.argv[1]
        for i in range(2000):
            analytics.track("user-%d" % (i % 7), "Exited", {"i": i})
        # no flush(), no shutdown(): the script simply ends
        """,
        collector.url,
    )
    assert result.returncode == 0, result.stderr
    assert len(collector.message_ids()) == 2000
    print(f"2000 events delivered at exit; process ran {time.monotonic() - started:.2f}s")


def test_exit_is_bounded_when_the_server_is_down(collector) -> None:
    collector.go_down()
    started = time.monotonic()
    result = run_script(
        """
        import sys
        import segment_lite
        client = segment_lite.Client("exit-key", host=sys.argv[1], shutdown_timeout=0.5)
        client.track("u", "Lost")
        """,
        collector.url,
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert elapsed < 30  # bounded by shutdown_timeout, not by 10 retries of backoff
    assert "shutdown_timeout" in result.stderr and "dropped" in result.stderr


def test_shutdown_timeout_none_waits_for_delivery(collector) -> None:
    collector.fail_next(2, 503)
    result = run_script(
        """
        import sys
        import segment_lite
        from segment_lite.retry import RetryPolicy
        client = segment_lite.Client("exit-key", host=sys.argv[1], shutdown_timeout=None,
                                     retry_policy=RetryPolicy(base_delay_s=0.01, jitter=lambda d: d))
        client.track("u", "Patient")
        """,
        collector.url,
    )
    assert result.returncode == 0, result.stderr
    assert len(collector.message_ids()) == 1


def _fork_and_wait(child) -> dict:
    """Run ``child()`` in a forked process; return the dict it reports through a pipe."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(read_fd)
        code = 0
        try:
            report = child()
        except BaseException as exc:  # report, never return into pytest
            report = {"error": repr(exc)}
            code = 1
        os.write(write_fd, json.dumps(report).encode())
        os.close(write_fd)
        os._exit(code)
    os.close(write_fd)
    chunks = []
    while True:
        chunk = os.read(read_fd, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(read_fd)
    _, status = os.waitpid(pid, 0)
    report = json.loads(b"".join(chunks) or b"{}")
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, report
    return report


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_child_of_fork_sends_its_own_and_not_the_parents(collector, make_client) -> None:
    client = make_client(upload_interval=3600, upload_size=2500)
    _, parent_msg = client.track("parent", "Queued Before Fork")
    assert client.queue.qsize() == 1 and client.consumers  # queued, consumer running, not sent

    def child() -> dict:
        assert client.queue.qsize() == 0  # the parent's queue is not inherited
        started = time.monotonic()
        _, message = client.track("child", "From Child")
        flushed = client.flush(timeout=10)
        return {
            "flushed": flushed,
            "seconds": time.monotonic() - started,
            "id": message["messageId"],
            "stats": client.stats(),
        }

    report = _fork_and_wait(child)
    assert report["flushed"] is True
    assert report["stats"]["accepted"] == 1 and report["stats"]["delivered"] == 1
    assert client.flush(timeout=10)
    ids = [m["messageId"] for m in collector.messages()]
    assert sorted(ids) == sorted([parent_msg["messageId"], report["id"]])  # each exactly once
    assert collector.stats.duplicates == 0
    assert [r.json["batch"][0]["userId"] for r in collector.requests].count("parent") == 1


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_client_made_before_fork_and_first_used_after(collector, make_client) -> None:
    client = make_client()  # like gunicorn --preload: made in the master, used in workers

    def child() -> dict:
        ids = [client.track("worker", "Forked Worker", {"i": i})[1]["messageId"] for i in range(50)]
        return {"flushed": client.flush(timeout=10), "ids": ids}

    reports = [_fork_and_wait(child) for _ in range(2)]
    assert all(r["flushed"] for r in reports)
    expected = {i for r in reports for i in r["ids"]}
    assert collector.message_ids() == expected and len(expected) == 100
    assert client.consumers == []  # the parent itself never started a thread


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_flush_in_child_does_not_wait_for_parents_stuck_batch(collector, make_client) -> None:
    client = make_client(max_retries=1000)
    collector.go_down()
    client.track("parent", "Stuck In Parent")
    client.flush(timeout=0)
    deadline = time.monotonic() + 10
    while client.stats()["retried"] < 1 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert client.stats()["retried"] >= 1  # the parent's batch is in flight, retrying
    collector.go_up()

    def child() -> dict:
        started = time.monotonic()
        flushed_empty = client.flush(timeout=5)
        return {"flushed_empty": flushed_empty, "seconds": time.monotonic() - started}

    report = _fork_and_wait(child)
    assert report["flushed_empty"] is True and report["seconds"] < 5


def test_module_functions_proxy_to_a_default_client(collector) -> None:
    segment_lite.write_key = "module-key"
    segment_lite.host = collector.url
    ok, message = segment_lite.track("u", "Module Level")
    assert ok
    assert segment_lite.flush(timeout=10)
    assert collector.message_ids() == {message["messageId"]}
    assert segment_lite.default_client is not None and segment_lite.default_client.write_key == "module-key"
    assert segment_lite.stats()["delivered"] == 1


def test_client_dropped_out_of_scope_still_delivers_at_exit(collector) -> None:
    result = run_script(
        """
        import sys
        import segment_lite

        def handle_request():
            client = segment_lite.Client("scoped-key", host=sys.argv[1])  # a local, gone on return
            for i in range(25):
                client.track("u", "Scoped", {"i": i})

        handle_request()
        """,
        collector.url,
    )
    assert result.returncode == 0, result.stderr
    assert len(collector.message_ids()) == 25


def test_tracking_from_an_atexit_handler_is_delivered(collector) -> None:
    # Python 3.12+ refuses to start threads in atexit handlers: the client must
    # queue anyway and deliver from its own exit handler, on the main thread.
    result = run_script(
        """
        import atexit
        import sys
        import segment_lite

        def on_exit():
            client = segment_lite.Client("late-key", host=sys.argv[1], shutdown_timeout=10)
            for i in range(10):
                assert client.track("u", "Goodbye", {"i": i})[0]

        atexit.register(on_exit)  # registered after segment_lite's, so it runs first
        """,
        collector.url,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert len(collector.message_ids()) == 10


def test_without_threads_flush_delivers_on_the_calling_thread(collector, make_client, monkeypatch) -> None:
    from segment_lite.pipeline import Worker

    def refuse(self) -> None:
        raise RuntimeError("can't create new thread at interpreter shutdown")

    monkeypatch.setattr(Worker, "start", refuse)
    client = make_client()
    ids = {client.track("u", "Threadless", {"i": i})[1]["messageId"] for i in range(30)}
    assert client.consumers == []
    assert client.flush(timeout=10)
    assert collector.message_ids() == ids
    assert client.stats()["delivered"] == 30
