"""The conftest's network guard: nothing beyond loopback, in the test process or the processes it starts."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import segment_lite

TESTS = Path(__file__).resolve().parent
ROOT = str(TESTS.parent)
#: TEST-NET-1 (RFC 5737): documentation only, never routed; the guard refuses it before any packet.
FAR_AWAY = "192.0.2.1"


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


def test_connections_and_lookups_beyond_loopback_are_refused_naming_the_address(
    network_refusals: Any,
) -> None:
    import network_guard

    refused = network_guard.NonLoopbackConnectionError
    with pytest.raises(refused, match=rf"connect to {FAR_AWAY} port 80\b"):
        socket.create_connection((FAR_AWAY, 80), timeout=1)
    with pytest.raises(refused, match=r"look up api\.segment\.io port 443\b"):
        socket.getaddrinfo("api.segment.io", 443)
    with pytest.raises(refused, match=r"look up example\.org"):
        socket.gethostbyname("example.org")
    with socket.socket() as raw:
        with pytest.raises(refused, match=rf"connect to {FAR_AWAY} port 25\b"):
            raw.connect((FAR_AWAY, 25))
        with pytest.raises(refused, match=rf"connect to {FAR_AWAY} port 26\b"):
            raw.connect_ex((FAR_AWAY, 26))
    with socket.socket(socket.AF_INET6) as raw6, pytest.raises(refused, match=r"to 2001:db8::1 port 443"):
        raw6.connect(("2001:db8::1", 443))
    claimed = network_refusals.take()
    assert len(claimed) == 6
    assert all(line.startswith("network guard: the test suite tried to") for line in claimed)


def test_loopback_in_every_spelling_is_allowed() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        for host in ("127.0.0.1", "localhost"):
            socket.create_connection((host, port), timeout=5).close()
        with socket.socket() as raw:
            assert raw.connect_ex(("127.0.0.1", port)) == 0
    with socket.create_server(("127.0.0.2", 0)) as server:  # all of 127.0.0.0/8 is loopback
        socket.create_connection(server.getsockname(), timeout=5).close()
    if _has_ipv6_loopback():
        with socket.create_server(("::1", 0), family=socket.AF_INET6) as server:
            socket.create_connection(("::1", server.getsockname()[1]), timeout=5).close()
    # Lookups for binding a server send nothing anywhere.
    assert socket.getaddrinfo(None, 0, socket.AF_INET, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
    assert socket.getaddrinfo("0.0.0.0", 0)


def test_a_client_aimed_at_the_real_api_is_caught_even_though_it_handles_the_error(
    network_refusals: Any,
) -> None:
    errors: list[Exception] = []
    client = segment_lite.Client(
        "key", host="https://api.segment.io", max_retries=0, on_error=lambda e, b: errors.append(e)
    )
    try:
        client.track("user-1", "Signed Up")
        client.flush(timeout=10)
    finally:
        client.shutdown(timeout=2)
    assert len(errors) == 1 and "network guard" in str(errors[0])  # the client reported it and went on
    claimed = network_refusals.take()
    assert claimed and all("api.segment.io port 443" in line for line in claimed), claimed


def test_a_child_python_is_guarded_even_with_an_environment_of_its_own(network_refusals: Any) -> None:
    reach = f"import socket; socket.create_connection(({FAR_AWAY!r}, 443), timeout=1)"
    result = subprocess.run(
        [sys.executable, "-c", reach],
        env=dict(os.environ, PYTHONPATH=ROOT),  # replaces PYTHONPATH, as many tests here do
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "NonLoopbackConnectionError" in result.stderr and f"{FAR_AWAY} port 443" in result.stderr
    [claimed] = network_refusals.take()
    assert f"connect to {FAR_AWAY} port 443" in claimed
    assert f"(pid {os.getpid()})" not in claimed  # logged by the child


def test_an_attempt_fails_its_test_even_when_the_error_is_swallowed(tmp_path: Path) -> None:
    # A pytest run of its own, with this conftest, on tests that reach out and catch what the guard raises.
    shutil.copy(TESTS / "conftest.py", tmp_path / "conftest.py")
    shutil.copytree(TESTS / "netguard", tmp_path / "netguard", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "test_reaching_out.py").write_text(
        textwrap.dedent(
            f"""
            import os, socket, subprocess, sys, threading

            def test_swallowed_in_a_thread():
                def reach():
                    try:
                        socket.create_connection(({FAR_AWAY!r}, 80), timeout=1)
                    except OSError:
                        pass  # as a client's retry loop would
                thread = threading.Thread(target=reach)
                thread.start()
                thread.join()

            def test_swallowed_in_a_child():
                code = "import socket\\ntry: socket.getaddrinfo('api.segment.io', 443)\\nexcept OSError: pass"
                subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH={ROOT!r}), check=True)

            def test_loopback_only():
                with socket.create_server(("127.0.0.1", 0)) as server:
                    socket.create_connection(server.getsockname(), timeout=5).close()
            """
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path), "."],
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=ROOT),
        capture_output=True,
        text=True,
        timeout=120,
    )
    # The guard's check runs as the test is torn down, so pytest reports an error there: the run fails.
    summary = result.stdout.strip().splitlines()[-1]
    assert result.returncode == 1 and "3 passed, 2 errors" in summary, result.stdout + result.stderr
    assert "ERROR at teardown of test_swallowed_in_a_thread" in result.stdout
    assert "ERROR at teardown of test_swallowed_in_a_child" in result.stdout
    assert f"network guard: the test suite tried to connect to {FAR_AWAY} port 80" in result.stdout
    assert "network guard: the test suite tried to look up api.segment.io port 443" in result.stdout
    assert "test_loopback_only" not in result.stdout  # it passed quietly
