"""The feeds this app relays, from ``settings.AIKIT_REDIS_FEEDS``::

AIKIT_REDIS_URL = "redis://redis.internal:6379/0"
AIKIT_REDIS_FEEDS = {
    # name: the stream's name in Redis, and the URL path segment of the browser view
    "market": {
        "url": "https://feed.example.com/v1/stream",   # the upstream
        "wire": "sse",                                 # or "websocket", "http-stream"
        "headers": {"Authorization": "Bearer ..."},    # sent upstream (never logged)
        "maxlen": 100_000,                             # entries kept (MAXLEN ~)
        "lease_ttl": 10.0,                             # takeover time when a relay dies
    },
}
"""

from __future__ import annotations

from typing import Any, Dict

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


def redis_url() -> str:
    """``settings.AIKIT_REDIS_URL``."""
    url = getattr(settings, "AIKIT_REDIS_URL", None)
    if not url:
        raise ImproperlyConfigured("set AIKIT_REDIS_URL, e.g. 'redis://localhost:6379/0'")
    return str(url)


def feed(name: str) -> Dict[str, Any]:
    """The settings of one feed; ``KeyError`` for a name that is not configured."""
    feeds = getattr(settings, "AIKIT_REDIS_FEEDS", {})
    return dict(feeds[name])
