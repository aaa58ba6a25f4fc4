"""What a hostile WebSocket server can make the client hold: memory measured per scenario.

Each scenario runs in a fresh process (peak RSS is per process) against a raw server in that
process (``aikit_transports.testing.ws.RawWebSocketServer``), and reports how it ended, the
bytes the server wrote, the growth of peak RSS over the process before the connection, and the
peak of Python allocations (tracemalloc) during it:

``bomb``        one compressed message of about 1 MB on the wire that inflates to 1 GiB
                (``max_message_bytes`` 16 MiB, the default)
``continuations``  a text frame with FIN=0, then zero-length continuation frames until the
                client gives up (``max_message_bytes`` 1 MiB; up to 64 MB on the wire)
``endless-header``  a 101 answer, then a header line that never ends (``timeout=2``)
``trickle``     a handshake answer trickled one byte every 0.1 s (``timeout=2``)

Run: ``.venv/bin/python bench/ws_limits.py`` (every scenario) or ``... ws_limits.py bomb``.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import threading
import time
import tracemalloc
import zlib
from typing import Any, Dict, List

from aikit_transports import ReconnectPolicy, WebSocketTransport
from aikit_transports.testing.ws import RawWebSocketPeer, RawWebSocketServer, server_frame

SCENARIOS = ("bomb", "continuations", "endless-header", "trickle")


def _bomb() -> bytes:
    z = zlib.compressobj(9, zlib.DEFLATED, -15)
    zeros = bytes(1 << 20)
    data = b"".join(z.compress(zeros) for _ in range(1024)) + z.flush(zlib.Z_SYNC_FLUSH)[:-4]
    return server_frame(0x2, data, rsv1=True)


def scenario(name: str) -> Dict[str, Any]:
    written = [0]
    stop = threading.Event()
    options: Dict[str, Any] = {}
    if name == "bomb":
        bomb = _bomb()

        def script(peer: RawWebSocketPeer) -> None:
            peer.accept("permessage-deflate")
            peer.send(bomb)
            written[0] = len(bomb)
            peer.read_until_close(timeout=30)

    elif name == "continuations":
        options["max_message_bytes"] = 1 << 20
        batch = server_frame(0x0, b"", fin=False) * 32768

        def script(peer: RawWebSocketPeer) -> None:
            peer.accept()
            peer.send(server_frame(0x1, b"a", fin=False))
            while written[0] < 64 << 20 and peer.send(batch):
                written[0] += len(batch)

    elif name == "endless-header":
        options["timeout"] = 2.0

        def script(peer: RawWebSocketPeer) -> None:
            peer.send(b"HTTP/1.1 101 Switching Protocols\r\nX-Endless: ")
            while not stop.is_set() and peer.send(b"a" * 65536):
                written[0] += 65536

    else:
        options["timeout"] = 2.0

        def script(peer: RawWebSocketPeer) -> None:
            while not stop.wait(0.1) and peer.send(b"x"):
                written[0] += 1

    server = RawWebSocketServer(script).start()
    t = WebSocketTransport(
        server.url(), heartbeat_interval=None, reconnect=ReconnectPolicy(max_attempts=0), **options
    )
    errors: List[str] = []
    t.on("error", lambda e: errors.append(f"{type(e).__name__}: {e.message}"))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    started = time.monotonic()
    try:
        try:
            t.connect()
            for _ in t.iter_events(timeout=60):
                pass
        except Exception as exc:  # the expected end of each scenario
            errors.append(f"{type(exc).__name__}: {getattr(exc, 'message', exc)}")
        elapsed = time.monotonic() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        stop.set()
        t.close()
        server.close()
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "scenario": name,
        "ended": errors[0][:160] if errors else "no error",
        "server_wrote_mb": written[0] / 1e6,
        "rss_growth_mb": (after - before) / 1024,
        "python_peak_mb": peak / 2**20,
        "seconds": elapsed,
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] != "--all":
        print(json.dumps(scenario(sys.argv[1])))
        return
    print("| scenario | server wrote | peak RSS growth | Python peak | time | ended with |")
    print("|---|---:|---:|---:|---:|---|")
    for name in SCENARIOS:
        out = subprocess.run(
            [sys.executable, __file__, name], capture_output=True, text=True, timeout=600
        )
        if out.returncode:
            sys.stderr.write(out.stderr)
            raise SystemExit(f"{name} failed")
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(
            f"| {name} | {r['server_wrote_mb']:.2f} MB | {r['rss_growth_mb']:.1f} MB "
            f"| {r['python_peak_mb']:.1f} MiB | {r['seconds']:.1f} s | {r['ended']} |"
        )


if __name__ == "__main__":
    main()
