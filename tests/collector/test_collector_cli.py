"""The collector's CLI commands: serve (as a subprocess), events, tail, and the parser wiring."""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from collector_helpers import track

from segment_lite.cli import build_parser, main
from segment_lite.collector.http_server import Headers
from segment_lite.collector.recording import RecordedRequest, RequestLog
from segment_lite.collector.store import EventStore

REPO = Path(__file__).resolve().parents[2]


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def read_line(stream: Any, timeout: float = 10.0) -> str:
    """One line from a subprocess pipe, or fail after ``timeout`` seconds."""
    selector = selectors.DefaultSelector()
    selector.register(stream, selectors.EVENT_READ)
    try:
        if not selector.select(timeout):
            raise AssertionError("the subprocess printed nothing in time")
        return str(stream.readline().decode())
    finally:
        selector.close()


def stored_db(path: Path, messages: list[dict[str, Any]]) -> str:
    with EventStore(str(path)) as store:
        store.insert_many(messages)
    return str(path)


def stored_message(n: int, **extra: Any) -> dict[str, Any]:
    message = track(
        n, receivedAt=f"2024-01-01T00:00:{n:02d}.000Z", timestamp=f"2024-01-01T00:00:{n:02d}.000Z"
    )
    message.update(extra)
    return message


@pytest.fixture
def sample_db(tmp_path: Path) -> str:
    return stored_db(
        tmp_path / "events.db",
        [
            stored_message(1),
            stored_message(2, type="page", event=None, name="Pricing", userId=None, anonymousId="anon-9"),
            stored_message(3, event="Order Completed"),
            stored_message(4, type="identify", event=None, traits={"email": "a@example.com"}),
        ],
    )


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# -- parser wiring ---------------------------------------------------------------------


def test_commands_are_registered_with_handlers() -> None:
    parser = build_parser()
    for argv in (["serve"], ["events"], ["tail"], ["demo"]):
        args = parser.parse_args(argv)
        assert callable(args.handler)
    args = parser.parse_args(
        [
            "serve",
            "--port",
            "0",
            "--write-key",
            "a",
            "--write-key",
            "b",
            "--fail-count",
            "2",
            "--retry-after",
            "5",
        ]
    )
    assert (args.port, args.write_keys, args.fail_count, args.retry_after) == (0, ["a", "b"], 2, "5")


# -- events -----------------------------------------------------------------------------


def test_events_prints_a_table_newest_first(sample_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(["events", "--db", sample_db], capsys)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["RECEIVED", "AT", "TYPE", "USER", "EVENT", "/", "DETAIL", "MESSAGE", "ID"]
    assert [line.split()[-1] for line in lines[1:]] == ["msg-4", "msg-3", "msg-2", "msg-1"]
    assert "Order Completed" in lines[2]
    assert "anon:anon-9" in lines[3] and "Pricing" in lines[3]
    assert "traits: email" in lines[1]


def test_events_filters_and_limit(sample_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run_cli(["events", "--db", sample_db, "--type", "track"], capsys)
    assert [line.split()[-1] for line in out.splitlines()[1:]] == ["msg-3", "msg-1"]
    _, out, _ = run_cli(["events", "--db", sample_db, "--user-id", "anon-9"], capsys)
    assert [line.split()[-1] for line in out.splitlines()[1:]] == ["msg-2"]
    _, out, _ = run_cli(["events", "--db", sample_db, "--event", "Order Completed"], capsys)
    assert [line.split()[-1] for line in out.splitlines()[1:]] == ["msg-3"]
    _, out, _ = run_cli(["events", "--db", sample_db, "--limit", "1"], capsys)
    lines = out.splitlines()
    assert lines[1].split()[-1] == "msg-4"
    assert lines[2] == "(1 of 4 shown, newest first; use --limit to see more)"
    _, out, _ = run_cli(["events", "--db", sample_db, "--event", "nothing"], capsys)
    assert out.strip() == "no events match"


def test_events_json_prints_full_messages_as_lines(
    sample_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_cli(["events", "--db", sample_db, "--json", "--type", "identify"], capsys)
    assert code == 0
    (line,) = out.splitlines()
    message = json.loads(line)
    assert message["messageId"] == "msg-4"
    assert message["traits"] == {"email": "a@example.com"}


def test_events_without_a_database_fails_clearly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = str(tmp_path / "missing.db")
    code, _, err = run_cli(["events", "--db", missing], capsys)
    assert code == 1
    assert "no database" in err
    assert not os.path.exists(missing)  # and it does not create one


def test_events_on_a_file_that_is_not_a_database_fails_clearly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bogus = tmp_path / "notes.db"
    bogus.write_text("these are not the events you are looking for\n" * 100)
    code, _, err = run_cli(["events", "--db", str(bogus)], capsys)
    assert code == 1
    assert err.startswith(f"error: cannot read {bogus}")


# -- tail ------------------------------------------------------------------------------------


class SignallingStream(io.StringIO):
    """A stdout stand-in that sets an event once a given text has been written."""

    def __init__(self, needle: str) -> None:
        super().__init__()
        self.needle = needle
        self.seen = threading.Event()

    def write(self, text: str) -> int:
        n = super().write(text)
        if self.needle in self.getvalue():
            self.seen.set()
        return n


def test_tail_shows_history_then_follows_new_events(sample_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    stream = SignallingStream("msg-4")
    monkeypatch.setattr(sys, "stdout", stream)
    result: dict[str, int] = {}
    argv = [
        "tail",
        "--db",
        sample_db,
        "-n",
        "2",
        "--max-events",
        "4",
        "--interval",
        "0.02",
        "--timeout",
        "20",
    ]
    follower = threading.Thread(target=lambda: result.setdefault("code", main(argv)))
    follower.start()
    try:
        assert stream.seen.wait(10), "tail did not print its history"
        with EventStore(sample_db) as store:
            store.insert_many([stored_message(5, type="page", event=None)])  # filtered? no: no filter here
            store.insert_many([stored_message(6)])
    finally:
        follower.join(20)
    assert not follower.is_alive()
    assert result["code"] == 0
    ids = re.findall(r"msg-\d", stream.getvalue())
    assert ids == ["msg-3", "msg-4", "msg-5", "msg-6"]


def test_tail_filters_and_json(sample_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    stream = SignallingStream('"msg-3"')
    monkeypatch.setattr(sys, "stdout", stream)
    result: dict[str, int] = {}
    argv = ["tail", "--db", sample_db, "--type", "track", "-n", "1", "--json", "--max-events", "2"]
    argv += ["--interval", "0.02"]
    follower = threading.Thread(target=lambda: result.setdefault("code", main(argv)))
    follower.start()
    try:
        assert stream.seen.wait(10)
        with EventStore(sample_db) as store:
            store.insert_many([stored_message(7, type="identify", event=None)])  # skipped by the filter
            store.insert_many([stored_message(8)])
    finally:
        follower.join(20)
    assert result["code"] == 0
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [m["messageId"] for m in lines] == ["msg-3", "msg-8"]


def test_tail_timeout_stops_when_nothing_arrives(sample_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(
        ["tail", "--db", sample_db, "-n", "0", "--timeout", "0.2", "--interval", "0.05"], capsys
    )
    assert code == 0
    assert out.splitlines()[0].startswith("RECEIVED AT")
    assert len(out.splitlines()) == 1
    assert "following" in err


def test_tail_exits_cleanly_on_ctrl_c(sample_db: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "segment_lite.cli", "tail", "--db", sample_db, "-n", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=child_env(),
        bufsize=0,
    )
    try:
        assert read_line(proc.stdout).startswith("RECEIVED AT")
        assert "msg-4" in read_line(proc.stdout)
        assert "following" in read_line(proc.stderr)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
        assert proc.stderr is not None
        err = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    assert b"Traceback" not in err


# -- serve ----------------------------------------------------------------------------------


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Any]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(*flags: str) -> tuple[str, subprocess.Popen[bytes], str]:
        db = str(tmp_path / f"serve{len(procs)}.db")
        proc = subprocess.Popen(
            [sys.executable, "-m", "segment_lite.cli", "serve", "--port", "0", "--db", db, *flags],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=child_env(),
            bufsize=0,
        )
        procs.append(proc)
        first = read_line(proc.stdout)
        match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", first)
        assert match, first
        return match.group(1), proc, db

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def stop(proc: subprocess.Popen[bytes]) -> tuple[str, str]:
    """SIGTERM the process and return the rest of its stdout and stderr."""
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=10)
    assert proc.stdout is not None and proc.stderr is not None
    return proc.stdout.read().decode(), proc.stderr.read().decode()


def test_serve_stores_events_that_events_then_lists(served: Any, capsys: pytest.CaptureFixture[str]) -> None:
    url, proc, db = served()
    r = requests.post(url + "/v1/batch", json={"batch": [track(1), track(2)]}, auth=("k", ""), timeout=5)
    assert r.status_code == 200
    assert r.json() == {"success": True}
    assert requests.get(url + "/", timeout=5).status_code == 200
    # Another process reads the same database while serve is running.
    code, out, _ = run_cli(["events", "--db", db, "--json"], capsys)
    assert code == 0
    assert {json.loads(line)["messageId"] for line in out.splitlines()} == {"msg-1", "msg-2"}
    out, err = stop(proc)
    assert proc.returncode == 0
    assert "POST /v1/batch 200 2 message(s): 2 stored" in err
    assert "storing events in" in out


def test_serve_with_write_keys_and_fault_flags(served: Any) -> None:
    url, proc, _ = served(
        "--write-key", "secret-key-1", "--fail-count", "1", "--fail-status", "429", "--retry-after", "5"
    )
    first = requests.post(url + "/v1/track", json=track(1), auth=("secret-key-1", ""), timeout=5)
    assert first.status_code == 429
    assert first.headers["Retry-After"] == "5"
    assert (
        requests.post(url + "/v1/track", json=track(1), auth=("secret-key-1", ""), timeout=5).status_code
        == 200
    )
    assert requests.post(url + "/v1/track", json=track(2), auth=("wrong", ""), timeout=5).status_code == 401
    out, err = stop(proc)
    assert "accepting 1 configured write key(s)" in out
    assert "secret-key-1" not in out + err  # keys are never printed


def test_serve_refuses_a_port_in_use(served: Any, tmp_path: Path) -> None:
    url, _, _ = served()
    port = url.rsplit(":", 1)[1]
    done = subprocess.run(
        [sys.executable, "-m", "segment_lite.cli", "serve", "--port", port, "--db", str(tmp_path / "x.db")],
        capture_output=True,
        env=child_env(),
        timeout=20,
    )
    assert done.returncode == 1
    err = done.stderr.decode()
    assert "cannot start the collector" in err
    assert f"port {port} on 127.0.0.1 is already in use" in err
    assert "--port" in err
    assert "Traceback" not in err


def test_serve_delay_and_reset_flags(served: Any) -> None:
    url, proc, _ = served("--reset-count", "1", "--delay", "0.2", "--delay-count", "1", "--quiet")
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.post(url + "/v1/track", json=track(1), timeout=5)
    # The reset consumed no delay; the next request is the delayed one.
    started = time.monotonic()
    assert requests.post(url + "/v1/track", json=track(1), timeout=5).status_code == 200
    assert time.monotonic() - started >= 0.2
    _, err = stop(proc)
    assert "POST" not in err  # --quiet


# -- untrusted data in the terminal ---------------------------------------------------------


HOSTILE = {
    "userId": "u\x1b]0;x\x07",
    "event": "\x1b[2J\x1b[31mRed Alert\u202e",
    "properties": {"note": "C1 \x9b31m and DEL \x7f"},
}


def test_events_and_tail_escape_control_characters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = stored_db(tmp_path / "hostile.db", [stored_message(1, **HOSTILE)])
    for argv in (["events", "--db", db], ["tail", "--db", db, "--timeout", "0.1", "--interval", "0.05"]):
        code, out, _ = run_cli(argv, capsys)
        assert code == 0
        assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202e]", out), repr(out)
        assert "\\x1b[2J\\x1b[31mRed Alert\\u202e" in out
        assert "u\\x1b]0;x\\x07" in out
    code, out, _ = run_cli(["events", "--db", db, "--json"], capsys)
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202e]", out), repr(out)
    message = json.loads(out)  # escaped the JSON way, so the data is unchanged
    assert message["event"] == HOSTILE["event"]
    assert message["properties"]["note"] == HOSTILE["properties"]["note"]


def test_events_json_output_stays_valid_json_for_rows_with_nan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = stored_db(tmp_path / "nan.db", [stored_message(1, properties={"x": float("nan")})])
    code, out, _ = run_cli(["events", "--db", db, "--json"], capsys)
    assert code == 0
    assert json.loads(out, parse_constant=lambda name: pytest.fail(name))["properties"] == {"x": None}


def test_serve_log_escapes_control_characters_in_the_path(served: Any) -> None:
    url, proc, _ = served()
    host, port = url.rsplit("/", 1)[1].split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        # A request target is visible ASCII (RFC 9112): this one is refused before routing.
        sock.sendall(b"POST /v1/\x1b[31mnope HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 400")
    _, err = stop(proc)
    assert "\x1b" not in err
    # Whatever reaches the log is escaped all the same.
    lines: list[str] = []
    log = RequestLog(None, lines.append)
    log.record(RecordedRequest("POST", "/v1/\x1b[31mnope", Headers(), b"", status=404))
    assert lines == ["POST /v1/\\x1b[31mnope 404"]


# -- help and docs agree ---------------------------------------------------------------------

COLLECTOR_COMMANDS = ("serve", "events", "tail", "demo")
DOCS = (REPO / "docs" / "collector.md").read_text(encoding="utf-8")


def subcommand(name: str) -> argparse.ArgumentParser:
    (action,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    parser: argparse.ArgumentParser = action.choices[name]
    return parser


@pytest.mark.parametrize("command", COLLECTOR_COMMANDS)
def test_help_states_each_default_the_same_way(command: str) -> None:
    parser = subcommand(command)
    text = " ".join(parser.format_help().split())
    assert re.findall(r"\(default\b(.)", text) == [":"] * text.count("(default"), text
    for action in parser._actions:
        if action.option_strings and action.option_strings != ["-h", "--help"]:
            assert "(default: " in (action.help or ""), f"{command} {action.option_strings} names no default"


@pytest.mark.parametrize("command", COLLECTOR_COMMANDS)
def test_the_docs_write_each_option_as_help_does(command: str) -> None:
    # e.g. help says `--seed N`: the docs may not say `--seed SEED`.
    section = DOCS.split(f"### `segment-lite {command}`", 1)[1].split("\n#", 1)[0]
    # The first cell of each row of the section's option tables.
    section = "\n".join(line.split("|")[1] for line in section.splitlines() if line.startswith("| `"))
    assert section, f"no option table under segment-lite {command}"
    for action in subcommand(command)._actions:
        if not action.option_strings or action.nargs == 0:
            continue
        metavar = action.metavar or action.dest.upper()
        for option in action.option_strings:
            for written in re.findall(rf"`{re.escape(option)} ([^`]+)`", section):
                assert written == metavar, f"docs write `{option} {written}`, help `{option} {metavar}`"
