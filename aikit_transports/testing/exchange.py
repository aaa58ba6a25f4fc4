"""One request/response exchange of the test server: the recorded request and the response writer.

A route is any callable ``handler(request, writer)``: it reads the :class:`RecordedRequest` and
scripts the response with the :class:`StreamWriter` (status and headers, body writes, pauses,
an abrupt close). The built-in endpoints are routes of exactly this kind.
"""

from __future__ import annotations

import contextlib
import json
import selectors
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any, Callable, Dict, Mapping, Optional

from requests.structures import CaseInsensitiveDict

__all__ = ["RecordedRequest", "StreamWriter", "RouteHandler", "HTTPError"]


@dataclass(frozen=True)
class RecordedRequest:
    """A request as the server received it (the body is read in full before the route runs).

    ``headers`` is a case-insensitive mapping; ``query`` holds the last value of each parameter.

    :param method: the HTTP method (``GET``, ``POST`` ...).
    :param path: the path, without the query string.
    :param query: the query parameters.
    :param headers: the request headers.
    :param body: the request body, de-chunked.
    """

    method: str
    path: str
    query: Dict[str, str]
    headers: CaseInsensitiveDict[str]
    body: bytes
    #: ``time.monotonic()`` when the request was received
    received_at: float = field(default_factory=time.monotonic)

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


class HTTPError(Exception):
    """Raised by a route before it sent its status: the server answers ``status``, ``message``.

    :param status: the HTTP status to answer.
    :param message: the text of the answer.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class StreamWriter:
    """Writes the response of one request, as a script: status, body pieces, pauses, faults.

    Every write goes straight to the socket (nothing is buffered), so each piece reaches the
    client as soon as it is written. A write to a client that went away, or after the server
    began closing, raises ``OSError``: the route just ends (the server expects that).

    :param handler: the server's handler of the request (the server creates the writer).
    :param closing: set when the server begins closing.
    """

    def __init__(self, handler: BaseHTTPRequestHandler, closing: threading.Event) -> None:
        self._handler = handler
        self._sock: socket.socket = handler.connection
        self._closing = closing
        self._framing: Optional[str] = None  # chunked | length | close | none | raw
        self._finished = False
        self._aborted = False
        self.status: Optional[int] = None
        """The status sent, ``None`` before :meth:`send_status`."""

    @property
    def closing(self) -> bool:
        """True once the server is shutting down: a long-running route should stop."""
        return self._closing.is_set()

    @property
    def started(self) -> bool:
        """True once anything of the response went out (a status, or raw bytes)."""
        return self._framing is not None

    @property
    def aborted(self) -> bool:
        """True after :meth:`close_abruptly`."""
        return self._aborted

    def send_status(
        self, code: int, headers: Optional[Mapping[str, str]] = None, *, chunked: bool = True
    ) -> None:
        """Send the status line and headers.

        The body framing follows from them: none for 1xx/204/304; as given when ``headers``
        hold ``Content-Length``; ``Transfer-Encoding: chunked`` when ``chunked`` (the default);
        otherwise close-delimited (``Connection: close``, the body ends when the socket closes).

        :param code: the HTTP status.
        :param headers: response headers.
        :param chunked: frame the body as chunks (when ``headers`` give no ``Content-Length``).
        """
        if self.started:
            raise RuntimeError("the status of this response was already sent")
        headers = dict(headers or {})
        names = {name.lower() for name in headers}
        handler = self._handler
        handler.send_response(code)
        for name, value in headers.items():
            handler.send_header(name, value)
        if code < 200 or code in (204, 304):
            self._framing = "none"
        elif "content-length" in names:
            self._framing = "length"
        elif chunked:
            self._framing = "chunked"
            if "transfer-encoding" not in names:
                handler.send_header("Transfer-Encoding", "chunked")
        else:
            self._framing = "close"
            handler.close_connection = True
            if "connection" not in names:
                handler.send_header("Connection", "close")
        handler.end_headers()  # writes the header block now
        self.status = code

    def write(self, data: bytes) -> None:
        """Send a piece of the body now: one chunk in chunked mode, the bytes as is otherwise.

        :param data: the piece.
        """
        if self._framing is None:
            raise RuntimeError("send_status() must come before write()")
        if self._aborted:
            raise BrokenPipeError("the connection was closed abruptly")
        if not data:
            return  # an empty chunk would end a chunked body
        if self._framing == "none":
            raise RuntimeError(f"a {self.status} response has no body")
        if self._framing == "chunked":
            self._sock.sendall(b"%x\r\n%s\r\n" % (len(data), data))
        else:
            self._sock.sendall(data)

    def write_raw(self, data: bytes) -> None:
        """Send bytes exactly as given, with no HTTP framing: for broken responses in fault tests.

        Before :meth:`send_status` it lets a route write its own status line and headers; the
        connection is closed when the route returns.

        :param data: the bytes.
        """
        if self._aborted:
            raise BrokenPipeError("the connection was closed abruptly")
        if self._framing is None:
            self._framing = "raw"
        self._handler.close_connection = True
        self._sock.sendall(data)

    def flush(self) -> None:
        """Writes are unbuffered and already on their way; kept so routes can say what they mean."""

    def end(self) -> None:
        """Finish the body properly (the terminating chunk in chunked mode). Idempotent.

        Called by the server after the route returns, unless the route closed abruptly.
        """
        if self._finished or self._aborted:
            return
        self._finished = True
        if self._framing == "chunked":
            self._sock.sendall(b"0\r\n\r\n")

    def close_abruptly(self, *, reset: bool = False) -> None:
        """Cut the connection mid-response: no terminating chunk, no more bytes.

        By default the client sees the connection closed (FIN) at once; with ``reset=True`` the
        socket is reset (RST) when the route returns, which may discard data the client has
        not read yet.

        :param reset: send a TCP reset (RST) rather than a normal close (FIN).
        """
        if self._aborted:
            return
        self._aborted = True
        self._handler.close_connection = True
        with contextlib.suppress(OSError):  # unless the connection is already gone
            if reset:
                self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            else:
                self._sock.shutdown(socket.SHUT_RDWR)

    def sleep(self, seconds: float) -> bool:
        """Pause the response; ``False`` (early) when the server is closing.

        :param seconds: how long.
        """
        return not self._closing.wait(seconds)

    def hold(self, timeout: Optional[float] = None) -> None:
        """Send nothing but keep the connection open until the client goes away, the server
        closes, or ``timeout`` seconds pass. The route should end (or close abruptly) after it.

        :param timeout: the longest hold in seconds (``None``: no limit).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            try:
                selector.register(self._sock, selectors.EVENT_READ)
            except (OSError, ValueError):  # ValueError: the socket is already closed
                return
            while not self._closing.is_set():
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return
                # Readable means the client closed (or sent something), or close() shut the
                # socket down to wake us.
                try:
                    if selector.select(remaining) and not self._sock.recv(65536):
                        return
                except OSError:
                    return

    def send_text(
        self, status: int, text: str = "", headers: Optional[Mapping[str, str]] = None
    ) -> None:
        """A complete short response: ``text`` as ``text/plain`` (no body for 1xx/204/304).

        :param status: the HTTP status.
        :param text: the body.
        :param headers: more response headers.
        """
        headers = dict(headers or {})
        if status < 200 or status in (204, 304):
            self.send_status(status, headers)  # no body, and no headers describing one
            return
        body = text.encode()
        headers.update(
            {"Content-Type": "text/plain; charset=utf-8", "Content-Length": str(len(body))}
        )
        self.send_status(status, headers)
        self.write(body)


#: The signature of a route: ``handler(request, writer)``.
RouteHandler = Callable[[RecordedRequest, StreamWriter], None]
