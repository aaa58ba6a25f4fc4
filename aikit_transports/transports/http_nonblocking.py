"""Reading one HTTP response's body without blocking, for the shared I/O threads."""

from __future__ import annotations

import http.client
import io
import socket
import ssl
from typing import Optional

import requests

from ..parsers.body import DECODABLE, BodyDecoder

__all__ = ["NonBlockingBody"]

_WOULD_BLOCK = (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError, InterruptedError)


class NonBlockingBody:
    """The body of ``resp``, read straight from its socket (non-blocking from now on):
    :meth:`read` returns body bytes, ``b""`` once the body is complete, or ``None`` when nothing
    is there yet; a connection that ends before the body does raises ``ConnectError``.

    :meth:`open` returns ``None`` for a response that must be read through urllib3 (a content
    coding decoded only there, or no socket of ``http.client``'s to read).
    """

    __slots__ = ("_sock", "_fp", "_decoder", "_tls")

    def __init__(self, sock: socket.socket, plain: http.client.HTTPResponse, encoding: str) -> None:
        self._sock = sock
        self._tls = isinstance(sock, ssl.SSLSocket)
        # what http.client's reader holds (read with the header block) comes first
        self._fp: Optional[io.BufferedIOBase] = plain.fp
        self._decoder = BodyDecoder(chunked=plain.chunked, length=plain.length, encoding=encoding)
        sock.settimeout(0)

    @classmethod
    def open(
        cls, resp: requests.Response, sock: Optional[socket.socket]
    ) -> Optional[NonBlockingBody]:
        plain = getattr(resp.raw, "_fp", None)
        if not isinstance(plain, http.client.HTTPResponse):
            return None
        if len(getattr(resp.raw, "_decoded_buffer", ())):  # urllib3 holds bytes already read
            return None
        encoding = resp.headers.get("Content-Encoding", "").strip().lower()
        if sock is None or plain.fp is None or encoding not in DECODABLE:
            return None
        if plain.chunked and plain.chunk_left is not None:  # http.client started on it
            return None
        return cls(sock, plain, encoding)

    def _drop_fp(self) -> None:
        """http.client's reader is empty: close it, which frees its 8 KiB buffer for as long
        as the stream lives. Not when it holds the last reference to the socket (http.client
        closed its connection, as it does for a response that ends with it): that would close
        the socket itself."""
        fp, self._fp = self._fp, None
        if fp is not None and not getattr(self._sock, "_closed", True):
            fp.close()

    def more(self) -> bool:
        """Whether a read now may find more without the socket becoming readable again: bytes
        in http.client's buffer or decrypted by TLS already (the selector sees only the
        socket's own), or the end of a body that is complete."""
        decoder = self._decoder
        if self._fp is not None or decoder.pending or decoder.done:
            return True
        sock = self._sock
        return self._tls and isinstance(sock, ssl.SSLSocket) and sock.pending() > 0

    def read(self, size: int) -> Optional[bytes]:
        decoder = self._decoder
        while True:
            if decoder.pending:  # decompressed bytes of an earlier read, first
                body = decoder.feed(b"")
                if body:
                    return body
                continue
            if decoder.done:
                return b""
            fp = self._fp
            try:
                if fp is not None:  # http.client's buffer first, until it is empty
                    data = fp.read1(size)
                    if not data:  # empty, and nothing on the socket yet (or its end)
                        self._drop_fp()
                        return None
                else:
                    data = self._sock.recv(size)
            except _WOULD_BLOCK:
                self._drop_fp()
                return None
            if not data:
                decoder.end()  # raises when the body was cut short
                return b""
            body = decoder.feed(data)
            if body:
                return body
            if not self.more():
                return None  # framing only (a chunk header): wait for the rest
