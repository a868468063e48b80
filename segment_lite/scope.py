"""Request-scoped context: values every call inside a ``segment_lite.context(...)`` block inherits.

The active values live in one ``contextvars.ContextVar``. A call finds out whether
any context is active with one ``ContextVar.get()``; when one is, the values it
holds were already merged when the block was entered, so a call pays only for
filling its own missing arguments.

Merging (nested blocks, client defaults, the call itself):

* ``user_id`` and ``anonymous_id``: the innermost value that is not None wins; an
  argument passed to the call wins over every context.
* ``properties``, ``traits``, ``context`` and ``integrations``: merged key by key,
  one level deep. A key set by an inner block (or by the call) replaces the outer
  block's value for that key whole (``context={"page": {...}}`` replaces the outer
  ``page`` dict, it is not merged into it).
* ``fresh=True`` starts from nothing: enclosing blocks are ignored inside it (the
  client's ``defaults`` still apply).
* ``context.library`` is never taken from a context: the client's own is sent.

asyncio tasks created inside a block inherit it (they copy the current context);
threads do not: run the thread's target under ``contextvars.copy_context().run``
to carry it over.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping
from contextvars import ContextVar, Token
from typing import Any, Callable, Optional, TypeVar, cast

from segment_lite.errors import ValidationError

__all__ = [
    "FIELDS",
    "ContextValues",
    "RequestContext",
    "active",
    "apply",
    "consent_preferences",
    "context",
    "merged",
    "values_from",
]

F = TypeVar("F", bound=Callable[..., Any])

#: The fields of ``segment_lite.context(...)`` (and of the client's ``defaults``).
FIELDS = ("user_id", "anonymous_id", "traits", "context", "properties", "integrations")

_EMPTY: Mapping[str, Any] = {}


class ContextValues:
    """The merged values of the active contexts: immutable once made."""

    __slots__ = ("anonymous_id", "context", "integrations", "properties", "traits", "user_id")

    def __init__(
        self,
        user_id: Optional[str] = None,
        anonymous_id: Optional[str] = None,
        traits: Mapping[str, Any] = _EMPTY,
        context: Mapping[str, Any] = _EMPTY,
        properties: Mapping[str, Any] = _EMPTY,
        integrations: Mapping[str, Any] = _EMPTY,
    ) -> None:
        self.user_id = user_id
        self.anonymous_id = anonymous_id
        self.traits = traits
        self.context = context
        self.properties = properties
        self.integrations = integrations

    def as_dict(self) -> dict[str, Any]:
        """The values as plain data (ids None when unset, dicts copied)."""
        return {
            "user_id": self.user_id,
            "anonymous_id": self.anonymous_id,
            "traits": dict(self.traits),
            "context": dict(self.context),
            "properties": dict(self.properties),
            "integrations": dict(self.integrations),
        }

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={value!r}" for name, value in self.as_dict().items() if value)
        return f"ContextValues({fields})"


_current: ContextVar[Optional[ContextValues]] = ContextVar("segment_lite.context", default=None)
_NOTHING = ContextValues()


def active() -> Optional[ContextValues]:
    """The values of the active ``segment_lite.context`` blocks, or None outside any."""
    return _current.get()


def _checked_dict(value: Any, name: str) -> Mapping[str, Any]:
    if value is None:
        return _EMPTY
    if type(value) is dict:  # the common case, before the slower ABC check
        return value
    if not isinstance(value, Mapping):
        raise ValidationError(f"context: {name} must be a dict, got {type(value).__name__}", name)
    return value


def _checked_id(value: Any, name: str) -> Optional[str]:
    if value is None or type(value) is str:
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise ValidationError(f"context: {name} must be a string, got {type(value).__name__}", name)


def values_from(
    user_id: Any = None,
    anonymous_id: Any = None,
    traits: Any = None,
    context: Any = None,
    properties: Any = None,
    integrations: Any = None,
    consent: Any = None,
    *,
    where: str = "context",
) -> ContextValues:
    """Check and normalise the arguments of ``segment_lite.context(...)`` into one layer."""
    context_dict = dict(_checked_dict(context, f"{where}.context"))
    context_dict.pop("library", None)  # the client's library is always the one sent
    if consent is not None:
        context_dict["consent"] = {"categoryPreferences": consent_preferences(consent, f"{where}.consent")}
    return ContextValues(
        _checked_id(user_id, f"{where}.user_id"),
        _checked_id(anonymous_id, f"{where}.anonymous_id"),
        dict(_checked_dict(traits, f"{where}.traits")),
        context_dict,
        dict(_checked_dict(properties, f"{where}.properties")),
        dict(_checked_dict(integrations, f"{where}.integrations")),
    )


def consent_preferences(value: Any, where: str = "consent") -> dict[str, bool]:
    """Check a ``{category: granted}`` mapping (the ``categoryPreferences`` Segment expects)."""
    if not isinstance(value, Mapping):
        raise ValidationError(
            f"{where} must be a dict of category -> bool, got {type(value).__name__}", where
        )
    preferences: dict[str, bool] = {}
    for category, granted in value.items():
        if not isinstance(category, str) or not isinstance(granted, bool):
            raise ValidationError(
                f"{where}[{category!r}] must map a category name to True or False, got {granted!r}",
                f"{where}.{category}",
            )
        preferences[category] = granted
    return preferences


def _merge_dict(outer: Mapping[str, Any], inner: Mapping[str, Any]) -> Mapping[str, Any]:
    if not outer:
        return inner
    if not inner:
        return outer
    return {**outer, **inner}


def merged(outer: Optional[ContextValues], inner: ContextValues) -> ContextValues:
    """``inner`` over ``outer``: ids where inner has none, dicts key by key (inner wins)."""
    if outer is None:
        return inner
    return ContextValues(
        outer.user_id if inner.user_id is None else inner.user_id,
        outer.anonymous_id if inner.anonymous_id is None else inner.anonymous_id,
        _merge_dict(outer.traits, inner.traits),
        _merge_dict(outer.context, inner.context),
        _merge_dict(outer.properties, inner.properties),
        _merge_dict(outer.integrations, inner.integrations),
    )


class RequestContext:
    """What ``segment_lite.context(...)`` returns: a context manager and a decorator.

    As a decorator it wraps sync and async functions; each call of the function
    enters the context anew, so concurrent calls do not share state.
    """

    __slots__ = ("_fresh", "_layer", "_tokens")

    def __init__(self, layer: ContextValues, fresh: bool) -> None:
        self._layer = layer
        self._fresh = fresh
        # One object may be entered by several threads or tasks at once (a module-level
        # ``with CONTEXT:``): each entry's token is found again by the values it set,
        # which are a distinct object per entry and still current when it exits.
        self._tokens: dict[int, Token[Optional[ContextValues]]] = {}

    def __enter__(self) -> ContextValues:
        values = self._layer if self._fresh else merged(_current.get(), self._layer)
        if values is self._layer:
            values = merged(values, _NOTHING)  # a distinct object for this entry
        self._tokens[id(values)] = _current.set(values)
        return values

    def __exit__(self, *exc_info: object) -> None:
        token = self._tokens.pop(id(_current.get()), None)
        if token is None:
            raise RuntimeError(
                "segment_lite.context exited out of order: "
                "an inner block is still open in this thread or task"
            )
        _current.reset(token)

    def _again(self) -> RequestContext:
        return RequestContext(self._layer, self._fresh)

    def __call__(self, func: F) -> F:
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                with self._again():
                    return await func(*args, **kwargs)

            return cast(F, run_async)

        @functools.wraps(func)
        def run(*args: Any, **kwargs: Any) -> Any:
            with self._again():
                return func(*args, **kwargs)

        return cast(F, run)


def context(
    user_id: Any = None,
    anonymous_id: Any = None,
    traits: Optional[Mapping[str, Any]] = None,
    context: Optional[Mapping[str, Any]] = None,
    properties: Optional[Mapping[str, Any]] = None,
    integrations: Optional[Mapping[str, Any]] = None,
    *,
    consent: Optional[Mapping[str, bool]] = None,
    fresh: bool = False,
) -> RequestContext:
    """Values every call made inside the block (or decorated function) gets where it did not set them.

    ``with segment_lite.context(anonymous_id=aid, context={"ip": ip}): ...`` or
    ``@segment_lite.context(properties={"app": "billing"})``. ``properties`` go to
    track, page and screen calls; ``traits`` to identify calls; ``user_id`` and
    ``anonymous_id`` to every call but alias; ``context`` and ``integrations`` to
    every call. ``consent`` (``{category: granted}``) becomes
    ``context.consent.categoryPreferences``. Nested blocks merge (see this
    module's docstring); ``fresh=True`` ignores the enclosing blocks.
    """
    return RequestContext(
        values_from(user_id, anonymous_id, traits, context, properties, integrations, consent),
        bool(fresh),
    )


# -- applying the values to one call -----------------------------------------------

# Where each builder takes each field (positions in the tuple the client passes
# it): user_id, anonymous_id, properties, traits, context, integrations; -1: none.
Slots = tuple[int, int, int, int, int, int]


def apply(args: tuple[Any, ...], slots: Slots, values: ContextValues) -> tuple[Any, ...]:
    """``args`` with the empty ones filled from ``values`` and the dicts merged under the call's."""
    filled = list(args)
    user_slot, anonymous_slot, properties_slot, traits_slot, context_slot, integrations_slot = slots
    if user_slot >= 0 and filled[user_slot] is None:
        filled[user_slot] = values.user_id
    if anonymous_slot >= 0 and filled[anonymous_slot] is None:
        filled[anonymous_slot] = values.anonymous_id
    if properties_slot >= 0 and values.properties:
        filled[properties_slot] = _under(values.properties, filled[properties_slot])
    if traits_slot >= 0 and values.traits:
        filled[traits_slot] = _under(values.traits, filled[traits_slot])
    if values.context:
        given = filled[context_slot]
        # The builder copies the context it is given, so the context's own dict is passed as is.
        filled[context_slot] = values.context if given is None else _under(values.context, given)
    if values.integrations:
        filled[integrations_slot] = _under(values.integrations, filled[integrations_slot])
    return tuple(filled)


def _under(base: Mapping[str, Any], given: Any) -> Any:
    """A new dict of ``base`` with the call's ``given`` over it (a copy: messages own their dicts)."""
    if given is None:
        return dict(base)
    if isinstance(given, Mapping):
        return {**base, **given}
    return given  # not a dict: the builder refuses it, naming the field
