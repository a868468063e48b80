"""Server-side pageview tracking for web frameworks; adapters live in their own modules.

Import an adapter from its module so only that framework is imported:
``segment_lite.integrations.wsgi``, ``.asgi`` (Starlette/FastAPI), ``.django``, ``.flask``
and ``.celery``. This package itself imports no framework. Importing an adapter whose
framework is not installed raises :class:`FrameworkNotInstalledError` (an ``ImportError``)
naming the extra to install, e.g. ``pip install "segment-lite[django]"``.
"""

from __future__ import annotations

from segment_lite.errors import FrameworkNotInstalledError
from segment_lite.integrations.pageview import (
    DEFAULT_BOT_USER_AGENTS,
    DEFAULT_CONTENT_TYPES,
    DEFAULT_EXCLUDE_PATHS,
    DEFAULT_HEALTH_PATHS,
    DEFAULT_STATIC_EXTENSIONS,
    PageClient,
    PageviewConfig,
    PageviewTracker,
    RequestInfo,
    Visit,
    anonymous_id_cookie_header,
    build_page_call,
    client_ip,
    decode_ajs_cookie,
    parse_cookie_header,
)

__all__ = [
    "DEFAULT_BOT_USER_AGENTS",
    "DEFAULT_CONTENT_TYPES",
    "DEFAULT_EXCLUDE_PATHS",
    "DEFAULT_HEALTH_PATHS",
    "DEFAULT_STATIC_EXTENSIONS",
    "FrameworkNotInstalledError",
    "PageClient",
    "PageviewConfig",
    "PageviewTracker",
    "RequestInfo",
    "Visit",
    "anonymous_id_cookie_header",
    "build_page_call",
    "client_ip",
    "decode_ajs_cookie",
    "parse_cookie_header",
]
