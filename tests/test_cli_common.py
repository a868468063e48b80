"""What the sending subcommands share: destination and progress options, SIGTERM read as Ctrl-C."""

from __future__ import annotations

import argparse
import os
import signal
import threading
from types import FrameType
from typing import Optional

import pytest

from segment_lite.cli_common import SigtermAsInterrupt, add_destination_arguments, add_progress_arguments


def _parser(monkeypatch: pytest.MonkeyPatch, key: Optional[str]) -> argparse.ArgumentParser:
    if key is None:
        monkeypatch.delenv("SEGMENT_WRITE_KEY", raising=False)
    else:
        monkeypatch.setenv("SEGMENT_WRITE_KEY", key)
    parser = argparse.ArgumentParser()
    add_destination_arguments(
        parser.add_argument_group("destination"), "the key (default: $SEGMENT_WRITE_KEY)"
    )
    add_progress_arguments(parser)
    return parser


def test_destination_and_progress_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    args = _parser(monkeypatch, "from-env").parse_args([])
    assert (args.write_key, args.host, args.region) == ("from-env", None, None)
    assert (args.progress, args.progress_interval) == ("auto", 10.0)
    args = _parser(monkeypatch, None).parse_args(["--region", "eu", "--progress", "plain"])
    assert (args.write_key, args.region, args.progress) == (None, "eu", "plain")


@pytest.mark.parametrize(
    "argv", [["--host", "http://127.0.0.1:1", "--region", "eu"], ["--region", "mars"], ["--progress", "x"]]
)
def test_unusable_destination_or_progress_is_refused(
    monkeypatch: pytest.MonkeyPatch, argv: list[str]
) -> None:
    with pytest.raises(SystemExit):
        _parser(monkeypatch, None).parse_args(argv)


def test_sigterm_raises_keyboard_interrupt_then_the_previous_handler_returns() -> None:
    seen: list[int] = []

    def previous(signum: int, frame: Optional[FrameType]) -> None:
        seen.append(signum)

    before = signal.signal(signal.SIGTERM, previous)
    try:
        with SigtermAsInterrupt() as sigterm:
            assert not sigterm.received and sigterm.exit_status == 130
            with pytest.raises(KeyboardInterrupt):
                os.kill(os.getpid(), signal.SIGTERM)  # the handler runs before the next line
            assert sigterm.received and sigterm.exit_status == 143
        assert signal.getsignal(signal.SIGTERM) is previous
        os.kill(os.getpid(), signal.SIGTERM)
        assert seen == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, before)


def test_outside_the_main_thread_it_does_nothing() -> None:
    outcome: list[object] = []

    def run() -> None:
        with SigtermAsInterrupt() as sigterm:
            outcome.append(sigterm.received)
        outcome.append(signal.getsignal(signal.SIGTERM))

    before = signal.getsignal(signal.SIGTERM)
    worker = threading.Thread(target=run)
    worker.start()
    worker.join()
    assert outcome == [False, before]
