"""Each option is defined once: a ClientOptions field, Client's parameter and its docs row agree."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import re
from pathlib import Path
from typing import Any

import pytest

import segment_lite
from segment_lite.errors import ValidationError
from segment_lite.importer import CLIENT_DEFAULTS
from segment_lite.options import MODULE_SETTINGS, REFERENCE_OPTIONS, ClientOptions, DefaultConfig

FIELDS = dataclasses.fields(ClientOptions)
DOC = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
# A table row whose first cell is one option: | `name` | default | what it does |
ROW = re.compile(r"^\| `(\w+)` \| ([^|]+) \|", re.MULTILINE)


def documented_defaults() -> dict[str, list[Any]]:
    """Each option's default as written in every doc table row naming it (first `...` of the cell)."""
    found: dict[str, list[Any]] = {}
    for name, cell in ROW.findall(DOC.read_text()):
        literal = re.search(r"`([^`]+)`", cell)
        if literal is not None:
            found.setdefault(name, []).append(ast.literal_eval(literal.group(1)))
    return found


def test_every_field_is_a_client_parameter_in_order_with_its_default() -> None:
    parameters = list(inspect.signature(segment_lite.Client.__init__).parameters.values())[1:]
    assert [p.name for p in parameters] == [f.name for f in FIELDS]
    for parameter, option in zip(parameters, FIELDS):
        assert parameter.default == option.default and type(parameter.default) is type(option.default), (
            option.name
        )
        keyword_only = option.name not in REFERENCE_OPTIONS
        assert (parameter.kind is inspect.Parameter.KEYWORD_ONLY) is keyword_only, option.name


def test_every_field_has_a_doc_row_with_its_default() -> None:
    documented = documented_defaults()
    missing = [f.name for f in FIELDS if f.name not in documented]
    assert missing == []
    for option in FIELDS:
        for default in documented[option.name]:
            assert default == option.default, (
                f"docs/configuration.md gives {option.name} the default {default!r}"
            )


def test_the_doc_check_catches_a_wrong_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = tmp_path / "configuration.md"
    wrong.write_text(DOC.read_text().replace("| `thread` | `1` |", "| `thread` | `2` |"))
    monkeypatch.setattr(f"{__name__}.DOC", wrong)
    with pytest.raises(AssertionError, match="thread"):
        test_every_field_has_a_doc_row_with_its_default()


def test_module_settings_and_default_config_come_from_the_fields() -> None:
    assert {"write_key", "host", "max_retries", "spool_dir", "flush_at_exit"} <= set(MODULE_SETTINGS)
    for name in MODULE_SETTINGS:
        assert getattr(segment_lite, name) == getattr(ClientOptions, name), name
    assert REFERENCE_OPTIONS[0] == "write_key" and REFERENCE_OPTIONS[-1] == "max_rate_limit_duration"
    for name in REFERENCE_OPTIONS:
        assert getattr(DefaultConfig, name) == getattr(ClientOptions, name), name
    assert segment_lite.Client.DefaultConfig is DefaultConfig


def test_every_module_setting_is_listed_in_the_docs() -> None:
    section = DOC.read_text().split("## Module-level settings", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"`(\w+)`", section))
    assert [name for name in MODULE_SETTINGS if name not in listed and not name.startswith("oauth_")] == []
    assert "`oauth_*`" in section


def test_the_default_client_is_made_from_every_module_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[dict[str, Any]] = []

    class Recorded(segment_lite.Client):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            made.append(kwargs)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(segment_lite, "Client", Recorded)
    segment_lite.default_client = None
    segment_lite.write_key, segment_lite.send, segment_lite.spool_fsync = "k", False, "always"
    segment_lite.track("u", "E")
    assert set(made[0]) == set(MODULE_SETTINGS)
    assert made[0]["write_key"] == "k" and made[0]["spool_fsync"] == "always"
    options = segment_lite.default_client.options
    assert options.write_key == "k" and options.send is False and options.spool_fsync == "always"


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("write_key", None),
        ("on_full", "explode"),
        ("thread", 0),
        ("max_total_backoff_duration", -1),
        ("max_rate_limit_duration", None),
        ("region", "mars"),
        ("host", "localhost:8080"),
    ],
)
def test_a_bad_option_raises_validation_error_naming_it(option: str, value: Any) -> None:
    arguments = {"write_key": "key", option: value}
    with pytest.raises(ValidationError) as raised:
        ClientOptions(**arguments)
    assert raised.value.path == option and option in str(raised.value)
    with pytest.raises(ValidationError, match=option):
        segment_lite.Client(**arguments)


def test_derived_values() -> None:
    options = ClientOptions("key")
    assert options.batch_max_count == 2500 and options.wake_at == 100
    assert ClientOptions("key", upload_size=100).batch_max_count == 100  # passed: caps requests, as in 2.x
    assert ClientOptions("key", upload_size=50, max_batch_size=400).batch_max_count == 400
    assert options.retry.max_retries == 10 and options.retry.max_total_backoff_s == 43200
    assert options.url == "https://api.segment.io/v1/batch"
    assert options.timing is options.timing  # one clock for the client's life
    shown = repr(
        ClientOptions("secret-key-123", oauth_client_key="PEM-BODY", proxies={"https": "http://u:pw@p"})
    )
    assert "secret-key-123" not in shown and "PEM-BODY" not in shown and "pw@" not in shown


def test_the_import_preset_names_only_options_and_changes_each() -> None:
    for name, value in CLIENT_DEFAULTS.items():
        assert name in ClientOptions.__dataclass_fields__, name
        assert value != getattr(ClientOptions, name), f"{name} is already the client's default"
    ClientOptions("key", **CLIENT_DEFAULTS)  # valid together


def test_client_init_stays_short() -> None:
    source = inspect.getsource(segment_lite.Client.__init__)
    body = source[source.index(") -> None:") :].splitlines()[1:]
    assert len(body) < 40
