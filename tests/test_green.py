"""gevent and eventlet: they work when they patch first; patching after a client exists fails loudly."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.frameworks

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PATCH = {
    "gevent": "from gevent import monkey; monkey.patch_all()",
    "eventlet": "import eventlet; eventlet.monkey_patch()",
}
SPAWN_FOUR = {
    "gevent": "import gevent; gevent.joinall([gevent.spawn(work, n) for n in range(4)])",
    "eventlet": "import eventlet; pool = eventlet.GreenPool(); [pool.spawn(work, n) for n in range(4)]; pool.waitall()",
}
LIBRARIES = [
    pytest.param(
        name, marks=pytest.mark.skipif(importlib.util.find_spec(name) is None, reason=f"{name} not installed")
    )
    for name in PATCH
]


def run(source: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-W", "ignore", "-c", textwrap.dedent(source), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, PYTHONPATH=ROOT),
    )


@pytest.mark.parametrize("library", LIBRARIES)
def test_patched_first_delivers_from_green_threads(collector, library) -> None:
    result = run(
        f"""
        {PATCH[library]}
        import sys
        import segment_lite
        client = segment_lite.Client("green-key", host=sys.argv[1])
        def work(n):
            for i in range(50):
                client.track("green-%d" % n, "Green Event", {{"i": i}})
        {SPAWN_FOUR[library]}
        assert client.flush(timeout=20)
        print(client.stats()["delivered"])
        """,
        collector.url,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "200"
    assert len(collector.message_ids()) == 200


@pytest.mark.parametrize("library", LIBRARIES)
def test_patched_after_the_client_fails_loudly(collector, library) -> None:
    result = run(
        f"""
        import sys
        import segment_lite
        client = segment_lite.Client("green-key", host=sys.argv[1])
        {PATCH[library]}
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
    assert collector.requests == []
