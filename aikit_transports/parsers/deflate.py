"""permessage-deflate (RFC 7692), sans-I/O: the offer, the server's answer, and the two codecs.

The client offers ``permessage-deflate; client_max_window_bits`` (:data:`OFFER`);
:func:`accept` checks the server's ``Sec-WebSocket-Extensions`` answer against RFC 7692 §7 and
gives the :class:`DeflateParams` in force. :class:`Inflater` turns the payloads of one compressed
message back into bytes without ever holding more than a limit (a deflate bomb stops at the
limit, it is never inflated whole); :class:`Deflater` compresses outgoing messages. Both use
``zlib`` from the standard library on raw deflate streams.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import List, Optional, Tuple

__all__ = ["OFFER", "DeflateParams", "ExtensionError", "accept", "Inflater", "Deflater"]

#: The ``Sec-WebSocket-Extensions`` header the client sends: permessage-deflate, and the server
#: may limit the window our compressor uses (RFC 7692 §7.1.2.2).
OFFER = "permessage-deflate; client_max_window_bits"

#: What ends every compressed message on the wire, removed by the sender (RFC 7692 §7.2.1).
_TAIL = b"\x00\x00\xff\xff"
#: Inflated bytes produced per ``decompress`` call: what a bomb can add beyond the limit.
_INFLATE_STEP = 64 * 1024


class ExtensionError(ValueError):
    """The server's ``Sec-WebSocket-Extensions`` answer is not one the client may accept."""


@dataclass(frozen=True)
class DeflateParams:
    """The permessage-deflate parameters in force on one connection (RFC 7692 §7.1)."""

    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    server_max_window_bits: int = 15
    client_max_window_bits: int = 15


def _split_extensions(header: str) -> List[Tuple[str, List[Tuple[str, Optional[str]]]]]:
    """``ext; a=1; b, ext2`` as ``[(name, [(param, value)]), ...]`` (quoted values unquoted)."""
    result: List[Tuple[str, List[Tuple[str, Optional[str]]]]] = []
    for item in header.split(","):
        parts = [p.strip() for p in item.split(";")]
        if not parts[0]:
            if len(parts) == 1:
                continue
            raise ExtensionError(f"an extension without a name in {header!r}")
        params: List[Tuple[str, Optional[str]]] = []
        for part in parts[1:]:
            name, sep, value = part.partition("=")
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            params.append((name.strip().lower(), value if sep else None))
        result.append((parts[0].lower(), params))
    return result


def accept(header_values: List[str], offered: bool) -> Optional[DeflateParams]:
    """The parameters the server's answer puts in force, ``None`` when it declined compression.

    ``header_values`` are the ``Sec-WebSocket-Extensions`` values of the response; ``offered``
    whether the request offered permessage-deflate. Any extension not offered, a parameter that
    is unknown, repeated or out of range, fails (:class:`ExtensionError`): the client must then
    fail the connection (RFC 6455 §9.1, RFC 7692 §5).
    """
    extensions = _split_extensions(", ".join(header_values))
    if not extensions:
        return None
    if not offered:
        raise ExtensionError(f"the server chose the extension {extensions[0][0]!r}, not offered")
    if len(extensions) > 1:
        raise ExtensionError("the server chose more than one extension, one was offered")
    name, params = extensions[0]
    if name != "permessage-deflate":
        raise ExtensionError(f"the server chose the extension {name!r}, not offered")
    values: dict[str, Optional[str]] = {}
    for param, value in params:
        if param in values:
            raise ExtensionError(f"permessage-deflate parameter {param!r} given twice")
        values[param] = value
    given = set(values)
    for param in ("server_no_context_takeover", "client_no_context_takeover"):
        if values.pop(param, None) is not None:
            raise ExtensionError(f"permessage-deflate parameter {param!r} takes no value")
    bits = []
    for param in ("server_max_window_bits", "client_max_window_bits"):
        value = values.pop(param, "15")
        if value is None or not value.isdigit() or not 8 <= int(value) <= 15:
            raise ExtensionError(f"permessage-deflate parameter {param}={value!r} (8 to 15)")
        bits.append(int(value))
    if values:
        raise ExtensionError(f"unknown permessage-deflate parameter {next(iter(values))!r}")
    return DeflateParams(
        server_no_context_takeover="server_no_context_takeover" in given,
        client_no_context_takeover="client_no_context_takeover" in given,
        server_max_window_bits=bits[0],
        client_max_window_bits=bits[1],
    )


class Inflater:
    """Inflates the messages the server compressed, one at a time, within a byte limit."""

    def __init__(self, params: DeflateParams) -> None:
        self._reset_each_message = params.server_no_context_takeover
        # A 15-bit window inflates any smaller one the server may use.
        self._zlib = zlib.decompressobj(wbits=-15)

    def inflate(self, payload: bytes, out: bytearray, limit: int, last: bool) -> bool:
        """Inflate the ``payload`` of one frame onto ``out``; ``last`` for the message's last
        frame. Returns ``False`` as soon as ``out`` would pass ``limit`` bytes, having added
        at most ``limit`` + 64 KiB (memory stays bounded however much the data would inflate).
        Raises ``zlib.error`` on data that is not deflate."""
        z = self._zlib
        for data in (payload, _TAIL) if last else (payload,):
            while data and not z.eof:
                room = limit - len(out)
                out += z.decompress(data, min(room + 1, _INFLATE_STEP))
                if len(out) > limit:
                    return False
                data = z.unconsumed_tail
        if z.eof or (last and self._reset_each_message):
            # a final block (BFINAL) ends the stream: the next message starts a new one
            self._zlib = zlib.decompressobj(wbits=-15)
        return True


class Deflater:
    """Compresses the client's messages (the window the server allows, a fresh context per
    message when it asked for ``client_no_context_takeover``)."""

    def __init__(self, params: DeflateParams, level: int = 6) -> None:
        # zlib cannot write a raw stream with an 8-bit window: it makes 9-bit ones.
        self.enabled = params.client_max_window_bits >= 9
        self._wbits = -params.client_max_window_bits
        self._level = level
        self._reset_each_message = params.client_no_context_takeover
        self._zlib = self._new() if self.enabled else None

    def _new(self) -> zlib._Compress:
        return zlib.compressobj(self._level, zlib.DEFLATED, self._wbits)

    def deflate(self, payload: bytes) -> bytes:
        """One message's payload compressed, without the final ``00 00 ff ff``."""
        z = self._zlib
        if z is None:
            raise RuntimeError("compression is off on this connection")
        data = z.compress(payload) + z.flush(zlib.Z_SYNC_FLUSH)
        if self._reset_each_message:
            self._zlib = self._new()
        return data[:-4] if data.endswith(_TAIL) else data
