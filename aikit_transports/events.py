"""The data types every wire shares: :class:`Event` and the enums."""

from __future__ import annotations

import enum
import json as _json
import time
from typing import Any, Literal, NamedTuple, Optional, get_args

from .errors import InvalidJSON
from .logs import server_text

__all__ = [
    "Event",
    "TransportState",
    "TransportType",
    "BufferStrategy",
    "new_event",
    "EventName",
    "TRANSPORT_EVENTS",
    "EVENT_ALIASES",
]

#: The names of the events a transport emits, for type checkers.
EventName = Literal[
    "connecting",
    "connected",
    "reconnecting",
    "event",
    "done",
    "error",
    "closed",
    "backpressure",
    "drain",
]
TRANSPORT_EVENTS: tuple[str, ...] = get_args(EventName)

#: Names other libraries use (``EventSource``, ``websocket-client``, ``socket.io``), and ours.
EVENT_ALIASES: dict[str, str] = {
    "message": "event",
    "data": "event",
    "open": "connected",
    "connect": "connected",
    "close": "closed",
    "disconnect": "closed",
    "end": "done",
    "finish": "done",
    "reconnect": "reconnecting",
}


class _EventFields(NamedTuple):
    data: Any
    type: str
    id: Optional[str]
    retry: Optional[int]
    transport_id: Optional[str]
    received_at: float


class Event(_EventFields):
    """One message received from a stream. Immutable and slotted (a named tuple).

    ``data`` is ``str`` for SSE, ``str`` or ``bytes`` for WebSocket and the parsed JSON value for
    HTTP streaming; ``type`` is the SSE ``event:`` field (``"message"`` by default), ``"binary"``
    for WebSocket binary frames; ``id`` is the last event id in force; ``retry`` the server's
    reconnection time in ms; ``received_at`` the ``time.monotonic()`` at which it was read (a
    monotonic clock, for measuring delays: not a date; ``TransportMetrics.last_message_at`` is
    the wall-clock time).
    """

    __slots__ = ()

    def __new__(
        cls,
        data: Any,
        type: str = "message",
        id: Optional[str] = None,
        retry: Optional[int] = None,
        transport_id: Optional[str] = None,
        received_at: Optional[float] = None,
    ) -> Event:
        if received_at is None:
            received_at = time.monotonic()
        return tuple.__new__(cls, (data, type, id, retry, transport_id, received_at))

    def json(self) -> Any:
        """Parse ``data`` as JSON (other data, such as an HTTP stream's parsed value, as it is).

        Data that is not JSON raises :class:`~aikit_transports.errors.InvalidJSON` with a
        snippet: a ``ProtocolError`` that is also a ``ValueError``, as with ``json.loads``.
        """
        data = self.data
        if not isinstance(data, (str, bytes, bytearray)):
            return data
        try:
            return _json.loads(data)
        except ValueError as exc:
            raise InvalidJSON(
                f"event data is not valid JSON ({exc}): '{server_text(data, 80)}'",
                transport_id=self.transport_id,
            ) from None

    def __repr__(self) -> str:
        data = self.data
        shown = data if len(repr(data)) <= 80 else f"{repr(data)[:77]}..."
        return f"Event(type={self.type!r}, id={self.id!r}, data={shown!r})"


_tuple_new = tuple.__new__


def new_event(
    data: Any,
    type: str,
    id: Optional[str],
    retry: Optional[int],
    transport_id: Optional[str],
    received_at: float,
) -> Event:
    """Build an ``Event`` without argument defaulting: the parsers' hot path."""
    return _tuple_new(Event, (data, type, id, retry, transport_id, received_at))


class TransportState(str, enum.Enum):
    """Where a transport is in its life."""

    IDLE = "idle"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    ERROR = "error"
    CLOSED = "closed"

    def __str__(self) -> str:
        return self.value


class TransportType(str, enum.Enum):
    """Which wire a transport speaks."""

    SSE = "sse"
    WEBSOCKET = "websocket"
    HTTP_STREAM = "http-stream"
    REDIS_STREAM = "redis-stream"

    def __str__(self) -> str:
        return self.value


class BufferStrategy(str, enum.Enum):
    """What a full buffer does with a new message."""

    DROP_OLDEST = "drop-oldest"
    DROP_NEWEST = "drop-newest"
    BLOCK = "block"
    UNLIMITED = "unlimited"

    def __str__(self) -> str:
        return self.value
