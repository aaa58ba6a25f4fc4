"""Side-by-side benchmark: aikit-transports against the clients users would otherwise pick.

``make bench`` (or ``.venv/bin/python bench/run.py``) starts ``bench/server.py`` in a process of
its own, then runs every client of ``bench/clients.py`` in a fresh process per run, interleaved
(the order rotates from run to run), on each workload; each client checks it received exactly
``n`` events with the right last id, and any failure stops the benchmark. It prints:

* throughput: median of ``--runs`` runs, in events/s and MB/s (payload bytes as framed on the
  wire by the protocol, HTTP chunking excluded), with each client's ratio to the best peer of
  its wire and to the raw-socket floor;
* delivery latency p50 / p99 from the server's write to the consumer at paced rates (best of
  ``--latency-runs`` runs);
* resident memory and threads of one process holding ``--memory-n`` idle SSE and as many idle
  WebSocket transports (and, for orientation, bare ``requests`` streams and
  ``websocket-client`` ``WebSocketApp``s);
* WebSocket permessage-deflate: bytes on the wire and events/s for compressible JSON messages
  of 1 KiB and 16 KiB, with and without compression, next to the ``websockets`` sync client
  (``bench/ws_compression.py``);
* the targets of the issue, each marked met or not;

and records the run at the end of ``bench/RESULTS.md`` (``--no-write`` to skip). ``--quick`` is
a fast pass with smaller workloads and one run of each.
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from importlib import metadata
from typing import Any, Dict, List, Optional, Sequence, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from clients import CLIENTS  # noqa: E402  (bench/ is not a package)
from ws_compression import measure as ws_compression  # noqa: E402

RESULTS = os.path.join(HERE, "RESULTS.md")
MARKER = "<!-- Everything below is rewritten by bench/run.py on each run. -->"

#: workload name -> (events, bytes per event)
WORKLOADS = {"small": (200_000, 64), "large": (20_000, 4096)}
QUICK_WORKLOADS = {"small": (50_000, 64), "large": (5_000, 4096)}
WIRES = {"sse": "SSE", "ndjson": "HTTP stream (NDJSON)", "ws": "WebSocket"}
LATENCY_CLIENTS = [
    "ours-sse-iter",
    "ours-sse-on",
    "ours-ndjson-iter",
    "ours-ws-iter",
    "ours-ws-on",
    "httpx-sse",
    "sseclient-py",
    "requests-sse",
    "requests-ndjson",
    "websocket-client",
    "websockets-sync",
]
#: rate (events/s) -> seconds of paced stream per run
RATES = {1000: 2.0, 10000: 1.0}
PEER_PACKAGES = ["requests", "websocket-client", "sseclient-py", "httpx", "httpx-sse", "websockets"]


def is_ours(name: str) -> bool:
    return name.startswith("ours-")


def is_raw(name: str) -> bool:
    return name.startswith("raw-")


class Bench:
    """The server process and the runs of client processes."""

    def __init__(self, verbose: bool) -> None:
        self.verbose = verbose
        self.server = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "server.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.server.stdout is not None
        ports = json.loads(self.server.stdout.readline())
        self.port: int = ports["port"]
        self.idle_port: int = ports["idle_port"]

    def close(self) -> None:
        if self.server.stdin is not None:
            self.server.stdin.close()
        try:
            self.server.wait(10)
        except subprocess.TimeoutExpired:
            self.server.kill()
            self.server.wait()

    def url(self, wire: str, n: int, size: int, rate: float = 0) -> str:
        scheme = "ws" if wire == "ws" else "http"
        query = f"n={n}&size={size}" + (f"&rate={rate:g}" if rate else "")
        return f"{scheme}://127.0.0.1:{self.port}/{wire}?{query}"

    def prepare(self, wire: str, n: int, size: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        conn.request("GET", f"/prepare?kind={wire}&n={n}&size={size}")
        conn.getresponse().read()
        conn.close()

    def client(self, name: str, url: str, n: int, *extra: str) -> Dict[str, Any]:
        """Run one client process; its JSON result (``skipped`` if it cannot run here)."""
        cmd = [sys.executable, os.path.join(HERE, "clients.py"), name, "--url", url, "--n", str(n)]
        proc = subprocess.run([*cmd, *extra], capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr)
            raise SystemExit(f"bench: client {name} failed (exit {proc.returncode}): {url}")
        result: Dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
        if self.verbose:
            print(f"    {name}: {result}", file=sys.stderr)
        return result


# -- throughput -------------------------------------------------------------------------------


def throughput(
    bench: Bench, workload: str, n: int, size: int, clients: Sequence[str], runs: int
) -> Dict[str, Dict[str, Any]]:
    """Median elapsed time of each client over ``runs`` interleaved runs."""
    wires = sorted({CLIENTS[c][0] for c in clients})
    for wire in wires:
        bench.prepare(wire, n, size)
        bench.client(f"raw-{wire}", bench.url(wire, n, size), n)  # warm-up, not recorded
    times: Dict[str, List[float]] = {c: [] for c in clients}
    skipped: Dict[str, str] = {}
    for run in range(runs):
        print(f"  {workload}: run {run + 1}/{runs}", file=sys.stderr, flush=True)
        shift = run % len(clients)
        for name in [*clients[shift:], *clients[:shift]]:
            if name in skipped:
                continue
            wire = CLIENTS[name][0]
            result = bench.client(name, bench.url(wire, n, size), n)
            if "skipped" in result:
                skipped[name] = result["skipped"]
                continue
            times[name].append(result["elapsed"])
    out: Dict[str, Dict[str, Any]] = {}
    for name in clients:
        if name in skipped:
            out[name] = {"skipped": skipped[name]}
            continue
        median = statistics.median(times[name])
        out[name] = {
            "wire": CLIENTS[name][0],
            "elapsed": median,
            "runs": times[name],
            "events_s": n / median,
            "mb_s": n * size / median / 1e6,
        }
    for row in out.values():
        if "skipped" in row:
            continue
        wire = row["wire"]
        peers = [
            r["events_s"]
            for c, r in out.items()
            if "skipped" not in r and r["wire"] == wire and not is_ours(c) and not is_raw(c)
        ]
        floor = out.get(f"raw-{wire}", {}).get("events_s")
        row["x_best_peer"] = row["events_s"] / max(peers) if peers else None
        row["x_floor"] = row["events_s"] / floor if floor else None
    return out


def throughput_table(name: str, n: int, size: int, rows: Dict[str, Dict[str, Any]]) -> str:
    lines = [
        f"#### {name}: {n:,} events of {size:,} bytes",
        "",
        "| wire | client | events/s | MB/s | x best peer | x raw floor |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for wire in WIRES:
        for client, row in rows.items():
            if CLIENTS[client][0] != wire:
                continue
            if "skipped" in row:
                lines.append(f"| {WIRES[wire]} | {client} | skipped: {row['skipped']} | | | |")
                continue
            peer = row["x_best_peer"]
            floor = row["x_floor"]
            shown = f"**{client}**" if is_ours(client) else client
            lines.append(
                f"| {WIRES[wire]} | {shown} | {row['events_s']:,.0f} | {row['mb_s']:,.1f} | "
                f"{'' if peer is None else f'{peer:.2f}'} | "
                f"{'' if floor is None else f'{floor:.2f}'} |"
            )
    return "\n".join(lines)


# -- latency ----------------------------------------------------------------------------------


def latency(
    bench: Bench, clients: Sequence[str], rates: Dict[int, float], runs: int
) -> Dict[int, Dict[str, Dict[str, Any]]]:
    """p50 / p99 (ms) from the server's write to the consumer; best of ``runs`` for each."""
    out: Dict[int, Dict[str, Dict[str, Any]]] = {}
    for rate, seconds in rates.items():
        n = int(rate * seconds)
        warmup = max(10, n // 10)
        samples: Dict[str, List[Dict[str, float]]] = {c: [] for c in clients}
        skipped: Dict[str, str] = {}
        for run in range(runs):
            print(f"  latency {rate}/s: run {run + 1}/{runs}", file=sys.stderr, flush=True)
            shift = run % len(clients)
            for name in [*clients[shift:], *clients[:shift]]:
                if name in skipped:
                    continue
                url = bench.url(CLIENTS[name][0], n, 64, rate)
                result = bench.client(name, url, n, "--paced", "--warmup", str(warmup))
                if "skipped" in result:
                    skipped[name] = result["skipped"]
                else:
                    samples[name].append(result["latency"])
        out[rate] = {}
        for name in clients:
            if name in skipped:
                out[rate][name] = {"skipped": skipped[name]}
            else:
                out[rate][name] = {
                    "p50": min(s["p50"] for s in samples[name]),
                    "p99": min(s["p99"] for s in samples[name]),
                    "runs": samples[name],
                }
    return out


def latency_table(rows: Dict[int, Dict[str, Dict[str, Any]]]) -> str:
    rates = list(rows)
    head = " | ".join(f"{r:,}/s p50 | {r:,}/s p99" for r in rates)
    lines = [f"| client | {head} |", "|---|" + "---:|" * (2 * len(rates))]
    for client in rows[rates[0]]:
        cells = []
        for rate in rates:
            row = rows[rate][client]
            if "skipped" in row:
                cells += ["skipped", ""]
            else:
                cells += [f"{row['p50']:.3f}", f"{row['p99']:.3f}"]
        shown = f"**{client}**" if is_ours(client) else client
        lines.append(f"| {shown} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# -- memory -----------------------------------------------------------------------------------


def memory(bench: Bench, n: int, peers: bool) -> Dict[str, Dict[str, Any]]:
    base = f"127.0.0.1:{bench.idle_port}"
    names = ["memory-ours"] + (["memory-requests", "memory-wsapp"] if peers else [])
    out = {}
    for name in names:
        print(f"  {name} ({n} idle connections per wire)", file=sys.stderr, flush=True)
        out[name] = bench.client(name, base, n)
    return out


def memory_table(rows: Dict[str, Dict[str, Any]]) -> str:
    lines = [
        "| process holding | KB resident per connection | threads before / open / after close |",
        "|---|---:|---|",
    ]
    ours = rows.get("memory-ours")
    if ours:
        n = ours["n"]
        threads = f"{ours['threads_before']} / {ours['threads_during']} / {ours['threads_after']}"
        lines.append(
            f"| **{n} SSETransport + {n} WebSocketTransport** | {ours['kb_per_conn']:.1f} "
            f"| {threads} (library threads left: {ours['library_threads_after']}) |"
        )
        lines.append(f"| — of which per SSETransport | {ours['kb_per_sse']:.1f} | |")
        lines.append(f"| — of which per WebSocketTransport | {ours['kb_per_ws']:.1f} | |")
    req = rows.get("memory-requests")
    if req:
        lines.append(
            f"| {req['n']} `requests` streams (nobody reading) | {req['kb_per_conn']:.1f} | "
            f"{req['threads_before']} / {req['threads_during']} / {req['threads_after']} |"
        )
    app = rows.get("memory-wsapp")
    if app:
        lines.append(
            f"| {app['n']} `WebSocketApp.run_forever` threads | {app['kb_per_conn']:.1f} | "
            f"{app['threads_before']} / {app['threads_during']} / {app['threads_after']} "
            f"({app['stuck_after_close']} stuck after close()) |"
        )
    return "\n".join(lines)


# -- targets ----------------------------------------------------------------------------------


#: (label, workload, ours, versus, minimum ratio of events/s)
THROUGHPUT_TARGETS = [
    ("{w}: SSE iter_events >= 1.0x httpx-sse", None, "ours-sse-iter", "httpx-sse", 1.0),
    ("{w}: SSE iter_events >= 2.5x sseclient-py", None, "ours-sse-iter", "sseclient-py", 2.5),
    (
        "{w}: NDJSON iter_events >= 1.0x requests iter_lines + json.loads",
        None,
        "ours-ndjson-iter",
        "requests-ndjson",
        1.0,
    ),
    (
        "{w}: WebSocket iter_events >= 0.9x websocket-client recv() (stretch 1.0x)",
        None,
        "ours-ws-iter",
        "websocket-client",
        0.9,
    ),
    ("{w}: SSE iter_events >= 0.5x the raw floor", "large", "ours-sse-iter", "raw-sse", 0.5),
]


def targets(
    tput: Dict[str, Dict[str, Dict[str, Any]]],
    lat: Optional[Dict[int, Dict[str, Dict[str, Any]]]],
    mem: Optional[Dict[str, Dict[str, Any]]],
) -> List[Tuple[str, str, bool]]:
    """(target, measured, met) for each target of the issue that this run measured."""
    checks: List[Tuple[str, str, bool]] = []
    for label, only, ours, versus, minimum in THROUGHPUT_TARGETS:
        for workload, rows in tput.items():
            a, b = rows.get(ours, {}), rows.get(versus, {})
            if (only and workload != only) or "events_s" not in a or "events_s" not in b:
                continue
            value = a["events_s"] / b["events_s"]
            checks.append((label.format(w=workload), f"{value:.2f}x", value >= minimum))
    for rate, rows in (lat or {}).items():
        limit = 0.5 if rate <= 1000 else 1.0
        httpx = rows.get("httpx-sse", {})
        sse = rows.get("ours-sse-iter", {})
        if "p50" in httpx and "p50" in sse:
            value = sse["p50"] / httpx["p50"]
            label = f"{rate}/s: SSE iter_events p50 <= 1.5x httpx-sse p50"
            checks.append((label, f"{value:.2f}x", value <= 1.5))
        for ours in ("ours-sse-iter", "ours-ndjson-iter", "ours-ws-iter"):
            row = rows.get(ours, {})
            if "p99" in row:
                label = f"{rate}/s: {ours} p99 < {limit} ms"
                checks.append((label, f"{row['p99']:.3f} ms", row["p99"] < limit))
    ours_mem = (mem or {}).get("memory-ours")
    if ours_mem:
        for wire, key in (("SSETransport", "kb_per_sse"), ("WebSocketTransport", "kb_per_ws")):
            per = ours_mem[key]
            label = f"idle: <= 64 KB resident per {wire}"
            checks.append((label, f"{per:.1f} KB", per <= 64))
        left = ours_mem["threads_after"] - ours_mem["threads_before"]
        lib = ours_mem["library_threads_after"]
        checks.append(
            (
                "idle: no thread left after closing them all",
                f"{left} left ({lib} of the library)",
                left <= 0 and lib == 0,
            )
        )
    return checks


def targets_table(checks: List[Tuple[str, str, bool]]) -> str:
    lines = ["| target | measured | met |", "|---|---:|:---:|"]
    for label, value, met in checks:
        lines.append(f"| {label} | {value} | {'yes' if met else '**no**'} |")
    return "\n".join(lines)


# -- the report -------------------------------------------------------------------------------


def environment() -> str:
    versions = []
    for name in ["aikit-transports", *PEER_PACKAGES]:
        try:
            versions.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{name} (missing)")
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{now}; {os.cpu_count()} CPUs ({platform.machine()}, {platform.system()}), "
        f"Python {platform.python_version()} ({platform.python_implementation()}); "
        f"load average at the start {load:.2f}.\n\nVersions: " + ", ".join(versions) + "."
    )


def write_results(text: str) -> None:
    head = ""
    if os.path.exists(RESULTS):
        with open(RESULTS, encoding="utf-8") as f:
            head = f.read().split(MARKER, 1)[0]
    if not head:
        head = "# Benchmark results\n\n"
    with open(RESULTS, "w", encoding="utf-8") as f:
        f.write(head + MARKER + "\n\n" + text.rstrip() + "\n")


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small workloads, one run of each")
    parser.add_argument("--runs", type=int, help="runs per client and workload (default 5)")
    parser.add_argument(
        "--workloads", default="small,large", help="comma-separated: small, large (or none)"
    )
    parser.add_argument(
        "--clients",
        help="comma-separated client names (default: all); see bench/clients.py",
    )
    parser.add_argument("--latency-runs", type=int, help="paced runs per client (default 3)")
    parser.add_argument("--no-latency", action="store_true")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--memory-n", type=int, help="idle connections per wire (default 1000)")
    parser.add_argument("--no-memory-peers", action="store_true")
    parser.add_argument(
        "--no-compression", action="store_true", help="skip the WebSocket compression section"
    )
    parser.add_argument("--no-write", action="store_true", help="do not update bench/RESULTS.md")
    parser.add_argument("--title", default="Last run", help="heading of the recorded run")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every result")
    args = parser.parse_args(argv)

    runs = args.runs or (1 if args.quick else 5)
    latency_runs = args.latency_runs or (1 if args.quick else 3)
    memory_n = args.memory_n or (200 if args.quick else 1000)
    table = QUICK_WORKLOADS if args.quick else WORKLOADS
    workloads = [w for w in args.workloads.split(",") if w and w != "none"]
    for w in workloads:
        if w not in table:
            parser.error(f"unknown workload {w!r}")
    clients = args.clients.split(",") if args.clients else list(CLIENTS)
    for c in clients:
        if c not in CLIENTS:
            parser.error(f"unknown client {c!r}; one of {', '.join(CLIENTS)}")
    rates = {rate: (s / 4 if args.quick else s) for rate, s in RATES.items()}

    started = time.monotonic()
    env = environment()
    bench = Bench(args.verbose)
    sections = [f"## {args.title}", "", env, ""]
    tput: Dict[str, Dict[str, Dict[str, Any]]] = {}
    lat = None
    mem = None
    try:
        if workloads:
            sections += [f"### Throughput (median of {runs} runs, clients interleaved)", ""]
        for w in workloads:
            n, size = table[w]
            tput[w] = throughput(bench, w, n, size, clients, runs)
            sections += [throughput_table(w, n, size, tput[w]), ""]
        lat_clients = [c for c in LATENCY_CLIENTS if c in clients]
        if not args.no_latency and lat_clients:
            lat = latency(bench, lat_clients, rates, latency_runs)
            sections += [
                f"### Delivery latency, ms from the server's write to the consumer "
                f"(64-byte events, best of {latency_runs} runs)",
                "",
                latency_table(lat),
                "",
            ]
        if not args.no_memory:
            mem = memory(bench, memory_n, not args.no_memory_peers)
            sections += [
                f"### Idle connections in one process ({memory_n} per wire), beyond the "
                "interpreter",
                "",
                memory_table(mem),
                "",
            ]
        if not args.no_compression:
            counts = (2_000, 200) if args.quick else (20_000, 2_000)
            sections += [
                f"### WebSocket permessage-deflate, compressible JSON (median of {runs} runs)",
                "",
                ws_compression({"1 KiB": (counts[0], 1024), "16 KiB": (counts[1], 16384)}, runs),
                "",
            ]
    finally:
        bench.close()
    checks = targets(tput, lat, mem)
    if checks:
        sections += ["### Targets", "", targets_table(checks), ""]
    sections.append(
        f"Whole run: {time.monotonic() - started:.0f} s "
        f"(`bench/run.py {' '.join(argv if argv is not None else sys.argv[1:])}`)."
    )
    text = "\n".join(sections)
    print(text)
    if not args.no_write:
        write_results(text)


if __name__ == "__main__":
    main()
