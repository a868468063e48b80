"""Consent preferences: reading them from a consent platform's cookie, and telling Segment they changed.

Segment's format is ``context.consent.categoryPreferences``: ``{categoryId: granted}``.
A client stamps it on every message from its ``consent`` option or from
``segment_lite.context(consent=...)``; the web integrations read it per request
through their ``consent`` option, e.g. :func:`onetrust_consent`. See docs/privacy.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable, Optional
from urllib.parse import parse_qsl

from segment_lite.errors import ValidationError
from segment_lite.scope import consent_preferences

__all__ = [
    "CONSENT_UPDATED_EVENT",
    "ONETRUST_COOKIE",
    "onetrust_consent",
    "parse_onetrust_cookie",
    "send_consent_updated",
]

#: The track event Segment (Unify) reads to store consent preferences on a profile.
CONSENT_UPDATED_EVENT = "Segment Consent Preference Updated"
#: The cookie OneTrust's banner keeps the visitor's choices in.
ONETRUST_COOKIE = "OptanonConsent"


def parse_onetrust_cookie(
    value: Optional[str], group_categories: Optional[Mapping[str, str]] = None
) -> Optional[dict[str, bool]]:
    """The category preferences in an ``OptanonConsent`` cookie value, or None if it has none.

    The cookie is URL-encoded ``key=value&...`` pairs; ``groups`` lists
    ``groupId:1`` (granted) or ``groupId:0`` (refused), comma-separated:
    ``groups=C0001%3A1%2CC0002%3A0``. ``group_categories`` maps OneTrust group ids
    to the category ids configured in Segment (``{"C0002": "Analytics"}``); a group
    it does not name keeps its OneTrust id (Segment's OneTrust wrapper uses the ids
    as they are). Malformed entries are skipped: a bad cookie never fails a request.
    """
    if not value:
        return None
    groups: Optional[str] = None
    for key, field in parse_qsl(value, keep_blank_values=True):
        if key == "groups":
            groups = field
            break
    if groups is None:
        return None
    preferences: dict[str, bool] = {}
    for entry in groups.split(","):
        group, sep, flag = entry.strip().partition(":")
        if not sep or not group or flag not in ("0", "1"):
            continue
        category = group if group_categories is None else group_categories.get(group, group)
        preferences[category] = flag == "1"
    return preferences or None


def onetrust_consent(
    group_categories: Optional[Mapping[str, str]] = None, cookie_name: str = ONETRUST_COOKIE
) -> Callable[[Any], Optional[dict[str, bool]]]:
    """A ``consent`` option for the web integrations that reads OneTrust's cookie.

    ``SegmentPageviewMiddleware(app, consent=onetrust_consent({"C0002": "Analytics"}))``:
    each request's calls (its page call included) carry the preferences found in
    the request's ``OptanonConsent`` cookie; a request without one carries none.
    """
    if group_categories is not None and not isinstance(group_categories, Mapping):
        raise ValidationError(
            f"group_categories must be a dict of OneTrust group id -> category, "
            f"got {type(group_categories).__name__}",
            "group_categories",
        )
    mapping = None if group_categories is None else dict(group_categories)

    def read(request_info: Any) -> Optional[dict[str, bool]]:
        return parse_onetrust_cookie(request_info.cookies.get(cookie_name), mapping)

    return read


def send_consent_updated(
    client: Any,
    preferences: Mapping[str, bool],
    user_id: Any = None,
    anonymous_id: Any = None,
    *,
    properties: Optional[Mapping[str, Any]] = None,
    context: Optional[Mapping[str, Any]] = None,
) -> Any:
    """Send the "Segment Consent Preference Updated" track event Unify expects when preferences change.

    ``client`` is a ``Client`` or the ``segment_lite`` module. The preferences go in
    ``context.consent.categoryPreferences`` (over any consent an active context or
    the client would stamp); returns what ``client.track`` returns.
    """
    checked = consent_preferences(preferences, "preferences")
    merged_context = dict(context or {})
    merged_context["consent"] = {"categoryPreferences": checked}
    return client.track(
        user_id,
        CONSENT_UPDATED_EVENT,
        dict(properties or {}),
        merged_context,
        anonymous_id=anonymous_id,
    )
