"""Micro-benchmark of WebSocketTransport: messages/s through ``iter_events()`` next to a bare
websocket-client ``recv()`` loop, against the same local server in the same run; and ping RTT.

A minimal raw server (stdlib only) answers the handshake and writes N pre-framed text messages
of about 64 bytes as fast as the socket takes them, then a 1000 close frame, so the client is
what is measured. Run: python bench/ws_micro.py [N]
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import statistics
import sys
import threading
import time
from typing import Callable, List

import websocket

from aikit_transports.transports.websocket import WebSocketTransport

N = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
RUNS = 5
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def frame_text(payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    return bytes((0x81, 126)) + n.to_bytes(2, "big") + payload


def make_stream(n: int) -> bytes:
    parts = [
        frame_text(json.dumps({"type": "token", "index": i, "text": "hello world"}).encode())
        for i in range(n)
    ]
    parts.append(bytes((0x88, 2)) + (1000).to_bytes(2, "big"))
    return b"".join(parts)


class BlastServer:
    """Accepts connections one at a time; each gets the whole pre-built stream."""

    def __init__(self, stream: bytes) -> None:
        self.stream = stream
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, name="bench-blast", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                head = b""
                while b"\r\n\r\n" not in head:
                    head += conn.recv(4096)
                key = next(
                    line.split(b":", 1)[1].strip()
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"sec-websocket-key:")
                )
                accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
                conn.sendall(
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                    b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
                )
                try:
                    conn.sendall(self.stream)
                    conn.settimeout(2)
                    while conn.recv(65536):  # wait for the client's close reply / EOF
                        pass
                except OSError:
                    pass

    def close(self) -> None:
        self.sock.close()


def bare_loop(url: str, skip_utf8: bool) -> int:
    ws = websocket.create_connection(url, skip_utf8_validation=skip_utf8)
    count = 0
    try:
        while count < N:
            ws.recv()
            count += 1
    finally:
        ws.close()
    return count


def transport_loop(url: str) -> int:
    t = WebSocketTransport(url)  # default options: block buffer of 1000, heartbeats on
    count = 0
    try:
        for _ in t.iter_events(timeout=30):
            count += 1
    finally:
        t.close()
    return count


def best_rate(fn: Callable[[], int]) -> float:
    rates: List[float] = []
    for _ in range(RUNS):
        t0 = time.perf_counter()
        count = fn()
        elapsed = time.perf_counter() - t0
        assert count == N, count
        rates.append(N / elapsed)
    return max(rates)


def ping_rtt(rounds: int = 20) -> List[float]:
    from aikit_transports.testing.ws import WebSocketServer

    samples: List[float] = []
    with WebSocketServer() as server:
        t = WebSocketTransport(
            server.url("/silent"), heartbeat_interval=0.02, heartbeat_timeout=1.0
        )
        t.connect()
        try:
            last = None
            deadline = time.monotonic() + 10
            while len(samples) < rounds and time.monotonic() < deadline:
                rtt = t.metrics.ping_rtt_ms
                if rtt is not None and rtt != last:
                    samples.append(rtt)
                    last = rtt
                time.sleep(0.005)
        finally:
            t.close()
    return samples


def main() -> None:
    server = BlastServer(make_stream(N))
    url = f"ws://127.0.0.1:{server.port}/"
    try:
        bare = best_rate(lambda: bare_loop(url, skip_utf8=True))
        bare_checked = best_rate(lambda: bare_loop(url, skip_utf8=False))
        ours = best_rate(lambda: transport_loop(url))
    finally:
        server.close()
    print(f"{N} text messages of ~64 bytes, best of {RUNS} runs, python {sys.version.split()[0]}")
    print(f"  bare websocket-client recv() loop, skip_utf8_validation=True : {bare:>10,.0f} msg/s")
    checked = f"{bare_checked:>10,.0f}"
    print(f"  bare websocket-client recv() loop, default UTF-8 check        : {checked} msg/s")
    print(
        f"  WebSocketTransport.iter_events()                              : {ours:>10,.0f} msg/s"
        f"  ({ours / bare:.2f}x the first, {ours / bare_checked:.2f}x the second)"
    )
    rtts = ping_rtt()
    if rtts:
        print(
            f"  ping RTT to a local websockets server over {len(rtts)} pings: "
            f"median {statistics.median(rtts):.3f} ms, max {max(rtts):.3f} ms"
        )


if __name__ == "__main__":
    main()
