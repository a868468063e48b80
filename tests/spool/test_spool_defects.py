"""The spool defects of issue 22, each as the behaviour that was broken: live loss, key change,
stranded and damaged directories, descriptor exhaustion, drain's exit status and the exit log."""

from __future__ import annotations

import base64
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

from spool_helpers import (
    REPO_ROOT,
    WRITE_KEY,
    child_env,
    crash_in_process,
    kill9,
    owner_names,
    python,
    spooling_child,
)

import segment_lite
from segment_lite.collector import Collector
from segment_lite.spool.disk import DiskSpool

FINGERPRINT = "0123456789abcdef"


def _messages(count: int) -> list[bytes]:
    return [b'{"type":"track","i":%d,"pad":"%s"}' % (i, b"p" * 200) for i in range(count)]


def test_two_threads_and_a_small_spool_deliver_everything_and_lose_nothing(
    collector: Collector, spool_dir: Path
) -> None:
    """Defect 1: with thread=2 and spool_max_bytes=262144 a reader skipped records written meanwhile."""
    for run in range(6):
        collector.reset()
        root = spool_dir / str(run)
        client = segment_lite.Client(
            WRITE_KEY, host=collector.url, spool_dir=root, thread=2, spool_max_bytes=262_144
        )
        ids = []
        stop = time.monotonic() + 2.0
        i = 0
        while time.monotonic() < stop:
            ok, message = client.track("u", "Busy", {"i": i})
            if ok:  # a full spool refuses (counted as queue_full): only what was accepted counts
                ids.append(message["messageId"])
            i += 1
        assert client.flush(timeout=60)
        stats = client.stats()
        assert stats["dropped"]["spool_corrupt"] == 0, stats
        assert stats["delivered"] == len(ids), stats
        assert collector.message_ids() == set(ids)
        assert client.shutdown(timeout=10)


#: Tracks until killed with the server up (so batches are delivered and settled while
#: the next ones are written), appending each accepted messageId to a file.
TRACKING_UNTIL_KILLED = r"""
import os, sys
import segment_lite

host, spool_dir, ids_path, run, write_key = sys.argv[1:6]
# Two sender threads and a small spool, as in the issue (the old format rotated 64 KiB segments).
client = segment_lite.Client(
    write_key, host=host, spool_dir=spool_dir, thread=2, spool_max_bytes=262144, spool_fsync="never"
)
fd = os.open(ids_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
print("ready", flush=True)
i = 0
while True:
    ok, message = client.track("u", "Killed", {"run": run, "i": i})
    if ok:
        os.write(fd, (message["messageId"] + "\n").encode())  # written only once accepted
    i += 1
"""


def test_kill_9_at_random_points_loses_no_accepted_message(
    tmp_path: Path, collector: Collector, spool_dir: Path
) -> None:
    """Defect 1 under kill -9: 20 rounds lost 113 to 508 accepted messages (8 rounds here)."""
    rng = random.Random(22)
    accepted: set[str] = set()
    for run in range(8):
        ids_path = tmp_path / f"ids-{run}"
        child = python(
            TRACKING_UNTIL_KILLED, collector.url, str(spool_dir), str(ids_path), str(run), WRITE_KEY
        )
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.05, 0.6))
        kill9(child)
        child.stdout.close()
        accepted |= set(ids_path.read_text().split())
    assert len(accepted) > 1_000, "the kills came too early to test anything"
    last = segment_lite.Client(WRITE_KEY, host=collector.url, spool_dir=spool_dir)
    assert last.flush(timeout=60)
    assert last.stats()["dropped"]["spool_corrupt"] == 0
    missing = accepted - collector.message_ids()
    assert not missing, f"{len(missing)} accepted message(s) lost"
    assert last.shutdown(timeout=10)


CHANGING_KEYS = r"""
import json, sys
import segment_lite

spec = json.loads(sys.argv[1])
client = segment_lite.Client(spec["k1"], host=spec["host"], spool_dir=spec["dir"])
before = [client.track("u", "Before", {"i": i})[1]["messageId"] for i in range(20)]
client.write_key = spec["k2"]
after = [client.track("u", "After", {"i": i})[1]["messageId"] for i in range(30)]
print(json.dumps({"before": before, "after": after}), flush=True)
import time
time.sleep(600)
"""


def _keys_used(collector: Collector) -> dict[str, set[str]]:
    """messageIds delivered, by the write key of the request that carried them."""
    by_key: dict[str, set[str]] = {}
    for request in collector.requests:
        if request.status != 200 or not request.json:
            continue
        credentials = request.headers["authorization"].split()[1]
        key = base64.b64decode(credentials).decode().rstrip(":")
        by_key.setdefault(key, set()).update(m["messageId"] for m in request.json["batch"])
    return by_key


def test_after_a_key_change_and_a_crash_each_message_goes_with_its_own_key(
    collector: Collector, spool_dir: Path
) -> None:
    """Defect 2: messages tracked after ``client.write_key = K2`` were sent by a K1 process with K1."""
    k1, k2 = "first-write-key-0001", "second-write-key-0002"
    collector.go_down()
    spec = {"k1": k1, "k2": k2, "host": collector.url, "dir": str(spool_dir)}
    child = python(CHANGING_KEYS, json.dumps(spec))
    assert child.stdout is not None
    tracked = json.loads(child.stdout.readline())
    kill9(child)
    child.stdout.close()
    collector.go_up()

    first = segment_lite.Client(k1, host=collector.url, spool_dir=spool_dir)
    assert first.stats()["recovered"] == 20
    assert first.flush(timeout=30)
    first.shutdown(timeout=10)
    second = segment_lite.Client(k2, host=collector.url, spool_dir=spool_dir)
    assert second.stats()["recovered"] == 30
    assert second.flush(timeout=30)
    second.shutdown(timeout=10)
    assert _keys_used(collector) == {k1: set(tracked["before"]), k2: set(tracked["after"])}
    assert owner_names(spool_dir) == []


def _orphan(tmp_path: Path, collector: Collector, spool_dir: Path, count: int) -> tuple[Path, list[str]]:
    collector.go_down()
    with spooling_child(tmp_path, collector.url, spool_dir, count) as (child, owner, ids):
        kill9(child)
    return Path(owner), ids


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "segment_lite.cli", "spool", *args],
        capture_output=True,
        text=True,
        env=child_env(),
        cwd=REPO_ROOT,
        timeout=120,
    )


def test_a_directory_missing_its_lock_or_owner_file_is_adopted_not_stranded(
    tmp_path: Path, collector: Collector, spool_dir: Path
) -> None:
    """Defect 3: a missing lock or an empty owner.json left a directory stranded forever."""
    owner, ids = _orphan(tmp_path, collector, spool_dir, 200)
    (owner / "lock").unlink()
    if (owner / "owner.json").exists():
        (owner / "owner.json").write_text("")
    collector.go_up()
    drained = cli("drain", str(spool_dir), "--write-key", WRITE_KEY, "--host", collector.url)
    assert "another write key" not in drained.stderr
    assert drained.returncode == 0, drained.stderr
    assert collector.message_ids() == set(ids)
    assert owner_names(spool_dir) == []


def test_a_damaged_or_deleted_cursor_never_sends_acknowledged_messages_again(spool_dir: Path) -> None:
    """Defect 4: a damaged ack cursor re-sent every acknowledged record still on disk."""
    for damage in ("truncate", "delete", "garble"):
        root = spool_dir / damage
        sent = _messages(30)
        spool = DiskSpool(str(root), max_bytes=1 << 30, wake_at=100, fingerprint=FINGERPRINT)
        for item in sent:
            assert spool.put(item)
        batch = spool.take(10, 1 << 20)
        assert batch is not None
        spool.done(batch)  # delivered: acknowledged
        directory = Path(spool.directory or "")
        crash_in_process(spool)  # what a kill leaves
        for cursor in directory.glob("ack*"):
            if damage == "truncate":
                os.truncate(cursor, 7)
            elif damage == "delete":
                cursor.unlink()
            else:
                cursor.write_bytes(b"\xff" * cursor.stat().st_size)
        successor = DiskSpool(str(root), max_bytes=1 << 30, wake_at=100, fingerprint=FINGERPRINT)
        assert successor.recovered_count() == 20, damage
        taken = []
        while (again := successor.take(100, 1 << 20)) is not None:
            taken.extend(again.items)
            successor.done(again)
        assert taken == sent[10:], damage
        successor.close()


ADOPTING_UNDER_A_LOW_LIMIT = r"""
import json, resource, sys
import segment_lite

spec = json.loads(sys.argv[1])
resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))
client = segment_lite.Client(spec["write_key"], host=spec["host"], spool_dir=spec["dir"])
ok = client.track("u", "Mine")[0]
flushed = client.flush(timeout=120)
stats = client.stats()
client.shutdown(timeout=10)
print(json.dumps({"ok": ok, "flushed": flushed, "stats": stats}), flush=True)
"""


def test_700_orphans_under_a_1024_descriptor_limit_are_all_adopted(
    tmp_path: Path, collector: Collector, spool_dir: Path
) -> None:
    """Defect 5: each adopted directory held 2 descriptors, so the client's own message was refused."""
    owner, _ = _orphan(tmp_path, collector, spool_dir, 5)
    for n in range(699):  # what crash-looping workers leave during an outage
        shutil.copytree(owner, spool_dir / f"{owner.name}{n:04d}")
    collector.go_up()
    spec = {"write_key": WRITE_KEY, "host": collector.url, "dir": str(spool_dir)}
    process = python(ADOPTING_UNDER_A_LOW_LIMIT, json.dumps(spec))
    out, _ = process.communicate(timeout=300)
    assert process.returncode == 0, out
    report = json.loads(out.splitlines()[-1])
    assert report["ok"], "its own first message was accepted"
    assert report["flushed"]
    assert report["stats"]["recovered"] == 700 * 5
    assert report["stats"]["dropped"]["spool_write_failed"] == 0
    assert owner_names(spool_dir) == [], "every orphan was delivered and deleted"


def test_a_directory_where_a_file_belongs_does_not_break_status_drain_or_adoption(
    tmp_path: Path, collector: Collector, spool_dir: Path
) -> None:
    """Defect 6: a directory named like a segment crashed status and drain with IsADirectoryError."""
    owner, ids = _orphan(tmp_path, collector, spool_dir, 100)
    (owner / "0000000000000999.seg").mkdir()
    status = cli("status", str(spool_dir), "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["messages"] == 100
    collector.go_up()
    drained = cli("drain", str(spool_dir), "--write-key", WRITE_KEY, "--host", collector.url)
    assert drained.returncode == 0, drained.stderr
    assert "Traceback" not in drained.stderr
    assert collector.message_ids() == set(ids)
    assert owner_names(spool_dir) == []


def test_drain_exits_non_zero_when_the_server_refused_the_messages(tmp_path: Path, spool_dir: Path) -> None:
    """Defect 7: drain exited 0 after "delivered 0 of 40; 40 rejected"."""
    with Collector() as collector:
        _orphan(tmp_path, collector, spool_dir, 40)
        collector.go_up()
        collector.fail_next(1000, status=401)
        drained = cli("drain", str(spool_dir), "--write-key", WRITE_KEY, "--host", collector.url, "--json")
    summary = json.loads(drained.stdout)
    assert summary["delivered"] == 0 and summary["rejected"] == 40
    assert drained.returncode == 5, drained.stderr


EXITING_WITH_A_BACKLOG = r"""
import sys
import segment_lite

client = segment_lite.Client(sys.argv[3], host=sys.argv[1], spool_dir=sys.argv[2], shutdown_timeout=0.5)
for i in range(120):
    assert client.track("u", "Left", {"i": i})[0]
"""


def test_the_exit_log_says_how_many_messages_stay_in_the_spool(collector: Collector, spool_dir: Path) -> None:
    """Defect 8: the exit warning said "dropped 0 undelivered message(s)" and nothing of the spool."""
    collector.go_down()
    done = subprocess.run(
        [sys.executable, "-c", EXITING_WITH_A_BACKLOG, collector.url, str(spool_dir), WRITE_KEY],
        capture_output=True,
        text=True,
        env=child_env(),
        cwd=REPO_ROOT,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "left 120 message(s) in the spool" in done.stderr, done.stderr
