"""Run the Autobahn Testsuite's client cases against WebSocketTransport; print the verdicts.

Autobahn (``wstest -m fuzzingserver``, autobahntestsuite 0.8.2) needs Python 2.7, so it is not
part of ``make test``: install it once in a 2.7 virtualenv::

    /root/.pyenv/versions/2.7.18/bin/python -m pip install virtualenv==20.15.1
    /root/.pyenv/versions/2.7.18/bin/python -m virtualenv /tmp/ws-autobahn/py27
    /tmp/ws-autobahn/py27/bin/pip install autobahntestsuite==0.8.2

then run (about 10 minutes for every case on two cores)::

    .venv/bin/python bench/ws_autobahn.py --wstest /tmp/ws-autobahn/py27/bin/wstest

This starts the fuzzing server on 127.0.0.1, plays each case with a transport that echoes every
message (text as text, binary as binary), and prints the count of each verdict (behaviour and
close behaviour) with the cases that are neither OK, NON-STRICT nor INFORMATIONAL.
``--cases 1.*,2.*`` picks cases; ``--compression none`` turns permessage-deflate off.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Dict, List, Optional

from aikit_transports import ReconnectPolicy, WebSocketTransport

AGENT = "aikit-transports"
DEFAULT_CASES = "1.*,2.*,3.*,4.*,5.*,6.*,7.*,9.*,10.*,12.*,13.*"
GOOD = ("OK", "NON-STRICT", "INFORMATIONAL")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"wstest exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("wstest did not start listening")


def _play(url: str, compression: Optional[str], timeout: float) -> Optional[str]:
    """Connect to ``url`` and echo every message until the server ends it; the close reason."""
    closed = threading.Event()
    reason: List[str] = []
    t = WebSocketTransport(
        url,
        heartbeat_interval=None,
        idle_timeout=None,
        reconnect=ReconnectPolicy(max_attempts=0),
        compression=compression,  # type: ignore[arg-type]
        timeout=30.0,
    )

    def echo(event: Any) -> None:
        with contextlib.suppress(Exception):  # the connection may be closing: the case decides
            t.send(event.data)

    t.on("event", echo)

    def on_closed(why: str) -> None:
        reason.append(why)
        closed.set()

    t.on("closed", on_closed)
    try:
        with contextlib.suppress(Exception):  # a case may fail the connection at once
            t.connect()
        closed.wait(timeout)
    finally:
        t.close()
    return reason[0] if reason else None


def _first_message(url: str) -> str:
    t = WebSocketTransport(url, heartbeat_interval=None, reconnect=ReconnectPolicy(max_attempts=0))
    try:
        return str(next(t.iter_events(timeout=30)).data)
    finally:
        t.close()


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wstest", default="/tmp/ws-autobahn/py27/bin/wstest")
    parser.add_argument("--cases", default=DEFAULT_CASES, help=f"default: {DEFAULT_CASES}")
    parser.add_argument("--compression", choices=("deflate", "none"), default="deflate")
    parser.add_argument("--case-timeout", type=float, default=120.0)
    parser.add_argument("--outdir", default=None, help="where the HTML/JSON reports go")
    args = parser.parse_args(argv)
    compression = None if args.compression == "none" else "deflate"

    port = _free_port()
    outdir = args.outdir or tempfile.mkdtemp(prefix="ws-autobahn-")
    spec = {
        "url": f"ws://127.0.0.1:{port}",
        "outdir": os.path.join(outdir, "clients"),
        "cases": args.cases.split(","),
        "exclude-cases": [],
        "exclude-agent-cases": {},
    }
    spec_path = os.path.join(outdir, "fuzzingserver.json")
    with open(spec_path, "w") as f:
        json.dump(spec, f)
    base = f"ws://127.0.0.1:{port}"
    with open(os.path.join(outdir, "wstest.log"), "wb") as log:
        proc = subprocess.Popen(
            [args.wstest, "-m", "fuzzingserver", "-s", spec_path],
            cwd=outdir,
            stdout=log,
            stderr=log,
        )
        try:
            _wait_port(port, proc)
            count = int(_first_message(f"{base}/getCaseCount"))
            started = time.monotonic()
            for case in range(1, count + 1):
                _play(f"{base}/runCase?case={case}&agent={AGENT}", compression, args.case_timeout)
                if case % 50 == 0:
                    print(f"... {case}/{count} cases", file=sys.stderr, flush=True)
            elapsed = time.monotonic() - started
            _play(f"{base}/updateReports?agent={AGENT}", None, 60)
        finally:
            proc.terminate()
            proc.wait(10)

    with open(os.path.join(outdir, "clients", "index.json")) as f:
        results: Dict[str, Dict[str, Any]] = json.load(f)[AGENT]
    behaviour = collections.Counter(r["behavior"] for r in results.values())
    closing = collections.Counter(r["behaviorClose"] for r in results.values())
    print(
        f"Autobahn fuzzingserver, {len(results)} client cases ({args.cases}), "
        f"compression={args.compression}, {elapsed:.0f} s"
    )
    print("behaviour:       " + ", ".join(f"{k} {v}" for k, v in sorted(behaviour.items())))
    print("close behaviour: " + ", ".join(f"{k} {v}" for k, v in sorted(closing.items())))
    bad = sorted(
        (
            name
            for name, r in results.items()
            if r["behavior"] not in GOOD or r["behaviorClose"] not in GOOD
        ),
        key=lambda c: [int(p) for p in c.split(".")],
    )
    for name in bad:
        r = results[name]
        print(f"  {name}: {r['behavior']} / close {r['behaviorClose']}")
    print(f"reports: {outdir}/clients/index.html")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
