"""Benchmark of HTTPStreamTransport (not a test): NDJSON lines/s through ``iter_events()``.

Run from the repository root: ``python bench/ndjson_micro.py [lines] [runs]``. A local
``StreamServer`` route writes a pre-rendered NDJSON body in 64 KiB pieces (so the server never
is the bottleneck); in the same run, the same body is read by the transport and by a bare
``requests`` loop (``iter_lines()`` + ``json.loads``, with the default 512-byte and with 64 KiB
reads). Wall-clock times, best of ``runs``; both sides parse every line.
"""

from __future__ import annotations

import json
import os
import sys
import time
from functools import partial
from typing import Callable

import requests

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from aikit_transports import BufferConfig, HTTPStreamTransport
from aikit_transports.testing import StreamServer
from aikit_transports.testing.exchange import RecordedRequest, StreamWriter

PIECE = 64 * 1024


def make_body(lines: int) -> bytes:
    """``lines`` lines of about 64 bytes, like a token stream."""
    return b"".join(
        b'{"id": %d, "type": "token", "text": "hello world", "index": %d}\n' % (i, i)
        for i in range(1, lines + 1)
    )


def route(body: bytes, chunked: bool) -> Callable[[RecordedRequest, StreamWriter], None]:
    def handler(request: RecordedRequest, writer: StreamWriter) -> None:
        writer.send_status(200, {"Content-Type": "application/x-ndjson"}, chunked=chunked)
        for start in range(0, len(body), PIECE):
            writer.write(body[start : start + PIECE])

    return handler


def run_transport(url: str) -> int:
    count = 0
    buffer = BufferConfig(max_size=10_000)
    with HTTPStreamTransport(url, reconnect_on_eof=False, buffer=buffer) as t:
        for _ in t.iter_events(timeout=30):
            count += 1
    return count


def run_requests(url: str, chunk_size: int) -> int:
    count = 0
    loads = json.loads
    with requests.get(url, stream=True, timeout=30) as resp:
        for line in resp.iter_lines(chunk_size=chunk_size):
            if line:
                loads(line)
                count += 1
    return count


def best_of(runs: int, contenders: dict[str, Callable[[], int]], expected: int) -> dict[str, float]:
    """Best wall-clock time of each contender; runs are interleaved so that load from other
    processes falls on all of them alike."""
    best = dict.fromkeys(contenders, float("inf"))
    for _ in range(runs):
        for name, fn in contenders.items():
            started = time.perf_counter()
            count = fn()
            best[name] = min(best[name], time.perf_counter() - started)
            assert count == expected, (name, count, expected)
    return best


def main() -> None:
    lines = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    body = make_body(lines)
    print(f"{lines} NDJSON lines, {len(body) / 1e6:.1f} MB, best of {runs} runs (wall clock)")
    with StreamServer() as server:
        for chunked in (True, False):
            server.route("/bench", route(body, chunked))
            url = server.url("/bench")
            contenders: dict[str, Callable[[], int]] = {
                "HTTPStreamTransport.iter_events()": partial(run_transport, url),
                "requests iter_lines(64 KiB) + json.loads": partial(run_requests, url, PIECE),
                "requests iter_lines() (512 B) + json.loads": partial(run_requests, url, 512),
            }
            results = best_of(runs, contenders, lines)
            ours = results["HTTPStreamTransport.iter_events()"]
            print(f"\n{'chunked' if chunked else 'close-delimited'} body:")
            for name, seconds in results.items():
                print(
                    f"  {name:44s} {lines / seconds:>10,.0f} lines/s"
                    f"   transport / this: {seconds / ours:.2f}x"
                )


if __name__ == "__main__":
    main()
