"""Outgoing WebSocket frames and socket helpers, shared by the transport's writers.

What ``send()`` accepts becomes a payload and an opcode (:func:`encode`); a message waits for a
connection as an :class:`Outgoing` (its frame is made only when it goes out, since compression
depends on the connection); :func:`client_frame` masks a frame (RFC 6455 §5.3).
"""

from __future__ import annotations

import contextlib
import json as _json
import socket
import ssl
from typing import Any, NamedTuple, Optional, Tuple

from websocket import ABNF

from ..errors import WebSocketClosed
from ..logs import server_text
from ..parsers.websocket import OP_BINARY, OP_TEXT, RECONNECT_CLOSE_CODES, close_code_name
from .io_loop import ready

__all__ = ["Outgoing", "encode", "client_frame", "closed_error", "send_all", "shutdown"]


class Outgoing(NamedTuple):
    """A message waiting for a connection: what the user gave, its payload and opcode (the
    frame is made when it goes out: compression depends on the connection)."""

    data: Any
    payload: bytes
    opcode: int


def encode(data: Any) -> Tuple[bytes, int]:
    """The payload and opcode for ``data`` (str → text, bytes-like → binary, dict/list → JSON)."""
    if isinstance(data, str):
        return data.encode("utf-8"), OP_TEXT
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data), OP_BINARY
    if isinstance(data, (dict, list)):
        try:
            return _json.dumps(data).encode("utf-8"), OP_TEXT
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"send(): the {type(data).__name__} is not JSON serializable: {exc}"
            ) from None
    raise TypeError(
        f"send() takes str, bytes, bytearray, memoryview, dict or list, not {type(data).__name__}"
    )


def client_frame(payload: bytes, opcode: int, compressed: bool = False) -> bytes:
    """A masked client frame (RFC 6455 §5.3), formatted by websocket-client; ``compressed``
    sets RSV1 (RFC 7692 §6)."""
    return ABNF(1, int(compressed), 0, 0, opcode, 1, payload).format()


_WOULD_BLOCK = (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError)


def send_all(sock: socket.socket, data: bytes, timeout: Optional[float]) -> None:
    """``sock.sendall(data)``, also on a socket the shared I/O threads made non-blocking: there
    it waits for room (``timeout`` seconds at most between two writes, then ``socket.timeout``)."""
    if sock.gettimeout() != 0:
        sock.sendall(data)
        return
    view = memoryview(data)
    while view:
        try:
            view = view[sock.send(view) :]
        except _WOULD_BLOCK:
            if not ready(sock, timeout, write=True):
                raise socket.timeout("timed out") from None


def closed_error(code: int, reason: str = "", detail: str = "") -> WebSocketClosed:
    """The error for a connection that ended with ``code``."""
    message = f"connection closed with code {code} ({close_code_name(code)})"
    if reason or detail:
        message += f": {server_text(reason) if reason else detail}"
    return WebSocketClosed(
        message, code=code, reason=reason, retryable=code in RECONNECT_CLOSE_CODES
    )


def shutdown(sock: socket.socket) -> None:
    """Shut ``sock`` down both ways (wakes any thread blocked on it); errors ignored."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
