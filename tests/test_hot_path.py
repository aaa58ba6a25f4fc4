"""Behaviour kept by the fast paths of issue 8 (block splitting by line hops, plain body reads
with coalescing, our own de-chunking, inlined listener dispatch, one condition per buffer). No
timings here: speed is measured by ``bench/run.py``."""

from __future__ import annotations

import logging
import random
import threading
from typing import List

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aikit_transports import (
    BufferConfig,
    Event,
    HTTPStreamTransport,
    MessageBuffer,
    ReconnectFailed,
    ReconnectPolicy,
    SSEParser,
    SSETransport,
)
from aikit_transports.parsers.sse import _split_blocks
from aikit_transports.testing import StreamServer
from aikit_transports.testing.exchange import RecordedRequest, StreamWriter

PIECES = ["\n", "\n", "\r", "a", "id: 7", "data: ", "x" * 600, "y" * 1500, ":"]


@given(st.lists(st.sampled_from(PIECES), max_size=16))
def test_block_splitting_is_exactly_str_split(pieces: List[str]) -> None:
    text = "".join(pieces)
    assert _split_blocks(text) == text.split("\n\n")


def _long_stream(rng: random.Random) -> tuple[bytes, List[tuple[str, str, str]]]:
    """Events of 1-5 KiB (long lines: the hop path), some multi-line, CRLF and LF mixed."""
    out: List[bytes] = []
    expected: List[tuple[str, str, str]] = []
    for i in range(40):
        end = "\r\n" if i % 3 == 0 else "\n"
        lines = [f"{chr(97 + i % 26)}" * rng.randint(1000, 5000) for _ in range(1 + i % 2)]
        kind = "update" if i % 4 == 0 else "message"
        block = f"id: {i}{end}" + (f"event: {kind}{end}" if kind != "message" else "")
        block += "".join(f"data: {line}{end}" for line in lines) + end
        out.append(block.encode())
        expected.append((str(i), kind, "\n".join(lines)))
    return b"".join(out), expected


def test_long_events_come_out_the_same_whatever_the_reads() -> None:
    rng = random.Random(8)
    stream, expected = _long_stream(rng)
    for _ in range(5):
        parser = SSEParser()
        events: List[Event] = []
        pos = 0
        while pos < len(stream):
            size = rng.choice([1, 7, 511, 4096, 65536])
            events += parser.feed(stream[pos : pos + size])
            pos += size
        assert [(e.id, e.type, e.data) for e in events] == expected
        assert parser.last_event_id == "39" and not parser.errors


def test_a_body_cut_short_of_its_content_length_is_a_lost_connection(
    stream_server: StreamServer,
) -> None:
    body = b"id: 1\ndata: one\n\nid: 2\ndata: two\n\n"

    def short(request: RecordedRequest, writer: StreamWriter) -> None:
        headers = {"Content-Type": "text/event-stream", "Content-Length": str(len(body) + 100)}
        writer.send_status(200, headers)
        writer.write(body)
        writer.close_abruptly()

    stream_server.route("/short", short)
    received, failure = _until_it_fails(stream_server.url("/short"))
    assert received == ["one", "two"]
    assert "Content-Length" in failure


def _until_it_fails(url: str) -> tuple[List[str], str]:
    """The data of the events an SSE stream at ``url`` delivers before its connection fails
    (no retry), and the message of that failure."""
    t = SSETransport(
        url,
        reconnect_on_eof=False,  # a clean end would be "done": a cut one is not
        reconnect=ReconnectPolicy(max_attempts=0),
    )
    received: List[str] = []
    with pytest.raises(ReconnectFailed) as failed:
        for event in t.iter_events(timeout=10):
            received.append(event.data)
    t.close()
    return received, str(failed.value.__cause__)


def _raw_chunked(body_chunks: List[bytes], tail: bytes) -> bytes:
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    chunks = b"".join(b"%x;n=%d\r\n%s\r\n" % (len(c), i, c) for i, c in enumerate(body_chunks))
    return head + chunks + tail


def test_events_cut_across_many_http_chunks_in_one_write_with_extensions_and_trailers(
    stream_server: StreamServer,
) -> None:
    stream = b"".join(b"id: %d\ndata: event %d\n\n" % (i, i) for i in range(200))
    pieces = [stream[i : i + 7] for i in range(0, len(stream), 7)]  # events cut anywhere
    wire = _raw_chunked(pieces, b"0\r\nX-Trailer: yes\r\n\r\n")
    stream_server.route("/many", lambda request, writer: writer.write_raw(wire))
    t = SSETransport(stream_server.url("/many"), reconnect_on_eof=False)
    errors: List[Exception] = []
    t.on("error", errors.append)
    received = [event.data for event in t.iter_events(timeout=10)]
    t.close()
    assert received == [f"event {i}" for i in range(200)]
    assert errors == [] and t.last_event_id == "199"


@pytest.mark.parametrize(
    "tail, message",
    [
        (b"zz\r\ndata: x\n\n\r\n", "broken chunked framing"),  # a size that is not hex
        (b"5\r\ndata: x\n\n\r\n", "broken chunked framing"),  # data longer than its size
        (b"40\r\ndata: cut sho", "middle of the response"),  # cut inside a chunk
    ],
    ids=["bad-size", "overlong-data", "cut"],
)
def test_broken_chunked_framing_is_a_lost_connection_after_the_good_events(
    stream_server: StreamServer, tail: bytes, message: str
) -> None:
    wire = _raw_chunked([b"id: 1\ndata: one\n\n", b"id: 2\ndata: two\n\n"], tail)
    stream_server.route("/broken", lambda request, writer: writer.write_raw(wire))
    received, failure = _until_it_fails(stream_server.url("/broken"))
    assert received == ["one", "two"]
    assert message in failure


def test_a_listener_that_unsubscribes_mid_batch_gets_no_more_events(
    stream_server: StreamServer,
) -> None:
    def burst(request: RecordedRequest, writer: StreamWriter) -> None:
        writer.send_status(200, {"Content-Type": "text/event-stream"})
        writer.write(b"".join(b"id: %d\ndata: %d\n\n" % (i, i) for i in range(20)))  # one read

    stream_server.route("/burst", burst)
    t = SSETransport(stream_server.url("/burst"), reconnect_on_eof=False)
    first: List[str] = []
    every: List[str] = []
    done = threading.Event()

    def until_three(event: Event) -> None:
        first.append(event.data)
        if len(first) == 3:
            t.off("event", until_three)

    t.on("event", until_three)
    t.on("event", lambda event: every.append(event.data))
    t.on("closed", lambda reason: done.set())
    t.connect()
    assert done.wait(10)
    t.close()
    assert first == ["0", "1", "2"]
    assert every == [str(i) for i in range(20)]


def test_a_buffer_with_waiting_producers_and_consumers_loses_and_repeats_nothing() -> None:
    buf: MessageBuffer[int] = MessageBuffer(BufferConfig(max_size=3, strategy="block"))
    taken: List[int] = []
    lock = threading.Lock()

    def consume() -> None:
        while True:
            try:
                items = buf.get_batch(timeout=10)
            except Exception:  # closed and empty: done
                return
            with lock:
                taken.extend(items)

    def produce(start: int) -> None:
        for i in range(start, start + 500, 5):
            buf.put_many(list(range(i, i + 5)), timeout=10)

    consumers = [threading.Thread(target=consume) for _ in range(2)]
    producers = [threading.Thread(target=produce, args=(k * 1000,)) for k in range(2)]
    for thread in consumers + producers:
        thread.start()
    for thread in producers:
        thread.join(10)
    buf.close()
    for thread in consumers:
        thread.join(10)
    assert sorted(taken) == [*range(500), *range(1000, 1500)]


@pytest.mark.parametrize("path", ["/sse?count=3", "/ndjson?count=3", "/sse?count=3&chunked=0"])
def test_debug_traces_every_read_of_the_body(
    stream_server: StreamServer, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="aikit_transports")
    cls = SSETransport if path.startswith("/sse") else HTTPStreamTransport
    t = cls(stream_server.url(path), reconnect_on_eof=False, debug=True)
    events = list(t.iter_events(timeout=10))
    t.close()
    reads = [r.getMessage() for r in caplog.records if " bytes: " in r.getMessage()]
    assert len(events) == 3 and reads
    assert sum(int(line.split("read ")[1].split(" bytes")[0]) for line in reads) == (
        t.metrics.bytes_received
    )
    assert any("line 1" in line or "event 1" in line for line in reads)
