"""Never repeat, never invent: what is sent again, end to end against servers that count requests.

A request goes out again only when that cannot repeat or invent output: it is idempotent, it
certainly never reached the server, the answer says it was not processed, or the stream resumes
by ``Last-Event-ID``. Everything else after the request was written ends in ``StreamInterrupted``.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from typing import Any, Optional

import pytest

from aikit_transports import (
    ConnectError,
    Event,
    HTTPStatusError,
    HTTPStreamTransport,
    ProtocolError,
    ReconnectPolicy,
    SSETransport,
    StreamInterrupted,
    TransportError,
    TransportState,
)
from aikit_transports.testing import RawPeer, RawServer, StreamServer
from aikit_transports.testing.exchange import RecordedRequest, StreamWriter

FAST = ReconnectPolicy(initial_delay=0.01, jitter=0, max_attempts=5)
TOKENS = ["Hello", ", ", "world", "!", " How", " are", " you?"]


def _sse_head(extra: bytes = b"") -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
        + extra
        + b"Connection: close\r\n\r\n"
    )


def _llm_route(*, with_ids: bool, cut_after: Optional[int] = 3, sentinel: bool = True) -> Any:
    """An LLM-style POST stream: the first answer is cut after ``cut_after`` tokens; a request
    carrying ``Last-Event-ID`` (when ids are on) continues after it."""
    answers: list[int] = []

    def route(request: RecordedRequest, writer: StreamWriter) -> None:
        answers.append(1)
        resume = request.headers.get("Last-Event-ID")
        first = int(resume) + 1 if (with_ids and resume) else 1
        writer.send_status(200, {"Content-Type": "text/event-stream"})
        for i in range(first, len(TOKENS) + 1):
            block = f"data: {json.dumps({'token': TOKENS[i - 1]})}\n\n"
            writer.write(((f"id: {i}\n" if with_ids else "") + block).encode())
            if len(answers) == 1 and i == cut_after:
                writer.close_abruptly()
                return
        if sentinel:
            writer.write(b"data: [DONE]\n\n")

    return route


def _text(events: list[Event]) -> str:
    return "".join(e.json()["token"] for e in events)


def _drain(t: Any, timeout: float = 10) -> tuple[list[Event], Optional[BaseException]]:
    events: list[Event] = []
    try:
        for event in t.iter_events(timeout=timeout):
            events.append(event)
    except (TransportError, TimeoutError) as exc:
        return events, exc
    return events, None


# -- a POST cut mid-answer ---------------------------------------------------------------------


def test_a_post_cut_mid_answer_is_not_sent_again(stream_server: StreamServer) -> None:
    stream_server.route("/llm", _llm_route(with_ids=False))
    closed: list[str] = []
    t = SSETransport(stream_server.url("/llm"), method="POST", json={"prompt": "hi"})
    t.on("closed", closed.append)
    events, error = _drain(t)
    t.close()
    assert _text(events) == "Hello, world"  # the partial answer, once
    assert len(stream_server.requests) == 1
    assert isinstance(error, StreamInterrupted) and not error.retryable
    assert error.events_delivered == 3 and error.last_event_id is None
    assert isinstance(error.__cause__, ConnectError)  # what happened: the cut
    assert "POST" in str(error) and "not sent again" in str(error)
    assert t.state is TransportState.CLOSED and closed == ["failed"]


def test_a_post_cut_fails_connect_and_state_is_error(stream_server: StreamServer) -> None:
    stream_server.route("/llm", _llm_route(with_ids=False, cut_after=1))
    t = SSETransport(stream_server.url("/llm"), method="POST", json={"prompt": "hi"})
    failed = threading.Event()
    t.on("closed", lambda reason: failed.set())
    with contextlib.suppress(StreamInterrupted):  # a cut before connect() saw the stream open
        t.connect()
    assert failed.wait(5)
    assert t.state is TransportState.ERROR
    t.close()
    assert len(stream_server.requests) == 1


def test_a_post_with_ids_resumes_every_token_once(stream_server: StreamServer) -> None:
    stream_server.route("/llm", _llm_route(with_ids=True))
    with SSETransport(
        stream_server.url("/llm"), method="POST", json={"prompt": "hi"}, reconnect=FAST
    ) as t:
        events, error = _drain(t)
    assert error is None
    assert _text(events) == "".join(TOKENS)
    first, second = stream_server.requests
    assert first.headers.get("Last-Event-ID") is None
    assert second.headers.get("Last-Event-ID") == "3"
    assert second.method == "POST" and json.loads(second.body) == {"prompt": "hi"}


def test_idempotent_true_opts_in_to_sending_again(stream_server: StreamServer) -> None:
    stream_server.route("/llm", _llm_route(with_ids=False))
    with SSETransport(
        stream_server.url("/llm"), method="POST", json={}, idempotent=True, reconnect=FAST
    ) as t:
        events, error = _drain(t)
    assert error is None and len(stream_server.requests) == 2
    assert _text(events) == "Hello, world" + "".join(TOKENS)  # what the user asked for


def test_ndjson_post_cut_is_interrupted(stream_server: StreamServer) -> None:
    url = stream_server.url("/ndjson?count=9&drop_every=3")
    t = HTTPStreamTransport(url, method="POST", json={}, id_field=None, reconnect=FAST)
    events, error = _drain(t)
    t.close()
    assert [e.data["id"] for e in events] == [1, 2, 3]
    assert isinstance(error, StreamInterrupted) and error.events_delivered == 3
    assert len(stream_server.requests) == 1


# -- what may go out again for a POST ----------------------------------------------------------


def test_a_post_answered_503_with_retry_after_is_sent_again(stream_server: StreamServer) -> None:
    calls: list[int] = []

    def route(request: RecordedRequest, writer: StreamWriter) -> None:
        calls.append(1)
        if len(calls) == 1:
            writer.send_text(503, "busy", {"Retry-After": "1"})
            return
        writer.send_status(200, {"Content-Type": "text/event-stream"})
        writer.write(b"data: ok\n\ndata: [DONE]\n\n")

    stream_server.route("/busy", route)
    delays: list[float] = []
    t = SSETransport(stream_server.url("/busy"), method="POST", json={}, reconnect=FAST)
    t.on("reconnecting", lambda attempt, delay, error: delays.append(delay))
    with t:
        events, error = _drain(t)
    assert error is None and [e.data for e in events] == ["ok"]
    assert len(calls) == 2
    assert delays and 1.0 <= delays[0] <= 1.0 * (1 + FAST.jitter)  # Retry-After honoured


def test_a_post_answered_500_is_not_sent_again(stream_server: StreamServer) -> None:
    t = SSETransport(stream_server.url("/sse?status=500"), method="POST", json={}, reconnect=FAST)
    with pytest.raises(StreamInterrupted) as info:
        t.connect()
    t.close()
    assert isinstance(info.value.__cause__, HTTPStatusError)
    assert info.value.__cause__.status_code == 500
    assert len(stream_server.requests) == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_post_to_a_refused_port_that_comes_up_is_sent_again() -> None:
    port = _free_port()
    policy = ReconnectPolicy(initial_delay=0.05, max_delay=0.2, jitter=0, max_attempts=50)
    t = SSETransport(f"http://127.0.0.1:{port}/llm", method="POST", json={}, reconnect=policy)
    refused: list[TransportError] = []
    first_failure = threading.Event()

    def on_reconnecting(attempt: int, delay: float, error: TransportError) -> None:
        refused.append(error)
        first_failure.set()

    t.on("reconnecting", on_reconnecting)
    connecting = threading.Thread(target=t.connect, kwargs={"timeout": 10}, daemon=True)
    connecting.start()
    try:
        assert first_failure.wait(5)
        with StreamServer(port=port) as server:
            server.route("/llm", _llm_route(with_ids=False, cut_after=None))
            events, error = _drain(t)
            assert error is None and _text(events) == "".join(TOKENS)
            assert len(server.requests) == 1
    finally:
        t.close()
        connecting.join(5)
    assert "connection refused by 127.0.0.1:" in refused[0].message
    assert isinstance(refused[0], ConnectError) and refused[0].request_sent is False


def test_a_post_to_a_server_that_never_answers_goes_out_once() -> None:
    with RawServer(RawPeer.hold) as server:
        t = SSETransport(server.url("/llm"), method="POST", json={}, timeout=0.5, reconnect=FAST)
        with pytest.raises(StreamInterrupted) as info:
            t.connect()
        t.close()
        assert len(server.peers) == 1
    cause = info.value.__cause__
    assert isinstance(cause, ConnectError)
    assert "timed out after 0.5 s waiting for the response headers" in cause.message


def test_a_post_that_ends_without_a_sentinel_is_done(stream_server: StreamServer) -> None:
    stream_server.route("/llm", _llm_route(with_ids=False, cut_after=None, sentinel=False))
    done = threading.Event()
    t = SSETransport(stream_server.url("/llm"), method="POST", json={}, reconnect=FAST)
    t.on("done", done.set)
    events, error = _drain(t)
    t.close()
    assert error is None and done.is_set() and _text(events) == "".join(TOKENS)
    assert len(stream_server.requests) == 1


def test_reconnect_on_eof_true_never_resends_a_post(stream_server: StreamServer) -> None:
    stream_server.route("/llm", _llm_route(with_ids=False, cut_after=None, sentinel=False))
    t = SSETransport(
        stream_server.url("/llm"), method="POST", json={}, reconnect_on_eof=True, reconnect=FAST
    )
    events, error = _drain(t)
    t.close()
    assert _text(events) == "".join(TOKENS)
    assert isinstance(error, StreamInterrupted) and len(stream_server.requests) == 1


# -- ends of GET streams -----------------------------------------------------------------------


def test_a_get_sse_stream_that_ends_reconnects_and_resumes(stream_server: StreamServer) -> None:
    with SSETransport(stream_server.url("/sse?count=3"), reconnect=FAST) as t:
        events, error = _drain(t)
    assert error is None and [e.id for e in events] == ["1", "2", "3"]
    _, second = stream_server.requests  # the resume after the last event gets 204: done
    assert second.headers.get("Last-Event-ID") == "3"


def test_an_ndjson_get_that_ends_without_ids_is_done(stream_server: StreamServer) -> None:
    url = stream_server.url("/ndjson?count=3")
    with HTTPStreamTransport(url, id_field=None, reconnect=FAST) as t:
        events, error = _drain(t)
    assert error is None and [e.data["id"] for e in events] == [1, 2, 3]
    assert len(stream_server.requests) == 1


# -- replays -----------------------------------------------------------------------------------


def _replaying_route(render: Any, content_type: str) -> Any:
    """Ignores ``Last-Event-ID``: answers 1..3 then cuts; then 1..6 and ends; then 204."""
    calls: list[int] = []

    def route(request: RecordedRequest, writer: StreamWriter) -> None:
        calls.append(1)
        if len(calls) >= 3:
            writer.send_status(204)
            return
        writer.send_status(200, {"Content-Type": content_type})
        last = 3 if len(calls) == 1 else 6
        for i in range(1, last + 1):
            writer.write(render(i))
        if len(calls) == 1:
            writer.close_abruptly()

    return route


@pytest.mark.parametrize("wire", ["sse", "ndjson"])
def test_a_replaying_server_delivers_nothing_twice(stream_server: StreamServer, wire: str) -> None:
    if wire == "sse":
        route = _replaying_route(lambda i: f"id: {i}\ndata: {i}\n\n".encode(), "text/event-stream")
        make: Any = SSETransport
    else:
        route = _replaying_route(
            lambda i: json.dumps({"id": i}).encode() + b"\n", "application/x-ndjson"
        )
        make = HTTPStreamTransport
    stream_server.route("/replay", route)
    with make(stream_server.url("/replay"), reconnect=FAST) as t:
        events, error = _drain(t)
    assert error is None
    assert [e.id for e in events] == ["1", "2", "3", "4", "5", "6"]
    assert t.metrics.replayed_skipped == 3
    assert t.metrics.messages_received == 6


def _resumed_sse(stream_server: StreamServer, resumed_body: bytes) -> tuple[list[Event], Any]:
    """Events of a stream cut after ids 1 and 2, whose resumed response is ``resumed_body``."""
    calls: list[int] = []

    def route(request: RecordedRequest, writer: StreamWriter) -> None:
        calls.append(1)
        if len(calls) > 2:
            writer.send_status(204)
            return
        writer.send_status(200, {"Content-Type": "text/event-stream"})
        if len(calls) == 1:
            writer.write(b"id: 1\ndata: a\n\nid: 2\ndata: b\n\n")
            writer.close_abruptly()
            return
        writer.write(resumed_body)

    stream_server.route("/resumed", route)
    with SSETransport(stream_server.url("/resumed"), reconnect=FAST) as t:
        events, error = _drain(t)
    assert error is None
    return events, t.metrics


def test_an_event_without_its_own_id_at_a_resume_is_delivered(stream_server: StreamServer) -> None:
    events, metrics = _resumed_sse(
        stream_server, b"data: no id of its own\n\nid: 2\ndata: b again\n\nid: 3\ndata: c\n\n"
    )
    # the id-less event cannot be told from a replay: delivered (never lose), and the check ends
    assert [e.data for e in events] == ["a", "b", "no id of its own", "b again", "c"]
    assert events[2].id == "2" and metrics.replayed_skipped == 0


def test_an_inclusive_resume_skips_the_event_sent_again(stream_server: StreamServer) -> None:
    # the server resumes *at* the id instead of after it
    events, metrics = _resumed_sse(stream_server, b"id: 2\ndata: b\n\nid: 3\ndata: c\n\n")
    assert [e.data for e in events] == ["a", "b", "c"] and metrics.replayed_skipped == 1


# -- ids the wire cannot carry -----------------------------------------------------------------


def _ids_route(blocks: list[bytes]) -> tuple[Any, list[Optional[bytes]]]:
    """Serves ``blocks[n]`` to the n-th connection (then 204), cutting each; records the raw
    ``Last-Event-ID`` bytes that every request carried."""
    seen: list[Optional[bytes]] = []

    def script(conn: RawPeer) -> None:
        seen.append(conn.header("Last-Event-ID"))
        n = len(seen) - 1
        if n >= len(blocks):
            conn.send(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
            return
        conn.send(_sse_head() + blocks[n])

    return script, seen


@pytest.mark.parametrize(
    ("event_id", "sent"),
    [
        ("日本-42", "日本-42".encode()),
        ("🎉", "🎉".encode()),
        ("\t7", b"7"),
        (" 8 ", b"8"),
    ],
)
def test_ids_go_out_as_trimmed_utf8(event_id: str, sent: bytes) -> None:
    script, seen = _ids_route([f"id: {event_id}\ndata: x\n\n".encode(), b""])
    with RawServer(script) as server, SSETransport(server.url("/s"), reconnect=FAST) as t:
        events, error = _drain(t)
    assert error is None and [e.data for e in events] == ["x"]
    assert seen[:2] == [None, sent]


@pytest.mark.parametrize("bad", ["a\rb", "x" * 2000, "nul\x00id"])
def test_an_id_that_cannot_go_in_a_header_is_not_used(bad: str) -> None:
    # NDJSON ids can hold anything; the reconnect carries the last id that can be sent
    lines = [
        json.dumps({"id": "good-1"}).encode() + b"\n" + json.dumps({"id": bad}).encode() + b"\n",
        json.dumps({"id": "good-2"}).encode() + b"\n",
        b"",
    ]

    def script(conn: RawPeer) -> None:
        seen.append(conn.header("Last-Event-ID"))
        n = len(seen) - 1
        if n >= 2:
            conn.send(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
            return
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n\r\n" + lines[n])

    seen: list[Optional[bytes]] = []
    errors: list[TransportError] = []
    with RawServer(script) as server:
        t = HTTPStreamTransport(server.url("/n"), reconnect=FAST)
        t.on("error", errors.append)
        with t:
            events, error = _drain(t)
    assert error is None and [e.id for e in events] == ["good-1", bad, "good-2"]
    assert seen == [None, b"good-1", b"good-2"]
    reported = [e for e in errors if isinstance(e, ProtocolError)]
    assert len(reported) == 1 and "Last-Event-ID" in str(reported[0])
    assert "\r" not in str(reported[0]) and len(str(reported[0])) < 400


# -- ends that LLM APIs use --------------------------------------------------------------------


def test_done_when_ends_an_anthropic_style_stream(stream_server: StreamServer) -> None:
    def route(request: RecordedRequest, writer: StreamWriter) -> None:
        writer.send_status(200, {"Content-Type": "text/event-stream"})
        writer.write(b'event: content_block_delta\ndata: {"text": "Hi"}\n\n')
        writer.write(b"event: message_stop\ndata: {}\n\n")
        writer.hold(timeout=10)  # the server keeps the connection: done must not wait for it

    stream_server.route("/anthropic", route)
    with SSETransport(
        stream_server.url("/anthropic"),
        method="POST",
        json={},
        done_when=lambda e: e.type == "message_stop",
    ) as t:
        events, error = _drain(t)
    assert error is None and [e.type for e in events] == ["content_block_delta", "message_stop"]
    assert len(stream_server.requests) == 1


def test_done_when_on_ndjson(stream_server: StreamServer) -> None:
    url = stream_server.url("/ndjson?count=10&end=hold")
    with HTTPStreamTransport(url, done_when=lambda e: e.data["id"] == 4) as t:
        events, error = _drain(t)
    assert error is None and [e.id for e in events] == ["1", "2", "3", "4"]


def test_done_when_that_raises_is_an_error_event_and_the_stream_goes_on(
    stream_server: StreamServer,
) -> None:
    errors: list[TransportError] = []

    def broken(event: Event) -> bool:
        raise KeyError("oops")

    t = SSETransport(stream_server.url("/sse?count=3"), done_when=broken, reconnect=FAST)
    t.on("error", errors.append)
    with t:
        events, error = _drain(t)
    assert error is None and len(events) == 3 and len(errors) == 3
    assert "done_when" in str(errors[0])


# -- time --------------------------------------------------------------------------------------


def test_iter_events_timeout_bounds_the_implicit_connect() -> None:
    with RawServer(RawPeer.hold) as server:
        t = SSETransport(server.url("/s"))
        started = time.monotonic()
        with pytest.raises(TimeoutError) as info:
            t.iter_events(timeout=2)
        waited = time.monotonic() - started
        t.close()
    assert waited < 30  # the bug this guards against waited 31.8 s; the rule is "about 2 s"
    assert "within 2 s" in str(info.value)


def test_iter_events_timeout_names_the_last_attempt() -> None:
    port = _free_port()
    policy = ReconnectPolicy(initial_delay=0.05, jitter=0, max_attempts=None)
    t = SSETransport(f"http://127.0.0.1:{port}/x", reconnect=policy)
    with pytest.raises(TimeoutError) as info:
        t.iter_events(timeout=0.5)
    t.close()
    assert isinstance(info.value.__cause__, ConnectError)
    assert "connection refused by 127.0.0.1" in str(info.value)


def test_connect_timeout_chains_the_last_attempt() -> None:
    port = _free_port()
    t = SSETransport(f"http://127.0.0.1:{port}/x", reconnect=ReconnectPolicy(initial_delay=0.05))
    with pytest.raises(ConnectError) as info:
        t.connect(timeout=0.5)
    t.close()
    assert "not connected within 0.5 s (last attempt: connection refused by" in info.value.message
    assert isinstance(info.value.__cause__, ConnectError)


def test_reconnect_false_never_reconnects(stream_server: StreamServer) -> None:
    t = SSETransport(stream_server.url("/sse?count=5&drop_every=2"), reconnect=False)
    assert t.policy.max_attempts == 0
    events, error = _drain(t)
    t.close()
    assert [e.id for e in events] == ["1", "2"] and error is not None
    assert len(stream_server.requests) == 1
