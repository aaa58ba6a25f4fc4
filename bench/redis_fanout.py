"""Fan-out through Redis: one upstream SSE stream, one relay, 1 / 4 / 16 reader processes.

``python bench/redis_fanout.py`` (``--help`` for the sizes) starts a ``redis-server`` on a free
port (persistence off; or uses ``--redis-url``), the upstream (:class:`StreamServer`), the relay
and the readers, each in a process of its own, and prints:

* throughput: events per second from the relay's first append to the last reader's last event,
  for each number of readers (every reader checks it got every event once, in order), beside the
  relay alone (first to last append) and one plain ``SSETransport`` on the same upstream;
* delivery latency p50 / p99 from the upstream server's write (a timestamp in the data) to the
  reader, at a paced rate, for each number of readers;
* the takeover after a ``SIGKILL`` of the relay holding the lease (two relays): until another
  holds the lease, until its first append, and the longest silence a reader saw; the reader
  checks it got every event once, in order.

``--json`` prints the results as one JSON object instead.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

HERE = Path(__file__).resolve().parent


# -- child processes -------------------------------------------------------------------------


def _write(path: str, obj: Any) -> None:
    with open(path, "a", encoding="utf-8") as out:
        out.write(json.dumps(obj) + "\n")


def role_upstream(out: str) -> None:
    """The upstream: a StreamServer with ``/paced`` (timestamped events at a steady rate)."""
    from aikit_transports.testing import RecordedRequest, StreamServer, StreamWriter

    def paced(request: RecordedRequest, writer: StreamWriter) -> None:
        count = int(request.query.get("count", "1000"))
        rate = float(request.query.get("rate", "1000"))
        try:
            first = int(request.headers.get("Last-Event-ID", "0")) + 1
        except ValueError:
            first = 1
        writer.send_status(200, {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        start = time.monotonic()
        for n, i in enumerate(range(first, count + 1)):
            wait = start + n / rate - time.monotonic()
            if wait > 0 and not writer.sleep(wait):
                return
            writer.write(f'id: {i}\ndata: {{"i": {i}, "t": {time.time()!r}}}\n\n'.encode())
        writer.write(b"data: [DONE]\n\n")

    with StreamServer() as server:
        server.route("/paced", paced)
        _write(out, {"url": server.base_url})
        sys.stdin.read()  # serves until the parent closes our stdin


def role_relay(out: str, redis_url: str, stream: str, upstream: str, lease_ttl: str) -> None:
    from aikit_transports import ReconnectPolicy, SSETransport
    from aikit_transports.contrib.redis import RedisRelay

    eof_done = "/sse-fast" in upstream  # that endpoint just ends: EOF is the end
    relay = RedisRelay(
        lambda last_id: SSETransport(
            upstream,
            last_event_id=last_id,
            reconnect_on_eof=not eof_done,
            reconnect=ReconnectPolicy(max_attempts=None, initial_delay=0.05, max_delay=0.5),
        ),
        redis_url,
        stream,
        lease_ttl=float(lease_ttl),
        maxlen=None,
    )
    signal.signal(signal.SIGTERM, lambda signum, frame: relay.close())
    _write(out, {"ready": os.getpid(), "token": relay.token})
    cpu = time.process_time()
    relay.run()
    _write(out, {"done": relay.metrics.events_out, "cpu": time.process_time() - cpu})


def role_reader(out: str, redis_url: str, stream: str, mode: str) -> None:
    from aikit_transports import ReconnectPolicy
    from aikit_transports.contrib.redis import RedisStreamTransport

    t = RedisStreamTransport(
        redis_url,
        stream,
        last_event_id="0",
        block_ms=1000,
        reconnect=ReconnectPolicy(max_attempts=None, initial_delay=0.05, max_delay=0.5),
    )
    t.connect()
    _write(out, {"ready": os.getpid()})
    cpu = time.process_time()
    count = 0
    ok = True
    first: Optional[float] = None
    latencies: List[float] = []
    arrivals: List[float] = []
    for event in t.iter_events(timeout=120):
        now = time.time()
        count += 1
        if first is None:
            first = now
        if mode == "latency":
            data = json.loads(event.data)
            ok = ok and data["i"] == count
            latencies.append(now - data["t"])
            arrivals.append(now)
        elif ok and event.data[:1] != "x":
            ok = False
    t.close()
    gap = max((b - a for a, b in zip(arrivals, arrivals[1:])), default=0.0)
    _write(
        out,
        {
            "count": count,
            "ok": ok,
            "first": first,
            "last": time.time(),
            "latencies": latencies,
            "max_gap": gap,
            "cpu": time.process_time() - cpu,
        },
    )


def role_direct(out: str, upstream: str) -> None:
    """One plain SSETransport on the upstream: the baseline without Redis."""
    from aikit_transports import SSETransport

    t = SSETransport(upstream, reconnect_on_eof=False)
    started = time.time()
    count = sum(1 for _ in t.iter_events(timeout=120))
    _write(out, {"count": count, "seconds": time.time() - started})
    t.close()


ROLES = {
    "_upstream": role_upstream,
    "_relay": role_relay,
    "_reader": role_reader,
    "_direct": role_direct,
}


# -- the orchestra ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Bench:
    """Processes of one benchmark run, and a scratch directory for their reports."""

    def __init__(self, redis_url: Optional[str]) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="aikit-redis-bench-"))
        self.children: List[subprocess.Popen[bytes]] = []
        self.redis_process: Optional[subprocess.Popen[bytes]] = None
        self.redis_url = redis_url or self._start_redis()
        self.upstream_proc = self.spawn("_upstream", "upstream", stdin=subprocess.PIPE)
        self.upstream = self.wait_for("upstream", "url")["url"]
        self.runs = 0

    def _start_redis(self) -> str:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("redis-server is not installed (or pass --redis-url)")
        port = _free_port()
        self.redis_process = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.dir), "--logfile", ""],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                return f"redis://127.0.0.1:{port}/0"
            time.sleep(0.02)
        raise SystemExit("redis-server did not start")

    def client(self) -> Any:
        import redis

        return redis.Redis.from_url(self.redis_url)

    def spawn(self, role: str, name: str, *args: str, stdin: Any = None) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), role, str(self.dir / name), *args],
            stdin=stdin if stdin is not None else subprocess.DEVNULL,
        )
        self.children.append(process)
        return process

    def lines(self, name: str) -> List[Dict[str, Any]]:
        path = self.dir / name
        if not path.exists():
            return []
        found = []
        for line in path.read_text().splitlines():
            with contextlib.suppress(ValueError):  # a line still being written
                found.append(json.loads(line))
        return found

    def wait_for(self, name: str, key: str, timeout: float = 120.0) -> Dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines(name):
                if key in line:
                    return line
            time.sleep(0.01)
        raise SystemExit(f"{name} did not report {key!r} within {timeout:g} s")

    def stream(self) -> str:
        self.runs += 1
        return f"bench-{self.runs}"

    def close(self) -> None:
        if self.upstream_proc.stdin is not None:
            self.upstream_proc.stdin.close()
        for process in self.children:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(10)
            if process.poll() is None:
                process.kill()
                process.wait()
        if self.redis_process is not None:
            self.redis_process.kill()
            self.redis_process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- measurements ------------------------------------------------------------------------

    def start_readers(self, stream: str, n: int, mode: str) -> List[str]:
        names = [f"{stream}-reader{i}" for i in range(n)]
        for name in names:
            self.spawn("_reader", name, self.redis_url, stream, mode)
        for name in names:
            self.wait_for(name, "ready")
        return names

    def fanout(self, readers: int, events: int, size: int) -> Dict[str, Any]:
        stream = self.stream()
        names = self.start_readers(stream, readers, "throughput")
        upstream = f"{self.upstream}/sse-fast?count={events}&size={size}"
        self.spawn("_relay", f"{stream}-relay", self.redis_url, stream, upstream, "5")
        relay = self.wait_for(f"{stream}-relay", "done", 300)
        results = [self.wait_for(name, "count", 300) for name in names]
        assert all(r["count"] == events and r["ok"] for r in results), results
        client = self.client()
        try:
            entries = client.xrange(stream, count=1)
            last = client.xrevrange(stream, count=2)[-1]  # the one before the end marker
            client.delete(stream)
        finally:
            client.close()
        first_ms = int(entries[0][0].split(b"-")[0])
        last_ms = int(last[0].split(b"-")[0])
        end = max(r["last"] for r in results)
        return {
            "readers": readers,
            "events_per_s": round(events / max(1e-6, end - first_ms / 1000.0)),
            "relay_events_per_s": round(events / max(1e-3, (last_ms - first_ms) / 1000.0)),
            "relay_cpu_us_per_event": round(relay["cpu"] / events * 1e6, 1),
            "reader_cpu_us_per_event": round(
                statistics.mean(r["cpu"] for r in results) / events * 1e6, 1
            ),
        }

    def direct(self, events: int, size: int) -> int:
        name = f"direct-{self.stream()}"
        self.spawn("_direct", name, f"{self.upstream}/sse-fast?count={events}&size={size}")
        result = self.wait_for(name, "count", 300)
        return round(result["count"] / result["seconds"])

    def latency(self, readers: int, rate: int, seconds: float) -> Dict[str, Any]:
        stream = self.stream()
        count = int(rate * seconds)
        names = self.start_readers(stream, readers, "latency")
        upstream = f"{self.upstream}/paced?count={count}&rate={rate}"
        self.spawn("_relay", f"{stream}-relay", self.redis_url, stream, upstream, "5")
        results = [self.wait_for(name, "count", 300) for name in names]
        assert all(r["count"] == count and r["ok"] for r in results), "lost or reordered"
        samples = sorted(x for r in results for x in r["latencies"][count // 10 :])  # warm
        return {
            "readers": readers,
            "rate": rate,
            "p50_ms": round(samples[len(samples) // 2] * 1000, 2),
            "p99_ms": round(samples[min(len(samples) - 1, int(len(samples) * 0.99))] * 1000, 2),
        }

    def takeover(self, lease_ttl: float, rate: int, seconds: float) -> Dict[str, Any]:
        stream = self.stream()
        count = int(rate * seconds)
        (reader,) = self.start_readers(stream, 1, "latency")
        upstream = f"{self.upstream}/paced?count={count}&rate={rate}"
        relays = {
            f"{stream}-relay{i}": self.spawn(
                "_relay", f"{stream}-relay{i}", self.redis_url, stream, upstream, str(lease_ttl)
            )
            for i in range(2)
        }
        tokens = {name: self.wait_for(name, "ready")["token"] for name in relays}
        client = self.client()
        try:
            while client.xlen(stream) < count // 4:
                time.sleep(0.01)
            holder = client.get(f"{stream}:relay:lease").decode()
            victim = next(name for name, token in tokens.items() if token == holder)
            os.kill(relays[victim].pid, signal.SIGKILL)
            killed = time.time()
            last_before = client.xrevrange(stream, count=1)[0][0]
            while True:
                now_holder = client.get(f"{stream}:relay:lease")
                if now_holder is not None and now_holder.decode() != holder:
                    break
                time.sleep(0.005)
            leased = time.time()
            while True:
                newest = client.xrevrange(stream, count=1)[0][0]
                if newest != last_before:
                    break
                time.sleep(0.005)
            appended = int(
                client.xrange(stream, f"({last_before.decode()}", count=1)[0][0].split(b"-")[0]
            )
        finally:
            client.close()
        result = self.wait_for(reader, "count", 300)
        assert result["count"] == count and result["ok"], "takeover lost or duplicated events"
        return {
            "lease_ttl_s": lease_ttl,
            "lease_taken_after_s": round(leased - killed, 3),
            "first_append_after_s": round(appended / 1000.0 - killed, 3),
            "reader_longest_silence_s": round(result["max_gap"], 3),
            "events": count,
            "no_gap_no_duplicate": True,
        }


def _progress(result: Dict[str, Any]) -> None:
    sys.stderr.write(f"  ... {json.dumps(result)}\n")


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000, help="events per throughput run")
    parser.add_argument("--size", type=int, default=64, help="payload bytes per event")
    parser.add_argument("--readers", default="1,4,16", help="reader counts (comma-separated)")
    parser.add_argument("--rate", type=int, default=1000, help="paced rate for latency (ev/s)")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of a paced run")
    parser.add_argument("--lease-ttl", type=float, default=2.0, help="lease TTL for takeover")
    parser.add_argument("--redis-url", help="use this Redis (default: start one)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    counts = [int(x) for x in args.readers.split(",") if x.strip()]
    bench = Bench(args.redis_url)
    report: Dict[str, Any] = {"events": args.events, "size": args.size, "cpus": os.cpu_count()}
    try:
        report["direct_sse_events_per_s"] = bench.direct(args.events, args.size)
        report["throughput"] = []
        for n in counts:
            report["throughput"].append(bench.fanout(n, args.events, args.size))
            _progress(report["throughput"][-1])
        report["latency"] = []
        for n in counts:
            report["latency"].append(bench.latency(n, args.rate, args.seconds))
            _progress(report["latency"][-1])
        report["takeover"] = bench.takeover(args.lease_ttl, args.rate, max(args.seconds, 6.0))
    finally:
        bench.close()
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"one upstream SSE stream, {args.events} events of {args.size} B; "
        f"{os.cpu_count()} CPUs, load average {load:.1f} at the end"
    )
    print(f"  plain SSETransport, no Redis: {report['direct_sse_events_per_s']:>8} events/s")
    print(
        "  readers   events/s to the last reader   relay appends/s"
        "   CPU µs/event: relay  each reader"
    )
    for row in report["throughput"]:
        print(
            f"  {row['readers']:>7}   {row['events_per_s']:>27}   {row['relay_events_per_s']:>15}"
            f"   {row['relay_cpu_us_per_event']:>17}  {row['reader_cpu_us_per_event']:>11}"
        )
    print(f"latency, upstream write -> reader, at {args.rate} events/s")
    print("  readers     p50 ms     p99 ms")
    for row in report["latency"]:
        print(f"  {row['readers']:>7}   {row['p50_ms']:>8}   {row['p99_ms']:>8}")
    tk = report["takeover"]
    print(
        f"takeover after SIGKILL of the relay holding the lease (lease_ttl {tk['lease_ttl_s']} s)"
    )
    print(f"  lease held by the other relay after   {tk['lease_taken_after_s']} s")
    print(f"  its first append after                {tk['first_append_after_s']} s")
    print(f"  longest silence seen by a reader      {tk['reader_longest_silence_s']} s")
    print(f"  {tk['events']} events, no gap, no duplicate: {tk['no_gap_no_duplicate']}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in ROLES:
        ROLES[sys.argv[1]](*sys.argv[2:])
    else:
        raise SystemExit(main())
