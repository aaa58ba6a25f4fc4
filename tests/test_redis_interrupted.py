"""The relay follows "never repeat" (issue 14, SPEC §3) end to end: real ``redis-server``, real
SSE server. An upstream that ends with ``StreamInterrupted`` ends the stream with it, for the
relay and every reader; a standby never sends a POST again unless the stream can resume.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Optional

import pytest
from redis_fixtures import RedisServer

from aikit_transports import (
    ReconnectPolicy,
    SSETransport,
    StreamInterrupted,
    TransportError,
    TransportState,
)
from aikit_transports.emitter import EventEmitter
from aikit_transports.testing import RecordedRequest, StreamServer, StreamWriter
from aikit_transports.transports.base import EOF_

pytest.importorskip("redis")

from aikit_transports.contrib.redis import RedisRelay, RedisStreamTransport  # needs redis-py

pytestmark = pytest.mark.redis

FAST = ReconnectPolicy(max_attempts=None, initial_delay=0.05, max_delay=0.5)


class CutIsFinal(SSETransport):
    """An SSE transport that ends with ``StreamInterrupted`` when its stream is cut, as one
    whose request may not be sent again does (SPEC §3)."""

    shared_io = False  # its own ``_read`` reads the stream, on a reader thread

    def _read(self) -> str:
        try:
            outcome = super()._read()
        except TransportError as exc:
            raise StreamInterrupted(
                f"the POST stream was cut after {self._m.messages_received} events",
                events_delivered=self._m.messages_received,
            ) from exc
        if outcome == EOF_:
            raise StreamInterrupted(
                f"the POST stream was cut after {self._m.messages_received} events",
                events_delivered=self._m.messages_received,
            )
        return outcome


def _events(count: int, then: Callable[[StreamWriter], None]) -> Any:
    """A route: ``count`` SSE events without ids (``event 1``, ...), then ``then(writer)``."""

    def route(request: RecordedRequest, writer: StreamWriter) -> None:
        writer.send_status(200, {"Content-Type": "text/event-stream"})
        writer.write("".join(f"data: event {i}\n\n" for i in range(1, count + 1)).encode())
        then(writer)

    return route


def reader(server: RedisServer, **kw: Any) -> RedisStreamTransport:
    return RedisStreamTransport(server.url, "s", block_ms=200, reconnect=FAST, **kw)


def read_until_failure(t: RedisStreamTransport) -> tuple[list[str], StreamInterrupted]:
    """What ``t`` delivers, and the error its iterator raises after."""
    got: list[str] = []
    with pytest.raises(StreamInterrupted) as raised:
        for event in t.iter_events(timeout=20):
            got.append(event.data)
    return got, raised.value


def test_an_interrupted_upstream_stops_the_relay_and_its_readers_fail_alike(
    redis_server: RedisServer, stream_server: StreamServer, relays: list[RedisRelay]
) -> None:
    stream_server.route("/cut", _events(5, lambda writer: writer.close_abruptly()))
    url = stream_server.url("/cut")
    relay = RedisRelay(CutIsFinal(url, method="POST", json={"q": 1}), redis_server.url, "s")
    relays.append(relay)
    errors: list[TransportError] = []
    closed: list[str] = []
    relay.on("error", errors.append)
    relay.on("closed", closed.append)
    with pytest.raises(StreamInterrupted) as info:
        relay.run()
    assert relay.state == "failed" and closed == ["failed"]
    assert errors == [info.value] and relay.metrics.events_out == 5
    for t in (reader(redis_server, last_event_id="0"), reader(redis_server, group="g")):
        reasons: list[str] = []
        ended = threading.Event()
        t.on(
            "closed",
            lambda reason, reasons=reasons, ended=ended: (reasons.append(reason), ended.set()),
        )
        got, error = read_until_failure(t)
        assert got == [f"event {i}" for i in range(1, 6)]
        assert error.message == info.value.message == "the POST stream was cut after 5 events"
        assert ended.wait(5) and reasons == ["failed"] and t.state is TransportState.ERROR
        t.close()
    later = RedisRelay(CutIsFinal(url, method="POST", json={"q": 1}), redis_server.url, "s")
    relays.append(later)
    later.run()  # the stream is over: nothing to relay, nothing sent
    assert later.state == "done" and len(stream_server.requests) == 1


def test_a_standby_never_sends_a_post_again(
    redis_server: RedisServer,
    stream_server: StreamServer,
    relays: list[RedisRelay],
    wait_until: Any,
) -> None:
    release = threading.Event()
    stream_server.route("/post", _events(3, lambda writer: release.wait(30)))
    url = stream_server.url("/post")

    def factory(last_id: Optional[str]) -> SSETransport:
        return SSETransport(url, method="POST", json={"q": 1}, last_event_id=last_id)

    first = RedisRelay(factory, redis_server.url, "s", lease_ttl=1.0, id="first")
    second = RedisRelay(factory, redis_server.url, "s", lease_ttl=1.0, id="second")
    relays += [first, second]
    errors: list[TransportError] = []
    second.on("error", errors.append)
    try:
        first.start()
        wait_until(lambda: first.metrics.events_out == 3)
        second.start()
        wait_until(lambda: second.state == "standby")
        first.close()  # releases the lease: the standby takes it at once
        assert second.wait(10) and second.state == "failed"
    finally:
        release.set()
    assert len(errors) == 1 and isinstance(errors[0], StreamInterrupted)
    assert "may not be sent again" in errors[0].message
    assert second.metrics.lease_acquisitions == 1 and second.metrics.events_out == 0
    assert [r.method for r in stream_server.requests] == ["POST"]  # sent once, by the first
    t = reader(redis_server, last_event_id="0")
    got, error = read_until_failure(t)
    assert got == ["event 1", "event 2", "event 3"] and error.message == errors[0].message
    t.close()


def test_a_standby_resumes_a_post_stream_that_has_ids(
    redis_server: RedisServer,
    stream_server: StreamServer,
    relays: list[RedisRelay],
    wait_until: Any,
) -> None:
    url = stream_server.url("/sse?count=200&delay=0.005&end=sentinel")

    def factory(last_id: Optional[str]) -> SSETransport:
        return SSETransport(
            url, method="POST", json={"q": 1}, last_event_id=last_id, reconnect=FAST
        )

    first = RedisRelay(factory, redis_server.url, "s", lease_ttl=1.0, id="first")
    second = RedisRelay(factory, redis_server.url, "s", lease_ttl=1.0, id="second")
    relays += [first, second]
    first.start()
    wait_until(lambda: first.metrics.events_out >= 20)
    second.start()
    wait_until(lambda: second.state == "standby")
    first.close()
    assert second.wait(20) and second.state == "done"
    t = reader(redis_server, last_event_id="0")
    assert [e.data for e in t.iter_events(timeout=20)] == [f"event {i}" for i in range(1, 201)]
    t.close()
    posts = [r for r in stream_server.requests if r.method == "POST"]
    assert len(posts) == 2  # sent again only because it resumes after the last id
    after = int(posts[1].headers["Last-Event-ID"])  # the last upstream id in the stream
    assert second.metrics.events_out == 200 - after and second.metrics.events_skipped == 0


def test_relay_on_checks_the_name_and_has_a_decorator_form() -> None:
    relay = RedisRelay.__new__(RedisRelay)  # no Redis needed to register listeners
    relay._emitter = EventEmitter(lambda exc, name: None)
    with pytest.raises(ValueError, match="did you mean 'closed'"):
        relay.on("close", lambda reason: None)

    @relay.on("lease")
    def on_lease(held: bool) -> None: ...

    assert relay._emitter.has_listeners("lease")
