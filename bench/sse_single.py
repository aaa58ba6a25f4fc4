"""Single-stream SSE targets of issue 18: ours through ``iter_events()`` against ``httpx-sse``.

``.venv/bin/python bench/sse_single.py`` starts ``bench/server.py`` and, for each body framing
(chunked, close-delimited, gzip over chunked) and event size (64 B, 4 KiB), runs the clients
(``ours-sse-iter`` and ``httpx-sse`` by default) in a fresh process each, interleaved, ``--runs``
times; then both paced at 1,000 events/s (64-byte events, chunked) for the delivery latency.
It prints a Markdown table: median events/s, ours / httpx-sse, CPU microseconds per event
(the client process, every thread), and p50 / p99 latency (median of the runs). Nothing is
written to ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from typing import Dict, List, Sequence, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from run import Bench  # noqa: E402  (bench/ is not a package)

FRAMINGS = ("chunked", "close", "gzip")
#: size label -> (events, bytes per event)
SIZES = {"64 B": (200_000, 64), "4 KiB": (20_000, 4096)}
OURS, PEER = "ours-sse-iter", "httpx-sse"
#: paced runs: events/s and seconds
RATE, SECONDS = 1000, 2.0

Samples = Dict[str, List[Tuple[float, float]]]  # client -> [(elapsed or p50, cpu or p99)]


def throughput(
    bench: Bench, clients: Sequence[str], framing: str, n: int, size: int, runs: int
) -> Samples:
    """(elapsed s, CPU s) of each client over ``runs`` interleaved runs."""
    url = bench.url("sse", n, size) + f"&framing={framing}"
    bench.client(OURS, url, n)  # warm-up (the server builds and caches the body)
    out: Samples = {c: [] for c in clients}
    for run in range(runs):
        shift = run % len(clients)
        for name in [*clients[shift:], *clients[:shift]]:
            result = bench.client(name, url, n)
            out[name].append((result["elapsed"], result["cpu"]))
    return out


def latency(bench: Bench, clients: Sequence[str], runs: int) -> Samples:
    """(p50 ms, p99 ms) of each client paced at ``RATE``, over ``runs`` interleaved runs."""
    n = int(RATE * SECONDS)
    url = bench.url("sse", n, 64, RATE)
    out: Samples = {c: [] for c in clients}
    for run in range(runs):
        shift = run % len(clients)
        for name in [*clients[shift:], *clients[:shift]]:
            result = bench.client(name, url, n, "--paced", "--warmup", str(n // 10))
            out[name].append((result["latency"]["p50"], result["latency"]["p99"]))
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per client and case")
    parser.add_argument("--framings", default=",".join(FRAMINGS))
    parser.add_argument("--sizes", default="64,4096", help="comma-separated: 64, 4096")
    parser.add_argument("--clients", default=f"{OURS},{PEER}")
    parser.add_argument("--no-latency", action="store_true")
    args = parser.parse_args(argv)
    clients = args.clients.split(",")
    sizes = [
        (label, n, size) for label, (n, size) in SIZES.items() if str(size) in args.sizes.split(",")
    ]
    with open("/proc/loadavg", encoding="ascii") as f:
        print(f"load average at the start: {f.read().split()[0]}", file=sys.stderr)
    bench = Bench(verbose=False)
    lines = [
        "| case | "
        + " | ".join(f"{c} events/s | {c} CPU µs/event" for c in clients)
        + " | ours / httpx-sse |",
        "|---|" + "---:|---:|" * len(clients) + "---:|",
    ]
    try:
        for framing in args.framings.split(","):
            for label, n, size in sizes:
                print(f"  {framing} {label}", file=sys.stderr, flush=True)
                samples = throughput(bench, clients, framing, n, size, args.runs)
                rate = {c: n / statistics.median(e for e, _ in s) for c, s in samples.items()}
                cpu = {c: statistics.median(u for _, u in s) / n * 1e6 for c, s in samples.items()}
                cells = " | ".join(f"{rate[c]:,.0f} | {cpu[c]:.2f}" for c in clients)
                ratio = f"{rate[OURS] / rate[PEER]:.2f}x" if {OURS, PEER} <= set(rate) else ""
                lines.append(f"| {framing} {label} | {cells} | {ratio} |")
        if not args.no_latency:
            print(f"  latency {RATE}/s", file=sys.stderr, flush=True)
            lat = latency(bench, clients, args.runs)
            p50 = {c: statistics.median(a for a, _ in s) for c, s in lat.items()}
            p99 = {c: statistics.median(b for _, b in s) for c, s in lat.items()}
            cells = " | ".join(f"p50 {p50[c]:.3f} ms | p99 {p99[c]:.3f} ms" for c in clients)
            ratio = f"{p50[OURS] / p50[PEER]:.2f}x p50" if {OURS, PEER} <= set(p50) else ""
            lines.append(f"| {RATE:,}/s latency | {cells} | {ratio} |")
    finally:
        bench.close()
    print("\n".join(lines))


if __name__ == "__main__":
    main()
