"""Two ways to relay an upstream stream to browsers as Server-Sent Events."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from aikit_transports import BufferConfig, ReconnectPolicy, SSETransport, TransportError
from aikit_transports.contrib.django import get_manager, sse_response


def completion(request: HttpRequest) -> HttpResponse:
    """One upstream stream per browser (an LLM completion), closed when it leaves."""
    upstream = SSETransport(
        settings.AIKIT_COMPLETION_URL,
        method="POST",
        json={"prompt": request.GET.get("prompt", "Hello")},
        headers={"Authorization": f"Bearer {settings.AIKIT_UPSTREAM_TOKEN}"},
        # A browser's EventSource sends the last id it got when it reconnects.
        last_event_id=request.headers.get("Last-Event-ID"),
        reconnect=ReconnectPolicy(max_attempts=3),
    )
    try:
        return sse_response(upstream)  # connects first: errors come before any byte
    except TransportError:
        return HttpResponse("the upstream service is unavailable", status=502)


def feed(request: HttpRequest) -> HttpResponse:
    """One upstream stream shared by every browser of this process."""
    upstream = get_manager().get_or_create(
        "sse",
        settings.AIKIT_FEED_URL,
        # Each browser has its own buffer: a slow one loses old events, not the others.
        buffer=BufferConfig(max_size=100, strategy="drop-oldest"),
        reconnect=ReconnectPolicy(max_attempts=None),
    )
    return sse_response(upstream, close_source=False)
