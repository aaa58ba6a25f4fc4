"""Sans-I/O decoder of HTTP/1.1 chunked transfer coding (RFC 9112, section 7.1).

Bytes as read from the connection go in, body bytes come out. The HTTP transports read a
chunked body through it in large reads: ``http.client`` ends every read at the end of an HTTP
chunk, so a read (and the batch of events parsed from it) never spans two chunks, which costs a
read, a parse and a hand-off to the consumers per chunk instead of per read.
"""

from __future__ import annotations

from typing import Optional

from ..errors import ProtocolError
from ..logs import server_text

__all__ = ["ChunkedDecoder"]

#: Longest size or trailer line accepted (``http.client`` allows the same).
MAX_LINE = 65536

_HEX = frozenset(b"0123456789abcdefABCDEF")

# States: what the next bytes of the stream are.
_SIZE = 0  # a chunk-size line (hex size, optional ";extensions", CRLF)
_DATA = 1  # chunk data, ``_left`` bytes of it still to come
_DATA_END = 2  # the CRLF that closes a chunk's data
_TRAILER = 3  # trailer field lines, up to an empty line
_DONE = 4  # the body is complete
_FAILED = 5  # bad framing: nothing more is read


class ChunkedDecoder:
    """``feed(bytes) -> bytes`` of body; :attr:`done` once the last chunk and trailers are in.

    :meth:`feed` never raises: bad framing (a size that is not hexadecimal, data longer than
    its size, a line longer than 64 KiB) sets :attr:`error`, a retryable
    :class:`~aikit_transports.errors.ProtocolError` (a broken response; the next may be fine),
    after the body bytes before it are returned, and all further input is ignored. Lines may
    end with CRLF or a bare LF, as ``http.client`` accepts. Bytes after the end of the body are
    ignored.
    """

    __slots__ = ("error", "_state", "_left", "_line")

    def __init__(self) -> None:
        self.error: Optional[ProtocolError] = None
        self._state = _SIZE
        self._left = 0
        self._line = b""  # the start of a line cut by a read

    @property
    def done(self) -> bool:
        """The terminating zero-size chunk and the trailer section have been read."""
        return self._state == _DONE

    def feed(self, data: bytes) -> bytes:
        """The body bytes ``data`` carries, in order (possibly none)."""
        size = len(data)
        if self._state == _DATA and self._left >= size:  # the usual read: all chunk data
            self._left -= size
            if not self._left:
                self._state = _DATA_END
            return data
        view = memoryview(data)
        pieces: list[memoryview] = []
        pos = 0
        while pos < size:
            if self._state == _DATA:
                end = min(size, pos + self._left)
                pieces.append(view[pos:end])
                self._left -= end - pos
                pos = end
                if not self._left:
                    self._state = _DATA_END
                continue
            if self._state >= _DONE:
                break
            newline = data.find(b"\n", pos)
            if newline < 0:
                self._line += data[pos:]
                if len(self._line) > MAX_LINE:
                    self._fail("a chunk-size or trailer line longer than 64 KiB")
                break
            line = self._line + data[pos:newline] if self._line else data[pos:newline]
            self._line = b""
            pos = newline + 1
            self._take_line(line.rstrip(b"\r"))
        if len(pieces) == 1 and len(pieces[0]) == size:
            return data
        return b"".join(pieces)

    def _take_line(self, line: bytes) -> None:
        """Apply one complete line (its line end removed) in the current state."""
        state = self._state
        if state == _SIZE:
            digits = line.split(b";", 1)[0].strip(b" \t")
            if not digits or not _HEX.issuperset(digits) or len(digits) > 16:
                self._fail(f"a bad chunk size '{server_text(line, 40)}'")
                return
            self._left = int(digits, 16)
            self._state = _DATA if self._left else _TRAILER
        elif state == _DATA_END:
            if line:
                self._fail("chunk data longer than its declared size")
                return
            self._state = _SIZE
        elif not line:  # _TRAILER: an empty line ends the body
            self._state = _DONE

    def _fail(self, what: str) -> None:
        """Record the error and ignore everything from here on."""
        self._state = _FAILED
        self._line = b""
        self.error = ProtocolError(
            f"broken chunked framing in the response: {what}", retryable=True
        )
