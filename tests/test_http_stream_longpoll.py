"""HTTPStreamTransport with mode="long-poll", end to end against the local server."""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, NamedTuple, Optional

import pytest
from faultkit import connect_in_background

from aikit_transports import (
    Event,
    HeartbeatTimeout,
    HTTPStatusError,
    HTTPStreamTransport,
    ProtocolError,
    ReconnectPolicy,
    TransportClosedError,
    TransportError,
    TransportManager,
    TransportState,
)
from aikit_transports.testing import StreamServer
from aikit_transports.testing.endpoints import LongPoll
from aikit_transports.testing.exchange import RecordedRequest, StreamWriter

FAST = ReconnectPolicy(initial_delay=0, jitter=0, max_attempts=5)


class Poll(NamedTuple):
    """One poll as the server saw it."""

    connection: str  # the server thread serving the connection: one per TCP connection
    cursor: Optional[str]  # Last-Event-ID
    status: Optional[int]


class RecordingPoll:
    """The built-in ``/poll`` endpoint, recording each poll; ``script[n]`` (1-based) replaces
    the answer to the n-th poll: an int is a status to answer, ``"hold"`` waits for the client
    to go away."""

    def __init__(self, script: Optional[dict[int, Any]] = None) -> None:
        self.polls: list[Poll] = []
        self.script = script or {}
        self._inner = LongPoll()
        self._lock = threading.Lock()
        self._arrived = 0

    def __call__(self, request: RecordedRequest, writer: StreamWriter) -> None:
        with self._lock:
            self._arrived += 1
            number = self._arrived
        action = self.script.get(number)
        if action == "hold":
            writer.hold(timeout=10)
            writer.close_abruptly()
        elif isinstance(action, int):
            writer.send_text(action, f"status {action}")
        else:
            self._inner(request, writer)
        with self._lock:  # in the order the answers ended
            self.polls.append(
                Poll(
                    threading.current_thread().name,
                    request.headers.get("Last-Event-ID"),
                    writer.status,
                )
            )


def ids(events: list[Event]) -> list[int]:
    return [int(e.id or 0) for e in events]


def take(t: HTTPStreamTransport, n: int) -> list[Event]:
    it = t.iter_events(timeout=10)
    return [next(it) for _ in range(n)]


@pytest.mark.parametrize("chunked", [0, 1], ids=["content-length", "chunked"])
def test_polls_with_204s_and_a_cursor_over_one_kept_alive_connection(
    stream_server: StreamServer, chunked: int
) -> None:
    poll = RecordingPoll()
    stream_server.route("/lp", poll)
    url = stream_server.url(f"/lp?count=30&per_poll=4&batch=3&empty_polls=3&chunked={chunked}")
    connected: list[int] = []
    t = HTTPStreamTransport(url, mode="long-poll", poll_interval=0.01, reconnect=FAST)
    t.on("connected", lambda: connected.append(1))
    events = take(t, 30)
    assert t.state is TransportState.CONNECTED and t.health().status == "healthy"
    t.close()

    assert ids(events) == list(range(1, 31))
    assert [e.data for e in events[:2]] == [
        {"id": 1, "data": "line 1"},
        {"id": 2, "data": "line 2"},
    ]
    polls = list(poll.polls)
    assert [p.status for p in polls[:4]] == [204, 204, 204, 200]  # nothing yet, then messages
    assert {p.status for p in polls} == {200, 204}
    # The cursor: every poll carries the last id delivered before it.
    delivered = 0
    for p in polls:
        assert p.cursor == (str(delivered) if delivered else None)
        if p.status == 200:
            delivered = min(30, delivered + 3)
    assert len({p.connection for p in polls}) == 1  # keep-alive: one connection for all polls
    assert connected == [1] and t.metrics.reconnects == 0  # CONNECTED across polls


def test_a_failed_poll_is_a_drop_then_exactly_once_delivery_goes_on(
    stream_server: StreamServer,
) -> None:
    poll = RecordingPoll({2: 503, 4: 503})
    stream_server.route("/lp", poll)
    url = stream_server.url("/lp?count=12&batch=4")
    reasons: list[TransportError] = []
    connected: list[int] = []
    t = HTTPStreamTransport(url, mode="long-poll", reconnect=FAST)
    t.on("reconnecting", lambda attempt, delay, error: reasons.append(error))
    t.on("connected", lambda: connected.append(1))
    events = take(t, 12)
    t.close()
    assert ids(events) == list(range(1, 13))
    assert [type(r) for r in reasons] == [HTTPStatusError, HTTPStatusError]
    assert len(connected) == 3 and t.metrics.reconnects == 2
    assert [p.cursor for p in poll.polls[:5]] == [None, "4", "4", "8", "8"]


def test_long_poll_4xx_fails_at_once(stream_server: StreamServer) -> None:
    t = HTTPStreamTransport(stream_server.url("/poll?status=404"), mode="long-poll")
    with pytest.raises(HTTPStatusError) as info:
        t.connect()
    assert info.value.status_code == 404 and len(stream_server.requests) == 1
    assert t.state is TransportState.ERROR
    t.close()


def test_a_poll_without_answer_triggers_idle_timeout(stream_server: StreamServer) -> None:
    poll = RecordingPoll({2: "hold"})
    stream_server.route("/lp", poll)
    url = stream_server.url("/lp?count=6&per_poll=3&batch=3")
    errors: list[TransportError] = []
    t = HTTPStreamTransport(url, mode="long-poll", idle_timeout=0.3, reconnect=FAST)
    t.on("error", errors.append)
    events = take(t, 6)
    t.close()
    assert ids(events) == list(range(1, 7))
    assert isinstance(errors[0], HeartbeatTimeout) and "idle_timeout" in str(errors[0])
    assert [p.cursor for p in poll.polls[:3]] == [None, "3", "3"]


@pytest.mark.parametrize("held", [1, 2], ids=["first-poll", "kept-alive-poll"])
def test_close_interrupts_a_poll_waiting_for_its_answer(
    stream_server: StreamServer, held: int
) -> None:
    poll = RecordingPoll({held: "hold"})
    stream_server.route("/lp", poll)
    # idle_timeout=None: the poll would wait for ever
    t = HTTPStreamTransport(stream_server.url("/lp?count=1"), mode="long-poll", idle_timeout=None)
    if held == 1:
        connector, outcome = connect_in_background(t)
    else:
        assert ids(take(t, 1)) == [1]
    stream_server.wait_for_requests(held)
    started = time.monotonic()
    t.close(timeout=1.0)
    assert time.monotonic() - started < 2.0
    assert t.state is TransportState.CLOSED
    if held == 1:
        connector.join(5)
        assert isinstance(outcome[0], TransportClosedError)


def test_close_interrupts_the_wait_between_polls(stream_server: StreamServer) -> None:
    url = stream_server.url("/poll?count=3&empty_polls=1")
    t = HTTPStreamTransport(url, mode="long-poll", poll_interval=60)
    t.connect()  # the first poll was answered 204: the next one is a minute away
    started = time.monotonic()
    t.close(timeout=1.0)
    assert time.monotonic() - started < 2.0
    assert len(stream_server.requests) == 1 and t.state is TransportState.CLOSED


def test_malformed_lines_and_line_numbers_per_answer(stream_server: StreamServer) -> None:
    bodies = [b'{"id": 1}\nbad\n{"id": 2}\n', b'oops\n{"id": 3}']  # no final newline

    def handler(request: RecordedRequest, writer: StreamWriter) -> None:
        answered = int(request.headers.get("Last-Event-ID") or 0)
        index = {0: 0, 2: 1}.get(answered)
        if index is None:
            writer.send_status(204)
            return
        body = bodies[index]
        writer.send_status(200, {"Content-Length": str(len(body))})
        writer.write(body)

    stream_server.route("/lp", handler)
    errors: list[TransportError] = []
    t = HTTPStreamTransport(stream_server.url("/lp"), mode="long-poll", poll_interval=0.01)
    t.on("error", errors.append)
    events = take(t, 3)
    t.close()
    assert ids(events) == [1, 2, 3]
    assert [type(e) for e in errors] == [ProtocolError, ProtocolError]
    assert [str(e).split(":")[0] for e in errors] == ["NDJSON line 2", "NDJSON line 1"]


def test_an_answer_is_delivered_as_it_arrives(stream_server: StreamServer) -> None:
    release = threading.Event()

    def handler(request: RecordedRequest, writer: StreamWriter) -> None:
        if request.headers.get("Last-Event-ID"):
            writer.send_status(204)
            return
        writer.send_status(200, {"Content-Type": "application/x-ndjson"})  # chunked
        writer.write(b'{"id": 1}\n')
        release.wait(10)
        writer.write(b'{"id": 2}\n')

    stream_server.route("/lp", handler)
    t = HTTPStreamTransport(stream_server.url("/lp"), mode="long-poll", poll_interval=0.01)
    it = t.iter_events(timeout=5)
    assert next(it).id == "1"
    release.set()
    assert next(it).id == "2"
    t.close()


def test_polls_resend_the_request_body(stream_server: StreamServer) -> None:
    poll = RecordingPoll()
    stream_server.route("/lp", poll)
    url = stream_server.url("/lp?count=4&batch=2")
    payload = {"channel": "c1"}
    t = HTTPStreamTransport(url, mode="long-poll", method="POST", json=payload)
    assert ids(take(t, 4)) == [1, 2, 3, 4]
    t.close()
    sent = stream_server.requests
    assert all(r.method == "POST" for r in sent)
    whole = [r for r in sent if r.body]  # not a last poll that close() cut while being sent
    assert len(whole) >= 2 and all(r.json() == payload for r in whole)


def test_long_poll_under_a_manager(
    stream_server: StreamServer, wait_until: Callable[..., Any]
) -> None:
    heard: list[Event] = []
    with TransportManager() as mgr:
        mgr.on("event", lambda transport, event: heard.append(event))
        t = mgr.create("http-stream", stream_server.url("/poll?count=5&batch=2"), mode="long-poll")
        assert isinstance(t, HTTPStreamTransport) and t.mode == "long-poll"
        t.connect()
        wait_until(lambda: len(heard) == 5)
    assert ids(heard) == [1, 2, 3, 4, 5]
    assert t.state is TransportState.CLOSED
