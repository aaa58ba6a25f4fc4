"""WebSocket frames from the server, sans-I/O (RFC 6455 §5): bytes in, messages out.

The transport reads the socket in large pieces and feeds them here; the parser reassembles
fragmented messages, inflates compressed ones (RFC 7692, through :mod:`.deflate`), collects
control frames, checks sizes from the frame header (before a payload is buffered) and validates
UTF-8 with ``bytes.decode`` (in C).
"""

from __future__ import annotations

import time
import zlib
from typing import List, Optional, Tuple

from ..events import Event, new_event
from .deflate import Inflater

__all__ = [
    "FrameParser",
    "FrameError",
    "parse_close",
    "close_code_name",
    "RECONNECT_CLOSE_CODES",
    "NORMAL_CLOSE_CODES",
    "valid_close_code",
]

OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

#: Close codes after which the transport reconnects; 1000 (and a close frame with no
#: code, 1005) ends the stream with ``done``; any other code fails the transport.
RECONNECT_CLOSE_CODES = frozenset({1001, 1006, 1011, 1012, 1013, 1014})
NORMAL_CLOSE_CODES = frozenset({1000, 1005})

CLOSE_CODE_NAMES = {
    1000: "normal closure",
    1001: "going away",
    1002: "protocol error",
    1003: "unsupported data",
    1005: "no status code",
    1006: "connection lost without a close frame",
    1007: "invalid payload data",
    1008: "policy violation",
    1009: "message too big",
    1010: "mandatory extension",
    1011: "internal server error",
    1012: "service restart",
    1013: "try again later",
    1014: "bad gateway",
    1015: "TLS handshake failure",
}


def valid_close_code(code: int) -> bool:
    """Whether a close frame may carry ``code`` (RFC 6455 §7.4): the defined codes that an
    endpoint may send (1000-1003, 1007-1014; never 1004, 1005, 1006 or 1015) and 3000-4999."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


def close_code_name(code: int) -> str:
    """A short description of a close code (RFC 6455 §7.4)."""
    return CLOSE_CODE_NAMES.get(code, "application code" if 3000 <= code < 5000 else "unknown")


class FrameError(Exception):
    """A frame broke RFC 6455: ``code`` is the close code to send, ``events`` the messages
    parsed before the bad frame (to be delivered: nothing received is lost)."""

    def __init__(self, code: int, message: str, events: List[Event]) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.events = events


def parse_close(payload: bytes, events: List[Event]) -> Tuple[int, str]:
    """The ``(code, reason)`` of a close frame's payload; 1005 when it has none.

    A 1-byte payload or a code no endpoint may send (1005, 1006 and 1015 included) is a
    protocol error (1002); a reason that is not UTF-8 is invalid data (1007)."""
    if not payload:
        return 1005, ""
    if len(payload) == 1:
        raise FrameError(1002, "close frame with a 1-byte payload", events)
    code = (payload[0] << 8) | payload[1]
    if not valid_close_code(code):
        raise FrameError(1002, f"close frame with the invalid code {code}", events)
    try:
        return code, payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise FrameError(1007, "close frame whose reason is not UTF-8", events) from None


class FrameParser:
    """Server-to-client frames in, messages out (sans-I/O, RFC 6455 §5).

    :meth:`feed` takes bytes as read and returns the complete data messages as ``Event``s
    (text: ``"message"`` with ``str`` data; binary: ``"binary"`` with ``bytes``), fragmented
    messages reassembled and compressed ones inflated (when :meth:`reset` was given an
    :class:`~.deflate.Inflater`). Pings and pongs are collected in ``controls``, in order; a close
    frame sets ``closed`` to ``(code, reason)`` and ends parsing. A broken frame, invalid UTF-8
    or a message larger than ``max_message_bytes`` raises :class:`FrameError` with the close
    code to send.

    ``max_message_bytes`` bounds what one message holds in memory: the payload on the wire
    (checked from each frame header, before the payload is buffered), the inflated size of a
    compressed message (checked while inflating), and the number of fragments, each of which
    counts as one byte at least, so a flood of empty continuation frames ends with 1009.
    """

    def __init__(
        self, max_message_bytes: int = 16 << 20, transport_id: Optional[str] = None
    ) -> None:
        self.max_message_bytes = max_message_bytes
        self.transport_id = transport_id
        self._short_limit = min(125, max_message_bytes)
        # Compressed data can be a little larger than the message (stored blocks).
        self._wire_limit = max_message_bytes + (max_message_bytes >> 10) + 64
        self.reset()

    def reset(self, inflater: Optional[Inflater] = None) -> None:
        """Forget any partial frame or message (a new connection starts); ``inflater`` when
        permessage-deflate is in force on the new connection."""
        self._inflater = inflater
        self._chunks: List[bytes] = []
        self._buffered = 0
        self._need = 0
        self._frag_opcode = 0
        self._frag_compressed = False
        self._frag_data = bytearray()
        self._frag_size = 0
        self.controls: List[Tuple[int, bytes]] = []
        self.closed: Optional[Tuple[int, str]] = None

    def feed(self, chunk: bytes, now: Optional[float] = None) -> List[Event]:
        """Parse ``chunk``; the messages it completed (``now`` is their ``received_at``)."""
        if self.closed is not None:
            return []
        if self._chunks:
            self._chunks.append(chunk)
            self._buffered += len(chunk)
            if self._buffered < self._need:
                return []
            data = b"".join(self._chunks)
            self._chunks = []
        else:
            data = chunk
        if now is None:
            now = time.monotonic()
        events: List[Event] = []
        append = events.append
        tid = self.transport_id
        short = self._short_limit
        frag = self._frag_opcode
        n = len(data)
        pos = 0
        need = 0
        try:
            while True:
                if n - pos < 2:
                    need = 2
                    break
                b0 = data[pos]
                b1 = data[pos + 1]
                if b0 == 0x81 and b1 <= short and not frag:
                    # the hot path: a short, unfragmented, uncompressed, unmasked text message
                    end = pos + 2 + b1
                    if end > n:
                        need = 2 + b1
                        break
                    append(
                        new_event(
                            data[pos + 2 : end].decode("utf-8"), "message", None, None, tid, now
                        )
                    )
                    pos = end
                    continue
                if b1 & 0x80:
                    raise FrameError(1002, "the server sent a masked frame", events)
                opcode = b0 & 0x0F
                fin = b0 & 0x80
                compressed = False
                if b0 & 0x70:
                    if (b0 & 0x70) != 0x40 or self._inflater is None:
                        raise FrameError(
                            1002, "reserved bits set but no extension uses them", events
                        )
                    if opcode not in (OP_TEXT, OP_BINARY):
                        raise FrameError(
                            1002, "RSV1 set on a frame that does not start a message", events
                        )
                    compressed = True
                length = b1 & 0x7F
                start = pos + 2
                if length == 126:
                    if n - pos < 4:
                        need = 4
                        break
                    length = (data[pos + 2] << 8) | data[pos + 3]
                    start = pos + 4
                elif length == 127:
                    if n - pos < 10:
                        need = 10
                        break
                    length = int.from_bytes(data[pos + 2 : pos + 10], "big")
                    start = pos + 10
                if opcode >= 8:
                    if opcode > OP_PONG:
                        raise FrameError(1002, f"unknown opcode {opcode:#x}", events)
                    if not fin or length > 125:
                        raise FrameError(1002, "fragmented or over-long control frame", events)
                elif opcode > OP_BINARY:
                    raise FrameError(1002, f"unknown opcode {opcode:#x}", events)
                else:
                    if opcode == OP_CONT:
                        # every fragment costs one byte at least: empty ones cannot flood
                        total = self._frag_size + (length or 1)
                        squeezed = self._frag_compressed
                    else:
                        total = length
                        squeezed = compressed
                    if total > (self._wire_limit if squeezed else self.max_message_bytes):
                        what = "message" if opcode else "fragmented message (empty fragments count)"
                        raise self._too_big(what, total, events)
                end = start + length
                if end > n:
                    need = end - pos
                    break
                payload = data[start:end]
                pos = end
                if opcode in (OP_TEXT, OP_BINARY):
                    if frag:
                        raise FrameError(
                            1002, "a new message started inside a fragmented one", events
                        )
                    if fin and not compressed:
                        if opcode == OP_TEXT:
                            append(
                                new_event(payload.decode("utf-8"), "message", None, None, tid, now)
                            )
                        else:
                            append(new_event(payload, "binary", None, None, tid, now))
                        continue
                    frag = self._frag_opcode = opcode
                    self._frag_compressed = compressed
                    self._frag_data = bytearray()
                    self._frag_size = length
                elif opcode == OP_CONT:
                    if not frag:
                        raise FrameError(
                            1002, "continuation frame outside a fragmented message", events
                        )
                    self._frag_size = total
                elif opcode == OP_CLOSE:
                    self.closed = parse_close(payload, events)
                    return events  # nothing after a close frame counts
                else:
                    self.controls.append((opcode, payload))
                    continue
                # a fragment of a data message (or a whole compressed one)
                self._add_fragment(payload, bool(fin), events)
                if fin:
                    whole = self._frag_data
                    self._frag_data = bytearray()
                    self._frag_size = 0
                    if frag == OP_TEXT:
                        append(new_event(whole.decode("utf-8"), "message", None, None, tid, now))
                    else:
                        append(new_event(bytes(whole), "binary", None, None, tid, now))
                    frag = self._frag_opcode = 0
        except UnicodeDecodeError as exc:
            raise FrameError(
                1007, f"invalid UTF-8 in a text message ({exc.reason} at byte {exc.start})", events
            ) from None
        if pos < n:
            self._chunks = [data[pos:]]
            self._buffered = n - pos
            self._need = need
        else:
            self._buffered = 0
        return events

    def _add_fragment(self, payload: bytes, last: bool, events: List[Event]) -> None:
        """Append one frame's payload to the message being assembled, inflated if need be."""
        if not self._frag_compressed:
            self._frag_data += payload
            return
        inflater = self._inflater
        assert inflater is not None  # RSV1 is refused without one
        try:
            within = inflater.inflate(payload, self._frag_data, self.max_message_bytes, last)
        except zlib.error as exc:
            raise FrameError(
                1007, f"a compressed message does not inflate ({exc})", events
            ) from exc
        if not within:
            raise self._too_big("inflated message", len(self._frag_data), events)

    def _too_big(self, what: str, size: int, events: List[Event]) -> FrameError:
        return FrameError(
            1009,
            f"{what}: {size} bytes or more, over max_message_bytes ({self.max_message_bytes})",
            events,
        )
