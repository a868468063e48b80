"""Flask extension that tracks server-side pageviews with ``after_request``."""

from __future__ import annotations

from typing import Any, Optional

from segment_lite.errors import InvalidStateError, raise_if_framework_missing

try:
    from flask import current_app, g, request
except ImportError as exc:
    raise_if_framework_missing(exc, integration=__name__, framework="flask", extra="flask")
    raise

from segment_lite.integrations.pageview import (
    PageClient,
    PageviewConfig,
    PageviewTracker,
    Visit,
    response_sets_cookie,
)
from segment_lite.integrations.wsgi import request_info_from_environ

__all__ = ["CONFIG_KEY", "EXTENSION_KEY", "SegmentPageviews"]

#: ``app.config`` key holding a dict of :class:`PageviewConfig` fields (any letter case).
CONFIG_KEY = "SEGMENT_LITE"
#: ``app.extensions`` key under which each app's :class:`PageviewTracker` is stored.
EXTENSION_KEY = "segment_lite"

_VISIT_ATTR = "_segment_lite_visit"
_SCOPE_ATTR = "_segment_lite_request_context"


class SegmentPageviews:
    """Flask extension: ``SegmentPageviews(app)`` or ``ext = SegmentPageviews(); ext.init_app(app)``.

    Options: a :class:`PageviewConfig` and/or its fields as keyword arguments, which win
    over ``app.config["SEGMENT_LITE"]`` (a dict of the same fields). ``client`` defaults to
    the ``segment_lite`` module's default client. Views can read the visitor's anonymous id
    as ``flask.g.segment_anonymous_id``. From ``before_request`` to ``teardown_request`` a
    ``segment_lite.context`` carrying the request's anonymous id, IP, user agent, page,
    campaign and locale is active (option ``request_context``); with ``context_user_id``
    it carries Flask-Login's ``current_user.get_id()`` as the user id too.
    """

    def __init__(
        self,
        app: Any = None,
        config: Optional[PageviewConfig] = None,
        *,
        client: Optional[PageClient] = None,
        **options: Any,
    ) -> None:
        self.config = config
        self.client = client
        self.options: dict[str, Any] = dict(options)
        self._last_tracker: Optional[PageviewTracker] = None
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Any) -> None:
        """Register the request hooks on ``app`` and build its tracker."""
        from_app = app.config.get(CONFIG_KEY) or {}
        base = self.config or PageviewConfig.from_mapping(from_app)
        config = base.replace(**self.options) if self.options else base
        tracker = PageviewTracker(config, self.client)
        app.extensions[EXTENSION_KEY] = tracker
        self._last_tracker = tracker
        app.before_request(self._before_request)
        app.after_request(self._after_request)
        app.teardown_request(self._teardown_request)

    @property
    def tracker(self) -> PageviewTracker:
        """The tracker of the current app (or of the last app initialised, outside a request)."""
        tracker: Optional[PageviewTracker] = None
        try:
            tracker = current_app.extensions.get(EXTENSION_KEY)
        except RuntimeError:  # no app context
            pass
        tracker = tracker or self._last_tracker
        if tracker is None:
            raise InvalidStateError("SegmentPageviews.init_app(app) has not been called")
        return tracker

    @property
    def errors(self) -> int:
        """How many tracking errors were caught (and logged) so far."""
        return self.tracker.errors

    def _visit(self, tracker: PageviewTracker) -> Optional[Visit]:
        visit: Optional[Visit] = getattr(g, _VISIT_ATTR, None)
        if visit is None:
            try:
                visit = tracker.begin(request_info_from_environ(request.environ, request))
            except Exception as exc:
                tracker.record_error(exc, "pageview request inspection")
                return None
            setattr(g, _VISIT_ATTR, visit)
            g.segment_anonymous_id = visit.anonymous_id
        return visit

    def _before_request(self) -> None:
        tracker: PageviewTracker = current_app.extensions[EXTENSION_KEY]
        visit = self._visit(tracker)
        if visit is None or not tracker.config.request_context:
            return
        user = _flask_login_user(tracker) if tracker.config.context_user_id else None
        scope = tracker.request_context(visit, user_id=user)
        if scope is not None:
            scope.__enter__()
            setattr(g, _SCOPE_ATTR, scope)

    def _teardown_request(self, exc: Optional[BaseException] = None) -> None:
        scope = g.pop(_SCOPE_ATTR, None)
        if scope is not None:
            try:
                scope.__exit__(None, None, None)
            except (ValueError, RuntimeError):  # entered elsewhere, or an inner block left open
                pass

    def _after_request(self, response: Any) -> Any:
        tracker: PageviewTracker = current_app.extensions[EXTENSION_KEY]
        try:
            visit = self._visit(tracker)
            if visit is not None:
                name = tracker.config.anonymous_id_cookie
                cookie = tracker.finish(
                    visit,
                    response.status_code,
                    response.headers.get("Content-Type"),
                    response_sets_anonymous_id=response_sets_cookie(
                        response.headers.getlist("Set-Cookie"), name
                    ),
                )
                if cookie is not None:
                    response.headers.add("Set-Cookie", cookie)
        except Exception as exc:
            tracker.record_error(exc)
        return response


def _flask_login_user(tracker: PageviewTracker) -> Optional[str]:
    """Flask-Login's authenticated user id, when Flask-Login is installed and set up; else None."""
    try:
        from flask_login import current_user  # type: ignore[import-untyped]
    except ImportError:
        return None
    try:
        if not current_user or not current_user.is_authenticated:
            return None
        user_id = current_user.get_id()
    except Exception as exc:  # no LoginManager on this app, or a failing user loader
        tracker.record_error(exc, "reading Flask-Login's current_user for the request context")
        return None
    return None if user_id is None else str(user_id)
