"""Reading the body of one HTTP response as it arrives (see :class:`BodyReader`)."""

from __future__ import annotations

import functools
import http.client
import io
import select
import socket
import ssl
from typing import Callable, Optional

import requests
from urllib3.exceptions import ReadTimeoutError

from ..errors import ConnectError
from ..parsers.body import CUT_IN_BODY, cut_short
from ..parsers.chunked import ChunkedDecoder

__all__ = ["BodyReader", "COALESCE_READS", "CUT_IN_BODY", "cut_in_headers", "response_socket"]

#: The buffer of ``http.client``'s reader (``sock.makefile("rb")``): a ``peek`` that returns
#: this much found more waiting than one small read takes.
_SMALL_BUFFER = io.DEFAULT_BUFFER_SIZE


def response_socket(resp: requests.Response) -> Optional[socket.socket]:
    raw = resp.raw
    conn = getattr(raw, "_connection", None)
    sock = getattr(conn, "sock", None)
    if isinstance(sock, socket.socket):
        return sock
    try:  # urllib3 without _connection: dig through http.client's file object
        found = raw._fp.fp.raw._sock  # type: ignore[union-attr]
    except AttributeError:
        return None
    return found if isinstance(found, socket.socket) else None


def _plain_body(resp: requests.Response) -> Optional[http.client.HTTPResponse]:
    """The ``http.client`` response under ``resp`` when its body is not content-encoded.

    It is read without urllib3's layers, which cost several Python calls per read and copy
    every read shorter than asked through a ``BytesIO``: more than parsing large events.
    An encoded body (gzip ...) keeps urllib3's decoder, so ``None`` for it.
    """
    fp = getattr(resp.raw, "_fp", None)
    if not isinstance(fp, http.client.HTTPResponse) or resp.headers.get("Content-Encoding"):
        return None
    if len(getattr(resp.raw, "_decoded_buffer", ())):  # urllib3 holds bytes already read
        return None
    return fp


#: At most this many more reads join one batch (see ``_read_body``).
COALESCE_READS = 3


def _socket_poll(sock: Optional[socket.socket]) -> Optional[Callable[[], bool]]:
    """A check that bytes (or the end) wait on the socket itself; None without one."""
    if sock is None or not hasattr(select, "poll"):
        return None
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    poll = poller.poll
    return lambda: bool(poll(0))


class BodyReader:
    """Reads the body of one response as it arrives: ``read(n)`` returns at most ``n`` bytes of
    body after at most one socket read, and ``b""`` once the body is complete; a body cut short
    raises ``ConnectError``.

    A chunked body without content coding is read straight from the connection and de-chunked
    by :class:`ChunkedDecoder`, so that one read spans HTTP chunks (``http.client`` stops each
    read at a chunk's end); another uncoded body goes through ``http.client``'s ``read1``; an
    encoded one (gzip ...) through urllib3, which decodes it.

    A read blocked in the socket holds a buffer of the size asked for, 64 KiB for each idle
    stream; so while events trickle in, the wait happens in ``http.client``'s reader
    (``peek``), which fills its own small buffer, and the read that follows takes that: one
    system call per read. Once that small buffer comes back full (more is waiting), the reads
    after the one that empties it go straight to the socket for the whole ``size`` until one
    comes back short (the socket was drained); a batch tries to join the reads that are ready
    at once only while reads come back full.
    """

    __slots__ = ("read", "_plain", "_decoder", "_ready", "_bulk")

    def __init__(self, resp: requests.Response, sock: Optional[socket.socket]) -> None:
        plain = _plain_body(resp)
        self._plain = plain
        self._decoder: Optional[ChunkedDecoder] = None
        # ``_ready``: a read now returns at once, so it may join a batch (never known with TLS:
        # a readable socket may hold only part of a record).
        tls = isinstance(sock, ssl.SSLSocket)
        self._ready = _socket_poll(sock) if plain is not None and not tls else None
        self._bulk = False  # the last read filled its buffer: more is (likely) waiting
        self.read: Callable[[int], bytes]
        if plain is None:
            raw = resp.raw
            self.read = functools.partial(getattr(raw, "read1", raw.read), decode_content=True)
        elif plain.chunked and plain.chunk_left is None and plain.fp is not None:
            self._decoder = ChunkedDecoder()
            self.read = functools.partial(self._read_chunked, plain, self._decoder)
        else:
            self.read = functools.partial(self._read_plain, plain)

    def more_ready(self) -> bool:
        """Whether more of the body waits on the connection, so that a read returns at once
        (asked of the socket only after a read that filled its buffer)."""
        ready = self._ready
        if ready is None or not self._bulk:
            return False
        decoder = self._decoder
        if decoder is not None:
            return not decoder.done and ready()
        plain = self._plain
        return plain is not None and not plain.chunked and ready()

    def _wait(self, plain: http.client.HTTPResponse) -> bool:
        """Unless reads fill their buffer, wait for bytes in ``http.client``'s small buffer
        rather than in a read buffer of our own (see the class). True when the next read
        only takes what that small buffer holds (so its length says nothing of the socket)."""
        if self._bulk:
            return False
        if len(plain.fp.peek(1)) >= _SMALL_BUFFER:
            self._bulk = True  # the small buffer filled up at once: read in large reads
        return True

    def _read_chunked(
        self, plain: http.client.HTTPResponse, decoder: ChunkedDecoder, size: int
    ) -> bytes:
        while not decoder.done:
            if decoder.error is not None:  # raised once the body before it was handed on
                raise decoder.error
            buffered = self._wait(plain)
            data = plain.fp.read1(size)
            if not buffered and len(data) < size:  # a short read drained the socket
                self._bulk = False
            if not data:
                raise ConnectError(CUT_IN_BODY, retryable=True)
            body = decoder.feed(data)
            if body:
                return body
        plain.close()  # all read: a kept-alive connection can serve again
        return b""

    def _read_plain(self, plain: http.client.HTTPResponse, size: int) -> bytes:
        # plain.length 0: the whole body is in, no byte is to come
        buffered = plain.length != 0 and self._wait(plain)
        data = plain.read1(size)
        if not buffered and len(data) < size:  # a short read drained the socket
            self._bulk = False
        if not data:  # what urllib3 does at the end of a body
            if plain.length:
                raise cut_short(plain.length)
            plain.close()
        return data


def cut_in_headers(resp: requests.Response) -> bool:
    """Whether the connection of ``resp`` ended inside its header block.

    ``http.client`` takes an end of stream there for the end of the headers, so a connection
    cut at that moment looks like a complete answer with headers missing (a ``Content-Type``
    of ``"tex"``, or none). Told apart by reading the body: a cut leaves none (or a truncated
    one), while a real answer has a body, declares an empty one, or keeps the connection open.
    Consumes at most one byte of the body: call it only on a response about to be refused.
    """
    try:
        first = resp.raw.read(1, decode_content=False)
    except (socket.timeout, TimeoutError, ReadTimeoutError):
        return False  # the connection is alive, just quiet
    except Exception:  # a truncated body: IncompleteRead, urllib3's ProtocolError, a reset
        return True
    return not first and "Content-Length" not in resp.headers
