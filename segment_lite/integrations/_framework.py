"""Turn a framework integration's failed framework import into one error that names the extra."""

from __future__ import annotations

from segment_lite.errors import FrameworkNotInstalledError


def raise_if_framework_missing(exc: ImportError, *, integration: str, framework: str, extra: str) -> None:
    """Raise :class:`FrameworkNotInstalledError` if ``exc`` says the framework itself is missing.

    ``framework`` is the framework's top-level module (``django``); ``exc`` comes from
    importing it. Any other import failure (a broken install, a missing dependency of
    the framework) returns, and the caller re-raises it unchanged.
    """
    missing = (exc.name or "").partition(".")[0]
    if isinstance(exc, ModuleNotFoundError) and missing == framework:
        # One error, not two chained tracebacks; the original stays on __context__.
        display_name = _DISPLAY_NAMES.get(framework, framework)
        raise FrameworkNotInstalledError(integration, display_name, extra) from None


_DISPLAY_NAMES = {
    "django": "Django",
    "flask": "Flask",
    "celery": "Celery",
    "fastapi": "FastAPI",
    "prometheus_client": "prometheus_client",
    "opentelemetry": "opentelemetry-api",
}
