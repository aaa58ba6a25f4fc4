"""The benchmark's clients, one per process: ``python bench/clients.py CLIENT --url URL --n N``.

Each client consumes one stream from ``bench/server.py``, checks that it received exactly ``n``
events and that the last one has id ``n - 1`` (exit status 1 and a message otherwise), and
prints one JSON line: ``elapsed`` (seconds from before the connection to the last event),
``count``, ``last_id``, ``cpu`` (CPU seconds of the process, every thread, from the start of
the run to its end, imports excluded) and, in paced mode (``--paced``), ``latency`` (p50 /
p99 / max in ms from the server's write to the consumer). Teardown is not timed, for any client.

Memory clients (``memory-*``) open ``n`` idle connections per wire to the idle server instead
and report resident memory and threads.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple
from urllib.parse import urlsplit

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

perf = time.perf_counter
monotonic = time.monotonic
WAIT = 600.0  # no stream of the benchmark takes this long: a client stuck this long failed


class Result:
    """What a client measured."""

    def __init__(self) -> None:
        self.count = 0
        self.last_id: Optional[str] = None
        self.elapsed = 0.0
        self.latencies: List[float] = []
        self.cpu0 = time.process_time()  # made once the client's imports are done


def stamp_of(text: str) -> float:
    """The server's send time at the start of a paced SSE or WebSocket payload."""
    return float(text[: text.index(" ")])


def ws_id(text: str, paced: bool) -> str:
    """The id of a WebSocket payload (``{"id":i,...}``, or ``"<stamp> i ..."`` when paced)."""
    if paced:
        return text.split(" ", 2)[1]
    return text[6 : text.index(",")]


# -- ours -------------------------------------------------------------------------------------


def _ours_consume(transport: Any, paced: bool, kind: str, style: str) -> Result:
    """Run ``transport`` through ``iter_events()`` or an ``on("event")`` callback."""
    res = Result()
    lat = res.latencies
    last: List[Any] = [None]
    t0 = perf()
    if style == "iter":
        count = 0
        event = None
        if paced and kind == "ndjson":
            for event in transport.iter_events():
                lat.append(monotonic() - event.data["t"])
                count += 1
        elif paced:
            for event in transport.iter_events():
                lat.append(monotonic() - stamp_of(event.data))
                count += 1
        else:
            for event in transport.iter_events():  # noqa: B007  (the last one is checked)
                count += 1
        res.elapsed = perf() - t0
        res.count = count
        last[0] = event
    else:
        done = threading.Event()
        counter = [0]

        if paced and kind == "ndjson":

            def on_event(event: Any) -> None:
                lat.append(monotonic() - event.data["t"])
                counter[0] += 1
                last[0] = event

        elif paced:

            def on_event(event: Any) -> None:
                lat.append(monotonic() - stamp_of(event.data))
                counter[0] += 1
                last[0] = event

        else:

            def on_event(event: Any) -> None:
                counter[0] += 1
                last[0] = event

        transport.on("event", on_event)
        transport.on("closed", lambda reason: done.set())
        transport.connect()
        if not done.wait(WAIT):
            raise SystemExit("timed out waiting for the end of the stream")
        res.elapsed = perf() - t0
        res.count = counter[0]
    transport.close()
    event = last[0]
    if event is not None:
        res.last_id = ws_id(event.data, paced) if kind == "ws" else event.id
    return res


def ours_sse(url: str, paced: bool, style: str) -> Result:
    from aikit_transports import SSETransport

    return _ours_consume(SSETransport(url, reconnect_on_eof=False), paced, "sse", style)


def ours_ndjson(url: str, paced: bool, style: str) -> Result:
    import aikit_transports

    cls = getattr(aikit_transports, "HTTPStreamTransport", None)
    if cls is None:
        raise NotImplementedError("HTTPStreamTransport is not available")
    return _ours_consume(cls(url, mode="stream", reconnect_on_eof=False), paced, "ndjson", style)


def ours_ws(url: str, paced: bool, style: str) -> Result:
    from aikit_transports import WebSocketTransport

    return _ours_consume(WebSocketTransport(url), paced, "ws", style)


# -- peers ------------------------------------------------------------------------------------


def sseclient_py(url: str, paced: bool) -> Result:
    import requests
    import sseclient

    res = Result()
    lat = res.latencies
    t0 = perf()
    resp = requests.get(url, stream=True, headers={"Accept": "text/event-stream"})
    event = None
    count = 0
    for event in sseclient.SSEClient(resp).events():
        if paced:
            lat.append(monotonic() - stamp_of(event.data))
        count += 1
    res.elapsed = perf() - t0
    resp.close()
    res.count = count
    res.last_id = event.id if event is not None else None
    return res


def httpx_sse(url: str, paced: bool) -> Result:
    import httpx
    from httpx_sse import connect_sse

    res = Result()
    lat = res.latencies
    count = 0
    sse = None
    t0 = perf()
    with httpx.Client(timeout=None) as client, connect_sse(client, "GET", url) as source:
        for sse in source.iter_sse():
            if paced:
                lat.append(monotonic() - stamp_of(sse.data))
            count += 1
        res.elapsed = perf() - t0
    res.count = count
    res.last_id = sse.id if sse is not None else None
    return res


def requests_sse(url: str, paced: bool) -> Result:
    """A bare ``iter_lines()`` loop (default chunk size) that frames events as simple clients do."""
    import requests

    res = Result()
    lat = res.latencies
    count = 0
    last_id = None
    event_id = None
    data: List[str] = []
    t0 = perf()
    resp = requests.get(url, stream=True, headers={"Accept": "text/event-stream"})
    for raw in resp.iter_lines():
        if not raw:
            if data:
                if paced:
                    lat.append(monotonic() - stamp_of(data[0]))
                count += 1
                last_id = event_id
                data = []
            continue
        line = raw.decode("utf-8")
        name, _, value = line.partition(":")
        if value[:1] == " ":
            value = value[1:]
        if name == "data":
            data.append(value)
        elif name == "id":
            event_id = value
    res.elapsed = perf() - t0
    resp.close()
    res.count = count
    res.last_id = last_id
    return res


def requests_ndjson(url: str, paced: bool) -> Result:
    """A bare ``iter_lines()`` + ``json.loads`` loop (default chunk size)."""
    import requests

    res = Result()
    lat = res.latencies
    count = 0
    obj = None
    loads = json.loads
    t0 = perf()
    resp = requests.get(url, stream=True)
    for line in resp.iter_lines():
        if line:
            obj = loads(line)
            if paced:
                lat.append(monotonic() - obj["t"])
            count += 1
    res.elapsed = perf() - t0
    resp.close()
    res.count = count
    res.last_id = str(obj["id"]) if obj is not None else None
    return res


def websocket_client(url: str, paced: bool) -> Result:
    """A bare ``recv()`` loop; UTF-8 checks off (its own check is a per-byte Python loop)."""
    import websocket

    res = Result()
    lat = res.latencies
    count = 0
    msg = None
    last = None
    t0 = perf()
    ws = websocket.create_connection(url, skip_utf8_validation=True)
    recv = ws.recv
    while True:
        msg = recv()
        if not msg:
            break
        if paced:
            lat.append(monotonic() - stamp_of(msg))
        count += 1
        last = msg
    res.elapsed = perf() - t0
    ws.shutdown()
    res.count = count
    res.last_id = ws_id(last, paced) if last is not None else None
    return res


def websockets_sync(url: str, paced: bool) -> Result:
    from websockets.sync.client import connect

    res = Result()
    lat = res.latencies
    count = 0
    last = None
    t0 = perf()
    with connect(url, max_size=None) as ws:
        for msg in ws:
            if paced:
                lat.append(monotonic() - stamp_of(str(msg)))
            count += 1
            last = msg
        res.elapsed = perf() - t0
    res.count = count
    res.last_id = ws_id(str(last), paced) if last is not None else None
    return res


# -- the floor: a raw socket that only counts separators --------------------------------------


def _raw_connect(url: str, upgrade: bool) -> Tuple[socket.socket, bytes]:
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port))
    target = parts.path + ("?" + parts.query if parts.query else "")
    extra = (
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        if upgrade
        else ""
    )
    sock.sendall(f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\n{extra}\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise SystemExit("no response head")
        data += chunk
    return sock, data.partition(b"\r\n\r\n")[2]


def raw_http(url: str, paced: bool) -> Result:
    """Counts ``\\n\\n`` (SSE) or lines (NDJSON) in 256 KiB reads; the last id from the tail."""
    ndjson = "/ndjson" in url
    res = Result()
    t0 = perf()
    sock, first = _raw_connect(url, upgrade=False)
    recv = sock.recv
    count = 0
    prev_end = 0
    tail = b""
    chunk = first or recv(262144)
    while chunk:
        if ndjson:  # chunked framing adds CRLFs; event lines hold no CR
            count += chunk.count(b"\n") - chunk.count(b"\r\n")
            if prev_end == 13 and chunk[0] == 10:
                count -= 1
        else:
            count += chunk.count(b"\n\n")
            if prev_end == 10 and chunk[0] == 10:
                count += 1
        prev_end = chunk[-1]
        tail = (tail + chunk[-8192:])[-16384:]
        chunk = recv(262144)
    res.elapsed = perf() - t0
    sock.close()
    res.count = count
    marker = b'{"id":' if ndjson else b"\nid: "
    at = tail.rfind(marker) + len(marker)
    end = tail.index(b"," if ndjson else b"\n", at)
    res.last_id = tail[at:end].decode()
    return res


def raw_ws(url: str, paced: bool) -> Result:
    """Counts the payload openings ``{"id":`` in 256 KiB reads (after the handshake)."""
    res = Result()
    t0 = perf()
    sock, first = _raw_connect(url, upgrade=True)
    recv = sock.recv
    marker = b'{"id":'
    count = 0
    carry = b""  # the last bytes of the previous read: a marker may straddle two reads
    tail = b""
    chunk = first or recv(262144)
    while chunk:
        count += chunk.count(marker)
        if carry:
            count += (carry + chunk[:5]).count(marker)
        carry = chunk[-5:]
        tail = (tail + chunk[-8192:])[-16384:]
        if tail.endswith(b"\x88\x02\x03\xe8"):  # the server's close frame: the end
            break
        chunk = recv(262144)
    res.elapsed = perf() - t0
    sock.close()
    res.count = count
    at = tail.rfind(marker) + len(marker)
    res.last_id = tail[at : tail.index(b",", at)].decode()
    return res


# -- idle memory ------------------------------------------------------------------------------


def _status() -> Dict[str, int]:
    """VmRSS (KiB) and Threads of this process, from /proc."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "Threads"):
                out[name] = int(value.split()[0])
    return out


def _settle() -> Dict[str, int]:
    import gc

    gc.collect()
    time.sleep(0.5)
    return _status()


def _wait_threads(target: int, limit: float) -> int:
    deadline = monotonic() + limit
    while _status()["Threads"] > target and monotonic() < deadline:
        time.sleep(0.05)
    return _status()["Threads"]


def memory_ours(base: str, n: int) -> Dict[str, Any]:
    """``n`` idle ``SSETransport`` and ``n`` idle ``WebSocketTransport``, all open at once."""
    from aikit_transports import SSETransport, WebSocketTransport

    http = f"http://{base}/idle-sse"
    ws = f"ws://{base}/idle-ws"
    for warm in (SSETransport(http), WebSocketTransport(ws)):  # imports, lazy set-up
        warm.connect(timeout=10)
        warm.close()
    before = _settle()
    t0 = perf()
    transports: List[Any] = []
    for _ in range(n):
        transports.append(SSETransport(http).connect(timeout=30))
    mid = _settle()
    for _ in range(n):
        transports.append(WebSocketTransport(ws).connect(timeout=30))
    opened = perf() - t0
    during = _settle()
    t0 = perf()
    for t in transports:
        t.close()
    closed = perf() - t0
    left = _wait_threads(before["Threads"], 5.0)
    ours_left = [t.name for t in threading.enumerate() if t.name.startswith("aikit")]
    return {
        "n": n,
        "rss_before_kb": before["VmRSS"],
        "rss_after_sse_kb": mid["VmRSS"],
        "rss_during_kb": during["VmRSS"],
        "kb_per_sse": (mid["VmRSS"] - before["VmRSS"]) / n,
        "kb_per_ws": (during["VmRSS"] - mid["VmRSS"]) / n,
        "kb_per_conn": (during["VmRSS"] - before["VmRSS"]) / (2 * n),
        "threads_before": before["Threads"],
        "threads_during": during["Threads"],
        "threads_after": left,
        "library_threads_after": len(ours_left),
        "open_s": opened,
        "close_s": closed,
    }


def memory_requests(base: str, n: int) -> Dict[str, Any]:
    """``n`` idle ``requests`` streams (no thread: nobody reads them)."""
    import requests

    url = f"http://{base}/idle-sse"
    requests.get(url, stream=True).close()
    before = _settle()
    responses = []
    for _ in range(n):
        session = requests.Session()
        responses.append((session, session.get(url, stream=True)))
    during = _settle()
    for session, resp in responses:
        resp.close()
        session.close()
    return {
        "n": n,
        "kb_per_conn": (during["VmRSS"] - before["VmRSS"]) / n,
        "threads_before": before["Threads"],
        "threads_during": during["Threads"],
        "threads_after": _status()["Threads"],
    }


def memory_wsapp(base: str, n: int) -> Dict[str, Any]:
    """``n`` idle ``websocket.WebSocketApp``s, each on its ``run_forever`` thread."""
    import websocket

    url = f"ws://{base}/idle-ws"
    before = _settle()
    apps = []
    opened = threading.Semaphore(0)
    for _ in range(n):
        app = websocket.WebSocketApp(url, on_open=lambda _app: opened.release())
        thread = threading.Thread(target=app.run_forever, daemon=True)
        thread.start()
        apps.append((app, thread))
    for _ in range(n):
        if not opened.acquire(timeout=30):
            break
    during = _settle()
    for app, _thread in apps:
        app.close()
    left = _wait_threads(before["Threads"], 5.0)
    stuck = sum(1 for _app, thread in apps if thread.is_alive())
    return {
        "n": n,
        "kb_per_conn": (during["VmRSS"] - before["VmRSS"]) / n,
        "threads_before": before["Threads"],
        "threads_during": during["Threads"],
        "threads_after": left,
        "stuck_after_close": stuck,
    }


# -- the command line -------------------------------------------------------------------------

StreamClient = Callable[[str, bool], Result]


def _ours(fn: Callable[[str, bool, str], Result], style: str) -> StreamClient:
    return lambda url, paced: fn(url, paced, style)


#: name -> (wire, function). The wire picks the server endpoint: sse, ndjson or ws.
CLIENTS: Dict[str, Tuple[str, StreamClient]] = {
    "ours-sse-iter": ("sse", _ours(ours_sse, "iter")),
    "ours-sse-on": ("sse", _ours(ours_sse, "on")),
    "sseclient-py": ("sse", sseclient_py),
    "httpx-sse": ("sse", httpx_sse),
    "requests-sse": ("sse", requests_sse),
    "raw-sse": ("sse", raw_http),
    "ours-ndjson-iter": ("ndjson", _ours(ours_ndjson, "iter")),
    "ours-ndjson-on": ("ndjson", _ours(ours_ndjson, "on")),
    "requests-ndjson": ("ndjson", requests_ndjson),
    "raw-ndjson": ("ndjson", raw_http),
    "ours-ws-iter": ("ws", _ours(ours_ws, "iter")),
    "ours-ws-on": ("ws", _ours(ours_ws, "on")),
    "websocket-client": ("ws", websocket_client),
    "websockets-sync": ("ws", websockets_sync),
    "raw-ws": ("ws", raw_ws),
}

MEMORY_CLIENTS = {
    "memory-ours": memory_ours,
    "memory-requests": memory_requests,
    "memory-wsapp": memory_wsapp,
}


def percentile(values: List[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("client", choices=[*CLIENTS, *MEMORY_CLIENTS])
    parser.add_argument("--url", required=True, help="stream URL, or host:port for memory-*")
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--paced", action="store_true")
    parser.add_argument("--warmup", type=int, default=0, help="paced: events left out of stats")
    args = parser.parse_args()
    if args.client in MEMORY_CLIENTS:
        print(json.dumps(MEMORY_CLIENTS[args.client](args.url, args.n)), flush=True)
        return
    _wire, fn = CLIENTS[args.client]
    try:
        res = fn(args.url, args.paced)
    except NotImplementedError as exc:
        print(json.dumps({"skipped": str(exc)}), flush=True)
        return
    expected = str(args.n - 1)
    if res.count != args.n or res.last_id != expected:
        raise SystemExit(
            f"{args.client}: expected {args.n} events ending with id {expected}, "
            f"got {res.count} ending with id {res.last_id!r}"
        )
    cpu = time.process_time() - res.cpu0
    out: Dict[str, Any] = {
        "count": res.count,
        "last_id": res.last_id,
        "elapsed": res.elapsed,
        "cpu": cpu,
    }
    if args.paced:
        lat = res.latencies[args.warmup :] or res.latencies
        out["latency"] = {
            "p50": percentile(lat, 0.5) * 1000,
            "p99": percentile(lat, 0.99) * 1000,
            "max": max(lat) * 1000,
        }
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
