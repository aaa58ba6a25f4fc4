"""Scaling out over Redis, across processes: several relays for one upstream, a relay killed
mid-stream, consumer groups sharing a stream (one consumer killed). Real ``redis-server``, real
upstream (:class:`~aikit_transports.testing.StreamServer`), real processes (``redis_procs.py``).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from redis_fixtures import Procs, RedisServer, read_report

from aikit_transports.testing import RecordedRequest, StreamServer, StreamWriter
from aikit_transports.testing.endpoints import sse

pytest.importorskip("redis")

from aikit_transports.contrib.redis import encode_end_marker, encode_envelope  # needs redis-py

pytestmark = [pytest.mark.redis, pytest.mark.slow, pytest.mark.timeout(150)]

N = 10_000


def _ready(report: Path) -> bool:
    return any(isinstance(line, dict) and "ready" in line for line in read_report(report))


def _last(report: Path, key: str) -> dict[str, Any]:
    found = [line for line in read_report(report) if isinstance(line, dict) and key in line]
    assert found, f"{report.stem} reported no {key!r}"
    return found[-1]


def _fill(client: Any, stream: str, count: int) -> None:
    """Append ``count`` envelopes ``event 1..count`` and the end marker, in pipelined chunks."""
    for start in range(1, count + 1, 500):
        pipe = client.pipeline(transaction=False)
        for i in range(start, min(count, start + 499) + 1):
            flat = encode_envelope(f"event {i}", upstream_id=str(i))
            pipe.xadd(stream, dict(zip(flat[::2], flat[1::2])))
        pipe.execute()
    flat = encode_end_marker()
    client.xadd(stream, dict(zip(flat[::2], flat[1::2])))


def test_three_relays_hold_one_lease_and_four_readers_get_every_event_once_in_order(
    redis_server: RedisServer,
    redis_client: Any,
    stream_server: StreamServer,
    procs: Procs,
    wait_until: Any,
) -> None:
    gate = threading.Event()  # the upstream starts once every process is up

    def gated(request: RecordedRequest, writer: StreamWriter) -> None:
        gate.wait(60)
        sse(request, writer)

    stream_server.route("/gated", gated)
    upstream = stream_server.url(f"/gated?count={N}&end=sentinel")
    try:
        relays = [
            procs.start(
                "relay", f"relay{i}", redis=redis_server.url, stream="s", upstream=upstream
            )[1]
            for i in range(3)
        ]
        readers = [
            procs.start("reader", f"reader{i}", redis=redis_server.url, stream="s")[1]
            for i in range(4)
        ]
        wait_until(lambda: all(_ready(r) for r in relays + readers), 60, "every process is up")
        stream_server.wait_for_requests(1, timeout=30)  # the holder waits at the gate
        tokens = [_last(r, "ready")["token"] for r in relays]
        holder = redis_client.get("s:relay:lease").decode()
        assert holder in tokens
    finally:
        gate.set()
    procs.wait_all(120)

    exits = [_last(r, "exit") for r in relays]
    relayed = [e for e in exits if e["metrics"]["lease_acquisitions"]]
    assert len(relayed) == 1, exits  # exactly one relay ever held the lease
    assert relayed[0]["metrics"]["events_out"] == N and relayed[0]["exit"] == "done"
    assert all(
        e["exit"] == "done" and e["metrics"]["events_out"] == 0 for e in exits if e not in relayed
    )
    assert tokens[exits.index(relayed[0])] == holder
    assert len([r for r in stream_server.requests if r.path == "/gated"]) == 1  # one upstream
    for report in readers:
        result = _last(report, "count")
        assert result == {"count": N, "ok": True, "bad": [], "last": N}, report.stem
    assert redis_client.xlen("s") == N + 1  # and the end marker


def test_the_lease_holder_killed_mid_stream_is_replaced_with_no_gap_and_no_duplicate(
    redis_server: RedisServer,
    redis_client: Any,
    stream_server: StreamServer,
    procs: Procs,
    wait_until: Any,
) -> None:
    count, lease_ttl = 2000, 1.0
    upstream = stream_server.url(f"/sse?count={count}&delay=0.002&end=sentinel")
    relays = [
        procs.start(
            "relay",
            f"relay{i}",
            redis=redis_server.url,
            stream="s",
            upstream=upstream,
            lease_ttl=lease_ttl,
        )
        for i in range(3)
    ]
    readers = [
        procs.start("reader", f"reader{i}", redis=redis_server.url, stream="s")[1] for i in range(2)
    ]
    wait_until(lambda: redis_client.xlen("s") >= 300, 60, "the relay got going")
    holder = redis_client.get("s:relay:lease").decode()
    victim = next(p for p, r in relays if _last(r, "ready")["token"] == holder)
    os.kill(victim.pid, signal.SIGKILL)
    killed_at = time.monotonic()

    def new_holder() -> bool:
        value = redis_client.get("s:relay:lease")
        return value is not None and value.decode() != holder

    wait_until(new_holder, lease_ttl + 10.0, "another relay took the lease over")
    print(f"takeover after SIGKILL: {time.monotonic() - killed_at:.2f} s (lease_ttl {lease_ttl} s)")
    procs.wait_all(120)

    for report in readers:
        assert _last(report, "count") == {"count": count, "ok": True, "bad": [], "last": count}
    entries = redis_client.xrange("s")
    upstream_ids = [
        int(fields[b"u"]) for _, fields in entries if b"u" in fields and b"end" not in fields
    ]
    assert upstream_ids == list(range(1, count + 1))  # no gap, no duplicate in the stream itself
    survivors = [_last(r, "exit") for p, r in relays if p is not victim]
    assert sum(s["metrics"]["lease_acquisitions"] for s in survivors) == 1
    assert all(s["exit"] == "done" for s in survivors)


def _numbers(report: Path) -> list[int]:
    return [line for line in read_report(report) if isinstance(line, int)]


def test_a_group_of_three_shares_10000_entries_each_delivered_to_exactly_one(
    redis_server: RedisServer, redis_client: Any, procs: Procs, wait_until: Any
) -> None:
    reports = [
        procs.start(
            "consumer", f"c{i}", redis=redis_server.url, stream="s", group="g", consumer=f"c{i}"
        )[1]
        for i in range(3)
    ]
    wait_until(lambda: all(_ready(r) for r in reports), 60, "every consumer is up")
    _fill(redis_client, "s", N)
    procs.wait_all(120)
    handled = [_numbers(r) for r in reports]
    assert all(handled), [len(h) for h in handled]  # shared among all three
    assert sorted(n for h in handled for n in h) == list(range(1, N + 1))  # each exactly once
    for report, numbers in zip(reports, handled):
        assert _last(report, "done") == {"done": len(numbers)}
    assert redis_client.xpending("s", "g")["pending"] == 0  # every entry acknowledged


def test_a_killed_consumers_pending_entries_are_claimed_and_nothing_is_lost(
    redis_server: RedisServer, redis_client: Any, procs: Procs, wait_until: Any
) -> None:
    common = {"redis": redis_server.url, "stream": "s", "group": "g", "claim_idle": 3.0}
    victim, victim_report = procs.start(
        "consumer", "victim", consumer="victim", hang_after=300, **common
    )
    reports = [procs.start("consumer", f"c{i}", consumer=f"c{i}", **common)[1] for i in (1, 2)]
    wait_until(lambda: all(_ready(r) for r in [victim_report, *reports]), 60, "consumers up")
    _fill(redis_client, "s", N)
    wait_until(
        lambda: any("hung" in x for x in read_report(victim_report) if isinstance(x, dict)), 60
    )
    pending = {
        (c["name"].decode() if isinstance(c["name"], bytes) else c["name"]): c["pending"]
        for c in redis_client.xinfo_consumers("s", "g")
    }
    victim.kill()
    victim.wait(10)
    procs.wait_all(120)
    by_victim = set(_numbers(victim_report))
    survivors = [set(_numbers(r)) for r in reports]
    assert pending["victim"] > 0  # it died holding entries
    assert by_victim | survivors[0] | survivors[1] == set(range(1, N + 1))  # nothing lost
    assert not survivors[0] & survivors[1]  # live consumers did not share an entry
    # at-least-once: only entries the victim had taken may have been handled twice
    assert len(_numbers(reports[0])) + len(_numbers(reports[1])) == len(survivors[0] | survivors[1])
    assert redis_client.xpending("s", "g")["pending"] == 0


def test_sigterm_stops_a_relay_at_once_and_hands_the_lease_over(
    redis_server: RedisServer,
    redis_client: Any,
    stream_server: StreamServer,
    procs: Procs,
    wait_until: Any,
) -> None:
    upstream = stream_server.url("/sse?count=100000&delay=0.01")
    process, report = procs.start(
        "relay", "relay", redis=redis_server.url, stream="s", upstream=upstream, lease_ttl=30.0
    )
    wait_until(lambda: redis_client.xlen("s") > 0, 60, "the relay appends")
    process.send_signal(signal.SIGTERM)
    process.wait(15)  # well under lease_ttl: it does not wait for its lease to expire
    assert redis_client.get("s:relay:lease") is None  # released: a standby takes it at once
    assert _last(report, "exit")["exit"] == "closed"
