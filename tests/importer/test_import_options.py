"""ImportOptions: one set of options for the command, run_import and import_rows."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest
from import_helpers import WRITE_KEY, track_rows, write_jsonl

from segment_lite.collector import Collector
from segment_lite.importer import ImportConfigError, ImportOptions, import_rows, run_import
from segment_lite.importer.cli import add_arguments, options_from_args
from segment_lite.importer.mapping import FieldMapping

#: Command-line destinations that are not ImportOptions fields, and why.
NOT_OPTIONS = {
    "files": "the inputs, run_import's first argument",
    "map": "mapping",
    "map_file": "mapping",
    "set": "constants",
    "no_checkpoint": "checkpoint=False",
    "no_rejects": "rejects=False",
    "json": "output of the command only",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser


def test_every_command_line_option_is_an_import_option() -> None:
    fields = {f.name for f in dataclasses.fields(ImportOptions)}
    dests = {action.dest for action in _parser()._actions if action.dest != "help"}
    assert dests - set(NOT_OPTIONS) <= fields
    assert set(NOT_OPTIONS) <= dests


def test_the_command_line_builds_the_options_it_names(tmp_path: Path) -> None:
    args = _parser().parse_args(
        [
            "in.csv",
            "--write-key=k",
            "--region=eu",
            "--integrations",
            '{"All": false}',
            "--format=csv",
            "--type=track",
            "--map",
            "userId=u",
            "--set",
            "event=Paid",
            "--delimiter=;",
            "--encoding=latin-1",
            "--allow-now",
            "--timezone=Europe/Paris",
            "--no-checkpoint",
            "--resume",
            "--rejects=r.jsonl",
            "--dry-run",
            "--max-errors=7",
            "--shard=2/3",
            "--id-salt=s",
            "--chunk-size=10",
            "--gzip",
            "--threads=2",
            "--max-retries=3",
            "--progress=plain",
            "--progress-interval=2.5",
        ]
    )
    options = options_from_args(args)
    assert repr(options.mapping) == repr(FieldMapping.parse("userId=u"))
    assert options.constants == {"event": "Paid"}
    assert dataclasses.replace(options, mapping=None, constants=None) == ImportOptions(
        write_key="k",
        region="eu",
        integrations={"All": False},
        format="csv",
        type="track",
        delimiter=";",
        encoding="latin-1",
        allow_now=True,
        timezone="Europe/Paris",
        checkpoint=False,
        resume=True,
        rejects="r.jsonl",
        dry_run=True,
        max_errors=7,
        shard="2/3",
        id_salt="s",
        chunk_size=10,
        gzip=True,
        threads=2,
        max_retries=3,
        progress="plain",
        progress_interval=2.5,
    )


def test_run_import_takes_the_command_options_as_keywords(
    collector: Collector, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_jsonl(workdir / "e.jsonl", track_rows(300))
    summary = run_import(
        [str(path)], write_key=WRITE_KEY, host=collector.url, progress="plain", progress_interval=0
    )
    assert summary.delivered == 300
    assert "rows read," in capsys.readouterr().err  # plain progress lines on stderr
    quiet = run_import([str(path)], write_key=WRITE_KEY, host=collector.url, progress="none")
    assert quiet.delivered == 300
    assert capsys.readouterr().err == ""


def test_options_object_and_keywords_combine(collector: Collector, workdir: Path) -> None:
    path = write_jsonl(workdir / "e.jsonl", track_rows(5))
    base = ImportOptions(write_key=WRITE_KEY, host=collector.url, id_salt="first")
    assert run_import([str(path)], base).delivered == 5
    assert run_import([str(path)], base, id_salt="second").delivered == 5
    assert collector.stats.messages_stored == 10  # two salts, two sets of ids


def test_unknown_or_bad_options_are_named() -> None:
    with pytest.raises(TypeError, match="unknown option 'progres' \\(did you mean 'progress'\\?\\)"):
        run_import(["x.jsonl"], progres="none")
    with pytest.raises(ImportConfigError, match="progress must be one of"):
        ImportOptions(progress="fancy")
    with pytest.raises(ImportConfigError, match="--chunk-size"):
        ImportOptions(chunk_size=0)
    with pytest.raises(ImportConfigError, match="--max-errors"):
        ImportOptions(max_errors=-1)
    with pytest.raises(ImportConfigError, match="shard"):
        ImportOptions(shard="3/2")


def test_import_rows_refuses_options_about_files(collector: Collector) -> None:
    with pytest.raises(ImportConfigError, match="resume, shard"):
        import_rows([], source_key="k", write_key=WRITE_KEY, host=collector.url, resume=True, shard="1/2")


def test_the_write_key_stays_out_of_the_options_repr() -> None:
    options = ImportOptions(write_key="secret-write-key-123", host="http://127.0.0.1:9")
    assert "secret-write-key-123" not in repr(options)
    assert "http://127.0.0.1:9" in repr(options)
