"""aikit-transports: streaming client transports (SSE, WebSocket, HTTP streaming) behind one
synchronous, thread-based API that reconnects, resumes, buffers with backpressure and reports
every failure as a typed error."""

from __future__ import annotations

import logging

from .buffer import BackpressureInfo, MessageBuffer
from .config import BufferConfig, ReconnectPolicy
from .connect import FallbackError, connect
from .emitter import EventEmitter
from .errors import (
    BufferFullError,
    ConnectError,
    EventsMissed,
    HeartbeatTimeout,
    HTTPStatusError,
    InvalidJSON,
    MessageTooLarge,
    NotSupportedError,
    ProtocolError,
    ReconnectFailed,
    StreamInterrupted,
    TransportClosedError,
    TransportError,
    TransportLimitError,
    UnsentMessagesError,
    WebSocketClosed,
)
from .events import BufferStrategy, Event, TransportState, TransportType
from .manager import TransportManager
from .metrics import TransportHealth, TransportMetrics
from .parsers import NDJSONParser, SSEParser
from .redact import install_urllib3_filter
from .transports.http_stream import HTTPStreamTransport
from .transports.sse import SSETransport
from .transports.websocket import WebSocketTransport

__version__ = "0.1.0"

__all__ = [
    "SSETransport",
    "WebSocketTransport",
    "HTTPStreamTransport",
    "TransportManager",
    "connect",
    "FallbackError",
    "Event",
    "TransportState",
    "TransportType",
    "BufferStrategy",
    "ReconnectPolicy",
    "BufferConfig",
    "TransportMetrics",
    "TransportHealth",
    "BackpressureInfo",
    "MessageBuffer",
    "EventEmitter",
    "SSEParser",
    "NDJSONParser",
    "TransportError",
    "ConnectError",
    "HTTPStatusError",
    "ProtocolError",
    "InvalidJSON",
    "MessageTooLarge",
    "HeartbeatTimeout",
    "ReconnectFailed",
    "StreamInterrupted",
    "EventsMissed",
    "BufferFullError",
    "TransportClosedError",
    "TransportLimitError",
    "NotSupportedError",
    "WebSocketClosed",
    "UnsentMessagesError",
    "__version__",
]

logging.getLogger("aikit_transports").addHandler(logging.NullHandler())
install_urllib3_filter()  # urllib3's DEBUG lines show query strings: redacted as ours are
