"""The scale benchmark's clients: one process holds ``n`` streams of one wire.

``python bench/scale_clients.py CLIENT --wire sse|ws --url URL --n N ...``, run by
``bench/scale.py``. Clients:

``ours-plain``    ``SSETransport`` / ``WebSocketTransport``, each with its own reader thread,
                  consumed through ``on("event", cb)``; opened by a pool of ``--open-concurrency``
                  threads calling ``connect()``
``ours-manager``  the same transports created by one ``TransportManager`` and consumed through
                  ``mgr.on("event", cb)``
``httpx-sse``     (SSE) one ``httpx.AsyncClient`` and ``n`` asyncio tasks, each in
                  ``aconnect_sse`` + ``aiter_sse()``
``websockets``    (WebSocket) ``n`` asyncio tasks, each a ``websockets`` asyncio client connection
                  read with ``async for``

The protocol with ``bench/scale.py``: the client opens one warm-up stream and closes it (imports,
lazy set-up), takes its baseline, opens the ``n`` streams, stays idle ``--idle`` seconds, then
prints one JSON line (``"phase": "ready"`` and what it measured so far, or ``"phase": "failed"``)
and starts counting the load's CPU time. It then reads one JSON line on its standard input, the
server's answer to the load (``sent``, ``t0``, ``t1``), waits until every event sent arrived or
``--grace`` seconds after ``t1`` passed, closes every stream and prints the final JSON line
(``"phase": "done"``).

Every event is ``"<stamp> <seq>"``; latency is ``time.monotonic()`` at the consumer minus the
server's stamp. Ours and the peers' heartbeats follow ``--heartbeat`` (SSE: the server sends a
comment every so many seconds; WebSocket: the client pings), ``0`` for none.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import gc
import json
import logging
import resource
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from scale_server import raise_fd_limit  # bench/ is not a package: run as a script

monotonic = time.monotonic
PHASE_MARK = "=="

CLIENT_WIRES = {
    "ours-plain": ("sse", "ws"),
    "ours-manager": ("sse", "ws"),
    "httpx-sse": ("sse",),
    "websockets": ("ws",),
}


# -- measuring --------------------------------------------------------------------------------


def vm_rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def settled_rss_kb() -> int:
    gc.collect()
    time.sleep(0.5)
    return vm_rss_kb()


class Usage:
    """CPU seconds and context switches of this process since it was taken."""

    def __init__(self) -> None:
        self.wall = monotonic()
        self.ru = resource.getrusage(resource.RUSAGE_SELF)

    def since(self) -> Dict[str, float]:
        ru = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "wall_s": monotonic() - self.wall,
            "cpu_s": (ru.ru_utime - self.ru.ru_utime) + (ru.ru_stime - self.ru.ru_stime),
            "nvcsw": float(ru.ru_nvcsw - self.ru.ru_nvcsw),
            "nivcsw": float(ru.ru_nivcsw - self.ru.ru_nivcsw),
        }


class Recorder:
    """What arrived: ``(server stamp, arrival time, sequence number)`` of each event.

    One ``list.append`` of a tuple per event is atomic, so callbacks of many reader threads may
    record at once.
    """

    def __init__(self) -> None:
        self.items: List[Tuple[float, float, int]] = []

    def record(self, data: str) -> None:
        now = monotonic()
        space = data.index(" ")
        self.items.append((float(data[:space]), now, int(data[space + 1 :])))

    def __len__(self) -> int:
        return len(self.items)


def percentile(ordered: List[float], p: float) -> float:
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def load_stats(
    rec: Recorder, sent: int, t0: float, t1: float, usage: Dict[str, float]
) -> Dict[str, Any]:
    """Delivery, latency, cost and stalls of the load window."""
    items = list(rec.items)
    latencies = sorted(arrival - stamp for stamp, arrival, _seq in items)
    delivered = len(items)
    unique = len({seq for _stamp, _arrival, seq in items})
    # the longest stretch without a delivery while the server was sending
    inside = sorted(arrival for _stamp, arrival, _seq in items if t0 <= arrival <= t1)
    gap = 0.0
    previous = t0
    for a in [*inside, t1]:
        gap = max(gap, a - previous)
        previous = a
    lag = latencies[-1] if latencies else 0.0
    reasons = []
    if gap > 1.0:
        reasons.append(f"{gap:.1f} s without a delivery")
    if lag > 5.0:
        reasons.append(f"lag {lag:.1f} s")
    if unique < sent:
        reasons.append(f"{sent - unique} events missing")
    per = max(delivered, 1)
    return {
        "sent": sent,
        "delivered": delivered,
        "unique": unique,
        "duplicates": delivered - unique,
        "p50_ms": percentile(latencies, 0.5) * 1000 if latencies else None,
        "p99_ms": percentile(latencies, 0.99) * 1000 if latencies else None,
        "max_ms": lag * 1000,
        "max_gap_s": gap,
        "load_cpu_s": usage["cpu_s"],
        "load_wall_s": usage["wall_s"],
        "cpu_s_per_1k": usage["cpu_s"] / per * 1000,
        "cs_per_event": usage["nvcsw"] / per,
        "ics_per_event": usage["nivcsw"] / per,
        "stalled": bool(reasons),
        "stall_reasons": reasons,
    }


def emit(obj: Dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def phase(name: str) -> None:
    """A marker in the process's stderr, so that its log lines can be placed in time."""
    sys.stderr.write(f"{PHASE_MARK} {time.process_time():.1f} CPU-s: {name}\n")
    sys.stderr.flush()


def library_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name.startswith("aikit"))


def wait_threads(target: int, limit: float) -> int:
    deadline = monotonic() + limit
    while threading.active_count() > target and monotonic() < deadline:
        time.sleep(0.05)
    return threading.active_count()


# -- ours -------------------------------------------------------------------------------------


def run_ours(args: argparse.Namespace, managed: bool) -> None:
    """``n`` of our transports, with reader threads of their own or under a manager."""
    from aikit_transports import SSETransport, TransportManager, WebSocketTransport

    rec = Recorder()
    errors: List[str] = []
    hb = args.heartbeat
    if args.wire == "sse":
        url = f"{args.url}?hb={hb:g}" if hb else args.url
        kind = "sse"
        # a stream is dropped after idle_timeout of silence: leave room for the heartbeats
        options: Dict[str, Any] = {"idle_timeout": max(45.0, 2 * hb) if hb else None}
    else:
        url = args.url
        kind = "websocket"
        options = {"heartbeat_interval": hb or None, "idle_timeout": None if not hb else 45.0}
    cls: Any = SSETransport if kind == "sse" else WebSocketTransport
    mgr: Optional[TransportManager] = None
    if managed:
        mgr = TransportManager(max_transports=args.n + 1)
        mgr.on("event", lambda _t, event: rec.record(event.data))

    def on_event(event: Any) -> None:
        rec.record(event.data)

    def on_error(error: Exception) -> None:
        errors.append(f"{type(error).__name__}: {error}")

    def make() -> Any:
        t = mgr.create(kind, url, **options) if mgr is not None else cls(url, **options)
        t.on("error", on_error)
        if mgr is None:
            t.on("event", on_event)
        return t

    warm = make()
    warm.connect(timeout=30)
    warm.close()
    threads_before = threading.active_count()
    rss_before = settled_rss_kb()

    transports: List[Any] = []
    lock = threading.Lock()
    aborted: List[str] = []
    failures: List[str] = []

    def open_one() -> None:
        if aborted:
            return
        count = threading.active_count()
        if count > args.max_threads:
            aborted.append(f"{count} threads > --max-threads {args.max_threads}")
            return
        t = make()
        with lock:
            transports.append(t)
        try:
            t.connect(timeout=args.connect_timeout)
        except Exception as exc:
            failures.append(f"{type(exc).__name__}: {exc}")

    t0 = monotonic()
    with concurrent.futures.ThreadPoolExecutor(args.open_concurrency) as pool:
        for future in [pool.submit(open_one) for _ in range(args.n)]:
            future.result()
    connect_s = monotonic() - t0

    def close_all() -> float:
        c0 = monotonic()
        if mgr is not None:
            mgr.shutdown()
        else:
            with concurrent.futures.ThreadPoolExecutor(args.open_concurrency) as pool:
                list(pool.map(lambda t: t.close(), transports))
        return monotonic() - c0

    if aborted or failures:
        emit(
            {
                "phase": "failed",
                "error": aborted[0] if aborted else f"{len(failures)} connects failed",
                "first_failure": failures[0] if failures else None,
                "opened": len(transports),
                "threads": threading.active_count(),
                "connect_s": connect_s,
            }
        )
        phase("closing")
        close_all()
        return

    threads = threading.active_count()
    rss_after = settled_rss_kb()
    idle = Usage()
    time.sleep(args.idle)
    idle_usage = idle.since()
    threads = max(threads, threading.active_count())
    emit(
        {
            "phase": "ready",
            "connect_s": connect_s,
            "threads": threads,
            "threads_before": threads_before,
            "library_threads": library_threads(),
            "kb_per_stream": (rss_after - rss_before) / args.n,
            "rss_before_kb": rss_before,
            "rss_after_kb": rss_after,
            "idle_cpu_pct": idle_usage["cpu_s"] / idle_usage["wall_s"] * 100,
            "idle_cs_per_s": idle_usage["nvcsw"] / idle_usage["wall_s"],
            "errors_idle": len(errors),
        }
    )
    phase("idle window over")
    load = Usage()
    answer = json.loads(sys.stdin.readline())
    deadline = answer["t1"] + args.grace
    while len(rec) < answer["sent"] and monotonic() < deadline:
        time.sleep(0.02)
    stats = load_stats(rec, answer["sent"], answer["t0"], answer["t1"], load.since())
    reconnects = sum(t.metrics.reconnects for t in transports)
    states: Dict[str, int] = {}
    for t in transports:
        states[t.state.value] = states.get(t.state.value, 0) + 1
    phase("closing")
    close_s = close_all()
    left = wait_threads(threads_before, 5.0)
    emit(
        {
            "phase": "done",
            **stats,
            "reconnects": reconnects,
            "errors": len(errors),
            "first_errors": sorted(set(errors))[:3],
            "states_before_close": states,
            "close_s": close_s,
            "threads_after_close": left,
            "library_threads_after_close": library_threads(),
        }
    )


# -- peers ------------------------------------------------------------------------------------


async def read_answer() -> Dict[str, Any]:
    """One JSON line from standard input, without a thread."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    result: Dict[str, Any] = json.loads(await reader.readline())
    return result


async def run_async(args: argparse.Namespace) -> None:
    """``n`` asyncio tasks of a peer library, one stream each."""
    rec = Recorder()
    errors: List[str] = []
    hb = args.heartbeat
    sem = asyncio.Semaphore(args.open_concurrency)
    opened: List[int] = [0]
    all_open = asyncio.Event()
    closers: List[Callable[[], Any]] = []
    aclose_client: Optional[Callable[[], Any]] = None

    def note_open() -> None:
        opened[0] += 1
        if opened[0] >= args.n:
            all_open.set()

    if args.client == "httpx-sse":
        import httpx
        from httpx_sse import aconnect_sse

        url = f"{args.url}?hb={hb:g}" if hb else args.url
        read_timeout = max(45.0, 2 * hb) if hb else None
        client = httpx.AsyncClient(
            timeout=httpx.Timeout(args.connect_timeout, read=read_timeout),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=None),
        )
        aclose_client = client.aclose

        async def stream(counted: bool) -> None:
            await sem.acquire()
            released = False
            try:
                async with aconnect_sse(client, "GET", url) as source:
                    source.response.raise_for_status()
                    sem.release()
                    released = True
                    if counted:
                        note_open()
                    async for sse in source.aiter_sse():
                        rec.record(sse.data)
            finally:
                if not released:
                    sem.release()

    else:
        from websockets.asyncio.client import connect

        url = args.url

        async def stream(counted: bool) -> None:
            async with sem:
                ws = await connect(
                    url, ping_interval=hb or None, ping_timeout=10.0, open_timeout=30.0
                )
            closers.append(ws.close)
            if counted:
                note_open()
            try:
                async for message in ws:
                    rec.record(message if isinstance(message, str) else message.decode())
            finally:
                await ws.close()

    def failed(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            errors.append(f"{type(exc).__name__}: {exc}")

    # warm-up: one stream opened and closed
    warm = asyncio.ensure_future(stream(False))
    await asyncio.sleep(0.5)
    if closers:
        await closers.pop()()
    warm.cancel()
    await asyncio.gather(warm, return_exceptions=True)
    errors.clear()
    threads_before = threading.active_count()
    rss_before = settled_rss_kb()

    t0 = monotonic()
    tasks = [asyncio.ensure_future(stream(True)) for _ in range(args.n)]
    for task in tasks:
        task.add_done_callback(failed)
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(all_open.wait(), args.connect_timeout * 4)
    connect_s = monotonic() - t0

    async def close_all() -> float:
        c0 = monotonic()
        if closers:
            await asyncio.gather(*(c() for c in closers), return_exceptions=True)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if aclose_client is not None:
            await aclose_client()
        return monotonic() - c0

    if opened[0] < args.n:
        emit(
            {
                "phase": "failed",
                "error": f"{opened[0]} of {args.n} streams open after {connect_s:.0f} s",
                "first_failure": errors[0] if errors else None,
                "opened": opened[0],
                "connect_s": connect_s,
            }
        )
        phase("closing")
        await close_all()
        return

    threads = threading.active_count()
    gc.collect()
    await asyncio.sleep(0.5)
    rss_after = vm_rss_kb()
    idle = Usage()
    await asyncio.sleep(args.idle)
    idle_usage = idle.since()
    threads = max(threads, threading.active_count())
    emit(
        {
            "phase": "ready",
            "connect_s": connect_s,
            "threads": threads,
            "threads_before": threads_before,
            "library_threads": 0,
            "kb_per_stream": (rss_after - rss_before) / args.n,
            "rss_before_kb": rss_before,
            "rss_after_kb": rss_after,
            "idle_cpu_pct": idle_usage["cpu_s"] / idle_usage["wall_s"] * 100,
            "idle_cs_per_s": idle_usage["nvcsw"] / idle_usage["wall_s"],
            "errors_idle": len(errors),
        }
    )
    phase("idle window over")
    load = Usage()
    answer = await read_answer()
    deadline = answer["t1"] + args.grace
    while len(rec) < answer["sent"] and monotonic() < deadline:
        await asyncio.sleep(0.02)
    stats = load_stats(rec, answer["sent"], answer["t0"], answer["t1"], load.since())
    phase("closing")
    close_s = await close_all()
    emit(
        {
            "phase": "done",
            **stats,
            "reconnects": 0,
            "errors": len(errors),
            "first_errors": sorted(set(errors))[:3],
            "close_s": close_s,
            "threads_after_close": threading.active_count(),
            "library_threads_after_close": 0,
        }
    )


# -- the command line -------------------------------------------------------------------------


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("client", choices=list(CLIENT_WIRES))
    parser.add_argument("--wire", choices=["sse", "ws"], required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--idle", type=float, default=30.0, help="idle seconds after connecting")
    parser.add_argument("--heartbeat", type=float, default=30.0, help="seconds, 0 for none")
    parser.add_argument("--grace", type=float, default=10.0, help="seconds after the load ends")
    parser.add_argument("--open-concurrency", type=int, default=64)
    parser.add_argument("--connect-timeout", type=float, default=30.0, help="per stream")
    parser.add_argument(
        "--max-threads", type=int, default=1500, help="give up opening past this many threads"
    )
    args = parser.parse_args(argv)
    if args.wire not in CLIENT_WIRES[args.client]:
        parser.error(f"{args.client} has no {args.wire} client")
    raise_fd_limit()
    logging.basicConfig(
        level=logging.WARNING,
        stream=sys.stderr,
        format="%(relativeCreated).0f ms %(levelname)s %(name)s: %(message)s",
    )
    if args.client.startswith("ours-"):
        run_ours(args, managed=args.client == "ours-manager")
    else:
        asyncio.run(run_async(args))


if __name__ == "__main__":
    main()
