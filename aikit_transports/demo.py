"""``aikit-transports demo``: a stream from the built-in local server that drops and resumes.

It shows what the library is for, with no network: the server cuts the connection every few
events, the transport reconnects with backoff and resumes where it was (SSE and NDJSON with
``Last-Event-ID``, WebSocket with the server's session), and the summary checks that nothing
was lost or repeated. Every line is printed by a callback, on the transport's reader thread,
so the narration is in the order things happened.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any, Dict, List, Optional, TextIO

from .config import ReconnectPolicy
from .errors import NotSupportedError, TransportError
from .events import Event
from .transports import BaseTransport, resolve_transport

__all__ = ["run_demo", "DROP_EVERY"]

#: The server cuts the connection after this many events of each connection.
DROP_EVERY = 12
#: Seconds between two events of the server.
_INTERVAL = 0.05
_WHAT = {
    "sse": "an SSE stream",
    "websocket": "a WebSocket stream",
    "http-stream": "an NDJSON stream (http-stream)",
}
#: How long the demo waits for the next event before it calls the run a failure.
_STALL = 10.0


class _Printer:
    """Timestamped demo lines on ``out`` (serialised: callbacks and the main thread write)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.start = time.monotonic()
        self.lock = threading.Lock()

    def __call__(self, text: str) -> None:
        with self.lock:
            self.out.write(f"[{time.monotonic() - self.start:6.2f}s] {text}\n")
            self.out.flush()


def _server_for(wire: str) -> Any:
    if wire == "websocket":
        try:
            from .testing.ws import WebSocketServer
        except ImportError:
            raise NotSupportedError(
                "the WebSocket demo's server needs the 'websockets' package: "
                "pip install 'aikit-transports[testing]'"
            ) from None
        return WebSocketServer()
    from .testing import StreamServer

    return StreamServer()


def _url(server: Any, wire: str, count: int) -> str:
    if wire == "websocket":
        query = f"count={count}&drop_every={DROP_EVERY}&interval={_INTERVAL}&session=demo"
        return str(server.url(f"/stream?{query}"))
    query = f"count={count}&drop_every={DROP_EVERY}&delay={_INTERVAL}"
    if wire == "sse":
        return str(server.url(f"/sse?{query}&retry=300&end=sentinel"))
    return str(server.url(f"/ndjson?{query}"))


def _options(wire: str, forever: bool) -> Dict[str, Any]:
    options: Dict[str, Any] = {
        "reconnect": ReconnectPolicy(
            initial_delay=0.3, max_delay=2.0, max_attempts=None if forever else 10
        )
    }
    if wire == "http-stream":
        options["reconnect_on_eof"] = False  # NDJSON has no end marker: a clean end is done
    if wire == "websocket":
        options["heartbeat_interval"] = 5.0
    return options


def _number(event: Event) -> Optional[int]:
    """The event's sequence number: its id, or the ``id`` inside a WebSocket JSON message."""
    if event.id is not None and event.id.isdigit():
        return int(event.id)
    data = event.data
    if isinstance(data, str) and data.startswith("{"):
        try:
            data = json.loads(data)
        except ValueError:
            return None
    if isinstance(data, dict) and isinstance(data.get("id"), int):
        return int(data["id"])
    return None


class _Narrator:
    """The demo's callbacks: print the story and keep the sequence numbers for the summary."""

    def __init__(self, transport: BaseTransport, say: _Printer, wire: str) -> None:
        self.transport = transport
        self.say = say
        self.wire = wire
        self.numbers: List[Optional[int]] = []
        self.drops = 0
        self.failure: Optional[TransportError] = None
        self.finished = threading.Event()
        self._elided = False
        transport.on("connected", self.connected)
        transport.on("event", self.event)
        transport.on("reconnecting", self.reconnecting)
        transport.on("done", lambda: say("done: the server finished the stream"))
        transport.on("closed", self.closed)

    def connected(self) -> None:
        if not self.numbers:
            self.say(f"connected to {self.transport.url.split('?')[0]}")
        elif self.wire == "websocket":
            self.say("resumed: reconnected; the server continues the session")
        else:
            self.say(f"resumed: reconnected with Last-Event-ID: {self.transport.last_event_id}")

    def event(self, event: Event) -> None:
        self.numbers.append(_number(event))
        n = len(self.numbers)
        if n <= 3 or n % DROP_EVERY in (0, 1):
            self._elided = False
            data = repr(event.data)
            self.say(f"event {n:>3}: {data if len(data) <= 44 else data[:41] + '...'}")
        elif not self._elided:
            self._elided = True
            self.say("  ...")

    def reconnecting(self, attempt: int, delay: float, error: TransportError) -> None:
        if attempt == 1:
            self.drops += 1
            self.say(f"dropped: {error.message}")
        self.say(f"reconnecting (attempt {attempt}) in {delay:.2f} s")

    def closed(self, reason: str) -> None:
        self.finished.set()


def run_demo(
    wire: str = "sse", *, count: int = 40, forever: bool = False, out: Optional[TextIO] = None
) -> int:
    """Stream ``count`` events (or forever) from a local server that keeps dropping the stream.

    Returns the exit status: 0 when every event arrived once and in order, 1 otherwise, 130
    after Ctrl-C.
    """
    out = out or sys.stdout
    try:
        server = _server_for(wire)
    except NotSupportedError as exc:
        sys.stderr.write(f"aikit-transports: {exc}\n")
        return 1
    if forever:
        count = -1 if wire == "websocket" else 10**9
    with server:
        url = _url(server, wire, count)
        what = _WHAT.get(wire, f"a {wire} stream")
        out.write(
            f"aikit-transports demo: {what} of {'endless' if forever else count} events "
            f"from a local server (no network).\nThe server cuts the connection after every "
            f"{DROP_EVERY} events; watch the transport reconnect and resume.\n\n"
        )
        out.flush()
        say = _Printer(out)
        transport = resolve_transport(wire)(url, **_options(wire, forever))
        story = _Narrator(transport, say, wire)
        interrupted = False
        try:
            transport.connect()
            _wait(story)
        except KeyboardInterrupt:
            interrupted = True
            say("interrupted")
        except (TransportError, TimeoutError) as exc:
            say(f"failed: {exc}")
            return 1
        finally:
            transport.close()
        expected = None if forever or interrupted else count
        status = _summary(out, transport, story, expected)
        return 130 if interrupted else status


def _wait(story: _Narrator) -> None:
    """Until the stream ends; ``TimeoutError`` if it stalls. Timed waits keep Ctrl-C working."""
    seen, since = 0, time.monotonic()
    while not story.finished.wait(0.25):
        if len(story.numbers) != seen:
            seen, since = len(story.numbers), time.monotonic()
        elif time.monotonic() - since > _STALL:
            raise TimeoutError(f"no event for {_STALL:g} s")


def _summary(
    out: TextIO, transport: BaseTransport, story: _Narrator, expected: Optional[int]
) -> int:
    m = transport.metrics
    numbers = [n for n in story.numbers if n is not None]
    repeated = len(numbers) - len(set(numbers))
    missing = len(set(range(1, max(numbers, default=0) + 1)) - set(numbers))
    good = (
        numbers == sorted(numbers)
        and not repeated
        and not missing
        and len(numbers) == len(story.numbers)
        and (expected is None or len(numbers) == expected)
    )
    verdict = (
        "nothing lost, nothing repeated, in order"
        if good
        else f"MISMATCH: {missing} missing, {repeated} repeated"
    )
    lat = m.latency
    span = f"{numbers[0]}..{numbers[-1]}" if numbers else "none"
    out.write(
        f"\nsummary: {len(story.numbers)} events (numbers {span}): {verdict}\n"
        f"         {_plural(story.drops, 'dropped connection')}, "
        f"{_plural(m.reconnects, 'reconnect')}, "
        f"{m.bytes_received} bytes, latency p50 {lat.get('p50', 0.0):.2f} ms / "
        f"p99 {lat.get('p99', 0.0):.2f} ms\n"
    )
    out.flush()
    return 0 if good else 1


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
