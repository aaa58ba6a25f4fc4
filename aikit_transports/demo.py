"""``aikit-transports demo``: a stream from the built-in local server that drops and resumes.

It shows what the library is for, with no network: the server cuts the connection every few
events, the transport reconnects with backoff and resumes from ``Last-Event-ID``, and the
summary checks that nothing was lost or repeated.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Optional, TextIO

from .config import ReconnectPolicy
from .errors import TransportError
from .events import Event
from .transports import BaseTransport, resolve_transport

__all__ = ["run_demo"]


class _Printer:
    """Timestamped demo lines on ``out``."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.start = time.monotonic()

    def __call__(self, text: str) -> None:
        self.out.write(f"[{time.monotonic() - self.start:6.2f}s] {text}\n")
        self.out.flush()


def _server_for(wire: str) -> Any:
    if wire == "websocket":
        from .testing.ws import WebSocketServer

        return WebSocketServer()
    from .testing import StreamServer

    return StreamServer()


def _url(server: Any, wire: str, count: int, drop_every: int, delay: float) -> str:
    path = {"sse": "/sse", "http-stream": "/ndjson", "websocket": "/stream"}[wire]
    query = f"count={count}&drop_every={drop_every}&delay={delay}"
    if wire == "sse":
        query += "&retry=300&end=sentinel"
    return str(server.url(f"{path}?{query}"))


def run_demo(
    wire: str = "sse", *, count: int = 40, forever: bool = False, out: Optional[TextIO] = None
) -> int:
    """Stream ``count`` events (or forever) from a local server that keeps dropping the stream."""
    out = out or sys.stdout
    say = _Printer(out)
    if forever:
        count = 10**9
    drop_every = 12
    with _server_for(wire) as server:
        url = _url(server, wire, count, drop_every, 0.05)
        out.write(
            f"aikit-transports demo: {wire} stream of {'endless' if forever else count} events "
            f"from a local server at {url.split('?')[0]}\nThe server drops the connection every "
            f"{drop_every} events; watch the transport reconnect and resume.\n\n"
        )
        policy = ReconnectPolicy(
            initial_delay=0.3, max_delay=2.0, max_attempts=None if forever else 10
        )
        transport = resolve_transport(wire)(url, reconnect=policy)
        _narrate(transport, say)
        ids: list[str] = []
        try:
            for event in transport.iter_events(timeout=10.0):
                ids.append(event.id or "")
                if len(ids) <= 3 or len(ids) % drop_every in (0, 1):
                    say(f"event  id={event.id} data={_show(event)}")
        except KeyboardInterrupt:
            say("interrupted")
        except (TransportError, TimeoutError) as exc:
            say(f"failed: {exc}")
            return 1
        finally:
            transport.close()
        _summary(out, transport, ids, expected=None if forever else count)
    return 0


def _show(event: Event) -> str:
    text = repr(event.data)
    return text if len(text) <= 40 else text[:37] + "..."


def _narrate(transport: BaseTransport, say: _Printer) -> None:
    transport.on(
        "connected",
        lambda: say(
            "connected"
            + (
                f" (resuming with Last-Event-ID: {transport.last_event_id})"
                if transport.last_event_id
                else ""
            )
        ),
    )
    transport.on(
        "reconnecting",
        lambda attempt, delay, error: say(
            f"connection lost ({error.message}); reconnecting (attempt {attempt}) in {delay:.2f} s"
        ),
    )
    transport.on("done", lambda: say("done: the server finished the stream"))


def _summary(
    out: TextIO, transport: BaseTransport, ids: list[str], expected: Optional[int]
) -> None:
    m = transport.metrics
    numbers = [int(i) for i in ids if i.isdigit()]
    in_order = numbers == sorted(numbers)
    duplicates = len(numbers) - len(set(numbers))
    missing = 0 if not numbers else (numbers[-1] - numbers[0] + 1) - len(set(numbers))
    verdict = (
        "nothing lost, nothing repeated"
        if in_order
        and not duplicates
        and not missing
        and (expected is None or len(numbers) == expected)
        else "MISMATCH"
    )
    lat = m.latency
    first, last = (numbers[0], numbers[-1]) if numbers else ("-", "-")
    out.write(
        f"\nsummary: {len(ids)} events (ids {first}..{last}"
        f", {verdict}), {m.reconnects} reconnects, {m.bytes_received} bytes, "
        f"latency p50 {lat.get('p50', 0):.2f} ms / p99 {lat.get('p99', 0):.2f} ms\n"
    )
