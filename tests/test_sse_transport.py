"""SSETransport end to end against the local server on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from typing import Any, Callable

import pytest
from faultkit import connect_in_background

from aikit_transports import (
    BackpressureInfo,
    BufferConfig,
    Event,
    HeartbeatTimeout,
    HTTPStatusError,
    MessageTooLarge,
    ProtocolError,
    ReconnectFailed,
    ReconnectPolicy,
    SSETransport,
    TransportClosedError,
    TransportError,
    TransportState,
)
from aikit_transports.testing import StreamServer

FAST = ReconnectPolicy(initial_delay=0, jitter=0, max_attempts=5)


def ids(events: list[Event]) -> list[int]:
    return [int(e.id or 0) for e in events]


def test_reconnects_through_many_drops_without_loss_or_duplicates(
    stream_server: StreamServer,
) -> None:
    url = stream_server.url("/sse?count=250&drop_every=10&end=sentinel")
    reconnects: list[int] = []
    t = SSETransport(url, reconnect=FAST)
    t.on("reconnecting", lambda attempt, delay, error: reconnects.append(attempt))
    with t:
        events = list(t.iter_events(timeout=10))
    assert ids(events) == list(range(1, 251))
    assert [e.data for e in events[:2]] == ["event 1", "event 2"]
    assert len(reconnects) >= 24 and set(reconnects) == {1}  # attempts reset after data
    assert t.metrics.reconnects >= 24
    # Every reconnect resumed from the last id seen, never from the first.
    resumed = [r.headers.get("Last-Event-ID") for r in stream_server.requests]
    assert resumed[0] is None
    assert resumed[1:4] == ["10", "20", "30"]


def test_last_event_id_given_at_start_is_sent_and_kept(stream_server: StreamServer) -> None:
    url = stream_server.url("/sse?count=30&drop_every=5&end=sentinel")
    with SSETransport(url, last_event_id="20", reconnect=FAST) as t:
        events = list(t.iter_events(timeout=10))
    assert ids(events) == list(range(21, 31))
    assert stream_server.requests[0].headers.get("Last-Event-ID") == "20"


def test_204_on_resume_ends_with_done(stream_server: StreamServer) -> None:
    url = stream_server.url("/sse?count=5&end=204")
    seen: list[str] = []
    t = SSETransport(url, reconnect=FAST)
    t.on("done", lambda: seen.append("done"))
    t.on("closed", seen.append)
    assert ids(list(t.iter_events(timeout=10))) == [1, 2, 3, 4, 5]
    assert seen == ["done", "done"]  # the event, then closed("done")
    assert t.state is TransportState.CLOSED
    t.close()


def test_404_one_request_no_retry(stream_server: StreamServer) -> None:
    t = SSETransport(stream_server.url("/sse?status=404"), reconnect=FAST)
    closed: list[str] = []
    errors: list[TransportError] = []
    t.on("closed", closed.append)
    t.on("error", errors.append)
    with pytest.raises(HTTPStatusError) as info:
        t.connect()
    assert info.value.status_code == 404
    assert info.value.transport_id == t.id and info.value.url is not None
    assert len(stream_server.requests) == 1
    assert t.state is TransportState.ERROR and closed == ["failed"]
    assert errors == [info.value]
    t.close()


def test_503_is_retried_then_reconnect_failed(stream_server: StreamServer) -> None:
    policy = ReconnectPolicy(initial_delay=0, jitter=0, max_attempts=3)
    t = SSETransport(stream_server.url("/sse?status=503"), reconnect=policy)
    attempts: list[int] = []
    t.on("reconnecting", lambda attempt, delay, error: attempts.append(attempt))
    with pytest.raises(ReconnectFailed) as info:
        t.connect()
    assert isinstance(info.value.__cause__, HTTPStatusError)
    assert attempts == [1, 2, 3] and len(stream_server.requests) == 4
    t.close()


def test_iterator_raises_the_failure_after_the_buffered_events(stream_server: StreamServer) -> None:
    # Two events, then the server goes away for good: attempts run out.
    url = stream_server.url("/sse?count=2&end=eof")
    t = SSETransport(url, reconnect=ReconnectPolicy(max_attempts=0))
    got: list[Event] = []
    with pytest.raises(ReconnectFailed):
        for event in t.iter_events(timeout=10):
            got.append(event)
    assert ids(got) == [1, 2]
    assert t.state is TransportState.ERROR
    t.close()


def test_wrong_content_type_fails_at_once(stream_server: StreamServer) -> None:
    t = SSETransport(stream_server.url("/sse?content_type=application/json"), reconnect=FAST)
    with pytest.raises(ProtocolError, match="application/json"):
        t.connect()
    assert len(stream_server.requests) == 1
    t.close()


def test_stall_is_detected_and_the_stream_resumes(stream_server: StreamServer) -> None:
    url = stream_server.url("/sse?count=6&stall_after=3&end=sentinel")
    errors: list[TransportError] = []
    reasons: list[TransportError] = []
    t = SSETransport(url, idle_timeout=0.3, reconnect=FAST)
    t.on("error", errors.append)
    t.on("reconnecting", lambda attempt, delay, error: reasons.append(error))
    events = list(t.iter_events(timeout=10))
    t.close()
    assert ids(events) == list(range(1, 7))
    assert any(isinstance(e, HeartbeatTimeout) for e in errors)
    assert isinstance(reasons[0], HeartbeatTimeout) and reasons[0] is errors[0]


def test_post_body_is_sent_again_on_every_reconnect(stream_server: StreamServer) -> None:
    url = stream_server.url("/sse?count=9&drop_every=3&end=sentinel")
    payload = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    with SSETransport(url, method="POST", json=payload, reconnect=FAST) as t:
        assert ids(list(t.iter_events(timeout=10))) == list(range(1, 10))
    bodies = [json.loads(r.body) for r in stream_server.requests]
    assert len(bodies) >= 3 and all(b == payload for b in bodies)
    assert all(r.method == "POST" for r in stream_server.requests)


def test_done_sentinel_ends_the_stream_and_is_not_delivered(stream_server: StreamServer) -> None:
    with SSETransport(stream_server.url("/sse?count=3&end=sentinel"), reconnect=FAST) as t:
        events = list(t.iter_events(timeout=10))
    assert [e.data for e in events] == ["event 1", "event 2", "event 3"]
    assert len(stream_server.requests) == 1


def test_eof_without_reconnect_on_eof_is_done(stream_server: StreamServer) -> None:
    t = SSETransport(stream_server.url("/sse?count=3"), reconnect_on_eof=False)
    assert ids(list(t.iter_events(timeout=10))) == [1, 2, 3]
    assert t.state is TransportState.CLOSED
    t.close()


def test_listener_and_iterator_both_get_every_event(stream_server: StreamServer) -> None:
    t = SSETransport(stream_server.url("/sse?count=50&drop_every=20&end=sentinel"), reconnect=FAST)
    heard: list[Event] = []
    t.on("event", heard.append)
    iterated = list(t.iter_events(timeout=10))
    t.close()
    assert ids(iterated) == list(range(1, 51))
    assert ids(heard) == list(range(1, 51))


def test_events_before_the_first_consumer_wait_in_the_buffer(stream_server: StreamServer) -> None:
    t = SSETransport(stream_server.url("/sse?count=20&end=hold"), reconnect=FAST)
    t.connect()
    # connect() returned; the server keeps sending meanwhile: nothing may be lost.
    got = [e for _, e in zip(range(20), t.iter_events(timeout=10))]
    assert ids(got) == list(range(1, 21))
    t.close()


def test_callbacks_run_in_one_thread_not_the_callers(stream_server: StreamServer) -> None:
    threads: set[str] = set()
    done = threading.Event()
    t = SSETransport(stream_server.url("/sse?count=10"), reconnect_on_eof=False)
    for name in ("connecting", "connected", "event", "done"):
        t.on(name, lambda *a: threads.add(threading.current_thread().name))
    t.on("closed", lambda reason: done.set())
    t.connect()
    assert done.wait(10)
    t.close()
    assert len(threads) == 1 and threading.current_thread().name not in threads


def test_a_raising_listener_becomes_an_error_event(stream_server: StreamServer) -> None:
    errors: list[TransportError] = []
    t = SSETransport(stream_server.url("/sse?count=5"), reconnect_on_eof=False)

    def bad(event: Event) -> None:
        raise RuntimeError("listener bug")

    t.on("event", bad)
    t.on("error", errors.append)
    assert ids(list(t.iter_events(timeout=10))) == [1, 2, 3, 4, 5]
    t.close()
    assert len(errors) == 5 and "listener bug" in str(errors[0])


def test_close_from_inside_a_callback(stream_server: StreamServer) -> None:
    t = SSETransport(stream_server.url("/sse?count=100&end=hold&delay=0.01"))
    closed = threading.Event()
    t.on("event", lambda e: t.close() if e.id == "3" else None)
    t.on("closed", lambda reason: closed.set())
    t.connect()
    assert closed.wait(10)
    assert t.state is TransportState.CLOSED


def test_close_from_another_thread_wakes_a_blocked_read(stream_server: StreamServer) -> None:
    t = SSETransport(stream_server.url("/sse?count=1&end=hold"), idle_timeout=None)
    it = t.iter_events()
    assert next(it).id == "1"
    ended = threading.Event()

    def consume() -> None:
        for _ in it:
            pass
        ended.set()

    consumer = threading.Thread(target=consume)
    consumer.start()
    started = time.monotonic()
    t.close(timeout=1.0)
    elapsed = time.monotonic() - started
    assert ended.wait(5)
    consumer.join(5)
    assert elapsed < 2.0  # close() promises timeout + 1 s; the reader was blocked in a read
    assert t.state is TransportState.CLOSED
    with pytest.raises(TransportClosedError):
        t.connect()


def test_close_during_backoff_returns_promptly(stream_server: StreamServer) -> None:
    policy = ReconnectPolicy(initial_delay=30, jitter=0)
    t = SSETransport(stream_server.url("/sse?status=503"), reconnect=policy)
    waiting = threading.Event()
    t.on("reconnecting", lambda *a: waiting.set())
    connector, outcome = connect_in_background(t)
    assert waiting.wait(10)
    started = time.monotonic()
    t.close()
    assert time.monotonic() - started < 2.0
    connector.join(5)
    assert isinstance(outcome[0], TransportClosedError)


def test_block_pauses_reading_and_loses_nothing(
    stream_server: StreamServer, wait_until: Callable[..., Any]
) -> None:
    url = stream_server.url("/sse?count=300&size=200")
    pressure: list[BackpressureInfo] = []
    drained: list[BackpressureInfo] = []
    t = SSETransport(url, buffer=BufferConfig(max_size=20), reconnect_on_eof=False)
    t.on("backpressure", pressure.append)
    t.on("drain", drained.append)
    it = t.iter_events(timeout=10)
    t.pause()  # a consumer that does not keep up: the reader must wait, not drop
    wait_until(lambda: t.metrics.buffer_size == 20)
    wait_until(lambda: pressure)  # emitted on the transport's own queue
    assert pressure[0].max_size == 20 and pressure[0].strategy == "block"
    assert t.health().status == "healthy"  # our own pause is not a stalled server
    t.resume()
    got = list(it)
    assert ids(got) == list(range(1, 301))
    assert t.metrics.messages_dropped == 0 and drained
    t.close()


def test_drop_oldest_keeps_the_latest_while_paused(
    stream_server: StreamServer, wait_until: Callable[..., Any]
) -> None:
    url = stream_server.url("/sse?count=100&end=hold")
    t = SSETransport(url, buffer=BufferConfig(max_size=10, strategy="drop-oldest"))
    it = t.iter_events(timeout=10)
    t.pause()
    wait_until(lambda: t.metrics.messages_received == 100)
    t.resume()
    got = [next(it) for _ in range(10)]
    assert ids(got) == list(range(91, 101))
    assert t.metrics.messages_dropped == 90
    t.close()


def test_pause_holds_listener_delivery_until_resume(
    stream_server: StreamServer, wait_until: Callable[..., Any]
) -> None:
    url = stream_server.url("/sse?count=30&end=hold")
    heard: list[Event] = []
    t = SSETransport(url, buffer=BufferConfig(max_size=10))
    t.pause()
    t.on("event", heard.append)
    t.connect()
    wait_until(lambda: t.metrics.messages_received >= 10)
    assert heard == []
    t.resume()
    wait_until(lambda: len(heard) == 30)
    assert ids(heard) == list(range(1, 31))
    t.close()


def test_over_long_event_is_a_protocol_error_then_reconnect(stream_server: StreamServer) -> None:
    def handler(request: Any, writer: Any) -> None:
        writer.send_status(200, {"Content-Type": "text/event-stream"})
        if request.headers.get("Last-Event-ID") != "1":
            writer.write(b"id: 1\ndata: ok\n\n")
        writer.write(b"data: " + b"x" * 5000 + b"\n\n")

    stream_server.route("/big", handler)
    errors: list[TransportError] = []
    policy = ReconnectPolicy(max_attempts=1, initial_delay=0)
    t = SSETransport(stream_server.url("/big"), max_event_bytes=1000, reconnect=policy)
    t.on("error", errors.append)
    got = []
    with pytest.raises(ReconnectFailed):
        for event in t.iter_events(timeout=10):
            got.append(event)
    assert [e.data for e in got] == ["ok"]
    assert isinstance(errors[0], MessageTooLarge)
    t.close()


@pytest.mark.parametrize("chunked", [True, False])
def test_an_event_is_delivered_as_soon_as_its_last_byte_arrives(
    stream_server: StreamServer, chunked: bool
) -> None:
    release = threading.Event()

    def handler(request: Any, writer: Any) -> None:
        headers = {"Content-Type": "text/event-stream"}
        writer.send_status(200, headers, chunked=chunked)
        writer.write(b"id: 1\ndata: first\n\n")
        release.wait(10)  # nothing more until the client saw the first event
        writer.write(b"id: 2\ndata: second\n\n")

    stream_server.route("/prompt", handler)
    t = SSETransport(stream_server.url("/prompt"), reconnect_on_eof=False, chunk_size=1 << 20)
    it = t.iter_events(timeout=5)
    assert next(it).data == "first"
    release.set()
    assert next(it).data == "second"
    t.close()


@pytest.mark.parametrize("chunked", [True, False])
def test_a_body_sent_at_once_is_read_in_large_reads(
    stream_server: StreamServer, chunked: bool, caplog: Any
) -> None:
    # 2 MiB in one write: after the first read (http.client's 8 KiB buffer, full), reads go
    # straight to the socket for the whole chunk_size instead of 8 KiB at a time.
    body = b"".join(b"id: %d\ndata: %s\n\n" % (i, b"x" * 4000) for i in range(512))

    def handler(request: Any, writer: Any) -> None:
        writer.send_status(200, {"Content-Type": "text/event-stream"}, chunked=chunked)
        writer.write(body)

    stream_server.route("/bulk", handler)
    t = SSETransport(stream_server.url("/bulk"), reconnect_on_eof=False, debug=True)
    with caplog.at_level(logging.DEBUG, logger="aikit_transports"):
        events = list(t.iter_events(timeout=10))
    t.close()
    assert ids(events) == list(range(512))
    reads = [int(m.group(1)) for m in re.finditer(r": read (\d+) bytes", caplog.text)]
    assert sum(reads) == len(body) and max(reads) > 8192


def test_gzip_encoded_stream_is_decoded_incrementally(stream_server: StreamServer) -> None:
    release = threading.Event()

    def handler(request: Any, writer: Any) -> None:
        import zlib

        comp = zlib.compressobj(wbits=31)  # gzip container
        writer.send_status(200, {"Content-Type": "text/event-stream", "Content-Encoding": "gzip"})
        writer.write(comp.compress(b"id: 1\ndata: zipped\n\n") + comp.flush(zlib.Z_SYNC_FLUSH))
        release.wait(10)
        writer.write(comp.compress(b"id: 2\ndata: more\n\n") + comp.flush())

    stream_server.route("/gz", handler)
    t = SSETransport(stream_server.url("/gz"), reconnect_on_eof=False)
    it = t.iter_events(timeout=5)
    assert next(it).data == "zipped"
    release.set()
    assert next(it).data == "more"
    t.close()


def test_metrics_and_health(stream_server: StreamServer) -> None:
    t = SSETransport(stream_server.url("/sse?count=5&end=hold"))
    assert t.health().status == "degraded"
    it = t.iter_events(timeout=10)
    got = [next(it) for _ in range(5)]
    m = t.metrics
    assert m.messages_received == 5 and m.bytes_received > 0 and m.latency["p50"] >= 0
    assert t.health().status == "healthy"
    t.close()
    assert ids(got) == [1, 2, 3, 4, 5]
    assert t.health().status == "unhealthy"


def test_send_posts_to_send_url(stream_server: StreamServer) -> None:
    t = SSETransport(stream_server.url("/sse?count=1"), send_url=stream_server.url("/send"))
    t.send({"ack": 1})
    t.close()
    assert json.loads(stream_server.requests[-1].body) == {"ack": 1}


def test_close_while_the_server_never_answers_returns_promptly(
    stream_server: StreamServer,
) -> None:
    def silent(request: Any, writer: Any) -> None:
        writer.hold(10)  # accept the request, answer nothing until the client goes away

    stream_server.route("/silent", silent)
    t = SSETransport(stream_server.url("/silent"), timeout=30)
    connecting = threading.Event()
    t.on("connecting", connecting.set)
    connector, outcome = connect_in_background(t)
    assert connecting.wait(5)
    stream_server.wait_for_requests(1)
    started = time.monotonic()
    t.close(timeout=1.0)
    assert time.monotonic() - started < 2.0  # the reader waited for headers; close() cut it
    connector.join(5)
    assert isinstance(outcome[0], TransportClosedError)


def test_a_new_iterator_continues_where_a_broken_off_one_stopped(
    stream_server: StreamServer,
) -> None:
    with SSETransport(stream_server.url("/sse?count=300&end=sentinel")) as t:
        first = []
        for event in t.iter_events(timeout=10):
            first.append(event)
            if len(first) == 5:
                break  # the rest of the batch it had taken must not be lost
        rest = list(t.iter_events(timeout=10))
    assert ids(first + rest) == list(range(1, 301))


def test_resume_delivers_the_backlog_without_waiting_for_new_events(
    stream_server: StreamServer, wait_until: Callable[..., Any]
) -> None:
    url = stream_server.url("/sse?count=5&end=hold")  # 5 events, then silence
    heard: list[Event] = []
    t = SSETransport(url)
    t.on("event", heard.append)
    t.pause()
    t.connect()
    wait_until(lambda: t.metrics.messages_received == 5)
    assert heard == []
    t.resume()
    wait_until(lambda: len(heard) == 5)
    assert ids(heard) == [1, 2, 3, 4, 5]
    t.close()
