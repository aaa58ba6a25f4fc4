"""RESP reply parsing: our pure-Python parser (``resp.parse_reply``) against ``hiredis`` (issue 18).

``python bench/resp_parsers.py`` (``--help`` for the options; ``make bench-resp``) measures, in
one run:

* **parsers alone**, on the replies the Redis readers and the relay receive, built with the
  library's own envelope fields: the plain reader's ``MULTI`` / stream info / ``XREAD`` /
  ``EXEC`` pipeline, the group reader's ``XREADGROUP`` script reply and a plain ``XREADGROUP``
  reply, with batches of 1, 10, 100 (and 500, the readers' default ``count``) entries whose
  data field is 64 B or 4 KiB; the relay's append reply and a plain ``XADD`` reply. Each reply
  is fed as a socket delivers it (64 KiB reads), as ``RedisLink`` reads it: ours re-parses a
  reply cut by a read from its start, ``hiredis`` parses incrementally. Also ours on the whole
  reply in one buffer, and ``redis-py``'s own pure-Python RESP2 parser (fed through a stand-in
  socket). Figures are thread CPU µs per entry (per reply for the relay rows), the median of
  interleaved rounds, and the ratio ours / ``hiredis``;
* **end to end** against a ``redis-server`` started on loopback (``--no-e2e`` to skip): a reader
  reading a stream of N entries from its start, ``XREAD COUNT c`` in a loop, through a
  ``RedisLink`` with each parser, and through a ``redis.Redis`` client with ``hiredis`` (and with
  its pure-Python parser); ``RedisStreamTransport`` reading the same stream to its end marker
  (plain and in a group); and the relay's append path (``RelayStore.append`` of batches). The
  reading process's CPU µs per entry and entries per second (the server runs in its own
  process), median of interleaved rounds.

Where the library picks its parser (``connection.new_reader``), the end-to-end runs switch it
for the A/B; on a library without that hook only the current parser runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aikit_transports.contrib.redis import connection as redis_connection
from aikit_transports.contrib.redis import resp
from aikit_transports.contrib.redis.envelope import (
    encode_end_marker,
    encode_envelope,
)

try:
    import hiredis
except ImportError:  # pragma: no cover - the bench needs it
    raise SystemExit("hiredis is not installed: pip install hiredis") from None

READ_SIZE = 64 * 1024  # what one recv() on loopback typically returns for a large reply


# -- replies as the server sends them --------------------------------------------------------


def encode(value: Any) -> bytes:
    """``value`` as RESP2: bytes as bulk strings, int as integers, None as null, lists as arrays."""
    if value is None:
        return b"$-1\r\n"
    if isinstance(value, bool):
        raise TypeError("no booleans in RESP2")
    if isinstance(value, int):
        return b":%d\r\n" % value
    if isinstance(value, bytes):
        return b"$%d\r\n%b\r\n" % (len(value), value)
    if isinstance(value, list):
        return b"*%d\r\n" % len(value) + b"".join(encode(v) for v in value)
    raise TypeError(type(value).__name__)


def payload(size: int, i: int) -> str:
    """Text data of ``size`` bytes, JSON-looking like most upstream events."""
    head = f'{{"i":{i},"text":"'
    return head + "x" * max(0, size - len(head) - 2) + '"}'


def entries(count: int, size: int, first_ms: int = 1765100000000) -> List[List[Any]]:
    """``count`` stream entries ``[id, fields]`` as the relay writes them."""
    return [
        [
            b"%d-0" % (first_ms + i),
            encode_envelope(payload(size, i), upstream_id=str(i), received_at=1765100000.0 + i),
        ]
        for i in range(count)
    ]


def reader_replies(count: int, size: int) -> Dict[str, Tuple[bytes, int]]:
    """The wire bytes of one read of ``count`` entries for each reader path, with the number
    of replies they hold."""
    batch = entries(count, size)
    info = [1000 + count, 1000 + count, batch[0][0], batch[-1][0]]
    plain = (
        b"+OK\r\n+QUEUED\r\n+QUEUED\r\n" + encode([info, [[b"feed", batch]]]),
        4,
    )
    group_script = (encode([b"1765099999999-0", 1000, *info, batch]), 1)
    group_plain = (encode([[b"feed", batch]]), 1)
    return {
        "reader: MULTI/info/XREAD/EXEC": plain,
        "reader: group script (XREADGROUP)": group_script,
        "reader: XREADGROUP": group_plain,
    }


def relay_replies() -> Dict[str, Tuple[bytes, int]]:
    """The relay's replies: its append script's answer, and a plain ``XADD``'s."""
    return {
        "relay: append script": (encode([b"ok", b"1765100000123-0"]), 1),
        "relay: XADD": (encode(b"1765100000123-0"), 1),
    }


def chunks(wire: bytes, size: int = READ_SIZE) -> List[bytes]:
    return [wire[i : i + size] for i in range(0, len(wire), size)]


# -- the parsers, each reading `n` replies from `parts` as a socket delivers them --------------


def ours_as_received(parts: Sequence[bytes], n: int) -> List[Any]:
    """What ``RedisLink`` did before: append each read, parse from the start of the buffer."""
    buffer = b""
    feed = iter(parts)
    out = []
    for _ in range(n):
        while True:
            if buffer:
                try:
                    reply, used = resp.parse_reply(buffer)
                except resp.Incomplete:
                    pass
                else:
                    buffer = buffer[used:]
                    out.append(reply)
                    break
            chunk = next(feed)
            buffer = buffer + chunk if buffer else chunk
    return out


def ours_whole(wire: bytes, n: int) -> List[Any]:
    """Ours with the whole reply in one buffer (the best case for it)."""
    pos = 0
    out = []
    for _ in range(n):
        reply, pos = resp.parse_reply(wire, pos)
        out.append(reply)
    return out


def hiredis_reader(parts: Sequence[bytes], n: int, reader: Any) -> List[Any]:
    """``hiredis.Reader``: feed each read, take the replies as they complete."""
    feed = iter(parts)
    out = []
    for _ in range(n):
        reply = reader.gets()
        while reply is False:
            reader.feed(next(feed))
            reply = reader.gets()
        out.append(reply)
    return out


class _StandInSocket:
    """Just enough of a socket for ``redis-py``'s ``SocketBuffer``: ``recv`` hands out chunks."""

    def __init__(self) -> None:
        self.parts: Iterator[bytes] = iter(())

    def recv(self, size: int) -> bytes:
        return next(self.parts)

    def settimeout(self, value: Any) -> None:
        pass


def redispy_parser() -> Optional[Tuple[Any, _StandInSocket]]:
    """``redis-py``'s pure-Python RESP2 parser on a stand-in socket (None if it moved)."""
    try:
        from redis._parsers import Encoder
        from redis._parsers.resp2 import _RESP2Parser
        from redis._parsers.socket import SocketBuffer
    except ImportError:
        return None
    sock = _StandInSocket()
    parser = _RESP2Parser(socket_read_size=READ_SIZE)
    parser._buffer = SocketBuffer(sock, READ_SIZE, None)  # type: ignore[arg-type]
    parser.encoder = Encoder("utf-8", "strict", False)
    return parser, sock


def redispy_pure(parts: Sequence[bytes], n: int, state: Tuple[Any, _StandInSocket]) -> List[Any]:
    parser, sock = state
    sock.parts = iter(parts)
    return [parser.read_response(disable_decoding=True) for _ in range(n)]


# -- timing --------------------------------------------------------------------------------


def cpu_per_call(fn: Callable[[], Any], rounds: int, budget: float) -> List[float]:
    """Thread CPU seconds per call of ``fn``, one figure per round (each round ~``budget`` s)."""
    start = time.thread_time()
    fn()
    once = max(time.thread_time() - start, 1e-7)
    loops = max(1, int(budget / once))
    figures = []
    for _ in range(rounds):
        start = time.thread_time()
        for _ in range(loops):
            fn()
        figures.append((time.thread_time() - start) / loops)
    return figures


def micro(
    rounds: int, budget: float, sizes: Sequence[int], batches: Sequence[int]
) -> List[Dict[str, Any]]:
    """The parsers alone on every reply shape; one row per (shape, size, batch)."""
    cases: List[Tuple[str, int, int, bytes, int]] = []
    for size in sizes:
        for count in batches:
            for name, (wire, n) in reader_replies(count, size).items():
                cases.append((name, size, count, wire, n))
    for name, (wire, n) in relay_replies().items():
        cases.append((name, 0, 1, wire, n))
    pure = redispy_parser()
    rows = []
    for name, size, count, wire, n in cases:
        parts = chunks(wire)
        reader = hiredis.Reader()
        expected = ours_whole(wire, n)
        assert ours_as_received(parts, n) == expected
        assert hiredis_reader(parts, n, reader) == expected, name
        runs: Dict[str, Callable[[], Any]] = {
            "ours": partial(ours_as_received, parts, n),
            "ours_whole": partial(ours_whole, wire, n),
            "hiredis": partial(hiredis_reader, parts, n, reader),
        }
        if pure is not None:
            assert redispy_pure(parts, n, pure) == expected, name
            runs["redispy_pure"] = partial(redispy_pure, parts, n, pure)
        figures: Dict[str, List[float]] = {k: [] for k in runs}
        for _ in range(rounds):  # interleaved: each round runs every parser once
            for key, fn in runs.items():
                figures[key] += cpu_per_call(fn, 1, budget)
        per = max(1, count)
        row: Dict[str, Any] = {"reply": name, "size": size, "entries": count, "bytes": len(wire)}
        for key, values in figures.items():
            row[f"{key}_us"] = statistics.median(values) / per * 1e6
        row["ratio"] = row["ours_us"] / row["hiredis_us"]
        row["ratio_whole"] = row["ours_whole_us"] / row["hiredis_us"]
        rows.append(row)
        sys.stderr.write(f"  ... {name} {size} B x {count}: ours/hiredis {row['ratio']:.2f}\n")
    return rows


# -- end to end ----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def redis_server(url: Optional[str]) -> Iterator[str]:
    """A ``redis-server`` on loopback (persistence off), or ``url`` when given."""
    if url:
        yield url
        return
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed (or pass --redis-url, or --no-e2e)")
    port = _free_port()
    workdir = tempfile.mkdtemp(prefix="bench-resp-")
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", workdir, "--logfile", ""],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if time.monotonic() > deadline:
                raise SystemExit("redis-server did not start")
            time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.kill()
        process.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def fill(url: str, key: str, count: int, size: int) -> None:
    """``count`` entries as the relay writes them, then the end marker."""
    import redis

    client = redis.Redis.from_url(url, protocol=2)
    try:
        client.delete(key)
        pipe = client.pipeline(transaction=False)
        for i in range(count):
            flat = encode_envelope(payload(size, i), upstream_id=str(i), received_at=time.time())
            pipe.execute_command("XADD", key, "*", *flat)
            if i % 1000 == 999:
                pipe.execute()
        pipe.execute_command("XADD", key, "*", *encode_end_marker(upstream_id=str(count)))
        pipe.execute()
    finally:
        client.close()


@contextlib.contextmanager
def parser(kind: str) -> Iterator[None]:
    """Make the library's ``RedisLink`` use ``kind`` (``python`` or ``hiredis``) inside."""
    saved = redis_connection.new_reader  # type: ignore[attr-defined]
    if kind == "python":
        redis_connection.new_reader = resp.Reader  # type: ignore[attr-defined]
    else:
        redis_connection.new_reader = resp.hiredis_reader  # type: ignore[attr-defined]
    try:
        yield
    finally:
        redis_connection.new_reader = saved  # type: ignore[attr-defined]


def current_parser() -> str:
    hook = getattr(redis_connection, "new_reader", None)
    if hook is None:
        return "python (no hook: the library's own loop)"
    return type(hook()).__module__.split(".")[0]


def read_with_link(url: str, key: str, count: int) -> int:
    address = redis_connection.parse_redis_url(url)
    link = redis_connection.RedisLink(address, timeout=10.0)
    cursor: Any = "0"
    seen = 0
    try:
        while True:
            reply = link.call("XREAD", "COUNT", count, "STREAMS", key, cursor)
            if not reply:
                return seen
            batch = reply[0][1]
            seen += len(batch)
            cursor = batch[-1][0]
    finally:
        link.close()


def read_with_redispy(url: str, key: str, count: int, pure: bool) -> int:
    import redis

    kwargs: Dict[str, Any] = {"protocol": 2}
    if pure:
        from redis._parsers.resp2 import _RESP2Parser

        kwargs["parser_class"] = _RESP2Parser
    client = redis.Redis.from_url(url, **kwargs)
    cursor: Any = "0"
    seen = 0
    try:
        while True:
            reply = client.xread({key: cursor}, count=count)
            if not reply:
                return seen
            batch = reply[0][1]
            seen += len(batch)
            cursor = batch[-1][0]
    finally:
        client.close()


def read_with_transport(url: str, key: str, count: int, group: bool) -> int:
    from aikit_transports.contrib.redis import RedisStreamTransport

    options: Dict[str, Any] = {"last_event_id": "0", "count": count}
    if group:
        options["group"] = f"g{time.monotonic_ns()}"
    seen = 1  # the end marker is an entry too
    with RedisStreamTransport(url, key, **options) as feed:
        for _event in feed.iter_events():
            seen += 1
    return seen


def relay_appends(url: str, key: str, events: int, batch: int, size: int) -> int:
    from aikit_transports.contrib.redis.envelope import pack_event
    from aikit_transports.contrib.redis.lease import RelayStore
    from aikit_transports.events import Event

    address = redis_connection.parse_redis_url(url)
    link = redis_connection.RedisLink(address, timeout=10.0)
    store = RelayStore(key)
    token = f"bench-{time.monotonic_ns()}"
    try:
        link.call("DEL", key, store.lease_key, store.state_key)
        assert store.acquire(link, token, 60000).status == "ok"
        last = ""
        data = payload(size, 0)
        done = 0
        while done < events:
            packed = [
                pack_event(Event(data=data, id=str(done + i)), time.time()) for i in range(batch)
            ]
            entries = (b"".join(p[0] for p in packed), sum(p[1] for p in packed))
            result = store.append(link, token, 60000, 100000, last, str(done + batch), entries)
            assert result.status == "ok", result
            last = result.last_entry
            done += batch
        return done
    finally:
        link.close()


def measure(fn: Callable[[], int]) -> Tuple[float, float, int]:
    """Process CPU seconds and wall seconds of ``fn()``, and what it returned."""
    cpu, wall = time.process_time(), time.perf_counter()
    n = fn()
    return time.process_time() - cpu, time.perf_counter() - wall, n


def e2e(
    url: str, rounds: int, events: Dict[int, int], counts: Sequence[int]
) -> List[Dict[str, Any]]:
    hook = hasattr(redis_connection, "new_reader")
    kinds = ["python", "hiredis"] if hook else ["current"]
    rows = []
    for size, total in events.items():
        key = f"bench-resp-{size}"
        fill(url, key, total, size)
        expected = total + 1  # the end marker is an entry too
        for count in counts:
            runs: Dict[str, Callable[[], int]] = {}
            for kind in kinds:
                runs[f"link-{kind}"] = partial(_under, kind, read_with_link, url, key, count)
            runs["redis-py-hiredis"] = partial(read_with_redispy, url, key, count, False)
            runs["redis-py-pure"] = partial(read_with_redispy, url, key, count, True)
            for kind in kinds:
                for group in (False, True):
                    name = f"{'group' if group else 'transport'}-{kind}"
                    runs[name] = partial(_under, kind, read_with_transport, url, key, count, group)
            rows.append(
                _rounds(
                    f"read {total} entries of {size} B, COUNT {count}",
                    runs,
                    rounds,
                    total,
                    expected,
                    size,
                    count,
                )
            )
        _delete(url, key)
    for batch in (1, 20):
        key = "bench-resp-relay"
        total = 4000 if batch == 1 else 20000
        runs = {
            f"relay-{kind}": partial(_under, kind, relay_appends, url, key, total, batch, 64)
            for kind in kinds
        }
        rows.append(
            _rounds(
                f"relay appends of 64 B events, batches of {batch}",
                runs,
                rounds,
                total,
                total,
                64,
                batch,
            )
        )
        _delete(url, key)
    return rows


def _under(kind: str, fn: Callable[..., int], *args: Any) -> int:
    """``fn(*args)`` with the library's parser set to ``kind``."""
    if kind == "current":
        return fn(*args)
    with parser(kind):
        return fn(*args)


def _delete(url: str, key: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.delete(key, f"{key}:relay:lease", f"{key}:relay:state")
    finally:
        client.close()


def _rounds(
    what: str,
    runs: Dict[str, Callable[[], int]],
    rounds: int,
    total: int,
    expected: int,
    size: int,
    count: int,
) -> Dict[str, Any]:
    cpu: Dict[str, List[float]] = {k: [] for k in runs}
    wall: Dict[str, List[float]] = {k: [] for k in runs}
    for _ in range(rounds):
        for key, fn in runs.items():
            c, w, n = measure(fn)
            assert n == expected, (what, key, n, expected)
            cpu[key].append(c)
            wall[key].append(w)
    row: Dict[str, Any] = {"what": what, "size": size, "count": count}
    for key in runs:
        row[key] = {
            "cpu_us_per_entry": statistics.median(cpu[key]) / total * 1e6,
            "entries_per_s": total / statistics.median(wall[key]),
        }
    sys.stderr.write(
        f"  ... {what}: "
        + json.dumps(
            {k: round(v["cpu_us_per_entry"], 2) for k, v in row.items() if isinstance(v, dict)}
        )
        + "\n"
    )
    return row


# -- report --------------------------------------------------------------------------------


def print_micro(rows: List[Dict[str, Any]]) -> None:
    print("parsers alone: thread CPU µs per entry (per reply for the relay), median of rounds;")
    print(
        f"replies fed in {READ_SIZE // 1024} KiB reads; "
        "ratio = ours / hiredis (> 1: hiredis is faster)"
    )
    print(
        f"  {'reply':<35} {'data':>6} {'entries':>7} {'ours':>8} {'ours*':>8} {'hiredis':>8}"
        f" {'redis-py':>9} {'ours/hiredis':>13} {'ours*/hiredis':>14}"
    )
    for r in rows:
        size = (
            "-"
            if not r["size"]
            else (f"{r['size'] // 1024} KiB" if r["size"] >= 1024 else f"{r['size']} B")
        )
        pure = f"{r['redispy_pure_us']:9.2f}" if "redispy_pure_us" in r else f"{'-':>9}"
        print(
            f"  {r['reply']:<35} {size:>6} {r['entries']:>7}"
            f" {r['ours_us']:8.2f} {r['ours_whole_us']:8.2f}"
            f" {r['hiredis_us']:8.2f} {pure} {r['ratio']:13.2f} {r['ratio_whole']:14.2f}"
        )
    print("  (ours* = ours with the whole reply in one buffer; redis-py = its pure-Python parser)")


def print_e2e(rows: List[Dict[str, Any]]) -> None:
    print("end to end against redis-server on loopback: CPU µs per entry of the reading process")
    print("(entries/s in brackets), median of rounds; ratio = python / hiredis")
    for r in rows:
        print(f"  {r['what']}")
        runs = {k: v for k, v in r.items() if isinstance(v, dict)}
        for key, v in runs.items():
            print(
                f"    {key:<22} {v['cpu_us_per_entry']:8.2f} µs   ({v['entries_per_s']:>9,.0f}/s)"
            )
        for prefix in ("link", "transport", "group", "relay"):
            a, b = runs.get(f"{prefix}-python"), runs.get(f"{prefix}-hiredis")
            if a and b:
                print(
                    f"    {prefix}: python / hiredis CPU "
                    f"{a['cpu_us_per_entry'] / b['cpu_us_per_entry']:.2f}"
                )


def main(argv: Optional[List[str]] = None) -> int:
    parser_ = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser_.add_argument("--rounds", type=int, default=7, help="interleaved rounds (median)")
    parser_.add_argument("--budget", type=float, default=0.02, help="CPU seconds per micro round")
    parser_.add_argument("--e2e-rounds", type=int, default=3, help="rounds of the end-to-end runs")
    parser_.add_argument("--no-e2e", action="store_true", help="parsers alone, no redis-server")
    parser_.add_argument("--quick", action="store_true", help="fewer rounds and entries")
    parser_.add_argument("--redis-url", help="use this Redis (default: start one)")
    parser_.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser_.parse_args(argv)
    if args.quick:
        args.rounds, args.budget, args.e2e_rounds = 3, 0.01, 1
    load = Path("/proc/loadavg").read_text().split()[:3] if os.path.exists("/proc/loadavg") else []
    report: Dict[str, Any] = {
        "python": sys.version.split()[0],
        "hiredis": hiredis.__version__,
        "cpus": os.cpu_count(),
        "loadavg_start": " ".join(load),
        "library_parser": current_parser(),
    }
    report["micro"] = micro(args.rounds, args.budget, (64, 4096), (1, 10, 100, 500))
    if not args.no_e2e:
        events = {64: 5000, 4096: 2000} if args.quick else {64: 20000, 4096: 5000}
        with redis_server(args.redis_url) as url:
            report["e2e"] = e2e(url, args.e2e_rounds, events, (10, 100, 500))
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    import redis

    print(
        f"Python {report['python']}, hiredis {report['hiredis']}, redis-py {redis.__version__}; "
        f"{report['cpus']} CPUs; load average at the start {report['loadavg_start']}; "
        f"the library parses with: {report['library_parser']}"
    )
    print_micro(report["micro"])
    if "e2e" in report:
        print_e2e(report["e2e"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
