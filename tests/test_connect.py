"""connect(): try each wire in order, keep the first that connects, explain every failure."""

from __future__ import annotations

import enum
import socket
import threading
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Optional

import pytest

from aikit_transports.config import ReconnectPolicy
from aikit_transports.connect import FallbackError, connect, map_scheme
from aikit_transports.errors import (
    ConnectError,
    HTTPStatusError,
    NotSupportedError,
    TransportError,
)
from aikit_transports.events import TransportState
from aikit_transports.manager import TransportManager
from aikit_transports.transports.base import EOF_, BaseTransport
from aikit_transports.transports.registry import _WIRES
from aikit_transports.transports.sse import SSETransport

if TYPE_CHECKING:
    from aikit_transports.testing import StreamServer

SLOW = ReconnectPolicy(max_attempts=None, initial_delay=30.0, jitter=0)


class FakeType(str, enum.Enum):
    REFUSING = "refusing"
    FORBIDDEN = "forbidden"
    OK = "ok"


class _Wire(BaseTransport):
    """A wire that opens (or fails) without I/O and then holds the stream open until closed."""

    failure: ClassVar[Optional[Callable[[], TransportError]]] = None
    opens: ClassVar[int] = 0

    def __init__(self, url: str, *, flavour: Optional[str] = None, **options: Any) -> None:
        super().__init__(url, **options)
        self.flavour = flavour
        self._wake = threading.Event()

    def _open(self) -> None:
        type(self).opens += 1
        if self.failure is not None:
            raise self.failure()

    def _read(self) -> str:
        self._wake.wait()
        return EOF_

    def _interrupt(self) -> None:
        self._wake.set()


class RefusingWire(_Wire):
    type = FakeType.REFUSING  # type: ignore[assignment]
    schemes = ("ws", "wss")
    failure = staticmethod(  # type: ignore[assignment]
        lambda: ConnectError("connection failed: ConnectionRefusedError", retryable=True)
    )


class ForbiddenWire(_Wire):
    type = FakeType.FORBIDDEN  # type: ignore[assignment]
    schemes = ("http", "https")
    failure = staticmethod(  # type: ignore[assignment]
        lambda: HTTPStatusError("HTTP 403 Forbidden", status_code=403)
    )


class OkWire(_Wire):
    type = FakeType.OK  # type: ignore[assignment]
    schemes = ("http", "https")


@pytest.fixture(autouse=True)
def _fake_wires(monkeypatch: pytest.MonkeyPatch) -> None:
    for cls in (RefusingWire, ForbiddenWire, OkWire):
        monkeypatch.setitem(_WIRES, cls.type.value, cls)
        monkeypatch.setattr(cls, "opens", 0)


# --- scheme mapping ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "cls", "expected"),
    [
        ("http://h:1/p?q=1", RefusingWire, "ws://h:1/p?q=1"),
        ("https://h/p", RefusingWire, "wss://h/p"),
        ("ws://h/p", RefusingWire, "ws://h/p"),
        ("ws://user:pw@h/p#frag", OkWire, "http://user:pw@h/p#frag"),
        ("wss://h/p", OkWire, "https://h/p"),
        ("HTTPS://h/p", OkWire, "HTTPS://h/p"),
    ],
)
def test_scheme_is_mapped_per_wire(url: str, cls: type[BaseTransport], expected: str) -> None:
    assert map_scheme(url, cls) == expected


def test_scheme_without_counterpart_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot use a 'ftp' URL"):
        map_scheme("ftp://h/p", OkWire)


# --- fallback ---------------------------------------------------------------------------------


def test_first_wire_that_connects_wins_and_the_others_are_closed() -> None:
    t = connect(
        "http://127.0.0.1:9/stream", transports=("refusing", "forbidden", "ok"), reconnect=SLOW
    )
    try:
        assert isinstance(t, OkWire) and t.state is TransportState.CONNECTED
        assert t.url == "http://127.0.0.1:9/stream"
        # one attempt each, without waiting for the 30 s backoff of the slow policy
        assert RefusingWire.opens == 1 and ForbiddenWire.opens == 1
    finally:
        t.close()


def test_the_winner_keeps_its_reconnection_policy() -> None:
    t = connect("ws://h/x", transports=("ok",), reconnect=SLOW)
    reconnecting = threading.Event()
    t.on("reconnecting", lambda *args: reconnecting.set())
    t._wake.set()  # type: ignore[attr-defined]  # the stream ends: the transport reconnects
    assert reconnecting.wait(5)
    assert t.state is TransportState.RECONNECTING  # not closed by connect()'s probe
    t.close()


def test_one_error_names_each_wire_and_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(_WIRES, "missing", "aikit_transports.no_such_module:Missing")
    url = "https://user:hunter2@127.0.0.1:9/stream?token=s3cret&x=1"
    with pytest.raises(FallbackError) as info:
        connect(url, transports=("refusing", "forbidden", "missing"), reconnect=SLOW)
    err = info.value
    assert isinstance(err, ConnectError)
    message = str(err)
    assert "refusing: connection failed: ConnectionRefusedError" in message
    assert "forbidden: HTTP 403 Forbidden" in message
    assert message.index("refusing:") < message.index("forbidden:") < message.index("missing:")
    assert "(wss://user:***@127.0.0.1:9/stream?token=***&x=1)" in message
    assert "(https://user:***@127.0.0.1:9/stream?token=***&x=1)" in message
    assert "hunter2" not in message and "s3cret" not in message
    assert set(err.errors) == {"refusing", "forbidden", "missing"}
    assert isinstance(err.errors["forbidden"], HTTPStatusError)
    assert err.retryable  # the refused one may work later


def test_missing_wire_module_is_one_failure_among_others(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(_WIRES, "gone", "aikit_transports.no_such_module:Gone")
    t = connect("http://h/", transports=("gone", "ok"))
    t.close()
    with pytest.raises(FallbackError) as info:
        connect("http://h/", transports=("gone",))
    assert isinstance(info.value.errors["gone"], NotSupportedError)


def test_a_wire_that_cannot_take_the_scheme_fails_with_a_reason() -> None:
    with pytest.raises(FallbackError, match=r"ok: OkWire cannot use a 'ftp' URL"):
        connect("ftp://h/x", transports=("ok",))


def test_pairs_give_each_wire_its_own_url() -> None:
    t = connect("http://h/", transports=[("refusing", "ws://h/ws"), ("ok", "http://h/sse")])
    assert t.url == "http://h/sse"
    t.close()
    with pytest.raises(FallbackError) as info:
        connect(
            "http://h/", transports=[("forbidden", "http://h/v2"), ("forbidden", "http://h/v1")]
        )
    assert list(info.value.errors) == ["forbidden", "forbidden#2"]
    assert "forbidden#2: HTTP 403 Forbidden (http://h/v1)" in str(info.value)


def test_options_go_to_the_wires_that_take_them() -> None:
    t = connect("http://h/", transports=("ok",), flavour="mint", timeout=3)
    assert t.flavour == "mint" and t.timeout == 3  # type: ignore[attr-defined]
    t.close()
    with pytest.raises(TypeError, match="no transport takes the option"):
        connect("http://h/", transports=("ok",), flavor="typo")
    with pytest.raises(ValueError, match="at least one"):
        connect("http://h/", transports=())
    with pytest.raises(ValueError, match="unknown transport type"):
        connect("http://h/", transports=("pigeon",))


def test_through_a_manager_the_losers_leave_it() -> None:
    with TransportManager() as mgr:
        t = connect("http://h/", transports=("refusing", "ok"), manager=mgr, reconnect=SLOW)
        assert mgr.find() == [t]
        assert t._scheduler is mgr._scheduler


def test_max_attempts_zero_still_reports_the_cause() -> None:
    with pytest.raises(FallbackError) as info:
        connect("ws://h/", transports=("refusing",), reconnect=ReconnectPolicy(max_attempts=0))
    assert "ConnectionRefusedError" in str(info.value)


# --- real wires -------------------------------------------------------------------------------


def _refused_port() -> int:
    """A port on 127.0.0.1 where nothing listens (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_falls_back_to_sse_when_the_websocket_endpoint_is_refused(
    stream_server: StreamServer,
) -> None:
    ws_url = f"ws://127.0.0.1:{_refused_port()}/stream"
    t = connect(
        stream_server.url("/sse?count=3&end=sentinel"),
        transports=[("websocket", ws_url), "sse"],
        reconnect=SLOW,
    )
    try:
        assert isinstance(t, SSETransport)
        assert [e.data for e in t.iter_events(timeout=5)] == ["event 1", "event 2", "event 3"]
    finally:
        t.close()


def test_falls_back_when_a_server_does_not_speak_websocket(stream_server: StreamServer) -> None:
    # the default order: websocket first, at the same address with the scheme mapped to ws://
    t = connect(stream_server.url("/sse?count=2&end=sentinel"), reconnect=SLOW)
    try:
        assert isinstance(t, SSETransport)
        assert [e.data for e in t.iter_events(timeout=5)] == ["event 1", "event 2"]
    finally:
        t.close()
    handshakes = [r for r in stream_server.requests if r.headers.get("Upgrade")]
    assert len(handshakes) == 1  # one WebSocket attempt, not a retry storm


def test_websocket_wins_when_it_connects() -> None:
    from aikit_transports.testing.ws import WebSocketServer
    from aikit_transports.transports.websocket import WebSocketTransport

    with WebSocketServer() as server:
        http_url = server.url("/stream?count=2").replace("ws://", "http://")
        t = connect(http_url, heartbeat_interval=None)
        try:
            assert isinstance(t, WebSocketTransport) and t.url.startswith("ws://")
            assert [e.json()["id"] for e in t.iter_events(timeout=5)] == [1, 2]
        finally:
            t.close()


def test_every_wire_refused_gives_one_error_naming_each() -> None:
    url = f"http://127.0.0.1:{_refused_port()}/stream?api_key=k3y"
    with pytest.raises(FallbackError) as info:
        connect(url, reconnect=SLOW, timeout=5)
    message = str(info.value)
    assert list(info.value.errors) == ["websocket", "sse", "http-stream"]
    for name in ("websocket: ", "; sse: ", "; http-stream: "):
        assert name in message
    assert "refused" in message.lower()
    assert "k3y" not in message and "api_key=***" in message
    assert info.value.retryable
