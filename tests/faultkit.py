"""Helpers for the fault, limit, TLS and thread tests: fast resumable streams on every wire.

* :func:`sse_route` / :func:`ndjson_route`: a ``StreamServer`` route serving ``count`` events,
  pre-encoded once, written in 16 KiB pieces and resumed after ``Last-Event-ID``; the stream
  ends with ``data: [DONE]`` (SSE) or, for NDJSON, a 204 to a client resuming past the end.
* :class:`ResumableWebSocketServer`: the test WebSocket server plus ``/resumable?count=N``,
  which waits for ``{"after": k}`` from the client and streams ids ``k+1..N`` (``count=-1``:
  forever), then closes with 1000. WebSocket has no Last-Event-ID: real APIs resume with a
  message naming the last id seen, and :class:`WebSocketResume` does that for a transport.
* :class:`Tally`: checks a received id sequence: exactly once, in order.
* :func:`connect_in_background`: ``connect()`` in a thread, its error kept for the test.
* :func:`allocations_while_idle`: what an HTTP stream's reader holds while it waits.
"""

from __future__ import annotations

import asyncio
import json
import struct
import threading
import tracemalloc
from typing import Any, Callable, Dict, List, Tuple

from aikit_transports import Event
from aikit_transports.testing import RecordedRequest, StreamWriter
from aikit_transports.testing.ws import WebSocketServer, stream_message
from aikit_transports.transports.base import BaseTransport

_PIECE = 16 * 1024


def _resume_from(request: RecordedRequest) -> int:
    """One past the numeric ``Last-Event-ID`` of ``request``, else 1."""
    try:
        return int(request.headers.get("Last-Event-ID", "")) + 1
    except ValueError:
        return 1


class _Encoded:
    """``count`` pre-encoded records and where each one starts."""

    def __init__(self, count: int, render: Callable[[int], bytes]) -> None:
        parts = [render(i) for i in range(1, count + 1)]
        self.offsets = [0]
        for part in parts:
            self.offsets.append(self.offsets[-1] + len(part))
        self.blob = b"".join(parts)
        self.count = count

    def after(self, first: int) -> memoryview:
        """The bytes of records ``first..count`` (empty past the end)."""
        first = max(1, first)
        if first > self.count:
            return memoryview(b"")
        return memoryview(self.blob)[self.offsets[first - 1] :]


def _write_pieces(writer: StreamWriter, data: memoryview) -> None:
    for start in range(0, len(data), _PIECE):
        if writer.closing:
            return
        writer.write(bytes(data[start : start + _PIECE]))


def sse_route(count: int, size: int = 0) -> Callable[[RecordedRequest, StreamWriter], None]:
    """SSE events ``id: i`` / ``data: event i`` (padded to ``size``), then ``[DONE]``."""
    encoded = _Encoded(
        count, lambda i: f"id: {i}\ndata: {f'event {i}'.ljust(size, 'x')}\n\n".encode()
    )

    def route(request: RecordedRequest, writer: StreamWriter) -> None:
        writer.send_status(200, {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        _write_pieces(writer, encoded.after(_resume_from(request)))
        if not writer.closing:
            writer.write(b"data: [DONE]\n\n")

    return route


def ndjson_line(i: int, size: int = 0) -> bytes:
    return json.dumps({"id": i, "data": f"line {i}".ljust(size, "x")}).encode() + b"\n"


def ndjson_route(count: int, size: int = 0) -> Callable[[RecordedRequest, StreamWriter], None]:
    """NDJSON lines ``{"id": i, "data": "line i"}``; a 204 to a client resuming past the end."""
    encoded = _Encoded(count, lambda i: ndjson_line(i, size))

    def route(request: RecordedRequest, writer: StreamWriter) -> None:
        first = _resume_from(request)
        if first > count:
            writer.send_status(204)
            return
        writer.send_status(200, {"Content-Type": "application/x-ndjson"})
        _write_pieces(writer, encoded.after(first))

    return route


def forever_route(
    kind: str, size: int = 100, batch: int = 100
) -> Callable[[RecordedRequest, StreamWriter], None]:
    """An endless stream (``kind`` ``"sse"`` or ``"ndjson"``) of ``size``-byte events from
    ``Last-Event-ID`` + 1 on, written ``batch`` at a time until the client goes away."""

    def render(i: int) -> bytes:
        if kind == "sse":
            return f"id: {i}\ndata: {f'event {i}'.ljust(size, 'x')}\n\n".encode()
        return ndjson_line(i, size)

    content_type = "text/event-stream" if kind == "sse" else "application/x-ndjson"

    def route(request: RecordedRequest, writer: StreamWriter) -> None:
        writer.send_status(200, {"Content-Type": content_type})
        n = _resume_from(request)
        while not writer.closing:  # ends with OSError once the client is gone
            writer.write(b"".join(render(i) for i in range(n, n + batch)))
            n += batch

    return route


# -- WebSocket --------------------------------------------------------------------------------


def ws_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """An unmasked (server-to-client) frame holding ``payload`` whole."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, n)
    return head + payload


class ResumableWebSocketServer(WebSocketServer):
    """``WebSocketServer`` with ``/resumable`` (see the module docstring).

    Parameters of ``/resumable``: ``count`` (-1: forever), ``interval`` (seconds between
    batches of ``batch`` messages; 0 sends everything at once, pre-encoded).
    """

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._encoded: Dict[int, _Encoded] = {}
        self._encoded_lock = threading.Lock()
        #: Every ``after`` value clients resumed from, in order.
        self.resumed: List[int] = []

    def _frames(self, count: int) -> _Encoded:
        with self._encoded_lock:
            found = self._encoded.get(count)
            if found is None:
                found = self._encoded[count] = _Encoded(
                    count, lambda i: ws_frame(stream_message(i).encode())
                )
            return found

    async def _resumable(self, conn: Any, query: Dict[str, str]) -> None:
        count = int(query.get("count", "10"))
        interval = float(query.get("interval", "0"))
        batch = int(query.get("batch", "10"))
        first = json.loads(await conn.recv())
        after = int(first["after"])
        self.resumed.append(after)
        self._notify()
        if count >= 0 and not interval:
            # Pre-encoded frames straight onto the transport: the stream costs one write.
            conn.transport.write(bytes(self._frames(count).after(after + 1)))
        else:
            n = after
            while (count < 0 or n < count) and not conn.transport.is_closing():
                last = n + batch if count < 0 else min(count, n + batch)
                data = b"".join(
                    ws_frame(stream_message(i).encode()) for i in range(n + 1, last + 1)
                )
                conn.transport.write(data)
                n = last
                while (
                    conn.transport.get_write_buffer_size() > 256 * 1024
                    and not conn.transport.is_closing()
                ):
                    await asyncio.sleep(0.005)  # a paused client: wait for room, like a drain
                if interval:
                    await asyncio.sleep(interval)
        await conn.close(1000)

    _routes = {**WebSocketServer._routes, "/resumable": _resumable}


class WebSocketResume:
    """Resumes a WebSocket stream of ``{"id": n, ...}`` messages: on every connection, sends
    ``{"after": <last id received>}`` (from a ``connected`` listener, so before any newer send).
    """

    def __init__(self, transport: BaseTransport) -> None:
        self.last = 0
        self._transport = transport
        transport.on("event", self._event)
        transport.on("connected", self._connected)

    def _event(self, event: Event) -> None:
        self.last = json.loads(event.data)["id"]

    def _connected(self) -> None:
        self._transport.send({"after": self.last})


def ws_id(event: Event) -> int:
    value = json.loads(event.data)["id"]
    assert isinstance(value, int)
    return value


def event_id(event: Event) -> int:
    """The numeric id of an SSE or NDJSON event."""
    assert event.id is not None
    return int(event.id)


class Tally:
    """Counts of a received id sequence that should be 1, 2, 3, ...: lost ids (gaps) and
    duplicated (or out-of-order) ones."""

    def __init__(self) -> None:
        self.received = 0
        self.last = 0
        self.lost = 0
        self.duplicated = 0

    def add(self, n: int) -> None:
        self.received += 1
        if n <= self.last:
            self.duplicated += 1
            return
        self.lost += n - self.last - 1
        self.last = n

    def as_tuple(self) -> Tuple[int, int, int]:
        return self.received, self.lost, self.duplicated


def quiet_stream(wire: str, servers: Dict[str, Any], count: int, **options: Any) -> BaseTransport:
    """On the ``servers`` fixture's servers, a stream of ``count`` events that then stays open,
    silent: ``wire`` is ``"sse"``, ``"websocket"`` or ``"http-stream"``."""
    from aikit_transports import HTTPStreamTransport, SSETransport, WebSocketTransport

    if wire == "websocket":
        url = servers["ws"].url(f"/stream?count={count}&close=none")
        return WebSocketTransport(url, heartbeat_interval=None, **options)
    if wire == "sse":
        return SSETransport(servers["http"].url(f"/sse?count={count}&end=hold"), **options)
    return HTTPStreamTransport(servers["http"].url(f"/ndjson?count={count}&end=hold"), **options)


def connect_in_background(t: Any) -> Tuple[threading.Thread, List[Any]]:
    """Start ``t.connect()`` in a thread; the list receives the ``TransportError`` it raises."""
    from aikit_transports import TransportError

    outcome: List[Any] = []

    def connect() -> None:
        try:
            t.connect()
        except TransportError as exc:
            outcome.append(exc)

    connector = threading.Thread(target=connect)
    connector.start()
    return connector, outcome


def allocations_while_idle(
    make: Callable[[], BaseTransport], wait_until: Callable[..., Any]
) -> List[int]:
    """Sizes of the allocations of 16 KiB or more (the test servers' left out) alive while
    the transport ``make()`` returns waits for its next event, once it has delivered one."""

    def reader_in_a_read(t: BaseTransport) -> bool:
        if t._io is not None:  # on the shared I/O threads: its socket waits in a selector
            return t._io.waiting()
        return t._waiting_since is not None  # its reader thread waits in a poll

    tracemalloc.start()
    try:
        t = make()
        try:
            next(t.iter_events(timeout=10))
            wait_until(lambda: reader_in_a_read(t), message="the reader waiting for more")
            snapshot = tracemalloc.take_snapshot()
        finally:
            t.close()
    finally:
        tracemalloc.stop()
    ours = snapshot.filter_traces(
        [  # the in-process servers and proxies: their threads and their asyncio loops
            tracemalloc.Filter(False, "*/aikit_transports/testing/*"),
            tracemalloc.Filter(False, "*/asyncio/*"),
        ]
    )
    return [trace.size for trace in ours.traces if trace.size >= 16384]
