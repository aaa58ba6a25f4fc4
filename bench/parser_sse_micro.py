"""Micro-benchmark of SSEParser (not a test): events/s for a few stream shapes and read sizes.

Run from the repository root: ``python bench/parser_sse_micro.py``. For comparison it also times
a bare ``requests`` ``iter_lines()`` loop (one that only counts blank lines, and one that builds
events the way simple clients do), and ``httpx-sse``'s decoder when it is importable. Times are
CPU times, best of several runs.
"""

from __future__ import annotations

import io
import os
import sys
import time
from functools import partial
from typing import Callable, List, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from aikit_transports.parsers.sse import SSEParser

N = 200_000
CHUNK = 64 * 1024
PAYLOAD = b'{"type":"token","index":%d,"text":"hello"}'


def make_stream(shape: str = "id+data", n: int = N) -> bytes:
    """``n`` events of about 64 bytes: ``id: N`` + one JSON ``data:`` line + blank line."""
    if shape == "id+data":
        form = b"id: %d\ndata: " + PAYLOAD + b"\n\n"
    elif shape == "data":
        form = b"data: " + PAYLOAD + b"\n\n"
    elif shape == "event+data":
        form = b"event: token\ndata: " + PAYLOAD + b"\n\n"
    elif shape == "id+event+data crlf":
        form = b"id: %d\r\nevent: token\r\ndata: " + PAYLOAD + b"\r\n\r\n"
    else:
        raise ValueError(shape)
    args = 2 if form.count(b"%d") == 2 else 1
    return b"".join(form % ((i,) * args) for i in range(n))


def chunks(stream: bytes, size: int = CHUNK) -> List[bytes]:
    return [stream[i : i + size] for i in range(0, len(stream), size)]


def best_of(runs: int, fn: Callable[[], int], n: int) -> float:
    best = float("inf")
    for _ in range(runs):
        t0 = time.process_time()
        count = fn()
        best = min(best, time.process_time() - t0)
        assert count == n, count
    return best


def run_ours(parts: List[bytes]) -> int:
    parser = SSEParser()
    count = 0
    for chunk in parts:
        count += len(parser.feed(chunk))
    return count


def run_iter_lines_bare(stream: bytes, size: int) -> int:
    import requests

    resp = requests.models.Response()
    resp.raw = io.BytesIO(stream)
    count = 0
    for line in resp.iter_lines(chunk_size=size):
        if not line:
            count += 1
    return count


def run_iter_lines_events(stream: bytes, size: int) -> int:
    # What simple clients do on top of iter_lines(): decode, split fields, build an event.
    import requests

    resp = requests.models.Response()
    resp.raw = io.BytesIO(stream)
    events = []
    data: List[str] = []
    etype: Optional[str] = None
    eid: Optional[str] = None
    for raw in resp.iter_lines(chunk_size=size):
        line = raw.decode("utf-8")
        if not line:
            if data:
                events.append((etype or "message", "\n".join(data), eid))
            data, etype = [], None
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            data.append(value)
        elif name == "event":
            etype = value
        elif name == "id":
            eid = value
    return len(events)


def run_httpx_sse(parts: List[bytes]) -> Optional[int]:
    try:
        from httpx_sse._decoders import SSEDecoder, SSELineDecoder
    except ImportError:
        return None
    lines = SSELineDecoder()
    decoder = SSEDecoder()
    count = 0
    for chunk in parts:
        for line in lines.decode(chunk.decode("utf-8")):
            if decoder.decode(line) is not None:
                count += 1
    return count


def _httpx_count(parts: List[bytes]) -> int:
    return run_httpx_sse(parts) or 0


def report(name: str, n: int, seconds: float) -> None:
    print(f"  {name:34s} {n / seconds / 1e6:6.2f} M events/s")


def main() -> None:
    for shape in ("id+data", "data", "event+data", "id+event+data crlf"):
        stream = make_stream(shape)
        parts = chunks(stream)
        print(f"{shape}: {N} events, {len(stream) / N:.1f} bytes/event, {CHUNK}-byte reads")
        report("SSEParser", N, best_of(7, partial(run_ours, parts), N))
        if shape == "id+data":
            report(
                "requests iter_lines, count only",
                N,
                best_of(5, partial(run_iter_lines_bare, stream, CHUNK), N),
            )
            report(
                "requests iter_lines + fields",
                N,
                best_of(5, partial(run_iter_lines_events, stream, CHUNK), N),
            )
            if run_httpx_sse(parts[:1]) is not None:
                report("httpx-sse decoder", N, best_of(5, partial(_httpx_count, parts), N))
    small = 20_000
    stream = make_stream("id+data", small)
    one_each = [stream[i * 64 : (i + 1) * 64] for i in range(small)]
    assert b"".join(one_each) == stream
    print(f"id+data, one read per event (~64 bytes): {small} events")
    report("SSEParser", small, best_of(7, partial(run_ours, one_each), small))
    if run_httpx_sse(one_each[:1]) is not None:
        report("httpx-sse decoder", small, best_of(5, partial(_httpx_count, one_each), small))


if __name__ == "__main__":
    main()
