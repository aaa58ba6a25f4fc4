"""The benchmark's server: SSE, NDJSON and WebSocket streams on 127.0.0.1, never the bottleneck.

Run by ``bench/run.py`` in a process of its own (so it never shares the clients' GIL). It prints
one JSON line ``{"port": P, "idle_port": Q}`` once listening, and stops when its standard input
closes.

Stream endpoints (port ``P``, one thread per connection; query parameters in brackets):

``/sse``     [``n``, ``size``, ``rate``, ``framing``] ``text/event-stream``: event ``i`` is
             ``id: i`` + ``data: {"i":i,"text":"xx.."}`` padded so the block is ``size`` bytes;
             ``framing``: ``chunked`` (the default), ``close`` (no length: the body ends when
             the connection closes) or ``gzip`` (``Content-Encoding: gzip``, chunked; not paced)
``/ndjson``  [``n``, ``size``, ``rate``] ``application/x-ndjson``: ``{"id":i,"text":"xx.."}``
             lines of ``size`` bytes (newline included)
``/ws``      [``n``, ``size``, ``rate``] WebSocket text messages ``{"id":i,"text":"xx.."}`` of
             ``size`` bytes, then a close frame 1000
``/prepare`` [``kind``, ``n``, ``size``, ``framing``] builds and caches a body ahead of the
             timed runs

Ids run from 0 to ``n - 1``. Without ``rate``, the whole response is encoded once, cached,
and written with ``sendall`` in 1 MiB slices (HTTP bodies are chunked, each HTTP chunk holding
about 64 KiB of whole events). With ``rate`` (events per second), each event is written on its
own at its scheduled time and carries the server's ``time.monotonic()`` taken right before the
write (CLOCK_MONOTONIC is shared by every process of the machine): SSE and WebSocket payloads
start with ``"<stamp> "``, NDJSON objects hold it as ``"t"``.

Idle endpoints (port ``Q``, one asyncio loop): ``/idle-sse`` answers with an event stream that
only carries a keep-alive comment every 15 s; ``/idle-ws`` upgrades and then only answers pings
and close frames. Thousands of idle connections cost the server almost nothing.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import socket
import sys
import threading
import time
import zlib
from typing import Callable, Dict, List, Optional, Tuple
from urllib.parse import parse_qs, urlsplit

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
HTTP_CHUNK = 64 * 1024
WRITE_SLICE = 1 << 20
KEEPALIVE_EVERY = 15.0

SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
    b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
)
SSE_CLOSE_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
    b"Connection: close\r\n\r\n"
)
SSE_GZIP_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
    b"Content-Encoding: gzip\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
)
#: SSE framing -> response head
SSE_HEADS = {"chunked": SSE_HEAD, "close": SSE_CLOSE_HEAD, "gzip": SSE_GZIP_HEAD}
NDJSON_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
    b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
)
WS_CLOSE_1000 = b"\x88\x02\x03\xe8"


# -- payloads ---------------------------------------------------------------------------------


def _padded(prefix: bytes, suffix: bytes, size: int) -> bytes:
    """``prefix + x... + suffix``, exactly ``size`` bytes (at least one ``x``)."""
    pad = size - len(prefix) - len(suffix)
    if pad < 1:
        raise ValueError(f"size {size} is too small for this payload")
    return prefix + b"x" * pad + suffix


def sse_event(i: int, size: int) -> bytes:
    return _padded(b'id: %d\ndata: {"i":%d,"text":"' % (i, i), b'"}\n\n', size)


def ndjson_line(i: int, size: int) -> bytes:
    return _padded(b'{"id":%d,"text":"' % i, b'"}\n', size)


def ws_payload(i: int, size: int) -> bytes:
    return _padded(b'{"id":%d,"text":"' % i, b'"}', size)


def ws_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """An unmasked server frame (RFC 6455 §5.2)."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, n))
    elif n < 65536:
        head = bytes((0x80 | opcode, 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 127)) + n.to_bytes(8, "big")
    return head + payload


def http_chunked(pieces: List[bytes]) -> bytes:
    """``pieces`` as a chunked body whose HTTP chunks hold about 64 KiB of whole pieces."""
    out: List[bytes] = []
    group: List[bytes] = []
    size = 0
    for piece in pieces:
        group.append(piece)
        size += len(piece)
        if size >= HTTP_CHUNK:
            out.append(b"%x\r\n%s\r\n" % (size, b"".join(group)))
            group, size = [], 0
    if group:
        out.append(b"%x\r\n%s\r\n" % (size, b"".join(group)))
    out.append(b"0\r\n\r\n")
    return b"".join(out)


def build_body(kind: str, n: int, size: int, framing: str = "chunked") -> bytes:
    """The whole pre-encoded response body (WebSocket: every frame and the close frame)."""
    if kind == "sse":
        events = [sse_event(i, size) for i in range(n)]
        if framing == "close":
            return b"".join(events)
        if framing == "gzip":
            packer = zlib.compressobj(6, zlib.DEFLATED, 31)  # 31: the gzip container
            packed = packer.compress(b"".join(events)) + packer.flush()
            return http_chunked(
                [packed[i : i + HTTP_CHUNK] for i in range(0, len(packed), HTTP_CHUNK)]
            )
        return http_chunked(events)
    if kind == "ndjson":
        return http_chunked([ndjson_line(i, size) for i in range(n)])
    if kind == "ws":
        return b"".join([ws_frame(ws_payload(i, size)) for i in range(n)]) + WS_CLOSE_1000
    raise ValueError(f"unknown kind {kind!r}")


def paced_piece(kind: str, i: int, size: int, stamp: float, framing: str = "chunked") -> bytes:
    """Event ``i`` stamped with ``stamp``, framed for the wire (its own HTTP chunk or frame)."""
    if kind == "sse":
        block = _padded(b"id: %d\ndata: %.9f " % (i, stamp), b"\n\n", size)
        return block if framing == "close" else b"%x\r\n%s\r\n" % (len(block), block)
    if kind == "ndjson":
        line = _padded(b'{"id":%d,"t":%.9f,"text":"' % (i, stamp), b'"}\n', size)
        return b"%x\r\n%s\r\n" % (len(line), line)
    return ws_frame(_padded(b"%.9f %d " % (stamp, i), b"", size))


# -- the stream server (threads) --------------------------------------------------------------


class StreamServer:
    """Accepts on 127.0.0.1 and serves each connection on a thread of its own."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=1024)
        self.port: int = self.listener.getsockname()[1]
        self._bodies: Dict[Tuple[str, int, int, str], bytes] = {}
        self._bodies_lock = threading.Lock()

    def body(self, kind: str, n: int, size: int, framing: str = "chunked") -> bytes:
        key = (kind, n, size, framing)
        with self._bodies_lock:
            body = self._bodies.get(key)
            if body is None:
                body = self._bodies[key] = build_body(kind, n, size, framing)
            return body

    def serve_forever(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            head, rest = _read_head(conn)
            if head is None:
                return
            path, query, headers = _parse_head(head)
            n = int(query.get("n", "1"))
            size = int(query.get("size", "64"))
            rate = float(query.get("rate", "0"))
            framing = query.get("framing", "chunked")
            if path == "/prepare":
                self.body(query.get("kind", "sse"), n, size, framing)
                conn.sendall(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
            elif path == "/ws" and headers.get("upgrade", "").lower() == "websocket":
                conn.sendall(_ws_accept(headers))
                self._stream(conn, "ws", n, size, rate, "chunked")
                _wait_client_close(conn, rest)
            elif framing not in SSE_HEADS or (framing == "gzip" and rate):
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            elif path in ("/sse", "/ndjson"):
                kind = path[1:]
                conn.sendall(SSE_HEADS[framing] if kind == "sse" else NDJSON_HEAD)
                self._stream(conn, kind, n, size, rate, framing)
                if rate and framing != "close":
                    conn.sendall(b"0\r\n\r\n")
            else:
                conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
        except OSError:
            pass  # the client went away
        finally:
            conn.close()

    def _stream(
        self, conn: socket.socket, kind: str, n: int, size: int, rate: float, framing: str
    ) -> None:
        if not rate:
            view = memoryview(self.body(kind, n, size, framing))
            for start in range(0, len(view), WRITE_SLICE):
                conn.sendall(view[start : start + WRITE_SLICE])
            return
        monotonic = time.monotonic
        start = monotonic() + 0.05
        for i in range(n):
            delay = start + i / rate - monotonic()
            if delay > 0:
                time.sleep(delay)
            conn.sendall(paced_piece(kind, i, size, monotonic(), framing))
        if kind == "ws":
            conn.sendall(WS_CLOSE_1000)


def _read_head(conn: socket.socket) -> Tuple[Optional[bytes], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None, b""
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def _parse_head(head: bytes) -> Tuple[str, Dict[str, str], Dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    target = lines[0].split(" ")[1]
    parts = urlsplit(target)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return parts.path, query, headers


def _ws_accept(headers: Dict[str, str]) -> bytes:
    key = headers.get("sec-websocket-key", "").encode()
    accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest())
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
    )


def _client_frames(data: bytes) -> Tuple[List[Tuple[int, bytes]], bytes]:
    """Complete masked client frames in ``data`` as ``(opcode, payload)``, and the rest."""
    frames = []
    pos = 0
    while len(data) - pos >= 2:
        b0, b1 = data[pos], data[pos + 1]
        length = b1 & 0x7F
        start = pos + 2
        if length == 126:
            if len(data) - pos < 4:
                break
            length = int.from_bytes(data[pos + 2 : pos + 4], "big")
            start = pos + 4
        elif length == 127:
            if len(data) - pos < 10:
                break
            length = int.from_bytes(data[pos + 2 : pos + 10], "big")
            start = pos + 10
        masked = b1 & 0x80
        end = start + (4 if masked else 0) + length
        if end > len(data):
            break
        payload = data[end - length : end]
        if masked:
            mask = data[start : start + 4]
            payload = bytes(c ^ mask[k & 3] for k, c in enumerate(payload))
        frames.append((b0 & 0x0F, payload))
        pos = end
    return frames, data[pos:]


def _wait_client_close(conn: socket.socket, data: bytes) -> None:
    """After our close frame: wait (5 s at most) for the client's close frame or its EOF."""
    conn.settimeout(5.0)
    while True:
        frames, data = _client_frames(data)
        if any(op == 0x8 for op, _ in frames):
            return
        try:
            chunk = conn.recv(65536)
        except OSError:
            return
        if not chunk:
            return
        data += chunk


# -- the idle server (asyncio) ----------------------------------------------------------------


async def _idle_handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        path, _, headers = _parse_head(head[:-4])
        if path == "/idle-ws" and headers.get("upgrade", "").lower() == "websocket":
            writer.write(_ws_accept(headers))
            await _idle_ws(reader, writer)
        elif path == "/idle-sse":
            writer.write(SSE_HEAD)
            await _idle_sse(reader, writer)
        else:
            writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


async def _idle_sse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    comment = b": keep-alive\n\n"
    keepalive = b"%x\r\n%s\r\n" % (len(comment), comment)
    while True:
        try:
            data = await asyncio.wait_for(reader.read(4096), KEEPALIVE_EVERY)
        except asyncio.TimeoutError:
            writer.write(keepalive)
            await writer.drain()
            continue
        if not data:
            return


async def _idle_ws(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    data = b""
    while True:
        chunk = await reader.read(4096)
        if not chunk:
            return
        frames, data = _client_frames(data + chunk)
        for opcode, payload in frames:
            if opcode == 0x9:
                writer.write(ws_frame(payload, 0xA))
            elif opcode == 0x8:
                writer.write(ws_frame(payload[:2], 0x8))
                await writer.drain()
                return
        await writer.drain()


def _run_idle_server(ready: Callable[[int], None]) -> None:
    async def main() -> None:
        server = await asyncio.start_server(_idle_handler, "127.0.0.1", 0, backlog=4096)
        ready(server.sockets[0].getsockname()[1])
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def main() -> None:
    stream = StreamServer()
    idle_port: List[int] = []
    idle_ready = threading.Event()

    def ready(port: int) -> None:
        idle_port.append(port)
        idle_ready.set()

    threading.Thread(target=_run_idle_server, args=(ready,), daemon=True).start()
    threading.Thread(target=stream.serve_forever, daemon=True).start()
    if not idle_ready.wait(10):
        raise SystemExit("idle server did not start")
    print(json.dumps({"port": stream.port, "idle_port": idle_port[0]}), flush=True)
    sys.stdin.read()  # the parent closes our stdin (or dies): time to go


if __name__ == "__main__":
    main()
