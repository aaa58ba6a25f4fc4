"""The wires: each a thin subclass of :class:`~.base.BaseTransport`, resolved by name here."""

from __future__ import annotations

import importlib
from typing import Union

from ..events import TransportType
from .base import BaseTransport

__all__ = ["BaseTransport", "transport_class", "wire_for_scheme"]

# TransportType -> (module, class); imported on first use so that an optional wire
# (the Redis one needs the ``redis`` extra) costs nothing until someone asks for it.
_WIRES: dict[TransportType, tuple[str, str]] = {
    TransportType.SSE: ("aikit_transports.transports.sse", "SSETransport"),
    TransportType.WEBSOCKET: ("aikit_transports.transports.websocket", "WebSocketTransport"),
    TransportType.HTTP_STREAM: ("aikit_transports.transports.http_stream", "HTTPStreamTransport"),
    TransportType.REDIS_STREAM: ("aikit_transports.contrib.redis", "RedisStreamTransport"),
}

_SCHEME_WIRES: dict[str, TransportType] = {
    "http": TransportType.SSE,
    "https": TransportType.SSE,
    "ws": TransportType.WEBSOCKET,
    "wss": TransportType.WEBSOCKET,
    "redis": TransportType.REDIS_STREAM,
    "rediss": TransportType.REDIS_STREAM,
}


def transport_class(kind: Union[TransportType, str]) -> type[BaseTransport]:
    """The transport class for a wire name (``"sse"``, ``"websocket"``, ``"http-stream"``, ...)."""
    try:
        wire = TransportType(kind)
    except ValueError:
        names = ", ".join(t.value for t in TransportType)
        raise ValueError(f"unknown transport type {kind!r}; use one of {names}") from None
    module, name = _WIRES[wire]
    cls: type[BaseTransport] = getattr(importlib.import_module(module), name)
    return cls


def wire_for_scheme(url: str) -> TransportType:
    """The default wire for a URL: ``ws``/``wss`` → WebSocket, ``http``/``https`` → SSE."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    try:
        return _SCHEME_WIRES[scheme]
    except KeyError:
        raise ValueError(f"unsupported URL scheme {scheme or '(none)'!r}") from None
