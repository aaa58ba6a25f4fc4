"""Serve a relayed feed to browsers as Server-Sent Events, from Redis.

Every worker process reads the Redis Stream (no upstream connection per worker); a browser that
reconnects sends the ``Last-Event-ID`` it saw (the stream's entry id), so it resumes exactly
where it stopped, on any worker of any host. ``EventSource`` sends it by itself on reconnects;
a page that starts over can pass ``?last_event_id=...`` (``0`` replays what Redis keeps).
"""

from __future__ import annotations

import re

from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest

from aikit_transports import ReconnectPolicy, TransportError
from aikit_transports.contrib.django import sse_response
from aikit_transports.contrib.redis import RedisStreamTransport

from . import conf

_ENTRY_ID = re.compile(r"\A(?:\$|\d+(?:-\d+)?)\Z")


def feed(request: HttpRequest, name: str) -> HttpResponse:
    """``GET /feeds/<name>/``: the feed's events, from the browser's ``Last-Event-ID`` on."""
    try:
        conf.feed(name)
    except KeyError:
        raise Http404(f"no feed {name!r}") from None
    start = request.headers.get("Last-Event-ID") or request.GET.get("last_event_id") or "$"
    if not _ENTRY_ID.match(start):
        return HttpResponseBadRequest("Last-Event-ID must be a stream entry id")
    source = RedisStreamTransport(
        conf.redis_url(),
        name,
        last_event_id=start,
        block_ms=5000,
        # bounded: a browser whose stream ends reconnects by itself, with its Last-Event-ID
        reconnect=ReconnectPolicy(max_attempts=3, initial_delay=0.2, max_delay=2.0),
    )
    try:
        return sse_response(source)  # connects first: Redis being down is a 503, not a hang
    except TransportError:
        return HttpResponse("the feed is unavailable", status=503)
