"""The Django example of ``examples/redis_relay``: the relay command and the browser view."""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any

import pytest
from redis_fixtures import RedisServer

from aikit_transports.testing import StreamServer

django = pytest.importorskip("django")
pytest.importorskip("redis")

from django.conf import settings  # noqa: E402

if not settings.configured:  # test_django.py may have configured Django already
    settings.configure(  # LOGGING_CONFIG=None: see test_django.py
        DEBUG=False, ALLOWED_HOSTS=["*"], ROOT_URLCONF=__name__, USE_TZ=True, LOGGING_CONFIG=None
    )
    django.setup()

from django.core.management.base import CommandError  # noqa: E402
from django.test import RequestFactory, override_settings  # noqa: E402

from aikit_transports.contrib.redis import encode_end_marker, encode_envelope  # noqa: E402

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "redis_relay"
if str(EXAMPLE) not in sys.path:
    sys.path.insert(0, str(EXAMPLE))

from redis_feeds import views  # noqa: E402
from redis_feeds.management.commands.relay_feed import Command as RelayFeed  # noqa: E402

pytestmark = pytest.mark.redis

urlpatterns: list[Any] = []


def _feeds(redis: RedisServer, upstream: str = "http://127.0.0.1:9/none") -> Any:
    return override_settings(
        AIKIT_REDIS_URL=redis.url,
        AIKIT_REDIS_FEEDS={"market": {"url": upstream, "lease_ttl": 2.0}},
    )


def _blocks(response: Any) -> list[dict[str, str]]:
    """The SSE blocks of a finished streaming response, as ``{field: value}``."""
    body = b"".join(response.streaming_content).decode()
    blocks = []
    for chunk in body.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in chunk.splitlines() if ": " in line)
        if fields:
            blocks.append(fields)
    return blocks


def test_relay_command_relays_the_feed_into_redis(
    redis_server: RedisServer, redis_client: Any, stream_server: StreamServer
) -> None:
    out = io.StringIO()
    with _feeds(redis_server, stream_server.url("/sse?count=25&end=sentinel")):
        RelayFeed(stdout=out, stderr=io.StringIO()).handle(name="market")
    entries = redis_client.xrange("market")
    assert len(entries) == 26  # and the end marker
    assert entries[0][1][b"d"] == b"event 1" and entries[-1][1][b"end"] == b"done"
    assert "market: relaying" in out.getvalue() and "done; 25 events appended" in out.getvalue()
    with _feeds(redis_server), pytest.raises(CommandError, match="no feed 'other'"):
        RelayFeed(stdout=out).handle(name="other")


def test_view_resumes_from_the_browsers_last_event_id(
    redis_server: RedisServer, redis_client: Any
) -> None:
    ids = []
    for i in range(1, 6):
        flat = encode_envelope(f"event {i}", upstream_id=str(i))
        ids.append(redis_client.xadd("market", dict(zip(flat[::2], flat[1::2]))).decode())
    flat = encode_end_marker()
    redis_client.xadd("market", dict(zip(flat[::2], flat[1::2])))
    factory = RequestFactory()
    with _feeds(redis_server):
        response = views.feed(factory.get("/feeds/market/", HTTP_LAST_EVENT_ID=ids[1]), "market")
        assert response["Content-Type"].startswith("text/event-stream")
        blocks = _blocks(response)
        assert [(b["id"], b["data"]) for b in blocks] == [
            (ids[i], f"event {i + 1}") for i in range(2, 5)
        ]
        replay = views.feed(factory.get("/feeds/market/?last_event_id=0"), "market")
        assert [b["data"] for b in _blocks(replay)] == [f"event {i}" for i in range(1, 6)]
        bad = views.feed(factory.get("/feeds/market/", HTTP_LAST_EVENT_ID="x"), "market")
        assert bad.status_code == 400
        with pytest.raises(django.http.Http404):
            views.feed(factory.get("/feeds/nope/"), "nope")
