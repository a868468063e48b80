"""A one-file Django site that tracks server-side pageviews with segment_lite.

    pip install ".[django]"                          # from the repository root
    segment-lite serve                               # terminal 1: a local collector, http://127.0.0.1:8787
    python examples/django_app/app.py runserver      # terminal 2: this site, http://127.0.0.1:8000/

Open http://127.0.0.1:8000/ in a browser and watch the "Home" page event arrive in the
collector. Follow the "Start a trial" link: its view calls ``segment_lite.track()`` with no
ids, and the "Trial Started" event carries the request's anonymousId, IP, user agent and
page, the same as the page call of that request (the middleware's request context).

curl counts as a bot and is not tracked: the site logs why it skipped each request
(``"DEBUG": True``). To try with curl, send a browser-like User-Agent:
``curl -A "Mozilla/5.0" http://127.0.0.1:8000/``.

Set SEGMENT_WRITE_KEY and SEGMENT_HOST to send elsewhere.
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

PAGE_NAMES = {"/": "Home", "/trial/": "Trial"}

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
            "NAME": lambda info: PAGE_NAMES.get(info.path),
            "TITLE": lambda info: PAGE_NAMES.get(info.path),
            "DEBUG": True,  # log why a request was not tracked (bot, static file, not a page...)
        },
    )
    django.setup()


def home(request: HttpRequest) -> HttpResponse:
    """The tracked page; the visitor's anonymous id is on the request."""
    return HttpResponse(
        '<!doctype html><title>Home</title><p><a href="/trial/">Start a trial</a></p>'
        f"<h1>Hello, {request.segment_anonymous_id}</h1>"
    )


def trial(request: HttpRequest) -> HttpResponse:
    """A view that tracks an event: no ids or request details passed, the request context adds them."""
    segment_lite.track(event="Trial Started", properties={"plan": "pro"})
    return HttpResponse("<!doctype html><title>Trial</title><h1>Your trial has started</h1>")


urlpatterns = [path("", home), path("trial/", trial)]

if __name__ == "__main__":
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
