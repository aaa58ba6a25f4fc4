"""permessage-deflate: bytes on the wire and events/s for compressible JSON messages.

A raw server (stdlib only, in this process) accepts the handshake, choosing
``permessage-deflate`` when the client offers it, and writes ``n`` JSON messages of about 1 KiB
or 16 KiB (compressed with context takeover, as ``websockets`` servers do, and built before the
clock starts), then a close frame: the client is what is measured. Each client reads every
message (and checks the count): ``WebSocketTransport`` with ``compression="deflate"`` and with
``None``, next to the ``websockets`` sync client with its compression on (its default) and off.
Runs are interleaved; the table gives the median.

Run: ``.venv/bin/python bench/ws_compression.py [--runs 5] [--n1k 20000] [--n16k 2000]``
(``make bench`` runs it as its WebSocket compression section).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import random
import socket
import statistics
import threading
import time
import zlib
from typing import Callable, Dict, List, Optional, Tuple
from urllib.parse import parse_qs, urlsplit

from aikit_transports import ReconnectPolicy, WebSocketTransport

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_TEXT = (
    "the model answered with a long and careful explanation of streaming tokens while the "
    "client kept reading every delta and the server kept writing events"
)
_WORDS = _TEXT.split(" ")


def message(i: int, size: int) -> bytes:
    """A compressible JSON event of about ``size`` bytes (the same for every client)."""
    rng = random.Random(i)
    words: List[str] = []
    length = 0
    while length < size - 80:
        word = rng.choice(_WORDS)
        words.append(word)
        length += len(word) + 1
    event = {"id": i, "type": "content_block_delta", "delta": {"text": " ".join(words)}}
    return json.dumps(event, separators=(",", ":")).encode()


def frame(payload: bytes, opcode: int = 0x1, rsv1: bool = False) -> bytes:
    head = bytes([0x80 | (0x40 if rsv1 else 0) | opcode])
    n = len(payload)
    if n < 126:
        return head + bytes([n]) + payload
    if n < 1 << 16:
        return head + bytes([126]) + n.to_bytes(2, "big") + payload
    return head + bytes([127]) + n.to_bytes(8, "big") + payload


def build_stream(n: int, size: int, compressed: bool) -> Tuple[bytes, int]:
    """The frames of ``n`` messages and a close; and the total size of the messages."""
    z = zlib.compressobj(6, zlib.DEFLATED, -15)
    parts = []
    raw = 0
    for i in range(n):
        data = message(i, size)
        raw += len(data)
        if compressed:
            parts.append(frame((z.compress(data) + z.flush(zlib.Z_SYNC_FLUSH))[:-4], rsv1=True))
        else:
            parts.append(frame(data))
    parts.append(frame((1000).to_bytes(2, "big"), 0x8))
    return b"".join(parts), raw


class Server:
    """``/?n=..&size=..``: the prebuilt stream, compressed if the client offered deflate;
    ``/sink?...``: reads what the client sends, counting the bytes (``sunk``), until it leaves."""

    def __init__(self) -> None:
        self.streams: Dict[Tuple[int, int, bool], bytes] = {}
        self.sunk = 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, name="bench-ws-deflate", daemon=True)
        self._thread.start()

    def prepare(self, n: int, size: int) -> None:
        for compressed in (False, True):
            self.streams[(n, size, compressed)] = build_stream(n, size, compressed)[0]

    def close(self) -> None:
        self.sock.close()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            try:
                self._one(conn)
            except OSError:
                pass
            finally:
                conn.close()

    def _one(self, conn: socket.socket) -> None:
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = conn.recv(4096)
            if not chunk:
                return
            buf += chunk
        head, rest = buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])
        }
        target = urlsplit(lines[0].split(" ")[1])
        query = parse_qs(target.query)
        n, size = int(query["n"][0]), int(query["size"][0])
        deflate = "permessage-deflate" in headers.get("sec-websocket-extensions", "")
        key = headers["sec-websocket-key"].encode()
        accept = base64.b64encode(hashlib.sha1(key + _GUID).digest()).decode()
        answer = (
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept}\r\n"
        )
        if deflate:
            answer += "Sec-WebSocket-Extensions: permessage-deflate\r\n"
        conn.settimeout(10)
        if target.path == "/sink":
            conn.sendall((answer + "\r\n").encode())
            sunk = len(rest)
            chunk = conn.recv(65536)
            while chunk:
                sunk += len(chunk)
                chunk = conn.recv(65536)
            self.sunk = sunk
            return
        conn.sendall((answer + "\r\n").encode() + self.streams[(n, size, deflate)])
        conn.recv(65536)  # the client's close frame: then the server closes TCP (RFC 6455 §7.1.1)


#: A client: ``(url, n, messages to send or None to receive) -> seconds`` (connect excluded).
Client = Callable[[str, int, Optional[List[str]]], float]


def ours(compression: Optional[str]) -> Client:
    def run(url: str, n: int, send: Optional[List[str]]) -> float:
        t = WebSocketTransport(
            url,
            heartbeat_interval=None,
            reconnect=ReconnectPolicy(max_attempts=0),
            compression=compression,  # type: ignore[arg-type]
        )
        count = 0
        try:
            t.connect()
            started = time.perf_counter()
            if send is not None:
                for text in send:
                    t.send(text)
                return time.perf_counter() - started
            for _ in t.iter_events(timeout=60):
                count += 1
            elapsed = time.perf_counter() - started
        finally:
            t.close(timeout=0.2)
        if count != n:
            raise SystemExit(f"ours: {count} of {n} messages")
        return elapsed

    return run


def websockets_sync(compression: Optional[str]) -> Client:
    from websockets.exceptions import ConnectionClosedOK
    from websockets.sync.client import connect

    def run(url: str, n: int, send: Optional[List[str]]) -> float:
        count = 0
        with connect(url, compression=compression, max_size=None, close_timeout=0.2) as ws:
            started = time.perf_counter()
            if send is not None:
                for text in send:
                    ws.send(text)
                return time.perf_counter() - started
            try:
                while True:
                    ws.recv()
                    count += 1
            except ConnectionClosedOK:
                pass
            elapsed = time.perf_counter() - started
        if count != n:
            raise SystemExit(f"websockets: {count} of {n} messages")
        return elapsed

    return run


CLIENTS: Dict[str, Client] = {
    "WebSocketTransport, deflate": ours("deflate"),
    "WebSocketTransport, no compression": ours(None),
    "websockets sync client, deflate": websockets_sync("deflate"),
    "websockets sync client, no compression": websockets_sync(None),
}


def measure(workloads: Dict[str, Tuple[int, int]], runs: int) -> str:
    """Run every client on every workload, receiving then sending; a markdown table."""
    server = Server()
    lines = [
        "| messages | client | receives: wire bytes (of the JSON) | events/s "
        "| sends: wire bytes | sends/s |",
        "|---|---|---:|---:|---:|---:|",
    ]
    try:
        for name, (n, size) in workloads.items():
            server.prepare(n, size)
            texts = [message(i, size).decode() for i in range(n)]
            raw = sum(map(len, texts))
            times: Dict[Tuple[str, bool], List[float]] = {}
            sunk: Dict[str, int] = {}
            for r in range(runs):
                order = list(CLIENTS)
                order = order[r % len(order) :] + order[: r % len(order)]
                for client in order:
                    for sending in (False, True):
                        path = "/sink" if sending else "/"
                        url = f"ws://127.0.0.1:{server.port}{path}?n={n}&size={size}"
                        took = CLIENTS[client](url, n, texts if sending else None)
                        times.setdefault((client, sending), []).append(took)
                    server_done = time.monotonic() + 10
                    while server.sunk == 0 and time.monotonic() < server_done:
                        time.sleep(0.01)  # the server counts once the client has left
                    sunk[client], server.sunk = server.sunk, 0
            for client in CLIENTS:
                wire = len(server.streams[(n, size, "deflate" in client)])
                received = n / statistics.median(times[(client, False)])
                sent = n / statistics.median(times[(client, True)])
                lines.append(
                    f"| {n} x {name} | {client} | {wire / 1e6:.2f} MB ({wire / raw:.0%}) "
                    f"| {received:,.0f} | {sunk[client] / 1e6:.2f} MB | {sent:,.0f} |"
                )
    finally:
        server.close()
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--n1k", type=int, default=20_000)
    parser.add_argument("--n16k", type=int, default=2_000)
    args = parser.parse_args()
    print(measure({"1 KiB": (args.n1k, 1024), "16 KiB": (args.n16k, 16384)}, args.runs))


if __name__ == "__main__":
    main()
