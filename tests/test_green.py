"""gevent: works when patched first; fails loudly when patched after the client was made."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("gevent")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(source: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(source), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, PYTHONPATH=ROOT),
    )


def test_gevent_patched_first_delivers(collector) -> None:
    result = run(
        """
        from gevent import monkey
        monkey.patch_all()
        import sys
        import gevent
        import segment_lite
        client = segment_lite.Client("green-key", host=sys.argv[1])
        def work(n):
            for i in range(50):
                client.track("green-%d" % n, "Greenlet Event", {"i": i})
        gevent.joinall([gevent.spawn(work, n) for n in range(4)])
        assert client.flush(timeout=20)
        print(client.stats()["delivered"])
        """,
        collector.url,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "200"
    assert len(collector.message_ids()) == 200


def test_gevent_patched_after_the_client_fails_loudly(collector) -> None:
    result = run(
        """
        import sys
        import segment_lite
        client = segment_lite.Client("green-key", host=sys.argv[1])
        from gevent import monkey
        monkey.patch_all()
        try:
            client.track("u", "Too Late")
        except segment_lite.SegmentLiteError as exc:
            print("refused:", exc)
        """,
        collector.url,
    )
    assert result.returncode == 0, result.stderr
    assert (
        "refused: threading was monkey-patched (gevent/eventlet) after this segment_lite Client"
        in result.stdout
    )
