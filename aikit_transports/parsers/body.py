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

__all__ = ["BodyDecoder", "DECODABLE", "CUT_IN_BODY"]

#: The content codings decoded here (others are left to urllib3).
DECODABLE = frozenset({"", "identity", "gzip", "x-gzip", "deflate"})

CUT_IN_BODY = "connection lost: the server closed it in the middle of the response"


class BodyDecoder:
    """``feed(bytes) -> bytes`` of body; :attr:`done` once the body is complete (its last chunk,
    or ``Content-Length`` bytes); :meth:`end` says whether the connection's end cuts it short.

    :param chunked: the body is in chunked transfer coding.
    :param length: the ``Content-Length`` (``None``: none; the body ends with the connection).
    :param encoding: the ``Content-Encoding`` (one of :data:`DECODABLE`).
    """

    __slots__ = ("_chunked", "_left", "_inflate", "_encoding", "_error")

    def __init__(self, *, chunked: bool, length: Optional[int], encoding: str = "") -> None:
        self._chunked = ChunkedDecoder() if chunked else None
        self._left = None if chunked else length
        self._encoding = encoding
        self._error: Optional[ProtocolError] = None  # raised once the body before it is out
        # gzip and zlib streams told apart by their header (32 + 15); raw deflate on failure.
        self._inflate = zlib.decompressobj(47) if encoding not in ("", "identity") else None

    @property
    def done(self) -> bool:
        """The whole body is in: what follows on the connection is not part of it."""
        chunked = self._chunked
        if chunked is not None:
            return chunked.done
        return self._left == 0

    def feed(self, data: bytes) -> bytes:
        """The body bytes ``data`` carries (possibly none); bad framing or coding raises a
        retryable ``ProtocolError`` once the body before it was returned."""
        error = self._error
        if error is not None:
            raise error
        chunked = self._chunked
        if chunked is not None:
            data = chunked.feed(data)
            if chunked.error is not None:
                self._error = chunked.error
                if not data:
                    raise chunked.error
        else:
            left = self._left
            if left is not None:
                if len(data) > left:
                    data = data[:left]
                self._left = left - len(data)
        inflate = self._inflate
        if inflate is not None and data:
            data = self._decompress(inflate, data)
        return data

    def _decompress(self, inflate: zlib._Decompress, data: bytes) -> bytes:
        try:
            return inflate.decompress(data)
        except zlib.error as exc:
            if self._encoding == "deflate" and inflate is self._inflate and not inflate.eof:
                # "deflate" sent as a raw stream, without the zlib header (as many servers do)
                raw = self._inflate = zlib.decompressobj(-zlib.MAX_WBITS)
                try:
                    return raw.decompress(data)
                except zlib.error:
                    pass
            raise ProtocolError(
                f"the {self._encoding} body could not be decoded: {exc}", retryable=True
            ) from None

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
            raise ConnectError(
                f"connection lost: the body ended {self._left} bytes short of its Content-Length",
                retryable=True,
            )
