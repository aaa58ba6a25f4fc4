"""Every wire through a misbehaving network (``FaultProxy``): cuts, 1-byte fragments, stalls.

* 50 cuts at random points of a 10,000-event stream: every event arrives exactly once, in order
  (SSE and HTTP stream resume with ``Last-Event-ID``; WebSocket with a resume message).
* Forwarding one byte per write gives the same events, ids, types and errors as a whole stream.
* A connection that silently stops forwarding is detected (``idle_timeout`` or the heartbeat),
  reported as ``HeartbeatTimeout`` and recovered once the network comes back, losing nothing.
"""

from __future__ import annotations

import contextlib
import json
import random
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, List, Tuple

import pytest
from faultkit import (
    ResumableWebSocketServer,
    Tally,
    WebSocketResume,
    event_id,
    ndjson_route,
    sse_route,
    ws_id,
)

from aikit_transports import (
    Event,
    HeartbeatTimeout,
    HTTPStreamTransport,
    ProtocolError,
    ReconnectPolicy,
    SSETransport,
    TransportError,
    WebSocketTransport,
)
from aikit_transports.testing import FaultProxy, RecordedRequest, StreamServer, StreamWriter
from aikit_transports.transports.base import BaseTransport

WIRES = ("sse", "websocket", "http-stream")
FAST = ReconnectPolicy(initial_delay=0, jitter=0, max_attempts=10)
STREAM_EVENTS = 10_000
CUTS = 50


@dataclass
class Rig:
    """A server for one wire, a proxy in front of it, and how to stream through the proxy."""

    wire: str
    proxy: FaultProxy
    server: Any  # StreamServer, or ResumableWebSocketServer for "websocket"
    key: Callable[[Event], int]  # the numeric id of an event

    def transport(self, path: str, **options: Any) -> BaseTransport:
        if self.wire == "websocket":
            t: BaseTransport = WebSocketTransport(self.proxy.url(path), **options)
            WebSocketResume(t)
            return t
        cls = SSETransport if self.wire == "sse" else HTTPStreamTransport
        return cls(self.proxy.url(path, scheme="http"), **options)

    def stream_path(self) -> str:
        """The 10,000-event resumable stream of this wire."""
        if self.wire == "websocket":
            return f"/resumable?count={STREAM_EVENTS}"
        return "/sse-pre" if self.wire == "sse" else "/ndjson-pre"


@contextlib.contextmanager
def rig(wire: str) -> Iterator[Rig]:
    if wire == "websocket":
        with ResumableWebSocketServer() as ws, FaultProxy(ws.host, ws.port) as proxy:
            yield Rig(wire, proxy, ws, ws_id)
        return
    with StreamServer() as srv, FaultProxy(srv.host, srv.port) as proxy:
        srv.route("/sse-pre", sse_route(STREAM_EVENTS))
        srv.route("/ndjson-pre", ndjson_route(STREAM_EVENTS))
        yield Rig(wire, proxy, srv, event_id)


# -- cuts ---------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("wire", WIRES)
def test_50_random_cuts_in_a_10000_event_stream_lose_and_repeat_nothing(wire: str) -> None:
    rng = random.Random(f"cuts-{wire}")
    with rig(wire) as r:
        proxy = r.proxy
        t = r.transport(r.stream_path(), reconnect=FAST)
        # Each connection is cut once the proxy forwarded a random number of bytes of it
        # (armed before the connection opens, so the cut lands inside the stream: headers,
        # the middle of an event, between events), until 50 cuts were made. The budgets add
        # up to less than the stream, so all 50 happen before it ends.
        per_cut = STREAM_EVENTS * 25 // (CUTS + 10)
        armed = [0]
        reconnecting: List[TransportError] = []

        def arm() -> None:
            if armed[0] < CUTS:
                armed[0] += 1
                proxy.cut_after(rng.randint(1, per_cut))

        t.on("connecting", arm)
        t.on("reconnecting", lambda attempt, delay, error: reconnecting.append(error))
        tally = Tally()
        try:
            for event in t.iter_events(timeout=20):
                tally.add(r.key(event))
        finally:
            t.close()
    assert armed[0] == CUTS and proxy.cuts >= CUTS  # every armed cut happened
    assert len(reconnecting) >= CUTS
    assert tally.as_tuple() == (STREAM_EVENTS, 0, 0)
    assert tally.last == STREAM_EVENTS


def test_a_cut_inside_the_response_headers_is_retried(stream_server: StreamServer) -> None:
    # Found by the 50-cut test: http.client takes the end of the connection for the end of
    # the headers, so "Content-Type: tex" looked like a wrong content type and failed the
    # transport for good. A cut is a lost connection, retried like any other.
    attempts = [0]

    def route(request: RecordedRequest, writer: StreamWriter) -> None:
        attempts[0] += 1
        if attempts[0] == 1:
            writer.write_raw(b"HTTP/1.1 200 OK\r\nContent-Type: tex")  # then the cut
            writer.close_abruptly()
            return
        writer.send_status(200, {"Content-Type": "text/event-stream"})
        writer.write(b"id: 1\ndata: after the cut\n\ndata: [DONE]\n\n")

    stream_server.route("/cut-headers", route)
    t = SSETransport(stream_server.url("/cut-headers"), reconnect=FAST)
    reasons: List[TransportError] = []
    t.on("reconnecting", lambda attempt, delay, error: reasons.append(error))
    try:
        assert [e.data for e in t.iter_events(timeout=10)] == ["after the cut"]
    finally:
        t.close()
    assert [type(e).__name__ for e in reasons] == ["ConnectError"]
    assert "connection lost in the response headers" in reasons[0].message


def test_a_complete_answer_of_the_wrong_type_still_fails_at_once(
    stream_server: StreamServer,
) -> None:
    for body in (b"", b"<html>login</html>"):  # with an empty body too: the headers were whole

        def route(request: RecordedRequest, writer: StreamWriter, body: bytes = body) -> None:
            writer.send_status(200, {"Content-Type": "text/html", "Content-Length": str(len(body))})
            writer.write(body)

        stream_server.route("/html", route)
        t = SSETransport(stream_server.url("/html"), reconnect=FAST)
        try:
            with pytest.raises(ProtocolError, match="text/html"):
                t.connect()
        finally:
            t.close()
        assert t.metrics.reconnect_attempts == 0


# -- 1-byte fragments ---------------------------------------------------------------------------

# An SSE stream with every framing detail: BOM, the three line ends (a CRLF split by every
# fragment), multi-byte characters, comments, retry, event types, an id reset, multi-line data.
TRICKY_SSE = (
    "\ufeff: hello\r\n\r\nretry: 1500\nid: 1\ndata: caf\u00e9 \u20ac \U0001d11e\n\n"
    "event: update\rid: 2\rdata: line one\rdata: line two\r\r"
    "data: \u2028 not a line end \x85\r\n: keep-alive\r\n\r\n"
    "id\nevent: reset\ndata: no id\n\n"
    + "".join(f'id: {i}\r\ndata: {{"n": {i}, "s": "\u00e9\u00e8"}}\r\n\r\n' for i in range(3, 60))
    + "data: [DONE]\n\n"
).encode()

TRICKY_NDJSON = (
    '\ufeff{"id": 1, "text": "caf\u00e9 \U0001d11e"}\r\n'
    '{"id": 2, "text": "sep \u2028 \u0085 inside"}\r'
    "\n   \n"
    '{"id": 3, "broken": \n'
    + "".join(f'{{"id": {i}, "v": [{i}, "\u20ac"]}}\n' for i in range(4, 60))
).encode()


def _fixed(body: bytes, content_type: str) -> Callable[[RecordedRequest, StreamWriter], None]:
    def route(request: RecordedRequest, writer: StreamWriter) -> None:
        if request.headers.get("Last-Event-ID"):
            writer.send_status(204)
            return
        writer.send_status(200, {"Content-Type": content_type})
        writer.write(body)

    return route


def _collect(t: BaseTransport) -> Tuple[List[Tuple[Any, ...]], List[str]]:
    """Every event (as a tuple of its fields but the times) and every error message."""
    errors: List[str] = []
    t.on("error", lambda error: errors.append(error.message))
    try:
        events = [(e.data, e.type, e.id, e.retry) for e in t.iter_events(timeout=20)]
    finally:
        t.close()
    return events, errors


@pytest.mark.slow
@pytest.mark.parametrize("wire", WIRES)
def test_one_byte_fragments_change_nothing(wire: str) -> None:
    results = []
    for fragment in (False, True):
        with rig(wire) as r:
            r.proxy.fragment(fragment)
            if wire == "websocket":
                t = r.transport("/resumable?count=300", reconnect=FAST)
            else:
                body, content_type = (
                    (TRICKY_SSE, "text/event-stream")
                    if wire == "sse"
                    else (TRICKY_NDJSON, "application/x-ndjson")
                )
                r.server.route("/tricky", _fixed(body, content_type))
                t = r.transport("/tricky", reconnect=FAST)
            results.append(_collect(t))
    plain, fragmented = results
    assert fragmented == plain
    events, errors = plain
    if wire == "sse":
        assert [e[0] for e in events[:3]] == [
            "caf\u00e9 \u20ac \U0001d11e",
            "line one\nline two",
            "\u2028 not a line end \x85",
        ]
        assert events[1][1:] == ("update", "2", 1500)
        assert events[3][1:3] == ("reset", None)
        assert len(events) == 4 + 57 and errors == []
    elif wire == "http-stream":
        assert events[1][0]["text"] == "sep \u2028 \u0085 inside"
        assert len(events) == 2 + 56
        assert len(errors) == 1 and "line 4" in errors[0]
    else:
        assert [json.loads(e[0])["id"] for e in events] == list(range(1, 301))


# -- silent stalls ------------------------------------------------------------------------------

STALL_POLICY = ReconnectPolicy(initial_delay=0.05, max_delay=0.2, jitter=0, max_attempts=None)
STALL_EVENTS = 100


@pytest.mark.slow
@pytest.mark.parametrize(
    "wire, detector",
    [("sse", "idle"), ("http-stream", "idle"), ("websocket", "heartbeat"), ("websocket", "idle")],
)
def test_a_silent_stall_is_detected_and_recovered(wire: str, detector: str) -> None:
    options: dict[str, Any] = {"reconnect": STALL_POLICY, "timeout": 10.0}
    if wire == "websocket":
        path = f"/resumable?count={STALL_EVENTS}&interval=0.01&batch=1"
        if detector == "heartbeat":
            options.update(heartbeat_interval=0.2, heartbeat_timeout=0.3)
        else:
            options.update(heartbeat_interval=None, idle_timeout=0.4)
    else:
        endpoint = "sse?end=sentinel" if wire == "sse" else "ndjson?end=204"
        path = f"/{endpoint}&count={STALL_EVENTS}&delay=0.01"
        options.update(idle_timeout=0.4)
    with rig(wire) as r:
        t = r.transport(path, **options)
        stalls: List[TransportError] = []
        detected = threading.Event()
        after_stall: List[TransportError] = []

        def on_error(error: TransportError) -> None:
            if isinstance(error, HeartbeatTimeout):
                stalls.append(error)
                detected.set()

        t.on("error", on_error)
        t.on("reconnecting", lambda attempt, delay, error: after_stall.append(error))
        tally = Tally()
        events = t.iter_events(timeout=20)
        try:
            for _ in range(20):
                tally.add(r.key(next(events)))
            r.proxy.stall()  # silently: no FIN, no RST, the connection just goes quiet
            assert detected.wait(20), "the stall was never detected"
            r.proxy.resume()
            for event in events:
                tally.add(r.key(event))
        finally:
            t.close()
    assert tally.as_tuple() == (STALL_EVENTS, 0, 0)
    assert stalls[0] in after_stall  # the stall error is the reason of the reconnect
    if detector == "heartbeat":
        assert "heartbeat_timeout" in stalls[0].message
    else:
        assert "idle_timeout" in stalls[0].message


# -- the soak tool ------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_soak_tool_runs_and_reports() -> None:
    soak = Path(__file__).resolve().parent.parent / "bench" / "soak.py"
    done = subprocess.run(
        [sys.executable, str(soak), "--seconds", "5", "--rate", "200", "--seed", "7"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    for word in ("sent", "received", "lost", "duplicated", "reconnects", "errors"):
        assert word in out
    assert "peak threads" in out and "peak RSS" in out
    assert "OK: every event exactly once" in out
