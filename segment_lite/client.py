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
from segment_lite.ledger import Credentials, OnDrop, OnError
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
from segment_lite.pipeline import (
    QUEUED,
    Accepted,
    BatchingConfig,
    DeliveryConfig,
    FlushResult,
    Pipeline,
    QueueFactory,
    Worker,
)
from segment_lite.queue import MemoryQueue, MessageQueue
from segment_lite.retry import Clock, RetryPolicy
from segment_lite.sender import MAX_BATCH_COUNT, BatchSender
from segment_lite.transport import TransportFactory, batch_url, default_transport_factory

if TYPE_CHECKING:
    from segment_lite.plan.enforce import PlanEnforcer
    from segment_lite.plan.model import TrackingPlan

__all__ = ["Client", "Result"]

DEFAULT_MAX_QUEUE_BYTES = 64 * 1024 * 1024
DEFAULT_SPOOL_MAX_BYTES = 256 * 1024 * 1024
#: With a spool and max_retries left at its default, the retry count is not
#: limited: an outage is bounded by max_total_backoff_duration and the disk.
SPOOL_MAX_RETRIES = 1 << 62


class _DefaultUploadSize(int):
    """``upload_size``'s default: 100, as in 2.x, but told apart from an explicit 100.

    Passed (without ``max_batch_size``), ``upload_size`` caps the messages per
    request as in 2.x; left out, batches grow with a backlog up to 2,500
    messages and 500 KB.
    """


DEFAULT_UPLOAD_SIZE: int = _DefaultUploadSize(100)

BeforeSend = Callable[[Message], Optional[Message]]
Result = tuple[bool, Optional[Message]]

# The logger segment-analytics-python logs on, so handlers and levels already set on
# it (and ``debug=True``) apply unchanged.
log = logging.getLogger("segment")


class Client:
    """A Segment client: validates and encodes each call, queues it, and delivers it in the background.

    The constructor takes the same arguments, with the same defaults, as
    ``segment.analytics.Client`` 2.x; the options after ``*`` are segment_lite's
    own. See docs/configuration.md for every option.
    """

    class DefaultConfig:
        """The defaults of segment-analytics-python 2.x, kept for code that reads them."""

        write_key: Optional[str] = None
        host: Optional[str] = None
        on_error: Optional[OnError] = None
        debug = False
        log_handler: Optional[logging.Handler] = None
        send = True
        sync_mode = False
        max_queue_size = 10000
        gzip = False
        timeout: float = 15
        max_retries = 10
        max_total_backoff_duration: float = 43200
        max_rate_limit_duration: float = 1800
        proxies: Optional[Mapping[str, str]] = None
        thread = 1
        upload_interval: float = 0.5
        upload_size = DEFAULT_UPLOAD_SIZE
        oauth_client_id: Optional[str] = None
        oauth_client_key: Optional[str] = None
        oauth_key_id: Optional[str] = None
        oauth_auth_server = "https://oauth2.segment.io"
        oauth_scope = "tracking_api:write"

    log = log

    def __init__(
        self,
        write_key: Optional[str] = DefaultConfig.write_key,
        host: Optional[str] = DefaultConfig.host,
        debug: bool = DefaultConfig.debug,
        max_queue_size: int = DefaultConfig.max_queue_size,
        send: bool = DefaultConfig.send,
        on_error: Optional[OnError] = DefaultConfig.on_error,
        gzip: bool = DefaultConfig.gzip,
        max_retries: int = DefaultConfig.max_retries,
        sync_mode: bool = DefaultConfig.sync_mode,
        timeout: float = DefaultConfig.timeout,
        proxies: Optional[Mapping[str, str]] = DefaultConfig.proxies,
        thread: int = DefaultConfig.thread,
        upload_size: int = DefaultConfig.upload_size,
        upload_interval: float = DefaultConfig.upload_interval,
        log_handler: Optional[logging.Handler] = DefaultConfig.log_handler,
        oauth_client_id: Optional[str] = DefaultConfig.oauth_client_id,
        oauth_client_key: Optional[str] = DefaultConfig.oauth_client_key,
        oauth_key_id: Optional[str] = DefaultConfig.oauth_key_id,
        oauth_auth_server: str = DefaultConfig.oauth_auth_server,
        oauth_scope: str = DefaultConfig.oauth_scope,
        max_total_backoff_duration: float = DefaultConfig.max_total_backoff_duration,
        max_rate_limit_duration: float = DefaultConfig.max_rate_limit_duration,
        *,
        strict: bool = False,
        on_drop: Optional[OnDrop] = None,
        region: Optional[str] = None,
        max_queue_bytes: int = DEFAULT_MAX_QUEUE_BYTES,
        on_full: str = "drop",
        block_timeout: Optional[float] = None,
        max_batch_size: Optional[int] = None,
        shutdown_timeout: Optional[float] = 5.0,
        before_send: Union[BeforeSend, Iterable[BeforeSend], None] = None,
        transport: Optional[TransportFactory] = None,
        retry_policy: Optional[RetryPolicy] = None,
        clock: Optional[Clock] = None,
        queue_factory: Optional[QueueFactory] = None,
        spool_dir: Union[str, os.PathLike[str], None] = None,
        spool_max_bytes: int = DEFAULT_SPOOL_MAX_BYTES,
        spool_fsync: str = "batch",
        tracking_plan: Union[str, os.PathLike[str], Mapping[str, Any], TrackingPlan, None] = None,
        on_violation: str = "send",
        on_unplanned: str = "send",
        tag_violations: bool = False,
        flush_at_exit: bool = True,
    ) -> None:
        if send and not isinstance(write_key, str):
            raise ValidationError(
                "write_key is required: pass Client(write_key) or set segment_lite.write_key", "write_key"
            )
        empty_key = send and write_key == ""
        if empty_key and strict:
            raise ValidationError("write_key is empty: every batch would be refused", "write_key")
        if on_full not in ("drop", "block"):
            raise ValidationError(f"on_full must be 'drop' or 'block', got {on_full!r}", "on_full")
        if thread < 1:
            raise ValidationError(f"thread must be at least 1, got {thread}", "thread")
        for name, value in (
            ("max_total_backoff_duration", max_total_backoff_duration),
            ("max_rate_limit_duration", max_rate_limit_duration),
        ):
            if value is None or value < 0:
                raise ValidationError(f"{name} must be a non-negative number, got {value!r}", name)
        if retry_policy is not None:
            overridden = [
                name
                for name, value, default in (
                    ("max_retries", max_retries, Client.DefaultConfig.max_retries),
                    (
                        "max_total_backoff_duration",
                        max_total_backoff_duration,
                        Client.DefaultConfig.max_total_backoff_duration,
                    ),
                    (
                        "max_rate_limit_duration",
                        max_rate_limit_duration,
                        Client.DefaultConfig.max_rate_limit_duration,
                    ),
                )
                if value != default
            ]
            if overridden:
                raise ValidationError(
                    f"pass either retry_policy or {', '.join(overridden)}, not both: retry_policy "
                    "sets the retry count and both durations itself",
                    "retry_policy",
                )

        self._write_key = write_key or ""
        self.host = host
        # DefaultConfig.host is read now, not when the class was made, so setting it applies.
        self.url = batch_url(host or Client.DefaultConfig.host, region)
        self.debug = debug
        self.send = send
        self.sync_mode = sync_mode
        self.gzip = gzip
        self.timeout = timeout
        self.proxies = proxies
        self.thread = thread
        if max_batch_size is None:
            # upload_size passed (and not max_batch_size): no request carries more, as in
            # 2.x. Left out: batches grow with a backlog, up to Segment's limits.
            max_batch_size = MAX_BATCH_COUNT if type(upload_size) is _DefaultUploadSize else upload_size
        upload_size = int(upload_size)
        self.upload_size = upload_size
        self.upload_interval = upload_interval
        self.max_queue_size = max_queue_size
        self.max_queue_bytes = max_queue_bytes
        self.max_batch_size = max_batch_size
        self.on_error = on_error
        self.on_drop = on_drop
        self.strict = strict
        self.on_full = on_full
        self.block_timeout = block_timeout
        self.shutdown_timeout = shutdown_timeout
        if spool_dir is not None and send and max_retries == Client.DefaultConfig.max_retries:
            max_retries = SPOOL_MAX_RETRIES
        self.retry_policy = retry_policy or RetryPolicy(
            max_retries=max_retries,
            max_total_backoff_s=max_total_backoff_duration,
            max_rate_limit_s=max_rate_limit_duration,
        )
        self.max_retries = self.retry_policy.max_retries
        self.clock = clock or Clock()
        if before_send is None:
            self._hooks: tuple[BeforeSend, ...] = ()
        elif callable(before_send):
            self._hooks = (before_send,)
        else:
            self._hooks = tuple(before_send)
        # Every credential this client sends, to mask wherever text reaches a log or an error.
        self._credentials = Credentials()
        self._credentials.add(self._write_key)
        for proxy in (proxies or {}).values():  # a proxy's password goes out in Proxy-Authorization
            self._credentials.add_proxy_credentials(str(proxy))
        self._transport_factory = default_transport_factory(transport, proxies)
        if transport is None:
            self._transport_factory = _with_reference_seams(self._transport_factory, proxies)
        if oauth_client_id and oauth_client_key and oauth_key_id:
            self._transport_factory = _with_oauth(
                self._transport_factory,
                oauth_client_id,
                oauth_client_key,
                oauth_key_id,
                oauth_auth_server,
                oauth_scope,
                timeout,
                proxies,
                self.clock,
                self._credentials,
            )
        elif oauth_client_id or oauth_client_key or oauth_key_id:
            log.warning(
                "OAuth needs oauth_client_id, oauth_client_key and oauth_key_id together; "
                "some are missing, so batches are authenticated with the write key"
            )
        self._block = on_full == "block"
        self._plan: Optional[PlanEnforcer] = None
        if tracking_plan is not None:  # the plan code and its validators load only when used
            from segment_lite.plan.enforce import PlanEnforcer

            self._plan = PlanEnforcer(tracking_plan, on_violation, on_unplanned, tag_violations)

        if log_handler is not None and log_handler not in log.handlers:
            log.addHandler(log_handler)
        if debug:
            log.setLevel(logging.DEBUG)
            if not log.handlers:
                log.addHandler(logging.StreamHandler())

        max_batch_bytes = BatchSender.max_batch_bytes(self._write_key)
        self.spool_dir = None if spool_dir is None else os.fspath(spool_dir)
        self.spool_max_bytes = spool_max_bytes
        self.spool_fsync = spool_fsync
        if queue_factory is None and self.spool_dir is not None and send:
            from segment_lite.spool.factory import spool_factory

            queue_factory = spool_factory(
                self.spool_dir,
                max_bytes=spool_max_bytes,
                fsync=spool_fsync,
                wake_at=upload_size,
                write_key=self._write_key,
            )
        if queue_factory is None:

            def queue_factory() -> MessageQueue:
                return MemoryQueue(max_queue_size, max_queue_bytes, wake_at=upload_size)

        self._pipeline = Pipeline(
            queue_factory,
            DeliveryConfig(
                url=self.url,
                write_key=self._write_key,
                gzip=gzip,
                timeout_s=timeout,
                retry_policy=self.retry_policy,
                transport_factory=self._transport_factory,
                clock=self.clock,
            ),
            BatchingConfig(
                threads=thread,
                upload_size=upload_size,
                upload_interval_s=upload_interval,
                max_batch_size=max_batch_size,
                max_batch_bytes=max_batch_bytes,
            ),
            on_error=on_error,
            on_drop=on_drop,
            log=log,
            shutdown_timeout_s=shutdown_timeout,
            credentials=self._credentials,
        )

        self._pipeline.flush_at_exit = flush_at_exit

        if empty_key:  # accepted, as segment-analytics-python accepts it, but not quietly
            self._pipeline.ledger.warn(
                "coerced",
                ValidationError(
                    "write_key is empty: the server will refuse every batch (strict=True refuses it)",
                    "write_key",
                ),
                [],
                count=1,
            )

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
        self.shutdown(self.shutdown_timeout)

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
            f"<segment_lite.Client url={self.url!r} write_key='***' threads={self.thread} "
            f"queued={self._pipeline.queue.qsize()}>"
        )

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
        fields = (
            user_id,
            category,
            name,
            properties,
            context,
            timestamp,
            anonymous_id,
            integrations,
            message_id,
        )
        return self._enqueue(build_view, ("page", *fields))

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
        fields = (
            user_id,
            category,
            name,
            properties,
            context,
            timestamp,
            anonymous_id,
            integrations,
            message_id,
        )
        return self._enqueue(build_view, ("screen", *fields))

    # -- the path of one message ------------------------------------------------

    def _enqueue(self, builder: Callable[..., Message], args: tuple[Any, ...]) -> Result:
        pipeline = self._pipeline
        coerced: Optional[ValidationError] = None
        try:
            message = builder(*args)
        except ValidationError as exc:
            if self.strict:
                pipeline.ledger.drop("invalid", exc, [], count=1)
                raise
            message, coerced = self._build_leniently(builder, args)
        except Exception as exc:
            raise self._unreadable(exc) from None
        built: Optional[tuple[str, ...]] = CALLER_FIELDS  # made by a builder, unchanged: see encode_plain
        if self._hooks:
            hooked = self._run_hooks(message)
            if hooked is None:
                return False, message
            message, built = hooked, None
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
        queue = pipeline.queue
        limits = (
            f"spool_max_bytes={self.spool_max_bytes}"
            if queue.durable
            else f"max_queue_size={self.max_queue_size}, max_queue_bytes={self.max_queue_bytes}"
        )
        full = QueueFullError(f"queue is full: {queue.qsize()} messages, {queue.nbytes()} bytes ({limits})")
        pipeline.ledger.drop("queue_full", full, [message])
        return False, message

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

    def stats(self) -> dict[str, Any]:
        """Counters of what happened to the messages of this client (in this process).

        ``accepted`` + ``recovered`` = ``delivered`` + ``queued`` (+ in flight) +
        drops of accepted messages (``rejected``, ``retries_exhausted``,
        ``shutdown_timeout``, ``spool_corrupt``) + ``left_in_spool``. Refusals at
        the call (``invalid``, ``encode_error``, ``oversize``, ``queue_full``,
        ``after_shutdown``, ``spool_write_failed``) are counted under ``dropped``
        too. ``recovered`` and ``left_in_spool`` are for a disk spool: messages an
        earlier process left there, and messages this one leaves for the next.
        """
        return self._pipeline.stats()


def _with_reference_seams(base: TransportFactory, proxies: Optional[Mapping[str, str]]) -> TransportFactory:
    """Wrap the default transport so patches of the reference's ``post`` and ``_session`` apply."""
    from segment_lite.request import ReferenceSeamTransport

    def factory() -> ReferenceSeamTransport:
        return ReferenceSeamTransport(base(), proxies)

    return factory


def _with_oauth(
    base: TransportFactory,
    client_id: str,
    client_key: str,
    key_id: str,
    auth_server: str,
    scope: str,
    timeout: float,
    proxies: Optional[Mapping[str, str]],
    clock: Clock,
    credentials: Credentials,
) -> TransportFactory:
    """Wrap ``base`` so every batch carries an OAuth Bearer token (one token source per client)."""
    from segment_lite.oauth import OAuthConfig, OAuthTokenSource, OAuthTransport

    config = OAuthConfig(client_id, client_key, key_id, auth_server, scope, timeout, proxies)
    tokens = OAuthTokenSource(config, clock, credentials=credentials)

    def factory() -> OAuthTransport:
        return OAuthTransport(base(), tokens)

    return factory


def _left_out_error(left_out: list[EncodeError]) -> EncodeError:
    """One error for the values left out of a message, naming the path of each."""
    first = left_out[0]
    if len(left_out) == 1:
        return first
    others = ", ".join(error.path for error in left_out[1:])
    return EncodeError(first.path, f"{first.reason}; also left out: {others}")
