"""Sans-I/O decoder of one HTTP/1.1 response body: framing and content coding.

The bytes read from the connection after the header block go in; the body comes out,
de-chunked (``Transfer-Encoding: chunked``), stopped at its ``Content-Length``, and decompressed
(``gzip``, ``deflate``). The shared I/O threads read a response this way, straight from its
socket, without blocking.
"""

from __future__ import annotations

import zlib
from typing import Optional

from ..errors import ConnectError, ProtocolError
from .chunked import ChunkedDecoder

__all__ = ["BodyDecoder", "DECODABLE", "CUT_IN_BODY", "cut_short"]

#: The content codings decoded here (others are left to urllib3).
DECODABLE = frozenset({"", "identity", "gzip", "x-gzip", "deflate"})

CUT_IN_BODY = "connection lost: the server closed it in the middle of the response"


def cut_short(missing: int) -> ConnectError:
    """The error for a body whose connection ended ``missing`` bytes before its
    ``Content-Length`` said it would."""
    return ConnectError(
        f"connection lost: the body ended {missing} bytes short of its Content-Length",
        retryable=True,
    )


#: The most decompressed bytes one ``feed`` returns: a small compressed read may inflate to
#: megabytes (or be a decompression bomb); the rest comes out of later calls (see ``pending``).
MAX_INFLATE = 256 * 1024


class BodyDecoder:
    """``feed(bytes) -> bytes`` of body; :attr:`done` once the body is complete (its last chunk,
    or ``Content-Length`` bytes); :meth:`end` says whether the connection's end cuts it short.

    :param chunked: the body is in chunked transfer coding.
    :param length: the ``Content-Length`` (``None``: none; the body ends with the connection).
    :param encoding: the ``Content-Encoding`` (one of :data:`DECODABLE`).
    """

    __slots__ = ("_chunked", "_left", "_inflate", "_encoding", "_error", "_start")

    def __init__(self, *, chunked: bool, length: Optional[int], encoding: str = "") -> None:
        self._chunked = ChunkedDecoder() if chunked else None
        self._left = None if chunked else length
        self._encoding = encoding
        self._error: Optional[ProtocolError] = None  # raised once the body before it is out
        # gzip and zlib streams told apart by their header (32 + 15); raw deflate on failure.
        self._inflate = zlib.decompressobj(47) if encoding not in ("", "identity") else None
        # the compressed bytes before any output: a "deflate" body that turns out to be raw is
        # decoded again from them (None once decided)
        self._start: Optional[bytes] = b"" if encoding == "deflate" else None

    @property
    def pending(self) -> bool:
        """Whether decompressed bytes are still to come out of what was fed (``feed(b"")``)."""
        inflate = self._inflate
        return inflate is not None and bool(inflate.unconsumed_tail)

    @property
    def done(self) -> bool:
        """The whole body is in: what follows on the connection is not part of it."""
        return not self.pending and self._framed_done()

    def feed(self, data: bytes) -> bytes:
        """The body bytes ``data`` carries (possibly none; at most ``MAX_INFLATE`` of them when
        decompressed, the rest coming out of ``feed(b"")`` while ``pending``); bad framing or
        coding raises a retryable ``ProtocolError`` once the body before it was returned."""
        error = self._error
        if error is not None:
            raise error
        if data:
            data = self._unframe(data)
        inflate = self._inflate
        if inflate is None:
            return data
        tail = inflate.unconsumed_tail
        if tail:
            data = tail + data  # what the last call left, first
        body = self._decompress(inflate, data) if data else b""
        if not inflate.unconsumed_tail and self._framed_done():
            body += inflate.flush()  # the end: what zlib still holds
        return body

    def _unframe(self, data: bytes) -> bytes:
        """The body bytes in ``data``, out of their chunks or up to the ``Content-Length``."""
        chunked = self._chunked
        if chunked is not None:
            data = chunked.feed(data)
            if chunked.error is not None:
                self._error = chunked.error
                if not data:
                    raise chunked.error
            return data
        left = self._left
        if left is not None:
            if len(data) > left:
                data = data[:left]
            self._left = left - len(data)
        return data

    def _framed_done(self) -> bool:
        chunked = self._chunked
        return chunked.done if chunked is not None else self._left == 0

    def _decompress(self, inflate: zlib._Decompress, data: bytes) -> bytes:
        try:
            body = inflate.decompress(data, MAX_INFLATE)
        except zlib.error as exc:
            start = self._start
            if start is not None and self._encoding == "deflate":
                # "deflate" sent as a raw stream, without the zlib header (as many servers do):
                # start again from the first byte with a raw decoder
                self._start = None
                raw = self._inflate = zlib.decompressobj(-zlib.MAX_WBITS)
                return self._decompress(raw, start + data)
            raise ProtocolError(
                f"the {self._encoding} body could not be decoded: {exc}", retryable=True
            ) from None
        if self._start is not None:
            # keep what came before the first output, for the raw fallback (a header is short)
            self._start = None if body or len(self._start) > 64 else self._start + data
        return body

    def end(self) -> None:
        """The connection ended: raise ``ConnectError`` when the body is not complete (or the
        framing error that made it so)."""
        if self._error is not None:
            raise self._error
        if self.done:
            return
        if self._chunked is not None:
            raise ConnectError(CUT_IN_BODY, retryable=True)
        if self._left:
            raise cut_short(self._left)
