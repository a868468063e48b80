"""Django middleware that tracks server-side pageviews, on sync and async stacks."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Callable, Optional

from segment_lite.errors import raise_if_framework_missing

try:
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured
    from django.utils.encoding import escape_uri_path
    from django.utils.module_loading import import_string
except ImportError as exc:
    raise_if_framework_missing(exc, integration=__name__, framework="django", extra="django")
    raise

from segment_lite.integrations.pageview import (
    PageClient,
    PageviewConfig,
    PageviewTracker,
    RequestInfo,
    Visit,
)

try:  # asgiref >= 3.6 (Django >= 4.2)
    from asgiref.sync import iscoroutinefunction, markcoroutinefunction
except ImportError:  # pragma: no cover - older asgiref
    iscoroutinefunction = asyncio.iscoroutinefunction  # type: ignore[assignment]

    def markcoroutinefunction(func: Any) -> Any:
        func._is_coroutine = asyncio.coroutines._is_coroutine  # type: ignore[attr-defined]
        return func


__all__ = ["SETTINGS_NAME", "SegmentPageviewMiddleware", "config_from_settings", "request_info"]

#: The Django setting read by the middleware: a dict of :class:`PageviewConfig` fields
#: (any letter case) plus ``CLIENT`` (a client or its dotted path) and ``TRACK_USER``.
SETTINGS_NAME = "SEGMENT_LITE"

_CALLABLE_OPTIONS = (
    "should_track",
    "title",
    "name",
    "category",
    "properties",
    "context",
    "user_id",
    "consent",
)


def config_from_settings(options: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
    """Read ``settings.SEGMENT_LITE`` into ``{"config", "client", "track_user"}``.

    Callable options and ``CLIENT`` may be given as dotted import paths.
    """
    if options is None:
        options = getattr(settings, SETTINGS_NAME, None) or {}
    if not isinstance(options, Mapping):
        raise ImproperlyConfigured(f"settings.{SETTINGS_NAME} must be a dict")
    remaining: dict[str, Any] = {}
    client: Any = None
    track_user = True
    for key, value in options.items():
        lowered = key.lower()
        if lowered == "client":
            client = import_string(value) if isinstance(value, str) else value
        elif lowered == "track_user":
            track_user = bool(value)
        elif lowered in _CALLABLE_OPTIONS and isinstance(value, str):
            remaining[lowered] = import_string(value)
        else:
            remaining[lowered] = value
    try:
        config = PageviewConfig.from_mapping(remaining)
    except (TypeError, ValueError) as exc:
        raise ImproperlyConfigured(f"settings.{SETTINGS_NAME}: {exc}") from exc
    return {"config": config, "client": client, "track_user": track_user}


def request_info(request: Any) -> RequestInfo:
    """Describe a Django ``HttpRequest``."""
    meta = request.META
    host = meta.get("HTTP_HOST")
    if not host:
        host = str(meta.get("SERVER_NAME", ""))
        port = str(meta.get("SERVER_PORT", ""))
        if port and port not in ("80", "443"):
            host = f"{host}:{port}"
    return RequestInfo(
        method=request.method or "GET",
        scheme=request.scheme or "http",
        host=host,
        path=escape_uri_path(request.path) or "/",
        query_string=meta.get("QUERY_STRING", "") or "",
        headers=request.headers,
        cookies=request.COOKIES,
        remote_addr=meta.get("REMOTE_ADDR") or None,
        request=request,
    )


def _user_id(user: Any) -> Optional[str]:
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    pk = getattr(user, "pk", None)
    return None if pk is None else str(pk)


class SegmentPageviewMiddleware:
    """Add ``"segment_lite.integrations.django.SegmentPageviewMiddleware"`` to ``MIDDLEWARE``.

    Place it after ``AuthenticationMiddleware`` so the logged-in user is known (with
    ``TRACK_USER`` on, the default, ``request.user.pk`` becomes ``userId``). Options come
    from ``settings.SEGMENT_LITE``. Works in both sync and async (ASGI) stacks; on the
    async stack the user is read with ``await request.auser()`` where Django has it.
    The visitor's anonymous id is available as ``request.segment_anonymous_id``. While the
    view runs, a ``segment_lite.context`` carrying the request's anonymous id, IP, user
    agent, page, campaign and locale is active (option ``REQUEST_CONTEXT``); with
    ``CONTEXT_USER_ID`` it carries ``request.user.pk`` as the user id too.
    """

    sync_capable = True
    async_capable = True

    def __init__(
        self,
        get_response: Callable[[Any], Any],
        *,
        config: Optional[PageviewConfig] = None,
        client: Optional[PageClient] = None,
        tracker: Optional[PageviewTracker] = None,
        track_user: Optional[bool] = None,
    ) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)
        from_settings = config_from_settings() if tracker is None and config is None else {}
        if tracker is None:
            tracker = PageviewTracker(
                config or from_settings["config"],
                client if client is not None else from_settings.get("client"),
            )
        self.tracker = tracker
        self.track_user = track_user if track_user is not None else from_settings.get("track_user", True)

    @property
    def errors(self) -> int:
        """How many tracking errors were caught (and logged) so far."""
        return self.tracker.errors

    def __call__(self, request: Any) -> Any:
        if self.is_async:
            return self.__acall__(request)
        visit = self._begin(request)
        scope = None
        if visit is not None and self.tracker.config.request_context:
            try:
                user = self._sync_user_id(request) if self.tracker.config.context_user_id else None
            except Exception as exc:
                self.tracker.record_error(exc, "reading the user for the request context")
                user = None
            scope = self.tracker.request_context(visit, user_id=user)
        if scope is None:
            response = self.get_response(request)
        else:
            with scope:
                response = self.get_response(request)
        if visit is not None:
            try:
                if self.tracker.should_track(visit, response.status_code, response.get("Content-Type")):
                    user_id = self._sync_user_id(request)
                    self._track(visit, response, user_id)
            except Exception as exc:
                self.tracker.record_error(exc)
        return response

    async def __acall__(self, request: Any) -> Any:
        visit = self._begin(request)
        scope = None
        if visit is not None and self.tracker.config.request_context:
            try:
                user = await self._async_user_id(request) if self.tracker.config.context_user_id else None
            except Exception as exc:
                self.tracker.record_error(exc, "reading the user for the request context")
                user = None
            scope = self.tracker.request_context(visit, user_id=user)
        if scope is None:
            response = await self.get_response(request)
        else:
            with scope:
                response = await self.get_response(request)
        if visit is not None:
            try:
                if self.tracker.should_track(visit, response.status_code, response.get("Content-Type")):
                    user_id = await self._async_user_id(request)
                    self._track(visit, response, user_id)
            except Exception as exc:
                self.tracker.record_error(exc)
        return response

    def _begin(self, request: Any) -> Optional[Visit]:
        try:
            visit = self.tracker.begin(request_info(request))
            request.segment_anonymous_id = visit.anonymous_id
            return visit
        except Exception as exc:
            self.tracker.record_error(exc, "pageview request inspection")
            return None

    def _wants_user(self) -> bool:
        return self.track_user and self.tracker.config.user_id is None

    def _sync_user_id(self, request: Any) -> Optional[str]:
        if not self._wants_user():
            return None
        return _user_id(getattr(request, "user", None))

    async def _async_user_id(self, request: Any) -> Optional[str]:
        if not self._wants_user():
            return None
        auser = getattr(request, "auser", None)
        if auser is not None:
            return _user_id(await auser())
        if not hasattr(request, "user"):
            return None
        from asgiref.sync import sync_to_async

        result: Optional[str] = await sync_to_async(_user_id)(request.user)
        return result

    def _track(self, visit: Visit, response: Any, user_id: Optional[str]) -> None:
        name = self.tracker.config.anonymous_id_cookie
        cookie = self.tracker.send_page(
            visit, user_id=user_id, response_sets_anonymous_id=name in response.cookies
        )
        if cookie is None:
            return
        cfg = self.tracker.config
        response.set_cookie(
            name,
            visit.anonymous_id,
            max_age=cfg.cookie_max_age,
            path=cfg.cookie_path,
            domain=cfg.cookie_domain,
            secure=cfg.cookie_secure,
            httponly=False,
            samesite=cfg.cookie_samesite,
        )
