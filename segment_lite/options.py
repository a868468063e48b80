"""Every option of a Client, defined once: its default, its validation and the values derived from it.

Adding an option takes one field here, the parameter in ``Client.__init__``'s
explicit signature, and one row in docs/configuration.md; tests/test_options.py
fails if any of the three is missing or their defaults differ. Module settings
(``segment_lite.write_key``) and ``Client.DefaultConfig`` are derived from the
fields' metadata.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

from segment_lite.errors import ValidationError
from segment_lite.ledger import OnDrop, OnError
from segment_lite.message import Message
from segment_lite.observe import EVENTS as OBSERVER_EVENTS
from segment_lite.pipeline import BatchingConfig, QueueFactory
from segment_lite.retry import Clock, RetryPolicy
from segment_lite.scope import FIELDS as CONTEXT_FIELDS
from segment_lite.scope import ContextValues, values_from
from segment_lite.sender import MAX_BATCH_COUNT, BatchSender
from segment_lite.transport import TransportFactory, batch_url

if TYPE_CHECKING:
    from segment_lite.plan.enforce import PlanEnforcer
    from segment_lite.plan.model import TrackingPlan

__all__ = [
    "DEFAULT_MAX_QUEUE_BYTES",
    "DEFAULT_SPOOL_MAX_BYTES",
    "DEFAULT_UPLOAD_SIZE",
    "MODULE_SETTINGS",
    "REFERENCE_OPTIONS",
    "SPOOL_MAX_RETRIES",
    "BeforeSend",
    "ClientOptions",
    "ConsentSource",
    "DefaultConfig",
]

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
ConsentSource = Callable[[], Optional[Mapping[str, bool]]]


# Field metadata: "reference" marks segment-analytics-python 2.x's options (Client's positional
# parameters, and DefaultConfig), "module" the options also read from a module setting.
_2X = {"reference": True}
_2X_MODULE = {"reference": True, "module": True}
_MODULE = {"module": True}


@dataclasses.dataclass(frozen=True)
class ClientOptions:
    """The options of one ``Client``, checked when made; see docs/configuration.md for each.

    The fields hold the values as given. The derived values (``url``,
    ``retry``, ``batching``, ...) are what the client runs with. Every bad
    value raises ``ValidationError`` naming the option.
    """

    # segment-analytics-python 2.x's options, in its order (positional too).
    write_key: Optional[str] = field(default=None, repr=False, metadata=_2X_MODULE)
    host: Optional[str] = field(default=None, metadata=_2X_MODULE)
    debug: bool = field(default=False, metadata=_2X_MODULE)
    max_queue_size: int = field(default=10000, metadata=_2X_MODULE)
    send: bool = field(default=True, metadata=_2X_MODULE)
    on_error: Optional[OnError] = field(default=None, metadata=_2X_MODULE)
    gzip: bool = field(default=False, metadata=_2X_MODULE)
    max_retries: int = field(default=10, metadata=_2X_MODULE)
    sync_mode: bool = field(default=False, metadata=_2X_MODULE)
    timeout: float = field(default=15, metadata=_2X_MODULE)
    proxies: Optional[Mapping[str, str]] = field(default=None, repr=False, metadata=_2X)
    thread: int = field(default=1, metadata=_2X)
    upload_size: int = field(default=DEFAULT_UPLOAD_SIZE, metadata=_2X)
    upload_interval: float = field(default=0.5, metadata=_2X)
    log_handler: Optional[logging.Handler] = field(default=None, metadata=_2X_MODULE)
    oauth_client_id: Optional[str] = field(default=None, metadata=_2X_MODULE)
    oauth_client_key: Optional[str] = field(default=None, repr=False, metadata=_2X_MODULE)
    oauth_key_id: Optional[str] = field(default=None, metadata=_2X_MODULE)
    oauth_auth_server: str = field(default="https://oauth2.segment.io", metadata=_2X_MODULE)
    oauth_scope: str = field(default="tracking_api:write", metadata=_2X_MODULE)
    max_total_backoff_duration: float = field(default=43200, metadata=_2X)
    max_rate_limit_duration: float = field(default=1800, metadata=_2X)
    # segment_lite's own (keyword-only in Client).
    strict: bool = field(default=False, metadata=_MODULE)
    on_drop: Optional[OnDrop] = field(default=None, metadata=_MODULE)
    region: Optional[str] = field(default=None, metadata=_MODULE)
    max_queue_bytes: int = DEFAULT_MAX_QUEUE_BYTES
    on_full: str = "drop"
    block_timeout: Optional[float] = None
    max_batch_size: Optional[int] = None
    shutdown_timeout: Optional[float] = 5.0
    before_send: Union[BeforeSend, Iterable[BeforeSend], None] = None
    transport: Optional[TransportFactory] = None
    retry_policy: Optional[RetryPolicy] = None
    clock: Optional[Clock] = None
    queue_factory: Optional[QueueFactory] = None
    spool_dir: Union[str, os.PathLike[str], None] = field(default=None, metadata=_MODULE)
    spool_max_bytes: int = field(default=DEFAULT_SPOOL_MAX_BYTES, metadata=_MODULE)
    spool_fsync: str = field(default="batch", metadata=_MODULE)
    tracking_plan: Union[str, os.PathLike[str], Mapping[str, Any], TrackingPlan, None] = field(
        default=None, metadata=_MODULE
    )
    on_violation: str = field(default="send", metadata=_MODULE)
    on_unplanned: str = field(default="send", metadata=_MODULE)
    tag_violations: bool = field(default=False, metadata=_MODULE)
    flush_at_exit: bool = field(default=True, metadata=_MODULE)
    defaults: Optional[Mapping[str, Any]] = field(default=None, metadata=_MODULE)
    consent: Union[Mapping[str, bool], ConsentSource, None] = field(default=None, metadata=_MODULE)
    consent_categories: Optional[Mapping[str, Iterable[str]]] = field(default=None, metadata=_MODULE)
    on_denied: str = field(default="send", metadata=_MODULE)
    observers: Union[Any, Iterable[Any], None] = field(default=None, metadata=_MODULE)

    def __post_init__(self) -> None:
        if self.send and not isinstance(self.write_key, str):
            raise ValidationError(
                "write_key is required: pass Client(write_key) or set segment_lite.write_key", "write_key"
            )
        if self.empty_key and self.strict:
            raise ValidationError("write_key is empty: every batch would be refused", "write_key")
        if self.on_full not in ("drop", "block"):
            raise ValidationError(f"on_full must be 'drop' or 'block', got {self.on_full!r}", "on_full")
        if self.on_denied not in ("send", "drop"):
            raise ValidationError(f"on_denied must be 'send' or 'drop', got {self.on_denied!r}", "on_denied")
        if self.thread < 1:
            raise ValidationError(f"thread must be at least 1, got {self.thread}", "thread")
        for name in ("max_total_backoff_duration", "max_rate_limit_duration"):
            value = getattr(self, name)
            if value is None or value < 0:
                raise ValidationError(f"{name} must be a non-negative number, got {value!r}", name)
        if self.retry_policy is not None:
            overridden = [
                name
                for name in ("max_retries", "max_total_backoff_duration", "max_rate_limit_duration")
                if getattr(self, name) != _FIELDS[name].default
            ]
            if overridden:
                raise ValidationError(
                    f"pass either retry_policy or {', '.join(overridden)}, not both: retry_policy "
                    "sets the retry count and both durations itself",
                    "retry_policy",
                )
        self.url  # noqa: B018  # checks host and region now, and reads DefaultConfig.host now
        self.context_defaults  # noqa: B018  # checks defaults and consent
        self.categories  # noqa: B018
        self.observer_list  # noqa: B018
        if self.uses_spool:
            self._check_spool()

    def _check_spool(self) -> None:
        from segment_lite.spool.factory import FSYNC_POLICIES

        fsync = self.spool_fsync
        if fsync not in FSYNC_POLICIES:
            raise ValidationError(
                f"spool_fsync must be one of {', '.join(map(repr, FSYNC_POLICIES))}, got {fsync!r}",
                "spool_fsync",
            )
        size = self.spool_max_bytes
        if isinstance(size, bool) or not isinstance(size, int) or size < 64 * 1024:
            raise ValidationError(
                f"spool_max_bytes must be an integer of at least 65536 bytes, got {size!r}", "spool_max_bytes"
            )

    # -- derived values ------------------------------------------------------------

    @cached_property
    def url(self) -> str:
        """The batch endpoint, from ``host`` (or ``DefaultConfig.host``, read once) and ``region``."""
        return batch_url(self.host or DefaultConfig.host, self.region)

    @property
    def empty_key(self) -> bool:
        """An empty write key, accepted as segment-analytics-python accepts it (with a warning)."""
        return self.send and self.write_key == ""

    @property
    def block(self) -> bool:
        """Whether a call waits for room in a full queue (``on_full="block"``)."""
        return self.on_full == "block"

    @cached_property
    def wake_at(self) -> int:
        """How many queued messages wake a consumer (``upload_size`` as an int)."""
        return int(self.upload_size)

    @cached_property
    def batch_max_count(self) -> int:
        """The most messages per request.

        ``upload_size`` passed (and not ``max_batch_size``) caps it, as in 2.x; left
        out, batches grow with a backlog up to Segment's limit.
        """
        if self.max_batch_size is not None:
            return self.max_batch_size
        return MAX_BATCH_COUNT if type(self.upload_size) is _DefaultUploadSize else self.upload_size

    @cached_property
    def spool_path(self) -> Optional[str]:
        """``spool_dir`` as a string (None without a spool)."""
        return None if self.spool_dir is None else os.fspath(self.spool_dir)

    @property
    def uses_spool(self) -> bool:
        """Whether the queue is a disk spool: a ``spool_dir``, sending, and no ``queue_factory``."""
        return self.queue_factory is None and self.spool_dir is not None and self.send

    @cached_property
    def retry(self) -> RetryPolicy:
        """The retry policy: ``retry_policy``, or one made of the three 2.x options.

        With a spool and ``max_retries`` left at its default, the count is not limited.
        """
        if self.retry_policy is not None:
            return self.retry_policy
        max_retries = self.max_retries
        if self.spool_dir is not None and self.send and max_retries == _FIELDS["max_retries"].default:
            max_retries = SPOOL_MAX_RETRIES
        return RetryPolicy(
            max_retries=max_retries,
            max_total_backoff_s=self.max_total_backoff_duration,
            max_rate_limit_s=self.max_rate_limit_duration,
        )

    @cached_property
    def timing(self) -> Clock:
        """The clock of every wait and ``sentAt`` (``clock``, or the real one)."""
        return self.clock or Clock()

    @cached_property
    def hooks(self) -> tuple[BeforeSend, ...]:
        """The ``before_send`` hooks, in order."""
        if self.before_send is None:
            return ()
        if callable(self.before_send):
            return (self.before_send,)
        return tuple(self.before_send)

    @property
    def oauth(self) -> Optional[tuple[str, str, str]]:
        """``(client_id, client_key, key_id)`` when all three are set, else None."""
        if self.oauth_client_id and self.oauth_client_key and self.oauth_key_id:
            return self.oauth_client_id, self.oauth_client_key, self.oauth_key_id
        return None

    @cached_property
    def context_defaults(self) -> tuple[Optional[ContextValues], Optional[ConsentSource]]:
        """``defaults`` as context values (a fixed ``consent`` folded in), and a consent callable."""
        return _client_defaults(self.defaults, self.consent)

    @cached_property
    def categories(self) -> dict[str, tuple[str, ...]]:
        """``consent_categories`` checked: event name (or call type) -> the categories it needs."""
        return _categories(self.consent_categories)

    @cached_property
    def observer_list(self) -> list[Any]:
        """The ``observers`` option as a list, each with at least one observer method."""
        return _observer_list(self.observers)

    def batching(self) -> BatchingConfig:
        """When consumers send, and how big their batches may be."""
        return BatchingConfig(
            threads=self.thread,
            upload_size=self.wake_at,
            upload_interval_s=self.upload_interval,
            max_batch_size=self.batch_max_count,
            max_batch_bytes=BatchSender.max_batch_bytes(self.write_key or ""),
        )

    def plan_enforcer(self) -> Optional[PlanEnforcer]:
        """The tracking plan's enforcer (which checks ``on_violation`` and ``on_unplanned``), or None."""
        if self.tracking_plan is None:
            return None
        from segment_lite.plan.enforce import PlanEnforcer  # the plan code loads only when used

        return PlanEnforcer(self.tracking_plan, self.on_violation, self.on_unplanned, self.tag_violations)


def _client_defaults(
    defaults: Optional[Mapping[str, Any]], consent: Union[Mapping[str, bool], ConsentSource, None]
) -> tuple[Optional[ContextValues], Optional[ConsentSource]]:
    """The ``defaults`` option as context values (a fixed ``consent`` folded in), and a consent callable."""
    if defaults is not None and not isinstance(defaults, Mapping):
        raise ValidationError(f"defaults must be a dict, got {type(defaults).__name__}", "defaults")
    fields = dict(defaults or {})
    unknown = sorted(set(fields) - set(CONTEXT_FIELDS))
    if unknown:
        raise ValidationError(
            f"defaults takes the keys {', '.join(CONTEXT_FIELDS)}; got {', '.join(map(repr, unknown))}",
            f"defaults.{unknown[0]}",
        )
    source: Optional[ConsentSource] = None
    if callable(consent):
        source = consent
    elif consent is not None:
        fields["consent"] = consent
    if not fields:
        return None, source
    return values_from(**fields, where="defaults"), source


def _observer_list(option: Union[Any, Iterable[Any], None]) -> list[Any]:
    """The ``observers`` option as a list, each checked to have at least one observer method."""
    if option is None:
        return []
    observers = [option] if any(hasattr(option, event) for event in OBSERVER_EVENTS) else list(option)
    for observer in observers:
        if not any(callable(getattr(observer, event, None)) for event in OBSERVER_EVENTS):
            raise ValidationError(
                f"an observer needs one of the methods {', '.join(OBSERVER_EVENTS)}; {observer!r} has none",
                "observers",
            )
    return observers


def _categories(option: Optional[Mapping[str, Iterable[str]]]) -> dict[str, tuple[str, ...]]:
    """``consent_categories`` checked: event name (or call type) -> the consent categories it needs."""
    if option is None:
        return {}
    if not isinstance(option, Mapping):
        raise ValidationError(
            f"consent_categories must be a dict, got {type(option).__name__}", "consent_categories"
        )
    checked: dict[str, tuple[str, ...]] = {}
    for name, categories in option.items():
        if isinstance(categories, str) or not all(isinstance(c, str) for c in categories):
            raise ValidationError(
                f"consent_categories[{name!r}] must be a list of category names", f"consent_categories.{name}"
            )
        checked[name] = tuple(categories)
    return checked


_FIELDS: dict[str, dataclasses.Field[Any]] = {f.name: f for f in dataclasses.fields(ClientOptions)}
#: segment-analytics-python 2.x's options, in its order: Client's positional parameters.
REFERENCE_OPTIONS = tuple(name for name, f in _FIELDS.items() if f.metadata.get("reference", False))
#: The options also read from a module setting (``segment_lite.write_key = ...``) by the default client.
MODULE_SETTINGS = tuple(name for name, f in _FIELDS.items() if f.metadata.get("module", False))

#: ``Client.DefaultConfig``: the 2.x defaults, kept for code that reads them. Setting
#: ``DefaultConfig.host`` changes the host of clients made later, as in 2.x.
DefaultConfig: Any = type(
    "DefaultConfig",
    (),
    {
        "__doc__": "The defaults of segment-analytics-python 2.x, kept for code that reads them.",
        **{name: _FIELDS[name].default for name in REFERENCE_OPTIONS},
    },
)
