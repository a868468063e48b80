"""A one-file Django site that tracks server-side pageviews with segment_lite.

Run a local collector (``segment-lite serve``, at http://127.0.0.1:8787), then:

    python examples/django_app/app.py runserver

Open http://127.0.0.1:8000/ and watch the page event arrive. Set SEGMENT_WRITE_KEY and
SEGMENT_HOST (unset for Segment itself) to send elsewhere.
"""

from __future__ import annotations

import os
import sys

import django
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.urls import path

import segment_lite

segment_lite.write_key = os.environ.get("SEGMENT_WRITE_KEY", "local-dev-write-key")
segment_lite.host = os.environ.get("SEGMENT_HOST", "http://127.0.0.1:8787")

if not settings.configured:
    settings.configure(
        DEBUG=True,
        SECRET_KEY="example-only-not-secret",
        ALLOWED_HOSTS=["127.0.0.1", "localhost", "testserver"],
        ROOT_URLCONF=__name__,
        MIDDLEWARE=[
            # after AuthenticationMiddleware in a real project, so request.user becomes userId
            "segment_lite.integrations.django.SegmentPageviewMiddleware",
        ],
        SEGMENT_LITE={
            "TRUSTED_PROXIES": [],  # e.g. ["10.0.0.0/8"] behind a load balancer
            "TITLE": lambda info: "Home" if info.path == "/" else None,
        },
    )
    django.setup()


def home(request: HttpRequest) -> HttpResponse:
    """The tracked page; the visitor's anonymous id is on the request."""
    return HttpResponse(f"<!doctype html><title>Home</title><h1>Hello, {request.segment_anonymous_id}</h1>")


urlpatterns = [path("", home)]

if __name__ == "__main__":
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
