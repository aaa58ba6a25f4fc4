"""Size limits and bounded memory: endless lines, 100 MB events and frames, a paused consumer,
an idle stream.

Each case measures the memory the process allocated meanwhile (``tracemalloc`` peak, every
thread, the in-process servers included) and asserts a bound well under what the server sent,
with generous margins; ``-s`` prints the figures (``MEMORY <case>: ...``). In every case the
error names the limit, and the events received before it are delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import tracemalloc
from collections.abc import Iterator
from typing import Any, Callable, Dict, List

import pytest
from faultkit import (
    ResumableWebSocketServer,
    WebSocketResume,
    allocations_while_idle,
    forever_route,
    ndjson_line,
)

from aikit_transports import (
    BufferConfig,
    Event,
    HTTPStreamTransport,
    MessageTooLarge,
    ReconnectFailed,
    ReconnectPolicy,
    SSETransport,
    WebSocketTransport,
)
from aikit_transports.testing import RecordedRequest, StreamServer, StreamWriter
from aikit_transports.testing.ws import stream_message
from aikit_transports.transports.base import BaseTransport

MB = 1 << 20
NO_RETRY = ReconnectPolicy(max_attempts=0)
PIECE = b"x" * (64 * 1024)


@contextlib.contextmanager
def traced() -> Iterator[Callable[[], int]]:
    """Trace allocations; yields a function giving the peak (bytes) since the start."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        yield lambda: tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def report(case: str, peak: int, sent: str) -> None:
    print(f"\nMEMORY {case}: peak {peak / MB:.1f} MB ({sent})")


# -- over-long lines and events over HTTP ------------------------------------------------------


def _long_record_route(
    kind: str, length: int, progress: List[int]
) -> Callable[[RecordedRequest, StreamWriter], None]:
    """Three ordinary events, then one whose line is ``length`` bytes long (``-1``: endless),
    written 64 KiB at a time, then three more (never reached by a client with a limit).
    ``progress`` gets the bytes of the long line written (before the client hung up)."""

    def route(request: RecordedRequest, writer: StreamWriter) -> None:
        content_type = "text/event-stream" if kind == "sse" else "application/x-ndjson"
        writer.send_status(200, {"Content-Type": content_type})
        if kind == "sse":
            writer.write(b"".join(b"id: %d\ndata: event %d\n\n" % (i, i) for i in (1, 2, 3)))
            writer.write(b"id: 4\ndata: ")
        else:
            writer.write(b"".join(ndjson_line(i) for i in (1, 2, 3)))
            writer.write(b'{"id": 4, "data": "')
        sent = 0
        while (length < 0 or sent < length) and not writer.closing:
            writer.write(PIECE)  # OSError once the client hung up: the route ends
            sent += len(PIECE)
            progress[:] = [sent]
        writer.write(b"\n\n" if kind == "sse" else b'"}\n')

    return route


def _http_transport(kind: str, url: str, limit: int | None) -> BaseTransport:
    if kind == "sse":
        if limit is None:
            return SSETransport(url, reconnect=NO_RETRY)
        return SSETransport(url, reconnect=NO_RETRY, max_event_bytes=limit)
    if limit is None:
        return HTTPStreamTransport(url, reconnect=NO_RETRY)
    return HTTPStreamTransport(url, reconnect=NO_RETRY, max_line_bytes=limit)


def _run_to_failure(t: BaseTransport) -> tuple[List[Event], ReconnectFailed]:
    """Iterate until the transport fails; the events yielded first, and the failure."""
    events: List[Event] = []
    try:
        with pytest.raises(ReconnectFailed) as info:
            for event in t.iter_events(timeout=30):
                events.append(event)
    finally:
        t.close()
    return events, info.value


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sse", "http-stream"])
@pytest.mark.parametrize("length", [-1, 100 * MB], ids=["endless-line", "100MB-event"])
def test_an_over_long_line_or_event_is_refused_in_bounded_memory(
    stream_server: StreamServer, kind: str, length: int
) -> None:
    # The endless line meets a 1 MB limit; the 100 MB event meets the default one (8 MiB).
    limit = 1 * MB if length < 0 else None
    effective = limit or 8 * MB
    progress = [0]
    stream_server.route("/long", _long_record_route(kind, length, progress))
    t = _http_transport(kind, stream_server.url("/long"), limit)
    with traced() as peak:
        events, failure = _run_to_failure(t)
        used = peak()
    assert [int(e.id or 0) for e in events] == [1, 2, 3]  # what came before is delivered
    cause = failure.__cause__
    assert isinstance(cause, MessageTooLarge)
    name = "max_event_bytes" if kind == "sse" else "max_line_bytes"
    assert name in cause.message and str(effective) in cause.message
    case = "endless line" if length < 0 else "100 MB event"
    sent = f"{progress[0] / MB:.1f} MB of it sent before the client hung up"
    report(f"{kind} {case}, limit {effective / MB:g} MB", used, sent)
    assert used < 4 * effective + 8 * MB


# -- WebSocket messages over max_message_bytes --------------------------------------------------


class LimitsServer(ResumableWebSocketServer):
    """Adds ``/huge?size=N&fragment=K``: three messages, then one of ``N`` bytes, as a single
    frame (``fragment=0``) or in frames of ``K`` bytes, written with flow control."""

    async def _huge(self, conn: Any, query: Dict[str, str]) -> None:
        size = int(query["size"])
        fragment = int(query.get("fragment", "0"))
        for i in (1, 2, 3):
            await conn.send(stream_message(i))
        transport = conn.transport
        if not fragment:
            transport.write(bytes([0x81]) + _length(size))
            fragment = len(PIECE)
            frames = False
        else:
            frames = True
        sent = 0
        first = True
        while sent < size and not transport.is_closing():
            n = min(len(PIECE), size - sent, fragment)
            piece = PIECE[:n]
            if frames:
                last = sent + n >= size
                head = (0x80 if last else 0) | (0x1 if first else 0x0)
                transport.write(bytes([head]) + _length(n) + piece)
                first = False
            else:
                transport.write(piece)
            sent += n
            while transport.get_write_buffer_size() > MB and not transport.is_closing():
                await asyncio.sleep(0.005)
        await conn.wait_closed()  # the client is expected to hang up long before the end

    _routes = {**ResumableWebSocketServer._routes, "/huge": _huge}


def _length(n: int) -> bytes:
    """The length byte (and extended length) of an unmasked frame of ``n`` bytes."""
    if n < 126:
        return bytes([n])
    if n < 1 << 16:
        return bytes([126]) + n.to_bytes(2, "big")
    return bytes([127]) + n.to_bytes(8, "big")


@pytest.mark.slow
@pytest.mark.parametrize(
    "size, fragment, limit",
    [
        (1 * MB + 1, 0, 1 * MB),  # a frame just over max_message_bytes
        (100 * MB, 0, None),  # a 100 MB frame, default limit (16 MiB)
        (100 * MB, 1 * MB, None),  # a 100 MB message in 1 MB frames
    ],
    ids=["frame-over-limit", "100MB-frame", "100MB-fragmented"],
)
def test_a_websocket_message_over_max_message_bytes_is_refused_in_bounded_memory(
    size: int, fragment: int, limit: int | None
) -> None:
    options: dict[str, Any] = {"reconnect": NO_RETRY, "heartbeat_interval": None}
    if limit is not None:
        options["max_message_bytes"] = limit
    effective = limit or 16 * MB
    with LimitsServer() as server:
        t = WebSocketTransport(server.url(f"/huge?size={size}&fragment={fragment}"), **options)
        with traced() as peak:
            events, failure = _run_to_failure(t)
            used = peak()
    assert [e.data for e in events] == [stream_message(i) for i in (1, 2, 3)]
    cause = failure.__cause__
    assert isinstance(cause, MessageTooLarge)
    assert "max_message_bytes" in cause.message and str(effective) in cause.message
    assert "1009" in cause.message
    what = f"{size / MB:.0f} MB" + (f" in {fragment / MB:g} MB frames" if fragment else " frame")
    report(f"websocket {what}, limit {effective / MB:g} MB", used, "until refused")
    if fragment:
        assert used < 3 * effective + 8 * MB  # the fragments received are held, up to the limit
    else:
        assert used < 8 * MB  # refused from the frame header: the payload is never buffered


# -- a paused consumer and a server that never stops -------------------------------------------

STRATEGIES = ["block", "drop-oldest", "drop-newest", "unlimited"]
MAX_SIZE = 500
BEFORE_PAUSE = 50


def _forever_transport(wire: str, server: Any, strategy: str) -> BaseTransport:
    buffer = BufferConfig(max_size=MAX_SIZE, strategy=strategy)
    policy = ReconnectPolicy(max_attempts=0)
    if wire == "websocket":
        t = WebSocketTransport(
            server.url("/resumable?count=-1&batch=100"),
            buffer=buffer,
            reconnect=policy,
            heartbeat_interval=0.2,  # many pings while the reader is held back: none may fire
            heartbeat_timeout=2.0,
        )
        WebSocketResume(t)
        return t
    if wire == "sse":
        return SSETransport(
            server.url("/forever"), buffer=buffer, reconnect=policy, idle_timeout=2.0
        )
    return HTTPStreamTransport(
        server.url("/forever-ndjson"), buffer=buffer, reconnect=policy, idle_timeout=2.0
    )


@contextlib.contextmanager
def _forever_server(wire: str) -> Iterator[Any]:
    if wire == "websocket":
        with ResumableWebSocketServer() as ws:
            yield ws
        return
    with StreamServer() as srv:
        srv.route("/forever", forever_route("sse"))
        srv.route("/forever-ndjson", forever_route("ndjson"))
        yield srv


def _event_number(wire: str, event: Event) -> int:
    if wire == "websocket":
        import json

        value = json.loads(event.data)["id"]
        assert isinstance(value, int)
        return value
    return int(event.id or 0)


@pytest.mark.slow
@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("wire", ["sse", "websocket", "http-stream"])
def test_a_paused_consumer_of_an_endless_stream_holds_bounded_memory(
    wire: str, strategy: str, wait_until: Callable[..., Any]
) -> None:
    received: List[int] = []
    enough = threading.Event()
    errors: List[Exception] = []
    with _forever_server(wire) as server:
        t = _forever_transport(wire, server, strategy)

        def on_event(event: Event) -> None:
            received.append(_event_number(wire, event))
            if len(received) == BEFORE_PAUSE:
                t.pause()  # from the listener: not one more event until resume()
                enough.set()

        t.on("event", on_event)
        t.on("error", errors.append)
        try:
            with traced() as peak:
                t.connect()
                assert enough.wait(10)
                delivered = len(received)
                # Let the server push far more than the buffer holds (or TCP push back).
                if strategy == "block":
                    wait_until(t._reader_blocked, timeout=10)
                elif strategy == "unlimited":
                    wait_until(lambda: t.metrics.buffer_size >= 20 * MAX_SIZE, timeout=20)
                else:
                    wait_until(lambda: t.metrics.messages_dropped >= 20 * MAX_SIZE, timeout=20)
                paused_at = t.metrics.messages_received
                size = t.metrics.buffer_size
                used = peak()
                assert len(received) == delivered  # paused: nothing delivered meanwhile
                t.resume()
                wait_until(lambda: len(received) >= delivered + MAX_SIZE + 10, timeout=20)
        finally:
            t.close()
    assert not [e for e in errors if "stall" in str(e) or "heartbeat" in str(e)]
    report(
        f"{wire} paused consumer, {strategy}, buffer {MAX_SIZE}",
        used,
        f"{paused_at} events received, {size} buffered",
    )
    before, after = received[:delivered], received[delivered:]
    # in order, never twice (listeners run behind the reader: with a drop strategy, a flood
    # may drop events before they were delivered, even before the pause)
    assert before == sorted(set(before)) and after == sorted(set(after))
    assert not after or after[0] > before[-1]
    if strategy in ("block", "unlimited"):
        assert received == list(range(1, len(received) + 1))  # nothing lost
        if strategy == "block":
            assert size <= MAX_SIZE
            assert used < 16 * MB
    else:
        # drop-oldest appends a read's batch (at most 64 KiB of events) before it trims the
        # oldest: a size read meanwhile may include that batch.
        assert size <= MAX_SIZE + (1000 if strategy == "drop-oldest" else 0)
        assert t.metrics.messages_dropped >= 20 * MAX_SIZE
        assert used < 16 * MB
        if strategy == "drop-newest":  # the oldest were kept: no gap right after the pause
            assert after[0] == before[-1] + 1
        else:  # the newest were kept: a gap right after the pause
            assert after[0] > before[-1] + 1


# -- idle streams ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/sse?count=1&end=hold", "/sse?count=1&end=hold&chunked=0", "/ndjson?count=1&end=hold"],
    ids=["sse-chunked", "sse-close-delimited", "ndjson-chunked"],
)
def test_a_stream_waiting_for_its_next_event_holds_no_read_buffer(
    stream_server: StreamServer, path: str, wait_until: Callable[..., Any]
) -> None:
    """A read blocked in the socket would hold a buffer of ``chunk_size`` (64 KiB) for as long
    as the stream is quiet: the reader waits in ``http.client``'s small buffer instead."""
    cls = SSETransport if path.startswith("/sse") else HTTPStreamTransport
    assert allocations_while_idle(lambda: cls(stream_server.url(path)), wait_until) == []
