"""The Client: the six Spec calls and their options; delivery and its lifecycle are the pipeline's."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

from segment_lite.encoding import encode_converting, encode_plain
from segment_lite.errors import (
    EncodeError,
    FilteredError,
    MessageTooLargeError,
    QueueFullError,
    ShutdownError,
    ValidationError,
    safe_repr,
)
from segment_lite.ledger import OnDrop, OnError
from segment_lite.limits import MAX_MESSAGE_BYTES
from segment_lite.message import (
    CALLER_FIELDS,
    Message,
    build_alias,
    build_group,
    build_identify,
    build_track,
    build_view,
)
from segment_lite.observe import EVENTS as OBSERVER_EVENTS
from segment_lite.options import BeforeSend, ClientOptions, ConsentSource, DefaultConfig
from segment_lite.outcomes import OutcomeSubscriber
from segment_lite.pipeline import QUEUED, Accepted, FlushResult, Pipeline, PipelineBase, QueueFactory, Worker
from segment_lite.queue import MessageQueue
from segment_lite.retry import Clock, RetryPolicy
from segment_lite.scope import ContextValues, Slots, apply, consent_preferences, merged
from segment_lite.scope import _current as _active_context
from segment_lite.transport import TransportFactory
from segment_lite.wiring import build_pipeline, configure_logger, credentials_of, transport_factory_of

if TYPE_CHECKING:
    from segment_lite.plan.model import TrackingPlan

__all__ = ["Client", "Result"]


Result = tuple[bool, Optional[Message]]

# The logger segment-analytics-python logs on, so handlers and levels already set on
# it (and ``debug=True``) apply unchanged.
log = logging.getLogger("segment")

_OPTION_NAMES = frozenset(ClientOptions.__dataclass_fields__)
_O = ClientOptions  # each default below is the field's: defined once, in segment_lite.options


class ClientBase:
    """What ``Client`` and ``AsyncClient`` share: the six Spec calls and what their pipelines count.

    Each call hands its builder and arguments to ``_enqueue``, the path of one message, which each
    client supplies, as it does its pipeline.
    """

    _enqueue: Callable[[Callable[..., Message], tuple[Any, ...]], Result]
    _pipeline: PipelineBase

    def identify(
        self,
        user_id: Any = None,
        traits: Optional[Mapping[str, Any]] = None,
        context: Optional[Mapping[str, Any]] = None,
        timestamp: Any = None,
        anonymous_id: Any = None,
        integrations: Optional[Mapping[str, Any]] = None,
        message_id: Optional[str] = None,
    ) -> Result:
        """Record who the user is and what is known about them (traits)."""
        return self._enqueue(
            build_identify, (user_id, traits, context, timestamp, anonymous_id, integrations, message_id)
        )

    def track(
        self,
        user_id: Any = None,
        event: Optional[str] = None,
        properties: Optional[Mapping[str, Any]] = None,
        context: Optional[Mapping[str, Any]] = None,
        timestamp: Any = None,
        anonymous_id: Any = None,
        integrations: Optional[Mapping[str, Any]] = None,
        message_id: Optional[str] = None,
    ) -> Result:
        """Record an action the user performed (``event``) with its properties.

        Returns ``(True, message)`` when queued, ``(False, message)`` when the
        queue had no room. Raises ``ValidationError``/``EncodeError``/
        ``MessageTooLargeError`` for a message that can never be sent.
        """
        return self._enqueue(
            build_track,
            (user_id, event, properties, context, timestamp, anonymous_id, integrations, message_id),
        )

    def alias(
        self,
        previous_id: Any = None,
        user_id: Any = None,
        context: Optional[Mapping[str, Any]] = None,
        timestamp: Any = None,
        integrations: Optional[Mapping[str, Any]] = None,
        message_id: Optional[str] = None,
    ) -> Result:
        """Merge the identity ``previous_id`` into ``user_id``."""
        return self._enqueue(
            build_alias, (previous_id, user_id, context, timestamp, integrations, message_id)
        )

    def group(
        self,
        user_id: Any = None,
        group_id: Any = None,
        traits: Optional[Mapping[str, Any]] = None,
        context: Optional[Mapping[str, Any]] = None,
        timestamp: Any = None,
        anonymous_id: Any = None,
        integrations: Optional[Mapping[str, Any]] = None,
        message_id: Optional[str] = None,
    ) -> Result:
        """Associate the user with a group (company, account, team)."""
        return self._enqueue(
            build_group,
            (user_id, group_id, traits, context, timestamp, anonymous_id, integrations, message_id),
        )

    def page(
        self,
        user_id: Any = None,
        category: Optional[str] = None,
        name: Optional[str] = None,
        properties: Optional[Mapping[str, Any]] = None,
        context: Optional[Mapping[str, Any]] = None,
        timestamp: Any = None,
        anonymous_id: Any = None,
        integrations: Optional[Mapping[str, Any]] = None,
        message_id: Optional[str] = None,
    ) -> Result:
        """Record a web page view."""
        fields = (user_id, category, name, properties, context, timestamp, anonymous_id, integrations)
        return self._enqueue(build_view, ("page", *fields, message_id))

    def screen(
        self,
        user_id: Any = None,
        category: Optional[str] = None,
        name: Optional[str] = None,
        properties: Optional[Mapping[str, Any]] = None,
        context: Optional[Mapping[str, Any]] = None,
        timestamp: Any = None,
        anonymous_id: Any = None,
        integrations: Optional[Mapping[str, Any]] = None,
        message_id: Optional[str] = None,
    ) -> Result:
        """Record a mobile-app screen view."""
        fields = (user_id, category, name, properties, context, timestamp, anonymous_id, integrations)
        return self._enqueue(build_view, ("screen", *fields, message_id))

    @property
    def last_flush(self) -> Optional[FlushResult]:
        """What the last ``flush()`` or ``shutdown()`` settled (None before the first).

        ``FlushResult(settled, delivered, dropped, pending, last_error)``: messages
        delivered and dropped (by reason) while it waited, and the latest error.
        ``all_delivered`` is True when it settled with nothing dropped.
        """
        return self._pipeline.last_flush

    def mark(self) -> int:
        """A marker covering every message accepted so far, to pass to ``wait_settled``.

        Lets a producer (an import, a batch job) confirm an earlier chunk of
        messages while it goes on queueing the next, without forcing a send.
        """
        return self._pipeline.mark()

    def stats(self) -> dict[str, Any]:
        """Counters of what happened to the messages of this client (in this process).

        ``accepted`` + ``recovered`` = ``delivered`` + ``queued`` (+ in flight) +
        drops of accepted messages (``rejected``, ``retries_exhausted``,
        ``shutdown_timeout``, ``spool_corrupt``) + ``left_in_spool``. Refusals at
        the call (``invalid``, ``encode_error``, ``oversize``, ``queue_full``,
        ``after_shutdown``, ``spool_write_failed``, ``consent_denied``) are counted under ``dropped``
        too. ``recovered`` and ``left_in_spool`` are for a disk spool: messages an
        earlier process left there, and messages this one leaves for the next.
        """
        return self._pipeline.stats()


class Client(ClientBase):
    """A Segment client: validates and encodes each call, queues it, and delivers it in the background.

    The constructor takes the same arguments, with the same defaults, as
    ``segment.analytics.Client`` 2.x; the options after ``*`` are segment_lite's
    own. See docs/configuration.md for every option; ``client.options`` holds them.
    """

    DefaultConfig = DefaultConfig
    log = log
    _pipeline: Pipeline

    def __init__(
        self,
        write_key: Optional[str] = _O.write_key,
        host: Optional[str] = _O.host,
        debug: bool = _O.debug,
        max_queue_size: int = _O.max_queue_size,
        send: bool = _O.send,
        on_error: Optional[OnError] = _O.on_error,
        gzip: bool = _O.gzip,
        max_retries: int = _O.max_retries,
        sync_mode: bool = _O.sync_mode,
        timeout: float = _O.timeout,
        proxies: Optional[Mapping[str, str]] = _O.proxies,
        thread: int = _O.thread,
        upload_size: int = _O.upload_size,
        upload_interval: float = _O.upload_interval,
        log_handler: Optional[logging.Handler] = _O.log_handler,
        oauth_client_id: Optional[str] = _O.oauth_client_id,
        oauth_client_key: Optional[str] = _O.oauth_client_key,
        oauth_key_id: Optional[str] = _O.oauth_key_id,
        oauth_auth_server: str = _O.oauth_auth_server,
        oauth_scope: str = _O.oauth_scope,
        max_total_backoff_duration: float = _O.max_total_backoff_duration,
        max_rate_limit_duration: float = _O.max_rate_limit_duration,
        *,
        strict: bool = _O.strict,
        on_drop: Optional[OnDrop] = _O.on_drop,
        region: Optional[str] = _O.region,
        max_queue_bytes: int = _O.max_queue_bytes,
        on_full: str = _O.on_full,
        block_timeout: Optional[float] = _O.block_timeout,
        max_batch_size: Optional[int] = _O.max_batch_size,
        shutdown_timeout: Optional[float] = _O.shutdown_timeout,
        before_send: Union[BeforeSend, Iterable[BeforeSend], None] = _O.before_send,
        transport: Optional[TransportFactory] = _O.transport,
        retry_policy: Optional[RetryPolicy] = _O.retry_policy,
        clock: Optional[Clock] = _O.clock,
        queue_factory: Optional[QueueFactory] = _O.queue_factory,
        spool_dir: Union[str, os.PathLike[str], None] = _O.spool_dir,
        spool_max_bytes: int = _O.spool_max_bytes,
        spool_fsync: str = _O.spool_fsync,
        tracking_plan: Union[str, os.PathLike[str], Mapping[str, Any], TrackingPlan, None] = _O.tracking_plan,
        on_violation: str = _O.on_violation,
        on_unplanned: str = _O.on_unplanned,
        tag_violations: bool = _O.tag_violations,
        flush_at_exit: bool = _O.flush_at_exit,
        defaults: Optional[Mapping[str, Any]] = _O.defaults,
        consent: Union[Mapping[str, bool], ConsentSource, None] = _O.consent,
        consent_categories: Optional[Mapping[str, Iterable[str]]] = _O.consent_categories,
        on_denied: str = _O.on_denied,
        observers: Union[Any, Iterable[Any], None] = _O.observers,
    ) -> None:
        arguments = {name: value for name, value in locals().items() if name in _OPTION_NAMES}
        options = self.options = ClientOptions(**arguments)  # validates: ValidationError names the option
        # Read on every call: plain attributes, not a lookup through the options.
        self.send, self.sync_mode, self.strict = options.send, options.sync_mode, options.strict
        self.block_timeout, self._block, self._hooks = options.block_timeout, options.block, options.hooks
        self._write_key = options.write_key or ""
        self._credentials = credentials_of(options)
        self._transport_factory = transport_factory_of(options, self._credentials, log)
        self._plan = options.plan_enforcer()
        self._defaults, self._consent_source = options.context_defaults
        self._defaults_under: tuple[Optional[ContextValues], Optional[ContextValues]] = (None, self._defaults)
        self._consent_categories, self.on_denied = options.categories, options.on_denied
        configure_logger(log, options)
        self._pipeline = build_pipeline(options, self._transport_factory, self._credentials, log)
        if options.empty_key:  # accepted, as segment-analytics-python accepts it, but not quietly
            self._pipeline.ledger.warn(
                "coerced",
                ValidationError(
                    "write_key is empty: the server will refuse every batch (strict=True refuses it)",
                    "write_key",
                ),
                [],
                count=1,
            )

    if not TYPE_CHECKING:

        def __getattr__(self, name: str) -> Any:
            """An option as given (``client.gzip``, ``client.host``), for 2.x code that reads them."""
            options = self.__dict__.get("options")
            if options is None or name not in _OPTION_NAMES:
                raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
            return getattr(options, name)

    # -- the options as the client runs with them ---------------------------------

    @property
    def url(self) -> str:
        """The batch endpoint posted to."""
        return self.options.url

    @property
    def upload_size(self) -> int:
        """How many queued messages make a consumer send."""
        return self.options.wake_at

    @property
    def max_batch_size(self) -> int:
        """The most messages per request."""
        return self.options.batch_max_count

    @property
    def retry_policy(self) -> RetryPolicy:
        """The retry policy batches are retried under."""
        return self.options.retry

    @property
    def max_retries(self) -> int:
        """Retries of a batch after its first attempt (not limited with a spool, unless set)."""
        return self.options.retry.max_retries

    @property
    def clock(self) -> Clock:
        """The clock of backoff waits, deadlines and ``sentAt``."""
        return self.options.timing

    @property
    def spool_dir(self) -> Optional[str]:
        """The disk spool's directory, or None."""
        return self.options.spool_path

    # -- public surface ---------------------------------------------------------

    @property
    def write_key(self) -> str:
        """The write key (never included in logs, errors or repr); assigning it sends with the new one."""
        return self._write_key

    @write_key.setter
    def write_key(self, write_key: str) -> None:
        if not isinstance(write_key, str):
            raise ValidationError(f"write_key must be a string, got {type(write_key).__name__}", "write_key")
        self._write_key = write_key
        self._pipeline.change_write_key(write_key)

    @property
    def flush_at_exit(self) -> bool:
        """Whether interpreter exit (and a multiprocessing child's exit) delivers what is queued.

        Assign False to manage the lifecycle yourself (``shutdown()`` before the
        process ends), True to undo that.
        """
        return self._pipeline.flush_at_exit

    @flush_at_exit.setter
    def flush_at_exit(self, flush_at_exit: bool) -> None:
        self._pipeline.flush_at_exit = bool(flush_at_exit)

    def __enter__(self) -> Client:
        """Use the client in a ``with`` block; it is shut down when the block ends."""
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Shut down (waiting at most ``shutdown_timeout``), whether or not the block raised."""
        self.shutdown(self.options.shutdown_timeout)

    @property
    def queue(self) -> MessageQueue:
        """The queue of encoded messages waiting to be sent.

        It also answers ``empty()``, ``full()``, ``qsize()``, ``maxsize`` and
        ``join()``, as the ``queue.Queue`` of segment-analytics-python does.
        """
        return self._pipeline.queue

    @property
    def consumers(self) -> list[Worker]:
        """The worker threads currently started."""
        return self._pipeline.workers

    def __repr__(self) -> str:
        return (
            f"<segment_lite.Client url={self.url!r} write_key='***' threads={self.options.thread} "
            f"queued={self._pipeline.queue.qsize()}>"
        )

    # -- the path of one message ------------------------------------------------

    def _enqueue(self, builder: Callable[..., Message], args: tuple[Any, ...]) -> Result:
        pipeline = self._pipeline
        active = _active_context.get()  # the whole cost of request contexts when none is active
        scoped = active is not None or self._defaults is not None
        coerced: Optional[ValidationError] = None
        try:
            if scoped:  # merging reads the caller's dicts: inside the try, like building
                args = apply(args, _CONTEXT_SLOTS[builder], self._context_values(active))
            message = builder(*args)
        except ValidationError as exc:
            if self.strict:
                pipeline.ledger.drop("invalid", exc, [], count=1)
                raise
            message, coerced = self._build_leniently(builder, args)
        except Exception as exc:
            raise self._unreadable(exc) from None
        built: Optional[tuple[str, ...]] = CALLER_FIELDS  # made by a builder, unchanged: see encode_plain
        if self._consent_source is not None:
            self._stamp_consent(message)
        if self._hooks:
            if scoped:  # nested dicts come from the context, shared by its calls: hooks get their own
                _own_nested_dicts(message)
            hooked = self._run_hooks(message)
            if hooked is None:
                return False, message
            message, built = hooked, None
        if self._consent_categories and self.on_denied == "drop" and self._denied(message):
            return False, message
        if self._plan is not None:
            # The plan only reads the message, or tags it under "context": it stays as built.
            planned = self._plan.apply(message, pipeline.ledger)  # may raise PlanViolationError
            if planned is None:
                return False, message
            message = planned
        data = encode_plain(message, built)
        left_out: Optional[list[EncodeError]] = None
        if data is None:
            left_out = None if self.strict else []
            try:
                data, message = encode_converting(message, left_out)
            except EncodeError as exc:
                pipeline.ledger.drop("encode_error", exc, [message])
                raise
        if len(data) > MAX_MESSAGE_BYTES:
            too_large = MessageTooLargeError(len(data), MAX_MESSAGE_BYTES, str(message.get("type")))
            pipeline.ledger.drop("oversize", too_large, [message])
            raise too_large
        if coerced is not None:
            pipeline.ledger.warn("coerced", coerced, [message])
        if left_out:
            pipeline.ledger.warn("value_dropped", _left_out_error(left_out), [message])
        if pipeline.closed:
            return self._refuse_after_shutdown(message)
        if not self.send:
            return True, message
        if self.sync_mode:
            pipeline.send_now(data)  # raises when the server did not take it
            return True, message
        accepted = pipeline.accept(data, self._block, self.block_timeout)
        if accepted is QUEUED:
            return True, message
        if accepted is Accepted.CLOSED:
            return self._refuse_after_shutdown(message)
        if accepted is Accepted.FAILED:  # counted and reported by the pipeline
            return False, message
        queue, options = pipeline.queue, self.options
        limits = (
            f"spool_max_bytes={options.spool_max_bytes}"
            if queue.durable
            else f"max_queue_size={options.max_queue_size}, max_queue_bytes={options.max_queue_bytes}"
        )
        full = QueueFullError(f"queue is full: {queue.qsize()} messages, {queue.nbytes()} bytes ({limits})")
        pipeline.ledger.drop("queue_full", full, [message])
        return False, message

    def _context_values(self, active: Optional[ContextValues]) -> ContextValues:
        """The active context's values over the client's ``defaults`` (merged once per context)."""
        defaults = self._defaults
        if defaults is None:
            assert active is not None
            return active
        if active is None:
            return defaults
        seen, values = self._defaults_under
        if seen is not active:
            values = merged(defaults, active)
            self._defaults_under = (active, values)  # one tuple swap: safe across threads
        assert values is not None
        return values

    def _stamp_consent(self, message: Message) -> None:
        """Put the consent source's preferences in ``context.consent`` unless the message has some."""
        message_context = message["context"]
        if "consent" in message_context:
            return
        assert self._consent_source is not None
        try:
            preferences = self._consent_source()
            if preferences is None:
                return
            checked = consent_preferences(preferences, "consent()")
        except Exception:
            self._pipeline.ledger.count("hook_errors")
            log.exception("the consent source raised; the message is sent without consent preferences")
            return
        message_context["consent"] = {"categoryPreferences": checked}

    def _denied(self, message: Message) -> bool:
        """Whether ``message`` belongs to a consent category not granted; if so it is counted as dropped."""
        key = message.get("event") if message.get("type") == "track" else message.get("type")
        categories = self._consent_categories.get(key) if isinstance(key, str) else None
        if not categories:
            return False
        message_context = message.get("context")
        consent = message_context.get("consent") if isinstance(message_context, dict) else None
        preferences = consent.get("categoryPreferences") if isinstance(consent, dict) else None
        if not isinstance(preferences, dict):
            preferences = {}
        refused = [category for category in categories if preferences.get(category) is not True]
        if not refused:
            return False
        error = FilteredError(
            f"{key!r} is in consent categories {', '.join(refused)} that the user did not grant "
            "(on_denied='drop')"
        )
        self._pipeline.ledger.drop("consent_denied", error, [message])
        return True

    def _refuse_after_shutdown(self, message: Message) -> Result:
        self._pipeline.ledger.drop("after_shutdown", ShutdownError("tracked after shutdown()"), [message])
        return False, message

    def _build_leniently(
        self, builder: Callable[..., Message], args: tuple[Any, ...]
    ) -> tuple[Message, ValidationError]:
        """Build what strict mode refused, as segment-analytics-python would accept it.

        Raises (and counts) the ``ValidationError`` for input the reference
        refuses too. Otherwise returns the message and an error naming each field
        that was fixed up, for the warning.
        """
        notes: list[tuple[str, str]] = []
        try:
            message = builder(*args, notes=notes)
        except ValidationError as exc:
            self._pipeline.ledger.drop("invalid", exc, [], count=1)
            raise
        except Exception as exc:
            raise self._unreadable(exc) from None
        kind = message.get("type")
        details = "; ".join(f"{path}: {done}" for path, done in notes)
        return message, ValidationError(f"{kind}: {details} (strict=True refuses this)", notes[0][0])

    def _unreadable(self, exc: Exception) -> ValidationError:
        """Count, and return to raise, a call whose arguments raised where no check expected it.

        The builders read each argument defensively and name the field; this is
        the last guard, so a caller's exception never escapes uncounted.
        """
        error = ValidationError(
            f"the call's arguments could not be read: {type(exc).__name__} raised while building the message"
        )
        self._pipeline.ledger.drop("invalid", error, [], count=1)
        return error

    def _run_hooks(self, message: Message) -> Optional[Message]:
        for hook in self._hooks:
            try:
                result = hook(message)
            except Exception:
                self._pipeline.ledger.count("hook_errors")
                log.exception("before_send hook %r raised; the message is sent as it was", hook)
                continue
            if result is None:
                ledger = self._pipeline.ledger
                ledger.count("filtered")
                filtered = FilteredError(f"before_send hook {safe_repr(hook)} returned None")
                ledger.report("filtered", filtered, [message])
                return None
            if not isinstance(result, dict):
                refused = ValidationError(
                    f"before_send hook {safe_repr(hook)} must return a dict or None, "
                    f"got {type(result).__name__}"
                )
                self._pipeline.ledger.drop("invalid", refused, [], count=1)
                raise refused
            message = result
        return message

    # -- lifecycle --------------------------------------------------------------

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Send everything queued now and wait until it is delivered or definitively dropped.

        Returns True when all messages accepted before the call are settled, False
        if ``timeout`` seconds passed first. ``None`` waits as long as it takes.
        Settled includes dropped: ``last_flush`` tells how many were delivered
        and how many dropped, and a WARNING is logged when any were dropped.
        """
        if not self.send or self.sync_mode:
            self._pipeline.ledger.flush_reports()
            return True
        return self._pipeline.flush(timeout)

    def wait_settled(self, mark: int, timeout: Optional[float] = None) -> bool:
        """Wait until every message accepted before ``mark()`` returned ``mark`` is settled.

        Settled means delivered or dropped; a dropped message has been counted and
        reported before it counts as settled. Unlike ``flush`` this
        does not make consumers send early. Returns False if ``timeout`` passed first.
        """
        if not self.send or self.sync_mode:
            return True
        return self._pipeline.wait_settled(mark, timeout)

    def join(self, timeout: Optional[float] = None) -> bool:
        """Let the consumer threads send what is queued, then stop them.

        A later call starts them again. Returns False if ``timeout`` passed first.
        """
        return self._pipeline.join(timeout)

    def shutdown(self, timeout: Optional[float] = None) -> bool:
        """Deliver what is queued, then stop; later calls are refused and counted.

        Returns True when everything accepted was delivered or definitively
        rejected, False if ``timeout`` passed first: what was still undelivered
        is then dropped, counted as ``shutdown_timeout`` and reported to ``on_drop``.
        """
        if not self.send or self.sync_mode:
            self._pipeline.close()
            return True
        return self._pipeline.shutdown(timeout)

    def add_observer(self, observer: Any) -> None:
        """Tell ``observer`` of deliveries, retries, drops, settled batches and a drained queue.

        See ``segment_lite.observe`` (and the ``observers`` option): it is called on
        a thread of its own; its exceptions are counted as ``observer_errors``.
        """
        if not any(callable(getattr(observer, event, None)) for event in OBSERVER_EVENTS):
            raise ValidationError(
                f"an observer needs one of the methods {', '.join(OBSERVER_EVENTS)}; {observer!r} has none",
                "observers",
            )
        self._pipeline.observers.append(observer)

    def add_outcome_subscriber(self, subscriber: OutcomeSubscriber) -> None:
        """Hand ``subscriber`` every outcome from now on: each delivery, retry and drop, with its messages.

        See ``segment_lite.outcomes``: unlike ``on_error``/``on_drop`` it is neither rate
        limited nor capped, and it is called on the thread the outcome happened on, so it
        must be quick; its exceptions are counted as ``hook_errors``.
        """
        if not callable(subscriber):
            raise ValidationError(f"an outcome subscriber must be callable, got {subscriber!r}", "subscriber")
        self._pipeline.outcome_subscribers.append(subscriber)


# Where each builder takes the fields a request context fills, by position in the
# argument tuple the methods above pass: user_id, anonymous_id, properties, traits,
# context, integrations (-1: the call has no such field). alias takes no ids from a
# context (both of its ids say which identities to merge), group's traits are the
# group's, not the user's.
_CONTEXT_SLOTS: dict[Callable[..., Message], Slots] = {
    build_track: (0, 5, 2, -1, 3, 6),
    build_identify: (0, 4, -1, 1, 2, 5),
    build_group: (0, 5, -1, -1, 3, 6),
    build_alias: (-1, -1, -1, -1, 2, 4),
    build_view: (1, 7, 4, -1, 5, 8),
}


def _own_nested_dicts(message: Message) -> None:
    """Copy the dicts and lists nested in the caller fields of ``message`` (top levels are its own)."""
    for field in CALLER_FIELDS:
        value = message.get(field)
        if type(value) is dict:
            for key, nested in value.items():
                if type(nested) is dict or type(nested) is list:
                    value[key] = _copied(nested)


def _copied(value: Any) -> Any:
    if type(value) is dict:
        return {key: _copied(nested) for key, nested in value.items()}
    if type(value) is list:
        return [_copied(nested) for nested in value]
    return value


def _left_out_error(left_out: list[EncodeError]) -> EncodeError:
    """One error for the values left out of a message, naming the path of each."""
    first = left_out[0]
    if len(left_out) == 1:
        return first
    others = ", ".join(error.path for error in left_out[1:])
    return EncodeError(first.path, f"{first.reason}; also left out: {others}")
