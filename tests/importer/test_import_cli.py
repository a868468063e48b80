"""The command line: the segment-lite entry point, options, exit statuses, examples, progress output."""

from __future__ import annotations

import io
import json
import shutil
import sys
from pathlib import Path

import pytest
from import_helpers import REPO, WRITE_KEY, read_jsonl, run_cli, track_rows, write_jsonl

from segment_lite import cli
from segment_lite import cli_common as progress_module
from segment_lite.cli_common import PlainProgress, Snapshot, make_progress
from segment_lite.collector import Collector

EXAMPLES = REPO / "examples" / "import"


def test_import_is_a_subcommand_of_segment_lite(collector: Collector, workdir: Path) -> None:
    path = workdir / "signups.csv"
    path.write_text("id,when,plan\nu1,2024-05-01T10:00:00Z,pro\nu2,2024-05-02T10:00:00Z,\n", encoding="utf-8")
    code = cli.main(
        [
            "import",
            str(path),
            "--write-key",
            WRITE_KEY,
            "--host",
            collector.url,
            "--type",
            "track",
            "--map",
            "userId=id,timestamp=when",
            "--map",
            "properties.plan=plan",
            "--set",
            "event=Signed Up",
            "--set",
            "properties.source=backfill",
            "--integrations",
            '{"All": false, "Amplitude": true}',
            "--progress",
            "none",
        ]
    )
    assert code == 0
    stored = {m["userId"]: m for m in collector.messages()}
    assert stored["u1"]["event"] == "Signed Up"
    assert stored["u1"]["properties"] == {"plan": "pro", "source": "backfill"}
    assert stored["u2"]["properties"] == {"source": "backfill"}
    assert stored["u1"]["originalTimestamp"] == "2024-05-01T10:00:00.000+00:00"
    assert stored["u2"]["integrations"] == {"All": False, "Amplitude": True}


def test_csv_named_after_fields_needs_no_mapping(collector: Collector, workdir: Path) -> None:
    path = workdir / "events.csv"
    path.write_text(
        "type,userId,event,timestamp,properties.plan:int\ntrack,u1,Paid,1714557600,3\n", encoding="utf-8"
    )
    assert cli.main(["import", str(path), "--write-key", WRITE_KEY, "--host", collector.url]) == 0
    [message] = collector.messages()
    assert (message["event"], message["properties"], message["originalTimestamp"]) == (
        "Paid",
        {"plan": 3},
        "2024-05-01T10:00:00.000+00:00",
    )
    path.write_text("userId,action\nu1,Paid\n", encoding="utf-8")
    assert cli.main(["import", str(path), "--dry-run"]) == 2


def test_examples_import_as_documented(collector: Collector, workdir: Path) -> None:
    for name in ("events.jsonl", "signups.csv", "signups.mapping.json"):
        shutil.copy(EXAMPLES / name, workdir / name)
    common = ["--write-key", WRITE_KEY, "--host", collector.url, "--progress", "none"]
    assert cli.main(["import", "events.jsonl", *common]) == 0
    assert read_jsonl(workdir / "events.jsonl.rejects.jsonl")[0]["line"] == 8
    assert cli.main(["import", "events.jsonl", "--allow-now", *common]) == 0
    events = collector.messages()
    assert sorted(m["type"] for m in events) == [
        "alias",
        "group",
        "identify",
        "page",
        "screen",
        "track",
        "track",
        "track",
    ]
    assert "legacy-crm-000042" in collector.message_ids()
    code = cli.main(
        ["import", "signups.csv", "--map-file", "signups.mapping.json", "--timezone", "Europe/Paris", *common]
    )
    assert code == 0
    signups = {m["userId"]: m for m in collector.messages() if m.get("event") == "Signed Up"}
    assert sorted(signups) == ["user-2001", "user-2002", "user-2004"]
    assert signups["user-2001"]["originalTimestamp"] == "2024-02-01T08:30:00.000+00:00"
    assert signups["user-2002"]["properties"] == {"plan": "team", "seats": 12}
    assert signups["user-2004"]["context"]["traits"] == {"email": "barbara@example.com"}
    [reject] = read_jsonl(workdir / "signups.csv.rejects.jsonl")
    assert (reject["line"], reject["field"]) == (4, "properties.seats")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--integrations", "{bad"], "--integrations is not valid JSON"),
        (["--integrations", "[1]"], "must be a JSON object"),
        (["--map", "nope=x"], "unknown mapping target"),
        (["--timezone", "Nowhere/Special"], "unknown time zone"),
        (["--shard", "5/4"], "shard"),
        ([], "write key is required"),
    ],
)
def test_unusable_options_exit_2(
    args: list[str], message: str, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_jsonl(workdir / "e.jsonl", track_rows(1))
    assert cli.main(["import", str(path), "--host", "http://127.0.0.1:9", *args]) == 2
    assert message in capsys.readouterr().err


def test_help_lists_the_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["import", "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for option in (
        "--from-archive",
        "--map-file",
        "--resume",
        "--shard",
        "--max-errors",
        "--dry-run",
        "--timezone",
    ):
        assert option in text


def test_host_and_region_are_exclusive(workdir: Path) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["import", "x.jsonl", "--host", "http://h", "--region", "eu"])
    assert info.value.code == 2


def test_max_errors_exit_status_and_plain_progress_lines(collector: Collector, workdir: Path) -> None:
    rows: list[object] = [*track_rows(600), "bad", "bad"]
    path = write_jsonl(workdir / "e.jsonl", rows)
    result = run_cli(
        [
            str(path),
            "--write-key",
            WRITE_KEY,
            "--host",
            collector.url,
            "--progress-interval",
            "0",
            "--max-errors",
            "1",
        ],
        cwd=workdir,
    )
    assert result.returncode == 3, result.stderr
    assert "too many rejected rows" in result.stderr
    # Not a terminal: plain progress lines (one per 256 rows with a zero interval), then the summary.
    lines = [line for line in result.stderr.splitlines() if "rows read," in line]
    assert len(lines) >= 2
    assert "msg/s" in lines[0] and "%" in lines[0]


def test_dry_run_needs_no_write_key(collector: Collector, workdir: Path) -> None:
    path = write_jsonl(workdir / "e.jsonl", track_rows(5))
    result = run_cli([str(path), "--dry-run", "--json", "--progress", "none"], cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["sent"] == 5
    assert "dry run complete: nothing was sent" in result.stderr


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_without_tqdm_on_a_terminal_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tqdm", None)
    stream = FakeTerminal()
    reporter = make_progress("auto", stream, interval_s=5.0, total_bytes=100)
    assert isinstance(reporter, PlainProgress)
    assert stream.getvalue().count("pip install 'segment-lite[cli]'") == 1


def test_progress_modes_and_the_bar() -> None:
    assert isinstance(make_progress("auto", io.StringIO()), PlainProgress)  # not a terminal
    assert isinstance(make_progress("none", FakeTerminal()), progress_module.NullProgress)
    pytest.importorskip("tqdm")
    stream = FakeTerminal()
    bar = make_progress("auto", stream, total_bytes=1000)
    assert isinstance(bar, progress_module.TqdmProgress)
    snap = Snapshot(
        elapsed_s=2.0,
        rows_read=500,
        sent=500,
        delivered=400,
        rejected=3,
        skipped=0,
        position=500,
        total_bytes=1000,
    )
    bar.update(snap)
    bar.close(snap)
    assert "delivered=400" in stream.getvalue() and "rejected=3" in stream.getvalue()


def test_snapshot_rate_and_eta() -> None:
    snap = Snapshot(
        elapsed_s=10.0,
        rows_read=1000,
        sent=1000,
        delivered=800,
        rejected=0,
        skipped=0,
        position=250,
        total_bytes=1000,
    )
    assert snap.rate == 80.0
    assert snap.fraction == 0.25
    assert snap.eta_s == 30.0
    line = progress_module.describe(snap)
    assert "800 delivered" in line and "25%" in line and "ETA 0:00:30" in line
    assert Snapshot(elapsed_s=1.0, rows_read=1, sent=1, delivered=0, rejected=0, skipped=0).eta_s is None


def test_the_starting_over_note_is_on_its_own_line_before_the_bar(
    collector: Collector, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("tqdm")
    path = write_jsonl(workdir / "e.jsonl", track_rows(20))
    common = ["import", str(path), "--write-key", WRITE_KEY, "--host", collector.url]
    assert cli.main([*common, "--progress", "none"]) == 0
    capsys.readouterr()
    assert cli.main([*common, "--progress", "bar"]) == 0
    err = capsys.readouterr().err
    note_at = err.index("segment-lite import: note: ")
    assert note_at == 0 or err[note_at - 1] == "\n", repr(err[: note_at + 40])
    assert "\r" not in err[:note_at]  # the bar starts after the note
    assert "import:" in err[note_at:] and "\r" in err[note_at:]  # ...and is drawn


def test_a_new_id_salt_is_not_said_to_be_deduplicated(
    collector: Collector, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_jsonl(workdir / "e.jsonl", track_rows(5))
    common = ["import", str(path), "--write-key", WRITE_KEY, "--host", collector.url, "--progress", "none"]
    assert cli.main([*common, "--id-salt", "first"]) == 0
    capsys.readouterr()
    assert cli.main([*common, "--id-salt", "first"]) == 0
    same = capsys.readouterr().err
    assert "starting over" in same and "deduplicated" in same
    assert cli.main([*common, "--id-salt", "second"]) == 0
    other = capsys.readouterr().err
    assert "another --id-salt" in other and "arrive again as new events" in other
    assert "deduplicated" not in other
    assert collector.stats.messages_stored == 10  # indeed: the second salt sent new events


def test_mostly_rejected_is_not_called_complete_and_can_fail(collector: Collector, workdir: Path) -> None:
    rows: list[object] = [*track_rows(2), *["not json"] * 8]
    path = write_jsonl(workdir / "e.jsonl", rows)
    common = [str(path), "--write-key", WRITE_KEY, "--host", collector.url, "--progress", "none", "--json"]
    lenient = run_cli(common, cwd=workdir)
    assert lenient.returncode == 0, lenient.stderr
    assert "import complete, but 8 of 10 rows were rejected" in lenient.stderr
    strict = run_cli([*common, "--fail-on-rejects"], cwd=workdir)
    assert strict.returncode == 5, strict.stderr
    assert json.loads(strict.stdout)["exit_code"] == 5
    clean = write_jsonl(workdir / "clean.jsonl", track_rows(3))
    ok = run_cli(
        [str(clean), "--write-key", WRITE_KEY, "--host", collector.url, "--fail-on-rejects"], cwd=workdir
    )
    assert ok.returncode == 0, ok.stderr
    assert "segment-lite import: import complete\n" in ok.stderr


def test_help_says_its_defaults_one_way_and_needs_no_source_checkout(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        cli.main(["import", "--help"])
    text = capsys.readouterr().out
    assert "docs/" not in text  # pip users have no docs folder: the help explains itself
    flat = " ".join(text.split())
    assert "seconds between plain progress lines (default: 10)" in flat
    assert flat.count("(default") == flat.count("(default: ") >= 10
    assert "exit status: 0 done" in flat and "5 instead with --fail-on-rejects" in flat
