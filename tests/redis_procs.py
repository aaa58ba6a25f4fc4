"""Child processes for the multi-process Redis tests: ``python redis_procs.py ROLE REPORT OPTIONS``.

Each role writes JSON lines to the file ``REPORT`` (flushed as written, so the test sees them at
once and after a ``SIGKILL``); ``OPTIONS`` is a JSON object.

``relay``     runs a :class:`RedisRelay` of an SSE upstream until it ends (``SIGTERM`` closes it):
              ``{"ready": pid, "token": ...}``, ``{"lease": true|false}``, then ``{"exit": state,
              "metrics": {...}}``
``reader``    reads the stream to its end, checking that data runs ``event 1``, ``event 2``, ...:
              ``{"ready": pid}``, then ``{"count": n, "ok": bool, "bad": [...], "last": n}``
``consumer``  one consumer of a group: one line per event handled (its number), then
              ``{"done": n}``; with ``hang_after``, ``{"hung": n}`` after that many events, and it
              stops taking events (its buffered entries stay pending) until killed
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from typing import Any, Callable, TextIO

from aikit_transports import ReconnectPolicy, SSETransport
from aikit_transports.contrib.redis import RedisRelay, RedisStreamTransport

FAST = ReconnectPolicy(max_attempts=None, initial_delay=0.05, max_delay=0.5)


def _writer(out: TextIO) -> Callable[[Any], None]:
    lock = threading.Lock()

    def write(obj: Any) -> None:
        with lock:
            out.write(json.dumps(obj) + "\n")
            out.flush()

    return write


def relay(opts: dict[str, Any], write: Callable[[Any], None]) -> int:
    upstream_url = opts["upstream"]
    r = RedisRelay(
        lambda last_id: SSETransport(upstream_url, last_event_id=last_id, reconnect=FAST),
        opts["redis"],
        opts["stream"],
        lease_ttl=opts.get("lease_ttl", 10.0),
        maxlen=opts.get("maxlen", 100_000),
        reconnect=FAST,
    )
    r.on("lease", lambda held: write({"lease": held}))
    signal.signal(signal.SIGTERM, lambda signum, frame: r.close())
    write({"ready": os.getpid(), "token": r.token})
    try:
        r.run()
    finally:
        m = r.metrics
        write(
            {
                "exit": r.state,
                "metrics": {
                    "events_out": m.events_out,
                    "events_skipped": m.events_skipped,
                    "lease_acquisitions": m.lease_acquisitions,
                    "last_error": m.last_error,
                },
            }
        )
    return 0


def reader(opts: dict[str, Any], write: Callable[[Any], None]) -> int:
    t = RedisStreamTransport(
        opts["redis"],
        opts["stream"],
        last_event_id=opts.get("last_event_id", "0"),
        block_ms=opts.get("block_ms", 500),
        reconnect=FAST,
    )
    count = 0
    expected = 1
    bad: list[str] = []
    it = t.iter_events(timeout=60.0)
    write({"ready": os.getpid()})
    try:
        for event in it:
            count += 1
            if event.data != f"event {expected}":
                bad.append(f"#{count}: {event.data!r} (expected event {expected})")
                if len(bad) > 20:
                    break
            expected += 1
    finally:
        t.close()
    write({"count": count, "ok": not bad, "bad": bad, "last": expected - 1})
    return 0


def consumer(opts: dict[str, Any], write: Callable[[Any], None]) -> int:
    t = RedisStreamTransport(
        opts["redis"],
        opts["stream"],
        group=opts["group"],
        consumer=opts["consumer"],
        claim_idle=opts.get("claim_idle", 30.0),
        block_ms=opts.get("block_ms", 300),
        count=opts.get("count", 50),
        reconnect=FAST,
    )
    hang_after = opts.get("hang_after")
    handled = 0
    t.connect()
    write({"ready": os.getpid()})
    try:
        for event in t.iter_events(timeout=60.0):
            write(int(str(event.data).split()[-1]))
            handled += 1
            if hang_after is not None and handled >= hang_after:
                write({"hung": handled})
                threading.Event().wait()  # stuck until killed: its entries stay pending
    finally:
        t.close()
    write({"done": handled})
    return 0


ROLES = {"relay": relay, "reader": reader, "consumer": consumer}


def main() -> int:
    role, report, options = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    with open(report, "a", encoding="utf-8") as out:
        return ROLES[role](options, _writer(out))


if __name__ == "__main__":
    raise SystemExit(main())
