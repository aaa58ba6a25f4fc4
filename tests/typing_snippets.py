"""What users write, type-checked by ``tests/test_typing.py`` (mypy --strict, and pyright strict
when installed); never run. A ``# type: ignore[...]`` marks a line that must be an error: mypy
reports an ignore that is no longer needed, so a check that stops catching it fails too."""

from __future__ import annotations

from typing import Any, Optional

from aikit_transports import (
    BackpressureInfo,
    Event,
    HTTPStatusError,
    HTTPStreamTransport,
    ReconnectFailed,
    SSETransport,
    TransportError,
    TransportHealth,
    TransportManager,
    TransportType,
    WebSocketClosed,
    WebSocketTransport,
)
from aikit_transports.transports import BaseTransport

URL = "https://api.example.com/stream"


def callbacks(t: SSETransport) -> None:
    t.on("event", lambda e: print(e.data, e.id, e.json()))
    t.on("connected", lambda: print("connected"))
    t.on("reconnecting", lambda attempt, delay, error: print(attempt + 1, delay * 2, error.message))
    t.on("error", lambda error: print(error.retryable, error.transport_id))
    t.on("closed", lambda reason: print(reason.upper()))
    t.on("backpressure", lambda info: print(info.size, info.max_size))
    unsubscribe = t.once("done", lambda: None)
    unsubscribe()
    t.off("event")

    @t.on("event")
    def on_event(event: Event) -> None:
        print(event.data)

    @t.once("drain")
    def on_drain(info: BackpressureInfo) -> None:
        print(info.dropped)

    t.on("message", lambda e: None)  # type: ignore[call-overload]
    t.on("event", lambda: None)  # type: ignore[call-overload]
    reason: Optional[str] = t.wait(timeout=1.0)
    print(reason)


def iterating() -> None:
    with SSETransport(URL, headers={"Authorization": "Bearer x"}) as t:
        for event in t.iter_events(timeout=30):
            print(event.data, event.received_at + 1.0)
        print(t.last_event_id, t.metrics.connected_at, t.metrics.latency.get("p50"))


def subclass_kept() -> None:
    with WebSocketTransport("wss://api.example.com/ws") as ws:
        print(ws.subprotocol)
        ws.send({"type": "ping"})
    ws2: WebSocketTransport = WebSocketTransport("wss://x").connect(timeout=5)
    print(ws2)


def manager() -> None:
    with TransportManager(max_transports=10) as mgr:
        sse: SSETransport = mgr.create("sse", URL)
        ws: WebSocketTransport = mgr.create("websocket", "wss://x")
        ws_too: WebSocketTransport = mgr.create(TransportType.WEBSOCKET, "wss://x")
        ndjson: HTTPStreamTransport = mgr.get_or_create("http-stream", URL)
        mine: WebSocketTransport = mgr.create(WebSocketTransport, "wss://x")
        anything: BaseTransport = mgr.create("redis-stream", "redis://localhost/0?stream=s")
        print(sse, ws, ws_too, ndjson, mine, anything)
        bad: SSETransport = mgr.create("websocket", "wss://x")  # type: ignore[assignment]
        print(bad)

        mgr.on("event", lambda t, e: print(t.id, e.data))
        mgr.on("closed", lambda t, reason: print(t.id, reason.lower()))
        mgr.on("unhealthy", lambda t, health: print(health.status))
        mgr.on("evnt", lambda t, e: None)  # type: ignore[call-overload]

        @mgr.on("error")
        def on_error(t: BaseTransport, error: TransportError) -> None:
            print(t.id, error.message)

        @mgr.on("unhealthy")
        def on_unhealthy(t: BaseTransport, health: TransportHealth) -> None:
            print(health.reason)


def errors(t: SSETransport) -> None:
    try:
        t.connect()
    except HTTPStatusError as exc:
        code: int = exc.status_code
        retry: bool = exc.retryable
        after: Optional[float] = exc.retry_after
        headers: dict[str, str] = exc.headers
        body: Any = exc.body
        print(code, retry, after, headers, body)
    except WebSocketClosed as exc:
        print(exc.code + 1, exc.reason.strip())
    except ReconnectFailed as exc:
        print(exc.attempt, exc.__cause__)
    except TransportError as exc:
        print(exc.message, exc.url, exc.retryable)
    try:
        Event(data="x").json()
    except ValueError as exc:
        print(exc)
