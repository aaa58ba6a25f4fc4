"""A real WebSocket server (``websockets``, the optional ``testing`` extra) for tests and the demo.

:class:`WebSocketServer` listens on 127.0.0.1 (a free port by default) and runs in one
background thread named ``aikit-testing-ws-<port>``. Its endpoints (query parameters in
brackets):

``/echo``          sends every message back (text as text, binary as binary) and records it
``/collect``       records every message and answers nothing
``/stream``        [``count=10`` (-1: forever), ``interval=0``, ``binary=0``, ``close=1000``
                   (``none``: stay open), ``session``, ``drop_every``] sends
                   ``{"id": n, "text": "message n"}`` as JSON text for ids 1 to ``count``, then
                   closes with ``close``. It resumes after the id in a ``last_event_id`` query
                   parameter or ``Last-Event-ID`` header, and for a ``session`` key after the
                   last id it sent to that session; ``drop_every=k`` drops the connection
                   (no close frame) after every ``k`` messages
``/close``         [``code=1000``, ``reason``, ``after=0``] sends ``after`` stream messages,
                   then closes with ``code``
``/drop``          [``after=0``] sends ``after`` stream messages, then drops the TCP connection
                   without a close frame
``/headers``       sends the handshake as JSON (``path``, lower-cased ``headers``,
                   ``subprotocol``), then echoes
``/silent``        sends nothing (pings are still answered, as by any server)
``/fragments``     [``parts=ab,cd,ef``, ``binary=0``] sends one message in several frames
``/big``           [``size=1024``, ``binary=0``] sends one message of ``size`` bytes
``/invalid-utf8``  sends ``"before"``, then a text frame that is not UTF-8
``/status/NNN``    refuses the handshake with HTTP NNN (``Retry-After: 0`` on 429 and 503)

Messages of clients are recorded in ``received`` (in arrival order), handshakes in
``requests``, and the close code of every finished connection in ``closes`` (1006 when it
ended without a close frame). ``kill_connections()`` drops every connection abruptly.
``compression="deflate"`` makes it negotiate permessage-deflate.

:class:`RawWebSocketServer` is a :class:`~aikit_transports.testing.RawServer` for exact-frame
tests: a script of yours gets each connection once its handshake request is read, answers it
(or not) and writes the very bytes you choose, for behaviour no well-behaved server shows
(broken frames, hostile handshakes, floods).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import socket
import ssl
import threading
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Set, TypeVar, Union
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from ._loop import LoopThread
from ._wait import wait_for
from .raw import RawPeer, RawServer

__all__ = ["WebSocketServer", "RawWebSocketServer", "RawWebSocketPeer", "Frame", "server_frame"]

T = TypeVar("T")
Data = Union[str, bytes]
log = logging.getLogger("aikit_transports.testing.ws")


def _request(conn: ServerConnection) -> Request:
    """The handshake request of an open connection."""
    request = conn.request
    if request is None:  # pragma: no cover - handlers only run after the handshake
        raise RuntimeError("no handshake request")
    return request


def stream_message(n: int) -> str:
    """The ``n``-th message of ``/stream``, as sent (compact JSON)."""
    return json.dumps({"id": n, "text": f"message {n}"}, separators=(",", ":"))


class WebSocketServer:
    """A ``websockets`` server on 127.0.0.1 with scripted endpoints (see the module docstring).

    ``start()`` (or the context manager) starts it; ``url(path)`` gives ``ws://`` (``wss://``
    with an ``ssl_context``) URLs; ``close()`` drops every connection, stops and joins the
    thread promptly.

    :param host: the address to listen on.
    :param port: the port (``0``: a free one, set in ``port`` by ``start()``).
    :param ssl_context: serve ``wss://`` with this server-side context.
    :param subprotocols: the subprotocols accepted, in order of preference.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: Optional[ssl.SSLContext] = None,
        subprotocols: Sequence[str] = ("chat", "json"),
        compression: Optional[str] = None,
    ) -> None:
        self.host = host
        #: ``"deflate"`` to accept permessage-deflate (as ``websockets`` does by default).
        self.compression = compression
        self.port = port
        self.ssl_context = ssl_context
        self.subprotocols = tuple(subprotocols)
        #: Every message clients sent to ``/echo``, ``/collect`` and ``/headers``, in order.
        self.received: List[Data] = []
        #: Every handshake: ``{"path": ..., "headers": {lower-cased name: value}}``.
        self.requests: List[Dict[str, Any]] = []
        #: The close code received on each finished connection (1006: none).
        self.closes: List[Optional[int]] = []
        self._changed = threading.Condition()
        self._open: Set[ServerConnection] = set()
        self._sessions: Dict[str, int] = {}
        self._refuse_status: Optional[int] = None
        self._thread: Optional[LoopThread] = None
        self._server: Optional[Server] = None

    # -- life cycle ---------------------------------------------------------------------

    def start(self) -> WebSocketServer:
        """Start listening (idempotent); returns ``self``."""
        if self._thread is not None:
            return self
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(128)
        self.port = listener.getsockname()[1]
        thread = self._thread = LoopThread(f"aikit-testing-ws-{self.port}")
        try:
            self._server = thread.run(
                lambda: serve(
                    self._handler,
                    sock=listener,
                    ssl=self.ssl_context,
                    process_request=self._process_request,
                    select_subprotocol=self._select_subprotocol,
                    compression=self.compression,
                    ping_interval=None,
                    max_size=None,
                    close_timeout=1,
                    logger=log,
                )
            )
        except BaseException:
            listener.close()
            thread.stop()
            self._thread = None
            raise
        return self

    def close(self) -> None:
        """Drop every connection, stop listening and join the thread; idempotent."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        server = self._server

        async def shutdown() -> None:
            for conn in list(self._open):
                conn.transport.abort()
            if server is not None:
                server.close(close_connections=False)
                await asyncio.wait_for(server.wait_closed(), 5)

        try:
            thread.run(shutdown)
        finally:
            thread.stop()

    def __enter__(self) -> WebSocketServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- for tests ----------------------------------------------------------------------

    def url(self, path: str = "/echo") -> str:
        """The URL of ``path`` on this server.

        :param path: the path, with a query string if any.
        """
        scheme = "wss" if self.ssl_context is not None else "ws"
        return f"{scheme}://{self.host}:{self.port}{path}"

    @property
    def handshakes(self) -> int:
        """How many handshakes the server received (refused ones included)."""
        return len(self.requests)

    @property
    def connections(self) -> int:
        """Connections open right now."""
        return len(self._open)

    def wait_for(self, predicate: Callable[[], T], timeout: float = 5.0) -> T:
        """Wait until ``predicate()`` is truthy (re-checked on every server-side change).

        :param predicate: a function of no arguments, called under the server's lock.
        :param timeout: the longest wait in seconds; then ``TimeoutError``.
        """
        return wait_for(self._changed, predicate, timeout)

    def kill_connections(self) -> int:
        """Drop every open connection at once, without a close frame; how many there were."""
        thread = self._thread
        if thread is None:
            return 0

        async def kill() -> int:
            conns = list(self._open)
            for conn in conns:
                conn.transport.abort()
            return len(conns)

        return thread.run(kill)

    def refuse(self, status: Optional[int] = 503) -> None:
        """Refuse new handshakes with HTTP ``status`` (``None``: accept again).

        :param status: the status to refuse with, or ``None``.
        """
        self._refuse_status = status

    def _notify(self) -> None:
        with self._changed:
            self._changed.notify_all()

    # -- handshake ----------------------------------------------------------------------

    def _process_request(self, conn: ServerConnection, request: Request) -> Optional[Response]:
        headers = {name.lower(): value for name, value in request.headers.raw_items()}
        self.requests.append({"path": request.path, "headers": headers})
        self._notify()
        status = self._refuse_status
        route = urlsplit(request.path).path
        if status is None and route.startswith("/status/"):
            status = int(route.rsplit("/", 1)[1])
        if status is None:
            return None
        response = conn.respond(status, f"refused with HTTP {status}\n")
        if status in (429, 503):
            response.headers["Retry-After"] = "0"
        return response

    def _select_subprotocol(
        self, conn: ServerConnection, offered: Sequence[Subprotocol]
    ) -> Optional[Subprotocol]:
        for proto in offered:
            if proto in self.subprotocols:
                return proto
        return None

    # -- endpoints ----------------------------------------------------------------------

    async def _handler(self, conn: ServerConnection) -> None:
        parts = urlsplit(_request(conn).path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        route = parts.path.rstrip("/") or "/"
        endpoint = self._routes.get(route)
        self._open.add(conn)
        self._notify()
        try:
            if endpoint is None:
                await conn.close(1008, f"no endpoint {route}")
            else:
                await endpoint(self, conn, query)
        except ConnectionClosed:
            pass
        finally:
            self._open.discard(conn)
            try:
                await asyncio.wait_for(conn.wait_closed(), 2)
            except asyncio.TimeoutError:
                conn.transport.abort()
            code = conn.close_code
            self.closes.append(1006 if code is None else code)
            self._notify()

    async def _record(self, conn: ServerConnection, echo: bool) -> None:
        async for message in conn:
            self.received.append(message)
            self._notify()
            if echo:
                await conn.send(message)

    async def _echo(self, conn: ServerConnection, query: Dict[str, str]) -> None:
        await self._record(conn, echo=True)

    async def _collect(self, conn: ServerConnection, query: Dict[str, str]) -> None:
        await self._record(conn, echo=False)

    async def _headers(self, conn: ServerConnection, query: Dict[str, str]) -> None:
        headers = {name.lower(): value for name, value in _request(conn).headers.raw_items()}
        info = {"path": _request(conn).path, "headers": headers, "subprotocol": conn.subprotocol}
        await conn.send(json.dumps(info))
        await self._record(conn, echo=True)

    async def _silent(self, conn: ServerConnection, query: Dict[str, str]) -> None:
        async for _ in conn:
            pass

    async def _stream(self, conn: ServerConnection, query: Dict[str, str]) -> None:
        count = int(query.get("count", "10"))
        interval = float(query.get("interval", "0"))
        binary = query.get("binary") == "1"
        close = query.get("close", "1000")
        last = query.get("last_event_id") or _request(conn).headers.get("Last-Event-ID")
        start = int(last) if last and last.isdigit() else 0
        session = query.get("session")
        if session:
            start = max(start, self._sessions.get(session, 0))
        drop_every = int(query.get("drop_every", "0"))
        end = count
        if drop_every > 0:
            end = start + drop_every if count < 0 else min(start + drop_every, count)
        await self._send_stream(conn, start, end, interval, binary, session)
        if drop_every > 0 and (count < 0 or end < count):
            conn.transport.abort()
            return
        if close == "none":
            await self._silent(conn, query)
        else:
            await conn.close(int(close), query.get("reason", ""))

    async def _send_stream(
        self,
        conn: ServerConnection,
        start: int,
        end: int,
        interval: float = 0.0,
        binary: bool = False,
        session: Optional[str] = None,
    ) -> None:
        """Send the stream messages after id ``start`` up to id ``end`` (-1: forever)."""
        n = start
        while end < 0 or n < end:
            n += 1
            message = stream_message(n)
            await conn.send(message.encode() if binary else message)
            if session:
                self._sessions[session] = n
            if interval:
                await asyncio.sleep(interval)

    async def _close(self, conn: ServerConnection, query: Dict[str, str]) -> None:
        await self._send_stream(conn, 0, int(query.get("after", "0")))
        await conn.close(int(query.get("code", "1000")), query.get("reason", ""))

    async def _drop(self, conn: ServerConnection, query: Dict[str, str]) -> None:
        await self._send_stream(conn, 0, int(query.get("after", "0")))
        conn.transport.abort()

    async def _fragments(self, conn: ServerConnection, query: Dict[str, str]) -> None:
        parts = query.get("parts", "ab,cd,ef").split(",")
        if query.get("binary") == "1":
            await conn.send([p.encode() for p in parts])
        else:
            await conn.send(parts)
        await self._silent(conn, query)

    async def _big(self, conn: ServerConnection, query: Dict[str, str]) -> None:
        size = int(query.get("size", "1024"))
        await conn.send(b"x" * size if query.get("binary") == "1" else "x" * size)
        await self._silent(conn, query)

    async def _invalid_utf8(self, conn: ServerConnection, query: Dict[str, str]) -> None:
        await conn.send("before")
        conn.transport.write(b"\x81\x06bad \xff\xfe")  # a raw text frame: websockets would refuse
        await self._silent(conn, query)

    _routes: Dict[str, Callable[[WebSocketServer, ServerConnection, Dict[str, str]], Any]] = {
        "/echo": _echo,
        "/collect": _collect,
        "/headers": _headers,
        "/silent": _silent,
        "/stream": _stream,
        "/close": _close,
        "/drop": _drop,
        "/fragments": _fragments,
        "/big": _big,
        "/invalid-utf8": _invalid_utf8,
    }

    def __repr__(self) -> str:
        return f"<WebSocketServer {self.url('/')}>"


# -- exact frames ---------------------------------------------------------------------------


class Frame(NamedTuple):
    """A frame as a client sent it, unmasked."""

    fin: bool
    rsv1: bool
    opcode: int
    payload: bytes

    @property
    def close_code(self) -> Optional[int]:
        """The code of a close frame (``None`` without one)."""
        return int.from_bytes(self.payload[:2], "big") if len(self.payload) >= 2 else None


def server_frame(
    opcode: int, payload: bytes = b"", *, fin: bool = True, rsv1: bool = False
) -> bytes:
    """One unmasked frame, as a server writes it (RFC 6455 §5.2)."""
    head = bytes([(0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([n])
    elif n < 1 << 16:
        head += bytes([126]) + n.to_bytes(2, "big")
    else:
        head += bytes([127]) + n.to_bytes(8, "big")
    return head + payload


class RawWebSocketPeer(RawPeer):
    """The server side of one connection of :class:`RawWebSocketServer`, for a script: a
    :class:`~aikit_transports.testing.RawPeer` that answers the handshake and reads frames.

    :param sock: the accepted socket (the server closes it).
    :param stop: set when the server closes: reads end.
    """

    def __init__(self, sock: socket.socket, stop: threading.Event) -> None:
        super().__init__(sock, stop)
        #: Every frame the client sent on this connection, in order.
        self.frames: List[Frame] = []

    def accept(self, extensions: Optional[str] = None, extra: bytes = b"") -> None:
        """Answer the handshake with 101.

        :param extensions: the ``Sec-WebSocket-Extensions`` answer, if any.
        :param extra: bytes written right after the response head, in the same write.
        """
        key = self.headers["sec-websocket-key"].encode("ascii")
        digest = hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()
        head = (
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {base64.b64encode(digest).decode()}\r\n"
        )
        if extensions is not None:
            head += f"Sec-WebSocket-Extensions: {extensions}\r\n"
        self.send((head + "\r\n").encode("latin-1") + extra)

    def read_frame(self, timeout: float = 5.0) -> Optional[Frame]:
        """The next frame from the client, unmasked (``None`` at the end of the connection).

        :param timeout: the longest wait for the client's bytes, in seconds.
        """
        while True:
            frame = self._parse()
            if frame is not None:
                self.frames.append(frame)
                return frame
            if not self._recv(timeout):
                return None

    def read_until_close(self, timeout: float = 5.0) -> Optional[Frame]:
        """Read frames up to the client's close frame; that frame (``None``: it never came).

        :param timeout: the longest wait for each frame, in seconds.
        """
        while True:
            frame = self.read_frame(timeout)
            if frame is None or frame.opcode == 0x8:
                return frame

    def _parse(self) -> Optional[Frame]:
        buf = self._buf
        if len(buf) < 2:
            return None
        length = buf[1] & 0x7F
        pos = 2
        if length == 126:
            length, pos = int.from_bytes(buf[2:4], "big"), 4
        elif length == 127:
            length, pos = int.from_bytes(buf[2:10], "big"), 10
        masked = buf[1] & 0x80
        end = pos + (4 if masked else 0) + length
        if len(buf) < end:
            return None
        payload = buf[end - length : end]
        if masked:
            key = buf[pos : pos + 4] * (length // 4 + 1)
            payload = bytes(a ^ b for a, b in zip(payload, key))
        self._buf = buf[end:]
        return Frame(bool(buf[0] & 0x80), bool(buf[0] & 0x40), buf[0] & 0x0F, payload)


class RawWebSocketServer(RawServer[RawWebSocketPeer]):
    """A :class:`~aikit_transports.testing.RawServer` of ``ws://`` URLs whose scripts get a
    :class:`RawWebSocketPeer`; for tests that need exact frames on the wire.

    :param script: called with the :class:`RawWebSocketPeer` of each connection.
    :param host: the address to listen on.
    """

    def __init__(self, script: Callable[[RawWebSocketPeer], None], host: str = "127.0.0.1") -> None:
        super().__init__(script, scheme="ws", host=host)

    def _new_peer(self, sock: socket.socket) -> RawWebSocketPeer:
        return RawWebSocketPeer(sock, self._stop)
