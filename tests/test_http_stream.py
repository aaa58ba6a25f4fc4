"""HTTPStreamTransport (NDJSON over HTTP, mode="stream") end to end against the local server."""

from __future__ import annotations

import json
import random
import threading
from typing import Any, Callable

import pytest

from aikit_transports import (
    Event,
    HeartbeatTimeout,
    HTTPStatusError,
    HTTPStreamTransport,
    MessageTooLarge,
    NotSupportedError,
    ProtocolError,
    ReconnectFailed,
    ReconnectPolicy,
    TransportError,
    TransportState,
    TransportType,
)
from aikit_transports.testing import StreamServer
from aikit_transports.testing.exchange import RecordedRequest, StreamWriter
from aikit_transports.transports import resolve_transport

FAST = ReconnectPolicy(initial_delay=0, jitter=0, max_attempts=5)

Route = Callable[[RecordedRequest, StreamWriter], None]


def ids(events: list[Event]) -> list[int]:
    return [int(e.id or 0) for e in events]


def body_route(body: bytes, *, chunked: bool, max_piece: int, seed: int = 7) -> Route:
    """A route writing ``body`` in pieces of random sizes (each one HTTP chunk when chunked)."""

    def handler(request: RecordedRequest, writer: StreamWriter) -> None:
        rng = random.Random(seed)
        writer.send_status(200, {"Content-Type": "application/x-ndjson"}, chunked=chunked)
        pos = 0
        while pos < len(body):
            size = rng.randint(1, max_piece)
            writer.write(body[pos : pos + size])
            pos += size

    return handler


def big_body(lines: int) -> bytes:
    """LF and CRLF line ends, multi-byte UTF-8, blank and whitespace-only lines, and a last
    line without a line end."""
    parts = []
    for i in range(1, lines + 1):
        text = f"é€😀 line {i}" if i % 3 == 0 else f"line {i}"
        eol = b"\r\n" if i % 4 == 0 else b"\n"
        if i % 1000 == 0:
            eol += b"\n   \r\n"
        parts.append(json.dumps({"id": i, "text": text}, ensure_ascii=False).encode() + eol)
    parts[-1] = parts[-1].rstrip(b"\r\n ")
    return b"".join(parts)


# -- the contract --------------------------------------------------------------------------


def test_is_exported_and_registered() -> None:
    assert resolve_transport("http-stream") is HTTPStreamTransport
    t = HTTPStreamTransport("http://127.0.0.1:1/feed")
    assert t.type is TransportType.HTTP_STREAM and t.state is TransportState.IDLE
    assert t.mode == "stream" and t.chunk_size == 65536 and t.id_field == "id"
    assert t.poll_interval == 0.0 and t.max_line_bytes == 8 << 20
    assert t.log.name == "aikit_transports.http_stream"
    t.close()


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("mode", "poll"),
        ("chunk_size", 0),
        ("id_field", ""),
        ("id_field", 3),
        ("poll_interval", -1),
        ("poll_interval", True),
        ("poll_interval", float("nan")),
        ("max_line_bytes", 0),
        ("max_line_bytes", 1.5),
    ],
)
def test_bad_option_values_name_the_option(option: str, value: Any) -> None:
    with pytest.raises(ValueError, match=option):
        HTTPStreamTransport("http://127.0.0.1:1/feed", **{option: value})


def test_unknown_scheme_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="scheme"):
        HTTPStreamTransport("ftp://127.0.0.1/feed")


# -- reading -------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("chunked", "max_piece", "chunk_size"),
    [(True, 200, 65536), (False, 4096, 509)],
    ids=["chunked-small-chunks", "close-delimited-small-reads"],
)
def test_50000_lines_with_chunk_boundaries_everywhere(
    stream_server: StreamServer, chunked: bool, max_piece: int, chunk_size: int
) -> None:
    lines = 50_000
    stream_server.route("/big", body_route(big_body(lines), chunked=chunked, max_piece=max_piece))
    errors: list[TransportError] = []
    t = HTTPStreamTransport(
        stream_server.url("/big"), reconnect_on_eof=False, chunk_size=chunk_size
    )
    t.on("error", errors.append)
    events = list(t.iter_events(timeout=30))
    t.close()
    assert errors == []
    assert ids(events) == list(range(1, lines + 1))
    assert [e.data for e in events] == [
        {"id": i, "text": f"é€😀 line {i}" if i % 3 == 0 else f"line {i}"}
        for i in range(1, lines + 1)
    ]  # the last one too, though it has no line end
    assert all(e.type == "message" for e in events)
    assert t.metrics.messages_received == lines and t.state is TransportState.CLOSED


@pytest.mark.parametrize("chunked", [True, False])
def test_a_line_is_delivered_as_soon_as_its_newline_arrives(
    stream_server: StreamServer, chunked: bool
) -> None:
    release = threading.Event()

    def handler(request: RecordedRequest, writer: StreamWriter) -> None:
        writer.send_status(200, {"Content-Type": "application/x-ndjson"}, chunked=chunked)
        writer.write(b'{"id": 1, "v": "first"}\n{"id": 2, "v": "sec')
        release.wait(10)  # nothing more until the client saw the first line
        writer.write(b'ond"}\n')

    stream_server.route("/prompt", handler)
    t = HTTPStreamTransport(stream_server.url("/prompt"), reconnect_on_eof=False)
    it = t.iter_events(timeout=5)
    assert next(it).data == {"id": 1, "v": "first"}
    release.set()
    assert next(it).data == {"id": 2, "v": "second"}
    t.close()


def test_any_json_value_is_a_message_and_only_objects_carry_ids(
    stream_server: StreamServer,
) -> None:
    body = b'[1, 2]\n"text"\n3.5\nnull\n{"id": 7, "x": 1}\n{"x": 2}\n{"id": "a-8"}\n'
    stream_server.route("/values", body_route(body, chunked=True, max_piece=5))
    with HTTPStreamTransport(stream_server.url("/values"), reconnect_on_eof=False) as t:
        events = list(t.iter_events(timeout=10))
    assert [e.data for e in events] == [[1, 2], "text", 3.5, None, {"id": 7, "x": 1}, {"x": 2},
                                        {"id": "a-8"}]  # fmt: skip
    assert [e.id for e in events] == [None, None, None, None, "7", None, "a-8"]
    assert t.last_event_id == "a-8"


def test_crlf_line_ends(stream_server: StreamServer) -> None:
    url = stream_server.url("/ndjson?count=20&crlf=1&end=204")
    with HTTPStreamTransport(url, reconnect=FAST, chunk_size=3) as t:
        assert ids(list(t.iter_events(timeout=10))) == list(range(1, 21))


def test_malformed_lines_are_error_events_and_the_stream_goes_on(
    stream_server: StreamServer,
) -> None:
    url = stream_server.url("/ndjson?count=30&malformed_every=10&end=204")
    errors: list[TransportError] = []
    t = HTTPStreamTransport(url, reconnect=FAST)
    t.on("error", errors.append)
    events = list(t.iter_events(timeout=10))
    t.close()
    assert ids(events) == list(range(1, 31))  # nothing valid is lost
    assert len(errors) == 3 and all(type(e) is ProtocolError for e in errors)
    # The bad line after id 10 is line 11 of the response, after id 20 line 22, ...
    assert [str(e).split(":")[0] for e in errors] == [
        "NDJSON line 11",
        "NDJSON line 22",
        "NDJSON line 33",
    ]
    assert "malformed after" in str(errors[0]) and errors[0].transport_id == t.id
    # the clean end of the body resumes by id; the final 204 is no connection
    assert t.state is TransportState.CLOSED and t.metrics.reconnects == 0
    assert len(stream_server.requests) == 2


def test_assorted_bad_lines_keep_every_good_one(stream_server: StreamServer) -> None:
    body = (
        b'{"id": 1}\n'
        b"not json at all\n"
        b'{"id": 2} trailing\n'
        b"\xff\xfe garbage\n"
        b'{"id": 3}\n'
        b'{"id": 4, "nested": ' + b"[" * 100_000 + b"\n"
        b'{"id": 5}\n'
    )
    stream_server.route("/bad", body_route(body, chunked=True, max_piece=999))
    errors: list[TransportError] = []
    t = HTTPStreamTransport(stream_server.url("/bad"), reconnect_on_eof=False)
    t.on("error", errors.append)
    assert ids(list(t.iter_events(timeout=10))) == [1, 3, 5]
    t.close()
    assert [str(e).split(":")[0] for e in errors] == [f"NDJSON line {n}" for n in (2, 3, 4, 6)]
    assert all(len(str(e)) < 300 for e in errors)  # a short snippet, not the whole line


def test_over_long_line_is_an_error_then_reconnect(stream_server: StreamServer) -> None:
    def handler(request: RecordedRequest, writer: StreamWriter) -> None:
        writer.send_status(200, {"Content-Type": "application/x-ndjson"})
        if request.headers.get("Last-Event-ID") != "1":
            writer.write(b'{"id": 1}\n')
        writer.write(b'{"id": 2, "pad": "' + b"x" * 5000 + b'"}\n')

    stream_server.route("/long", handler)
    errors: list[TransportError] = []
    policy = ReconnectPolicy(max_attempts=1, initial_delay=0)
    t = HTTPStreamTransport(stream_server.url("/long"), max_line_bytes=1000, reconnect=policy)
    t.on("error", errors.append)
    got: list[Event] = []
    with pytest.raises(ReconnectFailed):
        for event in t.iter_events(timeout=10):
            got.append(event)
    t.close()
    assert ids(got) == [1]
    assert isinstance(errors[0], MessageTooLarge) and "line 2" in str(errors[0])
    assert stream_server.requests[1].headers.get("Last-Event-ID") == "1"


# -- resumption ----------------------------------------------------------------------------


@pytest.mark.parametrize("chunked", ["1", "0"])
def test_resume_across_many_drops_exactly_once_in_order(
    stream_server: StreamServer, chunked: str
) -> None:
    url = stream_server.url(f"/ndjson?count=500&drop_every=20&end=204&chunked={chunked}")
    attempts: list[int] = []
    t = HTTPStreamTransport(url, reconnect=FAST)
    t.on("reconnecting", lambda attempt, delay, error: attempts.append(attempt))
    with t:
        events = list(t.iter_events(timeout=10))
    assert ids(events) == list(range(1, 501))
    assert len(attempts) >= 25 and set(attempts) == {1}  # attempts reset after data
    assert t.metrics.reconnects >= 24  # the final 204 ends the stream: no connection
    sent = [r.headers.get("Last-Event-ID") for r in stream_server.requests]
    assert sent[0] is None
    assert sent[1:] == [str(n) for n in range(20, 501, 20)]  # the last id, never the first


@pytest.mark.parametrize("chunked", [True, False])
def test_a_line_cut_by_a_drop_is_resent_not_lost(
    stream_server: StreamServer, chunked: bool
) -> None:
    def handler(request: RecordedRequest, writer: StreamWriter) -> None:
        first = int(request.headers.get("Last-Event-ID") or 0) + 1
        if first > 30:
            writer.send_status(204)
            return
        writer.send_status(200, {"Content-Type": "application/x-ndjson"}, chunked=chunked)
        for i in range(first, min(first + 3, 31)):
            writer.write(b'{"id": %d, "v": "%s"}\n' % (i, b"y" * i))
        if first + 3 <= 30:
            writer.write(b'{"id": %d, "v": "cut sh' % (first + 3))
            writer.close_abruptly()

    stream_server.route("/cut", handler)
    t = HTTPStreamTransport(stream_server.url("/cut"), reconnect=FAST)
    with t:
        events = list(t.iter_events(timeout=10))
    assert ids(events) == list(range(1, 31))
    assert all(e.data["v"] == "y" * int(e.id or 0) for e in events)


def test_last_event_id_given_at_start_is_sent(stream_server: StreamServer) -> None:
    url = stream_server.url("/ndjson?count=30&drop_every=5&end=204")
    t = HTTPStreamTransport(url, last_event_id="20", reconnect=FAST)
    assert t.last_event_id == "20"
    with t:
        assert ids(list(t.iter_events(timeout=10))) == list(range(21, 31))
    assert t.last_event_id == "30"
    assert stream_server.requests[0].headers.get("Last-Event-ID") == "20"


def test_custom_id_field_drives_resumption(stream_server: StreamServer) -> None:
    def handler(request: RecordedRequest, writer: StreamWriter) -> None:
        first = int(request.headers.get("Last-Event-ID") or 0) + 1
        if first > 6:
            writer.send_status(204)
            return
        writer.send_status(200, {"Content-Type": "application/x-ndjson"})
        for i in range(first, min(first + 2, 7)):
            writer.write(b'{"seq": %d, "id": "not this"}\n' % i)
        writer.close_abruptly()

    stream_server.route("/seq", handler)
    with HTTPStreamTransport(stream_server.url("/seq"), id_field="seq", reconnect=FAST) as t:
        events = list(t.iter_events(timeout=10))
    assert [e.id for e in events] == ["1", "2", "3", "4", "5", "6"]
    sent = [r.headers.get("Last-Event-ID") for r in stream_server.requests]
    assert sent == [None, "2", "4", "6"]


def test_id_field_none_turns_ids_off(stream_server: StreamServer) -> None:
    url = stream_server.url("/ndjson?count=3")
    with HTTPStreamTransport(url, id_field=None, reconnect_on_eof=False) as t:
        events = list(t.iter_events(timeout=10))
    assert [e.id for e in events] == [None, None, None]
    assert [e.data["id"] for e in events] == [1, 2, 3]


def test_stall_triggers_idle_timeout_then_resumes(stream_server: StreamServer) -> None:
    url = stream_server.url("/ndjson?count=6&stall_after=3&end=204")
    errors: list[TransportError] = []
    reasons: list[TransportError] = []
    t = HTTPStreamTransport(url, idle_timeout=0.3, reconnect=FAST)
    t.on("error", errors.append)
    t.on("reconnecting", lambda attempt, delay, error: reasons.append(error))
    events = list(t.iter_events(timeout=10))
    t.close()
    assert ids(events) == list(range(1, 7))
    assert isinstance(errors[0], HeartbeatTimeout) and "idle_timeout" in str(errors[0])
    assert reasons[0] is errors[0]
    assert stream_server.requests[1].headers.get("Last-Event-ID") == "3"


# -- endings and failures ------------------------------------------------------------------


def test_204_at_once_is_done(stream_server: StreamServer) -> None:
    seen: list[str] = []
    t = HTTPStreamTransport(stream_server.url("/ndjson?status=204"), reconnect=FAST)
    t.on("done", lambda: seen.append("done"))
    t.on("closed", seen.append)
    assert list(t.iter_events(timeout=10)) == []
    assert seen == ["done", "done"] and t.state is TransportState.CLOSED
    assert len(stream_server.requests) == 1
    t.close()


def test_eof_without_reconnect_on_eof_is_done(stream_server: StreamServer) -> None:
    t = HTTPStreamTransport(stream_server.url("/ndjson?count=3"), reconnect_on_eof=False)
    assert ids(list(t.iter_events(timeout=10))) == [1, 2, 3]
    assert t.state is TransportState.CLOSED and len(stream_server.requests) == 1
    t.close()


def test_404_fails_at_once(stream_server: StreamServer) -> None:
    t = HTTPStreamTransport(stream_server.url("/ndjson?status=404"), reconnect=FAST)
    closed: list[str] = []
    t.on("closed", closed.append)
    with pytest.raises(HTTPStatusError) as info:
        t.connect()
    assert info.value.status_code == 404 and len(stream_server.requests) == 1
    assert t.state is TransportState.ERROR and closed == ["failed"]
    t.close()


def test_503_is_retried_then_reconnect_failed(stream_server: StreamServer) -> None:
    policy = ReconnectPolicy(initial_delay=0, jitter=0, max_attempts=2)
    t = HTTPStreamTransport(stream_server.url("/ndjson?status=503"), reconnect=policy)
    with pytest.raises(ReconnectFailed) as info:
        t.connect()
    assert isinstance(info.value.__cause__, HTTPStatusError)
    assert len(stream_server.requests) == 3
    t.close()


def test_an_html_page_fails_at_once(stream_server: StreamServer) -> None:
    url = stream_server.url("/ndjson?content_type=text/html;+charset=utf-8")
    t = HTTPStreamTransport(url, reconnect=FAST)
    with pytest.raises(ProtocolError, match="text/html"):
        t.connect()
    assert len(stream_server.requests) == 1 and t.state is TransportState.ERROR
    t.close()


def test_other_content_types_are_read_as_ndjson(stream_server: StreamServer) -> None:
    url = stream_server.url("/ndjson?count=2&content_type=text/plain")
    with HTTPStreamTransport(url, reconnect_on_eof=False) as t:
        assert ids(list(t.iter_events(timeout=10))) == [1, 2]


def test_close_from_another_thread_wakes_a_blocked_read(stream_server: StreamServer) -> None:
    t = HTTPStreamTransport(stream_server.url("/ndjson?count=1&end=hold"), idle_timeout=None)
    it = t.iter_events()
    assert next(it).id == "1"
    closer = threading.Timer(0.05, t.close, kwargs={"timeout": 1.0})
    closer.start()
    assert list(it) == []  # ends once close() cut the read
    closer.join(5)
    assert t.state is TransportState.CLOSED


# -- requests ------------------------------------------------------------------------------


def test_a_resumable_post_is_sent_again_after_each_cut(stream_server: StreamServer) -> None:
    url = stream_server.url("/ndjson?count=9&drop_every=3&end=204")
    payload = {"query": "subscribe", "topics": ["a", "b"]}
    with HTTPStreamTransport(url, method="POST", json=payload, reconnect=FAST) as t:
        assert ids(list(t.iter_events(timeout=10))) == list(range(1, 10))
    requests = stream_server.requests
    # two cuts resume by id; the clean end of the third body is the end (a POST)
    assert len(requests) == 3 and all(r.method == "POST" for r in requests)
    assert [r.headers.get("Last-Event-ID") for r in requests] == [None, "3", "6"]
    assert all(json.loads(r.body) == payload for r in requests)
    assert "application/x-ndjson" in (requests[0].headers.get("Accept") or "")


def test_user_headers_win(stream_server: StreamServer) -> None:
    url = stream_server.url("/ndjson?count=1")
    headers = {"Accept": "application/jsonl", "Authorization": "Bearer t0k"}
    with HTTPStreamTransport(url, headers=headers, reconnect_on_eof=False) as t:
        list(t.iter_events(timeout=10))
    sent = stream_server.requests[0].headers
    assert sent.get("Accept") == "application/jsonl" and sent.get("Authorization") == "Bearer t0k"


def test_send_posts_json_to_send_url(stream_server: StreamServer) -> None:
    url = stream_server.url("/ndjson?count=1")
    t = HTTPStreamTransport(url, send_url=stream_server.url("/send"))
    t.send({"ack": 1})
    t.close()
    last = stream_server.requests[-1]
    assert last.method == "POST" and json.loads(last.body) == {"ack": 1}
    assert last.headers.get("Content-Type") == "application/json"
    assert t.metrics.messages_sent == 1


def test_send_without_send_url_is_not_supported() -> None:
    t = HTTPStreamTransport("http://127.0.0.1:1/feed")
    with pytest.raises(NotSupportedError, match="send_url"):
        t.send({"x": 1})
    t.close()
