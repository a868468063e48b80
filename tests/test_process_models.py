"""Process models: multiprocessing children deliver at exit; a terminated child's spool is delivered next."""

from __future__ import annotations

import collections
import multiprocessing
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import segment_lite
from segment_lite.collector import Collector

ROOT = Path(__file__).resolve().parent.parent
DRIVER = str(Path(__file__).resolve().parent / "mp_children.py")
METHODS = [
    method for method in ("fork", "forkserver", "spawn") if method in multiprocessing.get_all_start_methods()
]
KINDS = ("process", "pool", "executor")
APIS = ("client", "module")
#: Events per child (or pool task); the driver runs two per combination.
COUNT = 5
TASKS = 2


def run_driver(collector: Collector, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), MP_HOST=collector.url)
    return subprocess.run(
        [sys.executable, DRIVER, *args], capture_output=True, text=True, timeout=120, env=env
    )


@pytest.fixture(scope="module")
def delivered() -> Iterator[dict[str, dict[str, int]]]:
    """Per start method, the distinct messages the collector got for each ``kind/api`` (one run each)."""
    runs: dict[str, dict[str, int]] = {}

    def run(method: str) -> dict[str, int]:
        if method not in runs:
            with Collector() as collector:
                result = run_driver(collector, method, str(COUNT))
                assert result.returncode == 0, result.stderr
                # Children exit only after their exit flush, and the driver after its children:
                # what was delivered is stored now.
                ids = collections.defaultdict(set)
                for message in collector.messages():
                    ids[message["event"]].add(message["messageId"])
                runs[method] = {event: len(found) for event, found in ids.items()}
        return runs[method]

    yield run  # type: ignore[misc]


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method", METHODS)
def test_every_child_delivers_at_exit_without_flushing(delivered, method: str, kind: str, api: str) -> None:
    counts = delivered(method)
    assert counts.get(f"{kind}/{api}", 0) == TASKS * COUNT, counts
    assert counts.get("parent") == 1  # the parent's own event, tracked before the children were made


@pytest.mark.parametrize("method", METHODS)
def test_spool_of_a_terminated_pool_worker_is_delivered_by_the_next_client(
    collector: Collector, tmp_path: Path, method: str
) -> None:
    # The server is down while the worker runs, so nothing it accepted leaves it before
    # `with Pool()` terminates it (SIGTERM: no exit flush, no finalizers).
    collector.go_down()
    count = 25
    result = run_driver(collector, "terminated", method, str(tmp_path), str(count))
    assert result.returncode == 0, result.stderr
    assert collector.message_ids() == set()
    collector.go_up()
    with segment_lite.Client("mp-key", host=collector.url, spool_dir=str(tmp_path)) as client:
        # A client that finds a spool left behind delivers it without being asked.
        assert collector.wait_for_messages(count, timeout=30)
        assert client.flush(timeout=30)
    events = [message for message in collector.messages() if message["event"] == "terminated"]
    assert sorted(message["properties"]["i"] for message in events) == list(range(count))


def test_client_as_a_context_manager_shuts_down_on_leaving(collector: Collector) -> None:
    with segment_lite.Client("ctx-key", host=collector.url, upload_interval=60) as client:
        client.track("user-1", "Inside")
    assert len(collector.message_ids()) == 1  # delivered by the shutdown, not by the interval
    assert client.track("user-1", "After")[0] is False
    assert client.stats()["dropped"]["after_shutdown"] == 1


def test_client_context_manager_shuts_down_when_the_block_raises(collector: Collector) -> None:
    client = segment_lite.Client("ctx-key", host=collector.url, upload_interval=60)
    with pytest.raises(KeyError), client:
        client.track("user-1", "Inside")
        raise KeyError("boom")
    assert len(collector.message_ids()) == 1
    assert client.track("user-1", "After")[0] is False


EXIT_SCRIPT = """
import sys
import segment_lite as analytics
host, how = sys.argv[1], sys.argv[2]
if how == "client-off":
    client = analytics.Client("exit-key", host=host, upload_interval=60, flush_at_exit=False)
elif how == "client-off-then-on":
    client = analytics.Client("exit-key", host=host, upload_interval=60, flush_at_exit=False)
    client.flush_at_exit = True
else:  # "module-off": the module setting, for the default client
    analytics.write_key, analytics.host, analytics.flush_at_exit = "exit-key", host, False
    client = analytics
for i in range(5):
    client.track("user-1", "Exiting", {"i": i})
"""


@pytest.mark.parametrize(
    ("how", "delivered"), [("client-off", 0), ("module-off", 0), ("client-off-then-on", 5)]
)
def test_flush_at_exit_can_be_turned_off_and_on(collector: Collector, how: str, delivered: int) -> None:
    result = subprocess.run(
        [sys.executable, "-c", EXIT_SCRIPT, collector.url, how],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    assert result.returncode == 0, result.stderr
    assert len(collector.message_ids()) == delivered
    if delivered == 0:  # left behind, but not silently
        assert "flush_at_exit=False and 5 message(s) still queued" in result.stderr


def _exit_flush_registered_before_the_target() -> None:
    from segment_lite import pipeline

    finalizer = pipeline._multiprocessing_exit
    sys.exit(0 if finalizer is not None and finalizer.still_active() else 3)


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_forked_child_has_the_exit_flush_before_its_target_runs() -> None:
    # A pipeline that starts while the child is being made (a spool adopting what an
    # earlier process left) is not started again by the target: the hook must already be
    # in place, registered after multiprocessing cleared the parent's finalizers.
    child = multiprocessing.get_context("fork").Process(target=_exit_flush_registered_before_the_target)
    child.start()
    child.join(30)
    assert child.exitcode == 0
