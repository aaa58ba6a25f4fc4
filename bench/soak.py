"""Soak test: all three wires stream for a long time through a faulty network; nothing may be lost.

Local servers (``StreamServer`` for SSE and NDJSON, a ``websockets`` server for WebSocket) stream
numbered events forever, each wire through its own ``FaultProxy``; a fault injector keeps
cutting connections (at once, or at a random byte of the stream), stalling them silently,
slowing them down, splitting them into 1-byte writes and refusing new connections. The
transports (created by one ``TransportManager``) reconnect and resume (``Last-Event-ID``; a
resume message on WebSocket) and a consumer per wire checks that every event arrives exactly
once, in order.

Prints, per wire and in total: events sent, received, lost, duplicated, reconnects, errors;
then the faults injected, peak threads and peak RSS. Exits with 1 on any loss or duplication,
a wire that stopped delivering, threads or memory that kept growing, or a thread left after
everything closed. ::

    python bench/soak.py                 # 60 s
    python bench/soak.py --minutes 30
    python bench/soak.py --seconds 5 --rate 200 --seed 1
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import random
import resource
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

from aikit_transports import Event, ReconnectPolicy, TransportManager
from aikit_transports.testing import FaultProxy, RecordedRequest, StreamServer, StreamWriter
from aikit_transports.testing.ws import WebSocketServer
from aikit_transports.transports.base import BaseTransport

WIRES = ("sse", "websocket", "http-stream")
POLICY = ReconnectPolicy(initial_delay=0.05, max_delay=1.0, jitter=0.3, max_attempts=None)
BATCH_INTERVAL = 0.01  # the servers write a batch of events every 10 ms
#: A wire that delivered nothing for this long (faults lasting at most a few seconds) is stuck.
STUCK_AFTER = 20.0
MB = 1 << 20


# -- servers ------------------------------------------------------------------------------------


class Produced:
    """The highest event id a server produced for each wire (ids never go back)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.top: Dict[str, int] = dict.fromkeys(WIRES, 0)

    def note(self, wire: str, last: int) -> None:
        with self._lock:
            if last > self.top[wire]:
                self.top[wire] = last


def _resume_point(request: RecordedRequest) -> int:
    try:
        return int(request.headers.get("Last-Event-ID", "")) + 1
    except ValueError:
        return 1


def http_route(
    wire: str, per_batch: int, produced: Produced
) -> Callable[[RecordedRequest, StreamWriter], None]:
    """An endless stream of ``wire`` events from ``Last-Event-ID`` + 1, ``per_batch`` at a time."""

    def render(i: int) -> str:
        if wire == "sse":
            return f"id: {i}\ndata: soak event {i}\n\n"
        return json.dumps({"id": i, "data": f"soak event {i}"}) + "\n"

    content_type = "text/event-stream" if wire == "sse" else "application/x-ndjson"

    def route(request: RecordedRequest, writer: StreamWriter) -> None:
        writer.send_status(200, {"Content-Type": content_type, "Cache-Control": "no-cache"})
        n = _resume_point(request)
        while not writer.closing:
            last = n + per_batch - 1
            produced.note(wire, last)
            writer.write("".join(render(i) for i in range(n, last + 1)).encode())
            n = last + 1
            if not writer.sleep(BATCH_INTERVAL):
                return

    return route


class SoakWebSocketServer(WebSocketServer):
    """Adds ``/soak``: waits for ``{"after": n}``, then streams ``{"id": i, ...}`` forever."""

    per_batch = 10
    produced: Optional[Produced] = None

    async def _soak(self, conn: Any, query: Dict[str, str]) -> None:
        n = int(json.loads(await conn.recv())["after"]) + 1
        while True:
            last = n + self.per_batch - 1
            if self.produced is not None:
                self.produced.note("websocket", last)
            for i in range(n, last + 1):
                await conn.send(json.dumps({"id": i, "data": f"soak event {i}"}))
            n = last + 1
            await asyncio.sleep(BATCH_INTERVAL)

    _routes = {**WebSocketServer._routes, "/soak": _soak}


# -- per-wire bookkeeping -----------------------------------------------------------------------


@dataclass
class WireStats:
    name: str
    transport: BaseTransport
    received: int = 0
    lost: int = 0
    duplicated: int = 0
    last_id: int = 0
    errors: int = 0
    last_event_at: float = field(default_factory=time.monotonic)
    failure: Optional[BaseException] = None

    def add(self, n: int) -> None:
        self.received += 1
        self.last_event_at = time.monotonic()
        if n <= self.last_id:
            self.duplicated += 1
            return
        self.lost += n - self.last_id - 1
        self.last_id = n


def event_number(event: Event) -> int:
    if event.id is not None:
        return int(event.id)
    value = json.loads(event.data)["id"]
    return int(value)


def consume(stats: WireStats) -> None:
    """The consumer thread of one wire: iterate until the transport is closed."""
    try:
        for event in stats.transport.iter_events():
            stats.add(event_number(event))
    except BaseException as exc:  # reported in the summary
        stats.failure = exc


class WebSocketResume:
    """On every connection, ask the server to resume after the last id received."""

    def __init__(self, transport: BaseTransport) -> None:
        self.last = 0
        self.transport = transport
        transport.on("event", self._event)
        transport.on("connected", self._connected)

    def _event(self, event: Event) -> None:
        self.last = event_number(event)

    def _connected(self) -> None:
        self.transport.send({"after": self.last})


# -- faults -------------------------------------------------------------------------------------

FAULTS = ("cut", "cut_after", "stall", "slow", "fragment", "refuse")


class Injector:
    """Injects a random fault on a random wire every 0.3-2 s until stopped."""

    def __init__(self, proxies: Dict[str, FaultProxy], rng: random.Random) -> None:
        self.proxies = proxies
        self.rng = rng
        self.counts: Dict[str, int] = dict.fromkeys(FAULTS, 0)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="soak-injector", daemon=True)

    def _run(self) -> None:
        rng = self.rng
        while not self.stop.wait(rng.uniform(0.3, 2.0)):
            wire = rng.choice(WIRES)
            proxy = self.proxies[wire]
            fault = rng.choice(FAULTS)
            self.counts[fault] += 1
            if fault == "cut":
                proxy.cut()
            elif fault == "cut_after":
                proxy.cut_after(rng.randint(1, 64 * 1024))
            elif fault == "stall":  # sometimes shorter, sometimes longer than the idle limits
                proxy.stall()
                self.stop.wait(rng.uniform(0.2, 3.0))
                proxy.resume()
            elif fault == "slow":
                proxy.slow(rng.uniform(0.01, 0.2))
                self.stop.wait(rng.uniform(0.5, 3.0))
                proxy.slow(0)
            elif fault == "fragment":
                proxy.fragment(True)
                self.stop.wait(rng.uniform(0.2, 1.0))
                proxy.fragment(False)
            else:  # refuse: a server that is down for a while
                proxy.refuse(True)
                proxy.cut()
                self.stop.wait(rng.uniform(0.2, 2.0))
                proxy.refuse(False)


# -- measurements -------------------------------------------------------------------------------


def rss_bytes() -> int:
    """The resident set size now (Linux), else the peak so far."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@dataclass
class Samples:
    threads: List[Tuple[float, int]] = field(default_factory=list)
    rss: List[Tuple[float, int]] = field(default_factory=list)

    def take(self, t: float) -> None:
        self.threads.append((t, threading.active_count()))
        self.rss.append((t, rss_bytes()))

    @staticmethod
    def window(series: List[Tuple[float, int]], start: float, end: float) -> List[int]:
        return [v for t, v in series if start <= t <= end]


# -- the run ------------------------------------------------------------------------------------


def build_transport(mgr: TransportManager, wire: str, proxy: FaultProxy) -> BaseTransport:
    if wire == "websocket":
        t = mgr.create(
            "websocket",
            proxy.url("/soak"),
            heartbeat_interval=0.5,
            heartbeat_timeout=1.0,
            reconnect=POLICY,
        )
        WebSocketResume(t)
        return t
    path = "/soak-sse" if wire == "sse" else "/soak-ndjson"
    return mgr.create(wire, proxy.url(path, scheme="http"), idle_timeout=1.0, reconnect=POLICY)


def run(seconds: float, rate: int, seed: int, quiet: bool) -> int:
    rng = random.Random(seed)
    per_batch = max(1, round(rate * BATCH_INTERVAL))
    produced = Produced()
    threads_before = threading.active_count()
    started = time.monotonic()
    samples = Samples()
    problems: List[str] = []

    with contextlib.ExitStack() as stack:
        http = stack.enter_context(StreamServer())
        http.route("/soak-sse", http_route("sse", per_batch, produced))
        http.route("/soak-ndjson", http_route("http-stream", per_batch, produced))
        ws = SoakWebSocketServer()
        ws.per_batch, ws.produced = per_batch, produced
        stack.enter_context(ws)
        proxies = {
            "sse": stack.enter_context(FaultProxy(http.host, http.port)),
            "http-stream": stack.enter_context(FaultProxy(http.host, http.port)),
            "websocket": stack.enter_context(FaultProxy(ws.host, ws.port)),
        }
        mgr = stack.enter_context(TransportManager(health_check_interval=5.0))
        stats: Dict[str, WireStats] = {}
        for wire in WIRES:
            t = build_transport(mgr, wire, proxies[wire])
            stats[wire] = s = WireStats(wire, t)
            t.on("error", lambda error, s=s: setattr(s, "errors", s.errors + 1))
        consumers = [
            threading.Thread(target=consume, args=(s,), name=f"soak-consumer-{s.name}")
            for s in stats.values()
        ]
        for c in consumers:
            c.start()
        injector = Injector(proxies, rng)
        injector.thread.start()

        deadline = started + seconds
        next_report = started + 60.0
        tick = threading.Event()
        while True:
            now = time.monotonic()
            if now >= deadline:
                break
            # The servers keep what they received: forget it, it is not the library's memory.
            http._requests.clear()
            ws.requests.clear()
            ws.closes.clear()
            samples.take(now - started)
            if not quiet and now >= next_report:
                next_report += 60.0
                print(progress_line(now - started, stats), flush=True)
            tick.wait(min(0.5, deadline - now))

        injector.stop.set()
        injector.thread.join(10)
        for proxy in proxies.values():  # a healthy network for the last seconds
            proxy.resume()
            proxy.slow(0)
            proxy.fragment(False)
            proxy.refuse(False)
        end = time.monotonic() - started
        gc.collect()
        samples.take(end)
        for s in stats.values():
            if time.monotonic() - s.last_event_at > STUCK_AFTER:
                problems.append(f"{s.name}: nothing delivered for over {STUCK_AFTER:g} s")
        reconnects = {w: s.transport.metrics.reconnects for w, s in stats.items()}
        mgr.close_all()
        for c in consumers:
            c.join(10)
            if c.is_alive():
                problems.append(f"{c.name} did not end after close_all()")
    # Everything is closed: no thread of the library (or of the servers) may be left.
    left = _wait_for_threads(threads_before, 5.0)
    if left:
        problems.append(f"{len(left)} thread(s) left after closing: {', '.join(left)}")

    problems += check_growth(samples, end)
    for s in stats.values():
        if s.failure is not None:
            problems.append(f"{s.name}: the consumer failed: {s.failure!r}")
        if s.lost or s.duplicated:
            problems.append(f"{s.name}: {s.lost} lost, {s.duplicated} duplicated")
        if s.received == 0:
            problems.append(f"{s.name}: received nothing")
    print_summary(end, stats, produced, reconnects, injector.counts, samples, problems)
    return 1 if problems else 0


def _wait_for_threads(before: int, timeout: float) -> List[str]:
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while threading.active_count() > before and time.monotonic() < deadline:
        pause.wait(0.05)
    if threading.active_count() <= before:
        return []
    return [t.name for t in threading.enumerate() if t is not threading.main_thread()]


def check_growth(samples: Samples, end: float) -> List[str]:
    """Threads and memory must level off: compare the first third after warm-up with the last.

    Warm-up is the first 20% of the run (at least 2 s): pools, caches and the servers' buffers
    fill there. Allowed: 4 more threads at peak (connections being replaced), and RSS 32 MiB or
    25% above the warm-up level, whichever is more.
    """
    warm = max(2.0, end * 0.2)
    if end - warm < 2.0:
        return []  # too short to tell growth from noise
    third = (end - warm) / 3
    problems = []
    early_threads = Samples.window(samples.threads, warm, warm + third)
    late_threads = Samples.window(samples.threads, end - third, end)
    if early_threads and late_threads and max(late_threads) > max(early_threads) + 4:
        problems.append(
            f"threads grew: peak {max(early_threads)} early, {max(late_threads)} at the end"
        )
    early_rss = Samples.window(samples.rss, warm, warm + third)
    late_rss = Samples.window(samples.rss, end - third, end)
    if early_rss and late_rss:
        base, last = max(early_rss), min(late_rss)
        if last > base + max(32 * MB, base // 4):
            problems.append(f"memory grew: RSS {base / MB:.1f} MB early, {last / MB:.1f} MB late")
    return problems


def progress_line(elapsed: float, stats: Dict[str, WireStats]) -> str:
    parts = [f"{s.name} {s.received} (lost {s.lost}, dup {s.duplicated})" for s in stats.values()]
    return f"[{elapsed / 60:.0f} min] " + "; ".join(parts)


def print_summary(
    elapsed: float,
    stats: Dict[str, WireStats],
    produced: Produced,
    reconnects: Dict[str, int],
    faults: Dict[str, int],
    samples: Samples,
    problems: List[str],
) -> None:
    print(f"soak: {elapsed:.0f} s, three wires through fault proxies")
    header = ("wire", "sent", "received", "lost", "duplicated", "reconnects", "errors")
    rows = []
    for wire, s in stats.items():
        rows.append(
            (wire, produced.top[wire], s.received, s.lost, s.duplicated, reconnects[wire], s.errors)
        )
    rows.append(("total", *(sum(int(r[i]) for r in rows) for i in range(1, len(header)))))
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print(
            "  ".join(
                str(v).rjust(w) if i else str(v).ljust(w)
                for i, (v, w) in enumerate(zip(row, widths))
            )
        )
    print("faults injected: " + ", ".join(f"{k} {v}" for k, v in faults.items()))
    threads = [v for _, v in samples.threads]
    rss = [v for _, v in samples.rss]
    print(
        f"peak threads: {max(threads)}; peak RSS: {max(rss) / MB:.1f} MB "
        f"(first sample {rss[0] / MB:.1f} MB, last {rss[-1] / MB:.1f} MB)"
    )
    print(
        "(sent: the highest event id the server produced; events produced after the last "
        "one received were still in flight when the run stopped)"
    )
    if problems:
        print("FAIL:")
        for p in problems:
            print(f"  - {p}")
    else:
        print("OK: every event exactly once and in order; threads and memory level")


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--seconds", type=float, help="how long to run (default 60)")
    length.add_argument("--minutes", type=float, help="how long to run, in minutes")
    parser.add_argument("--rate", type=int, default=1000, help="events/s per wire (1000)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the fault injector")
    parser.add_argument("--quiet", action="store_true", help="no progress line every minute")
    args = parser.parse_args(argv)
    seconds = args.minutes * 60 if args.minutes is not None else (args.seconds or 60.0)
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    if args.rate < 1 or seconds <= 0:
        parser.error("--rate and the duration must be positive")
    print(f"soak: seed {seed}, {seconds:g} s, {args.rate} events/s per wire", flush=True)
    return run(seconds, args.rate, seed, args.quiet)


if __name__ == "__main__":
    sys.exit(main())
