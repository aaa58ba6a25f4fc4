"""Hostile HTTP servers: bounded time, no crash, no request storm (raw sockets on 127.0.0.1).

These check lower bounds the library itself enforces (a deadline that fires, a pause that is at
least so long), never how fast the machine is.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from aikit_transports import (
    ConnectError,
    HTTPStatusError,
    HTTPStreamTransport,
    ProtocolError,
    ReconnectFailed,
    ReconnectPolicy,
    SSETransport,
    TransportState,
)
from aikit_transports.testing import RawPeer, RawServer, StreamServer
from aikit_transports.testing.exchange import RecordedRequest, StreamWriter

WIRES: list[Any] = [SSETransport, HTTPStreamTransport]
HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nX-Slow: " + b"y" * 40 + b"\r\n\r\n"


@pytest.mark.parametrize("wire", WIRES)
def test_a_trickled_response_head_is_bounded_by_timeout(wire: Any) -> None:
    def trickle(conn: RawPeer) -> None:
        conn.trickle(HEAD, every=0.2)

    with RawServer(trickle) as server:
        t = wire(server.url("/s"), timeout=1.0, reconnect=False)
        with pytest.raises(ReconnectFailed) as info:
            t.connect()
        health = t.health()
        t.close()
    cause = info.value.__cause__
    assert isinstance(cause, ConnectError)
    assert "timed out after 1 s waiting for the response headers" in cause.message
    assert health.status == "unhealthy" and health.state is TransportState.ERROR


@pytest.mark.parametrize("wire", WIRES)
def test_a_header_line_that_never_ends_fails_at_once(wire: Any) -> None:
    def flood(conn: RawPeer) -> None:
        conn.send(b"HTTP/1.1 200 OK\r\nX-Endless: ")
        chunk = b"z" * 65536
        while not conn.stop.is_set() and conn.send(chunk):
            pass

    with RawServer(flood) as server:
        t = wire(server.url("/s"), timeout=5.0, reconnect=ReconnectPolicy(max_attempts=3))
        with pytest.raises(ProtocolError) as info:
            t.connect()
        t.close()
        assert len(server.peers) == 1  # not retried: no request storm
    assert "response head" in info.value.message and "too long" in info.value.message


@pytest.mark.parametrize("wire", WIRES)
@pytest.mark.parametrize(
    ("value", "shown"), [("99999999999", "99999999999 s"), ("Fri, 31 Dec 9999 23:59:59 GMT", " s")]
)
def test_an_absurd_retry_after_fails_at_once_without_a_crash(
    stream_server: StreamServer, wire: Any, value: str, shown: str
) -> None:
    def route(request: RecordedRequest, writer: StreamWriter) -> None:
        writer.send_text(503, "busy", {"Retry-After": value})

    stream_server.route("/busy", route)
    t = wire(stream_server.url("/busy"))
    with pytest.raises(HTTPStatusError) as info:
        t.connect()
    t.close()
    assert info.value.status_code == 503 and not info.value.retryable
    assert "Retry-After" in info.value.message and "max_retry_after" in info.value.message
    assert shown in info.value.message
    assert len(stream_server.requests) == 1
    assert info.value.body == "busy" and info.value.headers["Retry-After"] == value


def test_a_retry_after_within_max_retry_after_is_waited_for(stream_server: StreamServer) -> None:
    calls: list[int] = []

    def route(request: RecordedRequest, writer: StreamWriter) -> None:
        calls.append(1)
        if len(calls) == 1:
            writer.send_text(429, "slow down", {"Retry-After": "1"})
            return
        writer.send_status(204)

    stream_server.route("/slow", route)
    delays: list[float] = []
    t = SSETransport(stream_server.url("/slow"), reconnect=ReconnectPolicy(max_retry_after=1))
    t.on("reconnecting", lambda attempt, delay, error: delays.append(delay))
    done = threading.Event()
    t.on("done", done.set)
    t.connect()
    assert done.wait(5)
    t.close()
    assert len(delays) == 1 and 1.0 <= delays[0] <= 1.5


def test_long_poll_empty_answers_back_off_instead_of_a_storm(stream_server: StreamServer) -> None:
    arrivals: list[float] = []
    six = threading.Event()

    def route(request: RecordedRequest, writer: StreamWriter) -> None:
        arrivals.append(time.monotonic())
        if len(arrivals) >= 6:
            six.set()
        writer.send_status(204)

    stream_server.route("/empty", route)
    policy = ReconnectPolicy(max_delay=0.4)
    t = HTTPStreamTransport(stream_server.url("/empty"), mode="long-poll", reconnect=policy)
    t.connect()
    assert six.wait(10)
    t.close()
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:])]
    # at least 0.1, 0.2, 0.4, then max_delay: the default poll_interval=0 made ~1,130 req/s
    for gap, least in zip(gaps, [0.1, 0.2, 0.4, 0.4, 0.4]):
        assert gap >= least - 0.02


def test_long_poll_pause_resets_after_a_message() -> None:
    t = HTTPStreamTransport("http://127.0.0.1:9/p", mode="long-poll")
    t._poll_started = time.monotonic()
    assert [t._pause_after_poll(False) for _ in range(4)] == [0.1, 0.2, 0.4, 0.8]
    assert t._pause_after_poll(True) == 0.0
    assert t._pause_after_poll(False) == 0.1
    t._poll_started = time.monotonic() - 2  # a poll the server held: no pause of ours
    assert t._pause_after_poll(False) == t.poll_interval == 0.0
    t.close()


def test_retry_zero_and_a_cut_after_every_event_start_at_most_ten_attempts_a_second(
    stream_server: StreamServer,
) -> None:
    url = stream_server.url("/sse?count=25&drop_every=1&retry=0")
    policy = ReconnectPolicy(initial_delay=0, jitter=0, max_attempts=None)
    started = time.monotonic()
    with SSETransport(url, reconnect=policy) as t:
        events = list(t.iter_events(timeout=10))
    elapsed = time.monotonic() - started
    assert [e.id for e in events] == [str(i) for i in range(1, 26)]
    # 26 connection attempts (25 cut after one event each, then the final 204): at most ten
    # start in any one second, so the 21st starts at least 2 s after the first (a lower bound
    # the library enforces; without the cap this took a few milliseconds)
    assert len(stream_server.requests) == 26
    assert elapsed >= 2.0
