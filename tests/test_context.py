"""Request contexts (``segment_lite.context``), client ``defaults`` and consent stamping, as sent on the wire."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Iterator
from typing import Any, Optional

import pytest

import segment_lite
from segment_lite.errors import FilteredError, ValidationError
from segment_lite.message import LIBRARY
from segment_lite.testing import RecordingClient, recording


@pytest.fixture
def client() -> Iterator[RecordingClient]:
    recorder = RecordingClient()
    yield recorder
    recorder.shutdown()


def _every_call(client: segment_lite.Client) -> list[dict[str, Any]]:
    """One message of each of the six types, sent with no ids where the call allows it."""
    client.track(event="Clicked")
    client.identify()
    client.page(name="Home")
    client.screen(name="Home")
    client.group(group_id="g1")
    client.alias("old", "new")
    return list(client.messages) if isinstance(client, RecordingClient) else []


def test_a_call_inside_a_context_gets_its_values(client: RecordingClient) -> None:
    with segment_lite.context(
        anonymous_id="anon-1",
        context={"ip": "203.0.113.9", "page": {"path": "/cart"}},
        properties={"tenant": "acme"},
        integrations={"Amplitude": False},
    ):
        client.track(event="Viewed Cart")
    (message,) = client.messages
    assert message["anonymousId"] == "anon-1"
    assert message["userId"] is None
    assert message["context"]["ip"] == "203.0.113.9"
    assert message["context"]["page"] == {"path": "/cart"}
    assert message["context"]["library"] == LIBRARY
    assert message["properties"] == {"tenant": "acme"}
    assert message["integrations"] == {"Amplitude": False}


def test_explicit_arguments_win_key_by_key(client: RecordingClient) -> None:
    with segment_lite.context(
        user_id="ctx-user",
        anonymous_id="ctx-anon",
        context={"ip": "203.0.113.9", "locale": "fr"},
        properties={"tenant": "acme", "plan": "free"},
    ):
        client.track(
            "call-user",
            "Upgraded",
            {"plan": "pro"},
            context={"ip": "198.51.100.1"},
            anonymous_id="call-anon",
        )
    (message,) = client.messages
    assert message["userId"] == "call-user"
    assert message["anonymousId"] == "call-anon"
    assert message["properties"] == {"tenant": "acme", "plan": "pro"}
    assert message["context"]["ip"] == "198.51.100.1"
    assert message["context"]["locale"] == "fr"


def test_library_is_never_taken_from_a_context(client: RecordingClient) -> None:
    with segment_lite.context(user_id="u", context={"library": {"name": "spoofed"}}):
        client.track(event="E")
    assert client.messages[0]["context"]["library"] == LIBRARY


def test_nested_contexts_merge_inner_wins_and_fresh_starts_from_nothing(client: RecordingClient) -> None:
    with segment_lite.context(user_id="outer", properties={"a": 1, "b": 1}, context={"page": {"path": "/x"}}):
        with segment_lite.context(properties={"b": 2}, context={"locale": "de"}):
            client.track(event="Inner")
        with segment_lite.context(anonymous_id="only", fresh=True):
            client.track(event="Fresh")
        client.track(event="Outer again")
    client.track("after", "Outside")
    inner, fresh, outer, outside = client.messages
    assert inner["userId"] == "outer"
    assert inner["properties"] == {"a": 1, "b": 2}
    assert inner["context"]["page"] == {"path": "/x"} and inner["context"]["locale"] == "de"
    assert fresh["userId"] is None and fresh["anonymousId"] == "only"
    assert fresh["properties"] == {} and "page" not in fresh["context"]
    assert outer["properties"] == {"a": 1, "b": 1} and "locale" not in outer["context"]
    assert outside["properties"] == {} and "page" not in outside["context"]


def test_each_call_type_takes_the_fields_it_has(client: RecordingClient) -> None:
    with segment_lite.context(
        user_id="u1", traits={"email": "a@example.com"}, properties={"p": 1}, context={"ip": "192.0.2.1"}
    ):
        _every_call(client)
    by_type = {m["type"]: m for m in client.messages}
    assert by_type["identify"]["traits"] == {"email": "a@example.com"}
    assert by_type["group"]["traits"] == {}  # a group's traits are the group's, not the user's
    for kind in ("track", "page", "screen"):
        assert by_type[kind]["properties"] == {"p": 1}
    for kind in ("track", "identify", "page", "screen", "group"):
        assert by_type[kind]["userId"] == "u1"
    assert by_type["alias"]["userId"] == "new"  # alias ids are never taken from a context
    assert all(m["context"]["ip"] == "192.0.2.1" for m in client.messages)


def test_a_context_never_shares_its_dicts_with_messages(client: RecordingClient) -> None:
    seen: list[dict[str, Any]] = []

    def mutate(message: dict[str, Any]) -> dict[str, Any]:
        message["properties"]["added"] = True
        message["context"]["added"] = True
        seen.append(message)
        return message

    hooked = RecordingClient(before_send=mutate)
    try:
        with segment_lite.context(user_id="u", properties={"p": 1}, context={"ip": "192.0.2.1"}):
            hooked.track(event="One")
            hooked.track(event="Two")
    finally:
        hooked.shutdown()
    assert [m["properties"] for m in hooked.messages] == [{"p": 1, "added": True}] * 2
    assert segment_lite.scope.active() is None


def test_a_hook_changing_a_nested_dict_does_not_change_the_next_calls() -> None:
    def mutate(message: dict[str, Any]) -> dict[str, Any]:
        message["context"]["page"]["seen"] = message["event"]
        message["context"]["consent"]["categoryPreferences"]["Analytics"] = False
        return message

    hooked = RecordingClient(before_send=mutate)
    try:
        with segment_lite.context(user_id="u", context={"page": {"path": "/a"}}, consent={"Analytics": True}):
            hooked.track(event="One")
            hooked.track(event="Two")
            values = segment_lite.scope.active()
            assert values is not None
            assert values.context["page"] == {"path": "/a"}
            assert values.context["consent"] == {"categoryPreferences": {"Analytics": True}}
    finally:
        hooked.shutdown()
    assert [m["context"]["page"] for m in hooked.messages] == [
        {"path": "/a", "seen": "One"},
        {"path": "/a", "seen": "Two"},
    ]


def test_decorator_on_sync_and_async_functions(client: RecordingClient) -> None:
    @segment_lite.context(user_id="job-user", properties={"job": "nightly"})
    def run_job() -> None:
        client.track(event="Sync Job")

    @segment_lite.context(anonymous_id="async-anon")
    async def run_async() -> None:
        await asyncio.sleep(0)
        client.track(event="Async Job")

    run_job()
    asyncio.run(run_async())
    client.track("plain", "Outside")
    sync_message, async_message, outside = client.messages
    assert sync_message["userId"] == "job-user" and sync_message["properties"] == {"job": "nightly"}
    assert async_message["anonymousId"] == "async-anon"
    assert outside["properties"] == {}


def test_concurrent_async_calls_of_one_decorated_function_keep_their_own_context(
    client: RecordingClient,
) -> None:
    @segment_lite.context(properties={"source": "worker"})
    async def handle(user: str, release: asyncio.Event) -> None:
        with segment_lite.context(user_id=user):
            await release.wait()
            client.track(event="Handled")

    async def main() -> None:
        release = asyncio.Event()
        tasks = [asyncio.create_task(handle(f"user-{n}", release)) for n in range(3)]
        await asyncio.sleep(0)
        release.set()
        await asyncio.gather(*tasks)

    asyncio.run(main())
    assert sorted(m["userId"] for m in client.messages) == ["user-0", "user-1", "user-2"]
    assert all(m["properties"] == {"source": "worker"} for m in client.messages)


def test_asyncio_tasks_inherit_threads_do_not_unless_copied(client: RecordingClient) -> None:
    async def in_task() -> None:
        client.track(event="From Task")

    async def main() -> None:
        with segment_lite.context(user_id="request-user"):
            await asyncio.create_task(in_task())

    asyncio.run(main())

    def in_thread() -> None:
        client.track("thread-user", "From Thread")

    with segment_lite.context(properties={"request": "r1"}):
        plain = threading.Thread(target=in_thread)
        plain.start()
        plain.join()
        copied = threading.Thread(target=contextvars.copy_context().run, args=(in_thread,))
        copied.start()
        copied.join()
    task_message, plain_message, copied_message = client.messages
    assert task_message["userId"] == "request-user"
    assert plain_message["properties"] == {}
    assert copied_message["properties"] == {"request": "r1"}


def test_module_functions_use_the_context() -> None:
    with recording() as recorder, segment_lite.context(anonymous_id="module-anon"):
        segment_lite.track(event="Via Module")
        segment_lite.page(name="Home")
    assert [m["anonymousId"] for m in recorder.messages] == ["module-anon", "module-anon"]


def test_client_defaults_are_the_outermost_layer() -> None:
    client = RecordingClient(
        defaults={"properties": {"app": "shop", "v": 1}, "context": {"app": {"name": "shop"}}}
    )
    try:
        client.track("u", "Plain")
        with segment_lite.context(properties={"v": 2}):
            client.track("u", "In Context")
        with segment_lite.context(properties={"only": True}, fresh=True):
            client.track("u", "Fresh")
        client.track("u", "Explicit", {"app": "mine"})
    finally:
        client.shutdown()
    plain, in_context, fresh, explicit = client.messages
    assert plain["properties"] == {"app": "shop", "v": 1}
    assert plain["context"]["app"] == {"name": "shop"}
    assert in_context["properties"] == {"app": "shop", "v": 2}
    assert fresh["properties"] == {"app": "shop", "v": 1, "only": True}  # defaults are the client's own
    assert explicit["properties"] == {"app": "mine", "v": 1}


def test_module_setting_defaults_reach_the_default_client(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(segment_lite, "defaults", {"properties": {"app": "shop"}})
    monkeypatch.setattr(segment_lite, "send", False)
    monkeypatch.setattr(segment_lite, "default_client", None)
    _, message = segment_lite.track("u", "E")
    assert message is not None and message["properties"] == {"app": "shop"}
    segment_lite.shutdown()


@pytest.mark.parametrize(
    ("kwargs", "path"),
    [
        ({"properties": ["not", "a", "dict"]}, "context.properties"),
        ({"user_id": object()}, "context.user_id"),
        ({"consent": {"Advertising": "yes"}}, "context.consent.Advertising"),
    ],
)
def test_bad_context_values_are_refused_naming_the_field(kwargs: dict[str, Any], path: str) -> None:
    with pytest.raises(ValidationError) as caught:
        segment_lite.context(**kwargs)
    assert caught.value.path == path


def test_bad_defaults_are_refused_naming_the_key() -> None:
    with pytest.raises(ValidationError, match="defaults takes the keys") as caught:
        segment_lite.Client("k", send=False, defaults={"propertys": {}})
    assert caught.value.path == "defaults.propertys"


# -- consent ------------------------------------------------------------------------


def _preferences(message: dict[str, Any]) -> Optional[dict[str, bool]]:
    consent = message["context"].get("consent")
    return None if consent is None else consent["categoryPreferences"]


def test_consent_of_the_client_is_stamped_on_every_event_type() -> None:
    client = RecordingClient(consent={"Advertising": False, "Analytics": True})
    try:
        with segment_lite.context(user_id="u"):
            _every_call(client)
    finally:
        client.shutdown()
    assert len(client.messages) == 6
    assert {m["type"] for m in client.messages} == {"track", "identify", "page", "screen", "group", "alias"}
    assert all(_preferences(m) == {"Advertising": False, "Analytics": True} for m in client.messages)


def test_consent_of_a_context_wins_over_the_clients_and_the_call_wins_over_both() -> None:
    client = RecordingClient(consent=lambda: {"Analytics": True})
    try:
        client.track("u", "Client Consent")
        with segment_lite.context(consent={"Analytics": False}):
            client.track("u", "Context Consent")
            client.track(
                "u", "Call Consent", context={"consent": {"categoryPreferences": {"Analytics": True}}}
            )
    finally:
        client.shutdown()
    assert [_preferences(m) for m in client.messages] == [
        {"Analytics": True},
        {"Analytics": False},
        {"Analytics": True},
    ]


def test_a_consent_source_that_raises_is_counted_and_the_message_sent() -> None:
    def broken() -> dict[str, bool]:
        raise RuntimeError("consent store down")

    client = RecordingClient(consent=broken)
    try:
        client.track("u", "Sent Anyway")
        stats = client.stats()
    finally:
        client.shutdown()
    assert _preferences(client.messages[0]) is None
    assert stats["hook_errors"] == 1


def test_on_denied_drop_drops_and_counts_events_of_categories_not_granted() -> None:
    drops: list[tuple[str, BaseException, list[Any]]] = []
    client = RecordingClient(
        consent_categories={"Ad Clicked": ["Advertising"], "identify": ["Personalization"]},
        on_denied="drop",
        on_drop=lambda reason, exc, messages: drops.append((reason, exc, messages)),
    )
    try:
        with segment_lite.context(consent={"Advertising": False, "Personalization": True}):
            assert client.track("u", "Ad Clicked")[0] is False
            assert client.track("u", "Page Read")[0] is True  # declares no category
            assert client.identify("u")[0] is True
        assert client.track("u", "Ad Clicked")[0] is False  # no consent known: not granted
        with segment_lite.context(consent={"Advertising": True}):
            assert client.track("u", "Ad Clicked")[0] is True
        stats = client.stats()
    finally:
        client.shutdown()
    assert [m.get("event", m["type"]) for m in client.messages] == ["Page Read", "identify", "Ad Clicked"]
    assert stats["dropped"]["consent_denied"] == 2
    reason, error, messages = drops[0]
    assert reason == "consent_denied" and isinstance(error, FilteredError)
    assert "Advertising" in str(error) and messages[0]["event"] == "Ad Clicked"


def test_on_denied_send_sends_everything() -> None:
    client = RecordingClient(consent_categories={"Ad Clicked": ["Advertising"]})
    try:
        with segment_lite.context(consent={"Advertising": False}):
            client.track("u", "Ad Clicked")
    finally:
        client.shutdown()
    assert len(client.messages) == 1


def test_bad_consent_options_are_refused() -> None:
    with pytest.raises(ValidationError, match="on_denied"):
        segment_lite.Client("k", send=False, on_denied="strip")
    with pytest.raises(ValidationError, match="consent_categories") as caught:
        segment_lite.Client("k", send=False, consent_categories={"E": "Advertising"})
    assert caught.value.path == "consent_categories.E"


def test_no_submodule_shadows_a_module_setting_or_function() -> None:
    # Importing segment_lite.X sets the attribute X on the package: a submodule named like a
    # setting (consent, defaults) or a function (context) would silently replace it.
    import importlib
    import pkgutil
    import types

    for info in pkgutil.iter_modules(segment_lite.__path__):
        try:
            importlib.import_module(f"segment_lite.{info.name}")
        except Exception:  # an optional dependency missing: it cannot shadow anything then
            continue
    for name in ("context", "defaults", "consent", "consent_categories", "on_denied", "observers", "track"):
        assert not isinstance(getattr(segment_lite, name), types.ModuleType), name


def test_the_context_benchmark_runs_and_reports_every_variant() -> None:
    from benchmarks.context import run

    result = run(n=200, rounds=2)
    assert {"none", "explicit", "context", "nested", "defaults"} <= set(result)
    assert all(result[name]["p50_ns"] > 0 for name in ("none", "explicit", "context", "nested", "defaults"))
    assert "context_cost_p50_ns" in result
    assert segment_lite.scope.active() is None


def test_one_context_object_entered_by_several_threads_at_once(client: RecordingClient) -> None:
    shared = segment_lite.context(properties={"service": "billing"})
    both_inside = threading.Barrier(2)
    errors: list[BaseException] = []

    def work(user: str, first_out: bool) -> None:
        try:
            with shared:
                both_inside.wait(5)
                if not first_out:
                    both_inside.wait(5)  # leave after the other thread did
                client.track(user, "Worked")
                if first_out:
                    both_inside.wait(5)
            assert segment_lite.scope.active() is None
        except BaseException as exc:  # handed to the main thread
            errors.append(exc)

    threads = [
        threading.Thread(target=work, args=("a", True)),
        threading.Thread(target=work, args=("b", False)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert errors == []
    assert sorted(m["userId"] for m in client.messages) == ["a", "b"]
    assert all(m["properties"] == {"service": "billing"} for m in client.messages)


def test_exiting_an_outer_block_before_the_inner_one_is_refused() -> None:
    outer = segment_lite.context(properties={"a": 1})
    inner = segment_lite.context(properties={"b": 2})
    outer.__enter__()
    inner.__enter__()
    with pytest.raises(RuntimeError, match="out of order"):
        outer.__exit__(None, None, None)
    inner.__exit__(None, None, None)
    outer.__exit__(None, None, None)
    assert segment_lite.scope.active() is None


def test_a_callers_mapping_that_raises_while_merged_is_a_counted_validation_error(
    client: RecordingClient,
) -> None:
    from collections.abc import Mapping

    class Exploding(Mapping[str, Any]):
        def __getitem__(self, key: str) -> Any:
            raise KeyError(key)

        def __iter__(self) -> Any:
            raise RuntimeError("cannot iterate")

        def __len__(self) -> int:
            return 1

    with segment_lite.context(properties={"tenant": "acme"}), pytest.raises(ValidationError):
        client.track("u", "E", Exploding())
    assert client.stats()["dropped"]["invalid"] == 1
