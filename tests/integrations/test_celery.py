"""Tests of the Celery integration: worker shutdown flushes what tasks queued."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

celery = pytest.importorskip("celery")

from celery.contrib.testing.worker import start_worker  # noqa: E402
from celery.worker import state as worker_state  # noqa: E402

from segment_lite.integrations.celery import CelerySegment, setup_celery  # noqa: E402
from segment_lite.testing import RecordingClient, recording  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]


class CountingRecorder(RecordingClient):
    """A queueing RecordingClient that also notes each shutdown() call and its timeout."""

    def __init__(self, **kwargs: Any) -> None:
        self.shutdown_calls: list[Any] = []
        super().__init__(**kwargs)

    def shutdown(self, timeout: Any = None) -> bool:
        self.shutdown_calls.append(timeout)
        return super().shutdown(timeout)


def test_in_process_worker_shutdown_flushes_the_client() -> None:
    # Queueing mode with a batch size and interval large enough that nothing is sent
    # before the worker shuts down: only the shutdown flush can deliver the event.
    client = CountingRecorder(sync_mode=False, upload_size=100, upload_interval=3600)
    app = celery.Celery("segment_lite_inprocess", broker="memory://", backend="cache+memory://")
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        worker_hijack_root_logger=False,
        broker_transport_options={"polling_interval": 0.01},
    )

    @app.task(name="tests.signup")
    def signup(user_id: str) -> str:
        client.track(user_id=user_id, event="Signed Up", properties={"plan": "pro"})
        return user_id

    handle = setup_celery(app, client=client, timeout=7.5)
    stopped = threading.Event()

    def on_worker_shutdown(**kwargs: Any) -> None:
        stopped.set()

    # connected after setup_celery, so it runs after the integration's handler
    celery.signals.worker_shutdown.connect(on_worker_shutdown, weak=False)
    try:
        with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=30):
            assert signup.delay("user-42").get(timeout=30) == "user-42"
            assert client.messages == []  # still queued in the client
            assert client.stats()["queued"] == 1
            # a warm shutdown, as SIGTERM asks for: the worker stops and sends worker_shutdown
            worker_state.should_stop = 0
            assert stopped.wait(timeout=30)
        assert client.shutdown_calls == [7.5]
        [message] = client.messages
        assert (message["type"], message["userId"], message["event"]) == ("track", "user-42", "Signed Up")
        assert message["properties"] == {"plan": "pro"}
        assert handle.shutdowns == 1 and handle.errors == 0
    finally:
        worker_state.should_stop = None
        celery.signals.worker_shutdown.disconnect(on_worker_shutdown)
        handle.disconnect()
        client.shutdown()


def test_signal_handlers_use_default_client_and_disconnect() -> None:
    handle = setup_celery(timeout=2)
    try:
        with recording(sync_mode=False, upload_size=100, upload_interval=3600) as recorder:
            import segment_lite

            segment_lite.track(user_id="u", event="Queued")
            assert recorder.messages == []
            celery.signals.worker_process_shutdown.send(sender=None, pid=os.getpid(), exitcode=0)
            assert [m["event"] for m in recorder.messages] == ["Queued"]
    finally:
        handle.disconnect()
    # once disconnected, the signals no longer reach the handler
    client = CountingRecorder()
    other = CelerySegment(client=client, timeout=1)
    other.disconnect()
    celery.signals.worker_shutdown.send(sender=None)
    celery.signals.worker_process_shutdown.send(sender=None, pid=os.getpid(), exitcode=0)
    assert client.shutdown_calls == []
    client.shutdown()


def test_shutdown_errors_are_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        def shutdown(self, timeout: Any = None) -> bool:
            raise RuntimeError("cannot flush")

    handle = setup_celery(client=Broken())
    try:
        celery.signals.worker_shutdown.send(sender=None)
    finally:
        handle.disconnect()
    assert handle.errors == 1
    assert any(r.name == "segment_lite.integrations" for r in caplog.records)


TASKS_MODULE = """
import os

from celery import Celery

from segment_lite import Client
from segment_lite.integrations.celery import setup_celery

BROKER_DIR = os.environ["SEGMENT_TEST_BROKER_DIR"]

app = Celery("segment_tasks")
app.conf.update(
    broker_url="filesystem://",
    broker_transport_options={
        "data_folder_in": BROKER_DIR,
        "data_folder_out": BROKER_DIR,
        "processed_folder": BROKER_DIR,
        "control_folder": BROKER_DIR,
        "store_processed": False,
        "polling_interval": 0.05,
    },
    result_backend="file://" + os.environ["SEGMENT_TEST_RESULTS_DIR"],
    task_serializer="json",
    accept_content=["json"],
    worker_prefetch_multiplier=1,
)

# Created in the parent worker process, before the pool forks; used in the children.
# Nothing is sent before shutdown: batches of 100, at most once an hour.
client = Client(
    "celery-write-key",
    host=os.environ["SEGMENT_TEST_COLLECTOR_URL"],
    upload_size=100,
    upload_interval=3600,
)
setup_celery(app, client=client, timeout=10)


@app.task(name="segment_tasks.signup")
def signup(user_id):
    client.track(user_id=user_id, event="Signed Up", properties={"pid": os.getpid()})
    return os.getpid()


@app.task(name="segment_tasks.checkout")
def checkout(total):
    # no ids passed: they come from the request context the task was sent from
    client.track(event="Checkout Finished", properties={"total": total, "pid": os.getpid()})
    return os.getpid()
"""


def test_prefork_worker_subprocess_delivers_on_shutdown(tmp_path: Path) -> None:
    collector_module = pytest.importorskip("segment_lite.collector")
    broker_dir = tmp_path / "broker"
    results_dir = tmp_path / "results"
    broker_dir.mkdir()
    results_dir.mkdir()
    (tmp_path / "segment_tasks.py").write_text(textwrap.dedent(TASKS_MODULE))

    with collector_module.Collector() as collector:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
            "SEGMENT_TEST_BROKER_DIR": str(broker_dir),
            "SEGMENT_TEST_RESULTS_DIR": str(results_dir),
            "SEGMENT_TEST_COLLECTOR_URL": collector.url,
        }
        command = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "segment_tasks",
            "worker",
            "--pool=prefork",
            "--concurrency=2",
            "--loglevel=WARNING",
            "--without-heartbeat",
            "--without-mingle",
            "--without-gossip",
        ]
        worker = subprocess.Popen(
            command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        try:
            producer = celery.Celery("producer")
            producer.conf.update(
                broker_url="filesystem://",
                broker_transport_options={
                    "data_folder_in": str(broker_dir),
                    "data_folder_out": str(broker_dir),
                    "processed_folder": str(broker_dir),
                    "control_folder": str(broker_dir),
                    "store_processed": False,
                },
                result_backend=f"file://{results_dir}",
                task_serializer="json",
                accept_content=["json"],
            )
            results = [producer.send_task("segment_tasks.signup", args=[f"user-{i}"]) for i in range(4)]
            child_pids = {result.get(timeout=60) for result in results}
            assert worker.pid not in child_pids  # tasks ran in forked pool children
            assert collector.messages() == []  # queued in the children, not sent yet
            worker.send_signal(signal.SIGTERM)  # warm shutdown: children exit, then the parent
            output, _ = worker.communicate(timeout=60)
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.communicate()
        assert worker.returncode == 0, output
        assert collector.wait_for_messages(4, timeout=10), output
        messages = collector.messages()
    assert sorted(m["userId"] for m in messages) == ["user-0", "user-1", "user-2", "user-3"]
    assert {m["event"] for m in messages} == {"Signed Up"}
    assert {m["properties"]["pid"] for m in messages} == child_pids


def test_the_senders_context_is_active_while_a_real_worker_runs_the_task() -> None:
    client = RecordingClient()
    app = celery.Celery("segment_lite_context", broker="memory://", backend="cache+memory://")
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        worker_hijack_root_logger=False,
        broker_transport_options={"polling_interval": 0.01},
    )

    import segment_lite

    @app.task(name="tests.charge")
    def charge(amount: int) -> Any:
        client.track(event="Charged", properties={"amount": amount})
        values = segment_lite.scope.active()
        return None if values is None else values.anonymous_id

    handle = setup_celery(app, client=client)
    try:
        with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=30):
            with segment_lite.context(
                anonymous_id="request-anon",
                context={"ip": "203.0.113.9", "page": {"path": "/checkout"}},
                properties={"tenant": "acme"},
                consent={"Analytics": True},
            ):
                assert charge.delay(42).get(timeout=30) == "request-anon"
            # sent outside any context: the task runs with none (nothing leaks from the last task)
            with pytest.raises(segment_lite.ValidationError, match="user_id or anonymous_id"):
                charge.delay(7).get(timeout=30)
        [message] = client.messages
        assert message["anonymousId"] == "request-anon"
        assert message["context"]["ip"] == "203.0.113.9"
        assert message["context"]["page"] == {"path": "/checkout"}
        assert message["context"]["consent"] == {"categoryPreferences": {"Analytics": True}}
        assert message["properties"] == {"tenant": "acme", "amount": 42}
        assert handle.errors == 0
    finally:
        handle.disconnect()
        client.shutdown()


def test_propagate_context_off_leaves_the_headers_alone() -> None:
    handle = setup_celery(propagate_context=False)
    try:
        import segment_lite

        headers: dict[str, Any] = {}
        with segment_lite.context(anonymous_id="a"):
            celery.signals.before_task_publish.send(sender="t", headers=headers, body=None)
        assert headers == {}
    finally:
        handle.disconnect()


def test_the_senders_context_reaches_a_prefork_worker_subprocess(tmp_path: Path) -> None:
    collector_module = pytest.importorskip("segment_lite.collector")
    import segment_lite

    broker_dir = tmp_path / "broker"
    results_dir = tmp_path / "results"
    broker_dir.mkdir()
    results_dir.mkdir()
    (tmp_path / "segment_tasks.py").write_text(textwrap.dedent(TASKS_MODULE))
    sender_side = setup_celery(propagate_context=True)  # the producer's half: before_task_publish
    with collector_module.Collector() as collector:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
            "SEGMENT_TEST_BROKER_DIR": str(broker_dir),
            "SEGMENT_TEST_RESULTS_DIR": str(results_dir),
            "SEGMENT_TEST_COLLECTOR_URL": collector.url,
        }
        command = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "segment_tasks",
            "worker",
            "--pool=prefork",
            "--concurrency=2",
            "--loglevel=WARNING",
            "--without-heartbeat",
            "--without-mingle",
            "--without-gossip",
        ]
        worker = subprocess.Popen(
            command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        try:
            producer = celery.Celery("producer")
            producer.conf.update(
                broker_url="filesystem://",
                broker_transport_options={
                    "data_folder_in": str(broker_dir),
                    "data_folder_out": str(broker_dir),
                    "processed_folder": str(broker_dir),
                    "control_folder": str(broker_dir),
                    "store_processed": False,
                },
                result_backend=f"file://{results_dir}",
                task_serializer="json",
                accept_content=["json"],
            )
            results = []
            for n in range(2):
                with segment_lite.context(
                    anonymous_id=f"visitor-{n}",
                    context={"ip": f"203.0.113.{n}", "userAgent": "Mozilla/5.0"},
                    consent={"Analytics": True},
                ):
                    results.append(producer.send_task("segment_tasks.checkout", args=[10 * n]))
            child_pids = {result.get(timeout=60) for result in results}
            assert worker.pid not in child_pids  # ran in forked pool children
            worker.send_signal(signal.SIGTERM)
            output, _ = worker.communicate(timeout=60)
        finally:
            sender_side.disconnect()
            if worker.poll() is None:
                worker.kill()
                worker.communicate()
        assert worker.returncode == 0, output
        assert collector.wait_for_messages(2, timeout=10), output
        messages = sorted(collector.messages(), key=lambda m: m["anonymousId"])
    assert [(m["anonymousId"], m["context"]["ip"]) for m in messages] == [
        ("visitor-0", "203.0.113.0"),
        ("visitor-1", "203.0.113.1"),
    ]
    assert all(m["context"]["consent"] == {"categoryPreferences": {"Analytics": True}} for m in messages)
    assert [m["properties"]["total"] for m in messages] == [0, 10]
