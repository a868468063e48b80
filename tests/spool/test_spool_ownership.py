"""Who owns a spool directory: one live process each, prefork workers apart, orphans adopted, forks apart."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

from spool_helpers import WRITE_KEY, kill9, owner_names, python, spooling_child, wait_until

import segment_lite
from segment_lite.collector import Collector
from segment_lite.spool.store import probe_lock


def test_two_processes_on_one_directory_each_get_their_own(
    tmp_path: Path, collector: Collector, spool_dir: Path
) -> None:
    collector.go_down()
    first = spooling_child(tmp_path, collector.url, spool_dir, 500, run="a")
    second = spooling_child(tmp_path, collector.url, spool_dir, 500, run="b")
    with first as (_, first_dir, first_ids), second as (_, second_dir, second_ids):
        assert first_dir != second_dir
        assert Path(first_dir).parent == Path(second_dir).parent == spool_dir
        assert probe_lock(first_dir) and probe_lock(second_dir), "each is held by its live owner"
        # A third client, here, takes neither (both owners are alive) and makes its own.
        third = segment_lite.Client(WRITE_KEY, host=collector.url, spool_dir=spool_dir)
        assert third.stats()["recovered"] == 0
        assert third.queue.directory not in (first_dir, second_dir)  # type: ignore[attr-defined]
        third.shutdown(timeout=1)
        collector.go_up()  # both owners deliver their own
        assert wait_until(lambda: len(collector.message_ids()) == 1_000, timeout=60)
        assert collector.message_ids() == set(first_ids) | set(second_ids)
    assert collector.stats.duplicates == 0


def test_orphans_of_another_write_key_are_left_alone(
    tmp_path: Path, collector: Collector, spool_dir: Path
) -> None:
    collector.go_down()
    with spooling_child(tmp_path, collector.url, spool_dir, 100) as (child, orphan, _):
        kill9(child)
    collector.go_up()
    other = segment_lite.Client("another-write-key", host=collector.url, spool_dir=spool_dir)
    assert other.stats()["recovered"] == 0
    assert other.flush(timeout=5)
    assert collector.message_ids() == set()
    other.shutdown(timeout=1)
    assert os.path.basename(orphan) in owner_names(spool_dir)


PREFORK_PARENT = r"""
import json, os, sys, time
import segment_lite

spec = json.loads(sys.argv[1])
# Made before forking, as gunicorn --preload or a celery prefork pool does. Retries are
# capped at half a second, so the server coming back is found at once.
policy = segment_lite.RetryPolicy(max_retries=10**9, max_delay_s=0.5)
client = segment_lite.Client(
    spec["write_key"], host=spec["host"], spool_dir=spec["dir"], upload_interval=0.05, retry_policy=policy
)


def worker(index):
    pid = os.fork()
    if pid:
        return pid
    try:
        report = os.path.join(spec["reports"], "worker-%d.json" % index)
        try:
            ids = []
            for i in range(spec["count"]):
                ok, message = client.track("u", "Prefork", {"worker": index, "i": i})
                assert ok, client.stats()
                ids.append(message["messageId"])
            result = {"worker": index, "pid": os.getpid(), "dir": client.queue.directory,
                      "adopted": client.queue.adopted_directories,
                      "recovered": client.stats()["recovered"], "ids": ids}
        except BaseException as exc:  # say so at once rather than leave the test waiting
            result = {"worker": index, "error": repr(exc)}
        with open(report, "w") as handle:
            json.dump(result, handle)
        os.write(1, (report + "\n").encode())  # one short write: the workers share the pipe
        time.sleep(600)
    finally:
        os._exit(0)


workers = [worker(index) for index in range(3)]
for line in sys.stdin:  # one line per successor to start
    workers.append(worker(len(workers)))
"""


def test_prefork_workers_spool_apart_and_a_successor_delivers_a_killed_workers_events(
    tmp_path: Path, collector: Collector, spool_dir: Path
) -> None:
    collector.go_down()
    spec = {
        "write_key": WRITE_KEY,
        "host": collector.url,
        "dir": str(spool_dir),
        "count": 300,
        "reports": str(tmp_path),
    }
    parent = python(PREFORK_PARENT, json.dumps(spec), stdin=subprocess.PIPE)
    assert parent.stdout is not None and parent.stdin is not None
    started: list[dict] = []
    try:
        workers = [_report(parent.stdout.readline()) for _ in range(3)]
        started.extend(workers)
        directories = {w["dir"] for w in workers}
        assert len(directories) == 3, "each worker spools under its own directory"
        victim = workers[1]
        os.kill(victim["pid"], signal.SIGKILL)
        assert wait_until(lambda: not probe_lock(victim["dir"]), timeout=10)

        parent.stdin.write("start a successor\n")
        parent.stdin.flush()
        successor = _report(parent.stdout.readline())
        started.append(successor)
        assert successor["adopted"] == [victim["dir"]], "the successor adopts the dead worker's spool"
        assert successor["recovered"] == 300
        assert successor["dir"] not in directories

        collector.go_up()
        expected = {i for w in started for i in w["ids"]}
        assert wait_until(lambda: collector.message_ids() >= expected, timeout=60)
        assert collector.message_ids() == expected
        assert collector.stats.duplicates == 0
        assert wait_until(lambda: not os.path.exists(victim["dir"]), timeout=10), "delivered, then deleted"
    finally:
        for worker in started:
            try:
                os.kill(worker["pid"], signal.SIGKILL)
            except ProcessLookupError:
                pass
        parent.kill()
        parent.wait(timeout=30)


def _report(line: str) -> dict:
    report = dict(json.loads(Path(line.strip()).read_text()))
    assert "error" not in report, report
    return report


FORKING_CLIENT = r"""
import json, os, sys
import segment_lite

spec = json.loads(sys.argv[1])
client = segment_lite.Client(spec["write_key"], host=spec["host"], spool_dir=spec["dir"])
for i in range(50):
    assert client.track("u", "Before fork", {"i": i})[0]
parent_dir = client.queue.directory
parent_segments = sorted(os.listdir(parent_dir))
read, write = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(read)
    for i in range(40):
        assert client.track("u", "In child", {"i": i})[0]
    report = {"dir": client.queue.directory, "flushed": client.flush(timeout=30),
              "parent_dir_segments": sorted(os.listdir(parent_dir)),
              "stats": client.stats()}
    os.write(write, json.dumps(report).encode())
    os.close(write)
    client.shutdown(timeout=10)
    os._exit(0)
os.close(write)
chunks = []
while chunk := os.read(read, 65536):
    chunks.append(chunk)
_, status = os.waitpid(pid, 0)
child = json.loads(b"".join(chunks))
for i in range(30):
    assert client.track("u", "After fork", {"i": i})[0]
flushed = client.flush(timeout=30)
print(json.dumps({"parent_dir": parent_dir, "parent_segments": parent_segments, "child": child,
                  "status": status, "flushed": flushed, "stats": client.stats(),
                  "parent_dir_exists": os.path.isdir(parent_dir)}), flush=True)
client.shutdown(timeout=10)
"""


def test_a_forked_child_spools_apart_and_never_touches_its_parents_spool(
    collector: Collector, spool_dir: Path
) -> None:
    spec = {"write_key": WRITE_KEY, "host": collector.url, "dir": str(spool_dir)}
    process = python(FORKING_CLIENT, json.dumps(spec))
    out, _ = process.communicate(timeout=120)
    assert process.returncode == 0, out
    report = json.loads(out.splitlines()[-1])
    child = report["child"]
    assert report["status"] == 0
    assert child["dir"] != report["parent_dir"], "the child opened a fresh directory"
    assert child["flushed"] and report["flushed"]
    assert child["parent_dir_segments"] == report["parent_segments"], (
        "the child left the parent's files alone"
    )
    assert child["stats"]["accepted"] == 40 and child["stats"]["recovered"] == 0
    assert report["stats"]["accepted"] == 80 and report["stats"]["delivered"] == 80
    events = [m["event"] for m in collector.messages()]
    assert sorted(events) == sorted(["Before fork"] * 50 + ["In child"] * 40 + ["After fork"] * 30)
    assert collector.stats.duplicates == 0
    assert owner_names(spool_dir) == [], "both processes cleaned up after delivering"


#: Spools 100 messages, forks a child that drops every reference to the inherited spool and
#: collects (what interpreter exit may do), then spools 100 more, moves them all into the database,
#: and prints what a kill -9 would leave there (a copy of the database and its WAL, read by another
#: connection).
FORGETFUL_CHILD = r"""
import gc, os, shutil, sqlite3, sys, tempfile
from segment_lite.spool import disk
spool = disk.DiskSpool(sys.argv[1], max_bytes=1 << 30, wake_at=10**9, fingerprint="0123456789abcdef")
for i in range(100):
    assert spool.put(b'{"before":%d}' % i)
pid = os.fork()
if pid == 0:
    del spool
    disk._INHERITED.clear()
    gc.collect()
    os._exit(0)
os.waitpid(pid, 0)
for i in range(100):
    assert spool.put(b'{"after":%d}' % i)
with spool._lock:
    spool._move_pending()  # into the database: commits to its WAL, as the sync thread makes them
image = tempfile.mkdtemp(dir=sys.argv[2])
for name in ("spool.db", "spool.db-wal"):
    if os.path.exists(os.path.join(spool.directory, name)):
        shutil.copyfile(os.path.join(spool.directory, name), os.path.join(image, name))
print(sqlite3.connect(os.path.join(image, "spool.db")).execute("SELECT count(*) FROM messages").fetchone()[0])
"""


def test_a_forked_child_that_frees_its_inherited_spool_leaves_the_parents_wal_alone(
    spool_dir: Path, tmp_path: Path
) -> None:
    # The connection is in SQLite's exclusive mode: freed in the child, it would checkpoint and
    # delete the parent's WAL, and the parent's later commits would go to a deleted file.
    process = python(FORGETFUL_CHILD, str(spool_dir), str(tmp_path))
    out, _ = process.communicate(timeout=120)
    assert process.returncode == 0, out
    assert out.split()[-1] == "200", "a kill now keeps every accepted message"
