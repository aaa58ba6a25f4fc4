"""Scale benchmark (issue 18): one client process holding N streams, idle and then under load.

``make bench-scale`` (or ``.venv/bin/python bench/scale.py``) runs, for each wire (SSE,
WebSocket), each N and each client, a fresh server process (``bench/scale_server.py``, asyncio)
and a fresh client process (``bench/scale_clients.py``): ours on the shared I/O threads
(``ours-plain``), ours under a ``TransportManager`` (``ours-manager``), ours with a reader thread
per transport as before (``ours-threads``: ``AIKIT_TRANSPORTS_IO=threads``) and the asyncio
peers (``httpx-sse``, ``websockets``), one after the other in the same run. Each run:

1. the client opens N streams (``--open-concurrency`` at a time): *connect s*, *threads*
   (``threading.active_count()``), *KB/stream idle* ((VmRSS after - before) / N);
2. it stays idle ``--idle`` seconds, heartbeats every ``--heartbeat`` seconds (SSE: server
   comments; WebSocket: the client's pings): *CPU % idle* (user + sys over wall time, of one
   core);
3. the server sends ``--rate`` events/s spread round-robin over the N streams for ``--load``
   seconds, each stamped with its ``time.monotonic()``: *delivered/sent* (every one must
   arrive, within ``--grace`` s after the last), latency *p50* / *p99* (ms, server write to
   consumer), *CPU-s/1k events*, voluntary context switches per event (*cs/event*) and
   *stalled* (a second or more without any delivery while the server was sending, a lag over
   5 s, or events missing);
4. the client closes every stream and both processes exit (killed after timeouts otherwise).

Both processes raise their soft limit of open files to the hard one. Ours stop opening once the
process has ``--max-threads`` threads (a transport per thread past a thousand or two can take
this two-core machine down), and that row says so. The tables go at the end of the recorded
runs of ``bench/RESULTS.md`` (before the part ``bench/run.py`` rewrites), unless ``--no-write``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import re
import resource
import selectors
import shlex
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from typing import IO, Any, Dict, List, Optional, Sequence, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "RESULTS.md")
MARKER = "<!-- Everything below is rewritten by bench/run.py on each run. -->"
WIRES = {"sse": "SSE", "ws": "WebSocket"}
CLIENTS = ["ours-plain", "ours-manager", "ours-threads", "httpx-sse", "websockets"]
CLIENT_WIRES = {
    "ours-plain": ("sse", "ws"),
    "ours-threads": ("sse", "ws"),
    "ours-manager": ("sse", "ws"),
    "httpx-sse": ("sse",),
    "websockets": ("ws",),
}
PACKAGES = ["aikit-transports", "requests", "websocket-client", "httpx", "httpx-sse", "websockets"]

#: (label, key, limit) of the issue's targets, checked for our rows
TARGETS: List[Tuple[str, str, float]] = [
    ("library threads <= 16", "threads", 16),
    ("<= 20 KB RSS per idle stream", "kb_per_stream", 20),
    ("< 2 % CPU idle", "idle_cpu_pct", 2),
    ("connected in < 10 s", "connect_s", 10),
    ("p99 < 50 ms", "p99_ms", 50),
    ("<= 0.05 CPU-s per 1,000 events", "cpu_s_per_1k", 0.05),
]


class RunFailed(Exception):
    """A process misbehaved (no answer in time, bad output, early exit)."""


def read_json_line(proc: subprocess.Popen[str], timeout: float, who: str) -> Dict[str, Any]:
    """The next JSON line of ``proc``'s standard output, within ``timeout`` seconds."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            raise RunFailed(f"{who}: no answer within {timeout:.0f} s")
    line = proc.stdout.readline()
    if not line:
        raise RunFailed(f"{who}: exited (status {proc.wait()})")
    result: Dict[str, Any] = json.loads(line)
    return result


def stop(proc: Optional[subprocess.Popen[str]], timeout: float) -> Optional[int]:
    """Wait for ``proc`` to exit, killing it after ``timeout``; its exit status."""
    if proc is None:
        return None
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return -9


def run_one(
    client: str, wire: str, n: int, args: argparse.Namespace, log_dir: str
) -> Dict[str, Any]:
    """One server process and one client process; the client's measurements."""
    tag = f"{client}-{wire}-{n}"
    with contextlib.ExitStack() as files:
        server_log = files.enter_context(open(os.path.join(log_dir, f"{tag}.server.log"), "w"))
        client_log = files.enter_context(open(os.path.join(log_dir, f"{tag}.client.log"), "w"))
        row = _run_processes(client, wire, n, args, server_log, client_log)
    row["log_lines"] = log_summary(os.path.join(log_dir, f"{tag}.client.log"))
    return row


def _run_processes(
    client: str,
    wire: str,
    n: int,
    args: argparse.Namespace,
    server_log: IO[str],
    client_log: IO[str],
) -> Dict[str, Any]:
    server: Optional[subprocess.Popen[str]] = None
    proc: Optional[subprocess.Popen[str]] = None
    row: Dict[str, Any] = {"client": client, "wire": wire, "n": n}
    try:
        server = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "scale_server.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=server_log,
            text=True,
        )
        ports = read_json_line(server, 15, "server")
        if wire == "sse":
            url = f"http://127.0.0.1:{ports['sse_port']}/sse"
        else:
            url = f"ws://127.0.0.1:{ports['ws_port']}/ws"
        env = dict(os.environ)
        if client == "ours-threads":  # the same transports, each on a reader thread of its own
            env["AIKIT_TRANSPORTS_IO"] = "threads"
        cmd = [
            sys.executable,
            os.path.join(HERE, "scale_clients.py"),
            "ours-plain" if client == "ours-threads" else client,
            "--wire",
            wire,
            "--url",
            url,
            "--n",
            str(n),
            "--idle",
            f"{args.idle:g}",
            "--heartbeat",
            f"{args.heartbeat:g}",
            "--grace",
            f"{args.grace:g}",
            "--open-concurrency",
            str(args.open_concurrency),
            "--max-threads",
            str(args.max_threads),
        ]
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=client_log,
            text=True,
            env=env,
        )
        assert proc.stdin is not None and server.stdin is not None
        ready = read_json_line(proc, args.connect_budget + args.idle + 30, client)
        row.update(ready)
        if ready["phase"] != "ready":
            row["failed"] = ready.get("error", "failed")
            stop(proc, 120)
            return row
        server.stdin.write("count\n")
        server.stdin.flush()
        row["server_streams"] = read_json_line(server, 30, "server")[wire]
        server.stdin.write(f"load {args.rate:g} {args.load:g}\n")
        server.stdin.flush()
        answer = read_json_line(server, args.load + 60, "server")
        row["server"] = answer
        proc.stdin.write(json.dumps(answer) + "\n")
        proc.stdin.flush()
        done = read_json_line(proc, args.grace + 180, client)
        row.update(done)
        status = stop(proc, 60)
        if status:
            row["failed"] = f"client exit status {status}"
    except (RunFailed, ValueError, OSError) as exc:
        row["failed"] = str(exc)
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        if server is not None:
            if server.stdin is not None:
                with contextlib.suppress(OSError):
                    server.stdin.close()
            if stop(server, 20) not in (0, None):
                row.setdefault("notes", []).append("server killed after 20 s")
    return row


def log_summary(path: str) -> Dict[str, Any]:
    """How many lines the client wrote to stderr (phase markers aside), how many of them while
    closing, and the first distinct ones (without the time at the start)."""
    count = closing = 0
    in_close = False
    first: List[str] = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for raw in f:
            line = raw.rstrip()
            if line.startswith("=="):
                in_close = line.endswith(": closing")
                continue
            if not line:
                continue
            count += 1
            closing += in_close
            text = re.sub(r"^\d+ ms ", "", line)
            if len(first) < 3 and text not in first:
                first.append(text)
    return {"count": count, "closing": closing, "first": first}


# -- the report -------------------------------------------------------------------------------


def fmt(value: Any, spec: str) -> str:
    return "" if value is None else format(value, spec)


def wire_table(rows: List[Dict[str, Any]], wire: str) -> str:
    lines = [
        f"#### {WIRES[wire]}",
        "",
        "| client | N | connect s | threads | KB/stream idle | CPU % idle | delivered/sent "
        "| p50 ms | p99 ms | CPU-s/1k events | cs/event | stalled |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|",
    ]
    for row in rows:
        if row["wire"] != wire:
            continue
        name = row["client"] + (f" (run {row['run']})" if row.get("runs", 1) > 1 else "")
        shown = f"**{name}**" if row["client"].startswith("ours-") else name
        if "failed" in row and "delivered" not in row:
            lines.append(
                f"| {shown} | {row['n']:,} | {fmt(row.get('connect_s'), '.1f')} | "
                f"{fmt(row.get('threads'), 'd')} | | | failed: {row['failed']} | | | | | — |"
            )
            continue
        stalled = "**yes**" if row["stalled"] else "no"
        lines.append(
            f"| {shown} | {row['n']:,} | {row['connect_s']:.1f} | {row['threads']} | "
            f"{row['kb_per_stream']:.1f} | {row['idle_cpu_pct']:.3f} | "
            f"{row['unique']:,}/{row['sent']:,} | {fmt(row['p50_ms'], '.2f')} | "
            f"{fmt(row['p99_ms'], '.2f')} | {row['cpu_s_per_1k']:.3f} | "
            f"{row['cs_per_event']:.2f} | {stalled} |"
        )
    return "\n".join(lines)


def notes(rows: List[Dict[str, Any]]) -> List[str]:
    """What else each run saw: errors, reconnects, stall reasons, closing, the server's pace."""
    out = []
    for row in rows:
        bits = []
        if row.get("failed") and "delivered" in row:
            bits.append(f"failed: {row['failed']}")
        if row.get("stall_reasons"):
            bits.append("stalled: " + "; ".join(row["stall_reasons"]))
        if row.get("duplicates"):
            bits.append(f"{row['duplicates']} duplicates")
        if row.get("errors") or row.get("errors_idle"):
            first = "; ".join(row.get("first_errors") or [])
            bits.append(f"{row.get('errors', row.get('errors_idle'))} error events ({first})")
        if row.get("reconnects"):
            bits.append(f"{row['reconnects']} reconnects")
        if row.get("first_failure"):
            bits.append(f"first failure: {row['first_failure']}")
        logs = row.get("log_lines", {})
        if logs.get("count"):
            bits.append(
                f"{logs['count']} stderr lines ({logs['closing']} while closing), e.g. "
                f"`{logs['first'][0][:160]}`"
            )
        if "server_streams" in row and row["server_streams"] != row["n"]:
            bits.append(f"server saw {row['server_streams']} streams")
        server = row.get("server")
        if server and server.get("behind_max_ms", 0) > 50:
            bits.append(f"server pacing up to {server['behind_max_ms']:.0f} ms late")
        if "close_s" in row:
            lib = row.get("library_threads_after_close", 0)
            bits.append(
                f"closed in {row['close_s']:.1f} s, threads after {row['threads_after_close']}"
                + (f" ({lib} of the library)" if lib else "")
            )
        if "max_ms" in row and row.get("p99_ms") is not None:
            bits.append(f"max lag {row['max_ms']:.0f} ms")
        if server:
            bits.append(f"server {server['cpu_s']:.1f} CPU-s for the load")
        if not bits:
            continue
        name = f"{row['client']} {WIRES[row['wire']]} N={row['n']:,}"
        if row.get("runs", 1) > 1:
            name += f" run {row['run']}"
        out.append(f"- {name}: " + ", ".join(bits) + ".")
    return out


def targets_table(rows: List[Dict[str, Any]]) -> str:
    """The issue's targets, for our rows (library threads: ours only)."""
    lines = [
        "| client | wire | N | " + " | ".join(t[0] for t in TARGETS) + " | every event, no stall |",
        "|---|---|---:|" + ":---:|" * (len(TARGETS) + 1),
    ]
    for row in rows:
        if not row["client"].startswith("ours-"):
            continue
        cells = []
        if "delivered" not in row:  # failed before the load: nothing to judge
            lines.append(
                f"| {row['client']} | {WIRES[row['wire']]} | {row['n']:,} | "
                + " | ".join(["—"] * len(TARGETS))
                + " | **no** |"
            )
            continue
        for _label, key, limit in TARGETS:
            value = row.get("library_threads") if key == "threads" else row.get(key)
            if value is None:
                cells.append("—")
            elif key == "threads":
                cells.append(f"{value} {'yes' if value <= limit else '**no**'}")
            else:
                met = (
                    value < limit
                    if key in ("idle_cpu_pct", "connect_s", "p99_ms")
                    else (value <= limit)
                )
                shown = f"{value:,.0f}" if value >= 100 else f"{value:.3g}"
                cells.append(f"{shown} {'yes' if met else '**no**'}")
        ok = "delivered" in row and not row.get("stalled") and not row.get("failed")
        cells.append("yes" if ok else "**no**")
        lines.append(
            f"| {row['client']} | {WIRES[row['wire']]} | {row['n']:,} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines)


def environment(load: float) -> str:
    versions = []
    for name in PACKAGES:
        try:
            versions.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{name} (missing)")
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return (
        f"{now}; {os.cpu_count()} CPUs ({platform.machine()}, {platform.system()}), "
        f"Python {platform.python_version()} ({platform.python_implementation()}); "
        f"load average at the start {load:.2f}; open files limit {soft} soft / {hard} hard "
        f"(both processes raise the soft one to the hard one).\n\n"
        "Versions: " + ", ".join(versions) + "."
    )


def write_results(text: str) -> None:
    """Insert ``text`` before the part of RESULTS.md that bench/run.py rewrites."""
    body = ""
    if os.path.exists(RESULTS):
        with open(RESULTS, encoding="utf-8") as f:
            body = f.read()
    if not body:
        body = "# Benchmark results\n\n"
    block = text.rstrip() + "\n\n"
    if MARKER in body:
        head, tail = body.split(MARKER, 1)
        body = head.rstrip() + "\n\n" + block + MARKER + tail
    else:
        body = body.rstrip() + "\n\n" + block
    with open(RESULTS, "w", encoding="utf-8") as f:
        f.write(body)


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="N=200, idle 3 s, load 3 s at 2,000 events/s"
    )
    parser.add_argument("--n", help="comma-separated stream counts (default 1000,5000,10000)")
    parser.add_argument("--clients", help=f"comma-separated (default all): {', '.join(CLIENTS)}")
    parser.add_argument("--wires", default="sse,ws", help="comma-separated: sse, ws")
    parser.add_argument("--idle", type=float, help="idle seconds after connecting (default 30)")
    parser.add_argument("--load", type=float, help="seconds of load (default 10)")
    parser.add_argument("--rate", type=float, help="events/s in total (default 10,000)")
    parser.add_argument(
        "--heartbeat", type=float, default=30.0, help="heartbeat seconds, 0 for none (default 30)"
    )
    parser.add_argument(
        "--grace", type=float, default=10.0, help="seconds after the load for the last events"
    )
    parser.add_argument("--runs", type=int, default=1, help="runs of each row, one after another")
    parser.add_argument("--open-concurrency", type=int, default=64, help="opens at a time")
    parser.add_argument(
        "--max-threads",
        type=int,
        default=1500,
        help="ours stop opening past this many threads in the process (default 1500)",
    )
    parser.add_argument(
        "--connect-budget", type=float, help="seconds allowed to open N streams (default 60 + N/50)"
    )
    parser.add_argument("--no-write", action="store_true", help="do not update bench/RESULTS.md")
    parser.add_argument("--title", default="Scale run", help="heading of the recorded run")
    parser.add_argument("--log-dir", help="keep the processes' stderr here (default: a temp dir)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every result")
    args = parser.parse_args(argv)

    q = args.quick
    ns = [int(x) for x in (args.n or ("200" if q else "1000,5000,10000")).split(",") if x]
    args.idle = args.idle if args.idle is not None else (3.0 if q else 30.0)
    args.load = args.load if args.load is not None else (3.0 if q else 10.0)
    args.rate = args.rate if args.rate is not None else (2000.0 if q else 10000.0)
    clients = args.clients.split(",") if args.clients else list(CLIENTS)
    for c in clients:
        if c not in CLIENTS:
            parser.error(f"unknown client {c!r}; one of {', '.join(CLIENTS)}")
    wires = [w for w in args.wires.split(",") if w]
    for w in wires:
        if w not in WIRES:
            parser.error(f"unknown wire {w!r}; one of {', '.join(WIRES)}")

    load_avg = os.getloadavg()[0]
    env = environment(load_avg)
    started = time.monotonic()
    log_dir = args.log_dir or tempfile.mkdtemp(prefix="aikit-scale-")
    os.makedirs(log_dir, exist_ok=True)
    rows: List[Dict[str, Any]] = []
    budget = args.connect_budget
    for wire in wires:
        for n in ns:
            args.connect_budget = budget if budget is not None else 60 + n / 50
            for client in clients:
                if wire not in CLIENT_WIRES[client]:
                    continue
                for run in range(1, args.runs + 1):
                    print(
                        f"  {WIRES[wire]} N={n} {client}"
                        + (f" run {run}/{args.runs}" if args.runs > 1 else ""),
                        file=sys.stderr,
                        flush=True,
                    )
                    row = run_one(client, wire, n, args, log_dir)
                    row["run"], row["runs"] = run, args.runs
                    if args.verbose:
                        print(f"    {json.dumps(row)}", file=sys.stderr, flush=True)
                    rows.append(row)

    command = shlex.join(["bench/scale.py", *(argv if argv is not None else sys.argv[1:])])
    with open(os.path.join(log_dir, "rows.json"), "w", encoding="utf-8") as f:
        json.dump(rows, f, indent=1)
    sections = [
        f"## {args.title}",
        "",
        env,
        "",
        f"One client process holding N streams against an asyncio server process; idle "
        f"{args.idle:g} s (heartbeats every {args.heartbeat:g} s), then {args.rate:,.0f} events/s "
        f"spread over all streams for {args.load:g} s. Threads: the whole client process; "
        "CPU % of one core; latency from the server's write to the consumer.",
        "",
    ]
    for wire in wires:
        sections += [wire_table(rows, wire), ""]
    if any(row["client"].startswith("ours-") for row in rows):
        sections += ["#### Targets of issue 18 (ours)", "", targets_table(rows), ""]
    sections += ["#### Notes", "", *notes(rows), ""]
    sections.append(
        f"Whole run: {time.monotonic() - started:.0f} s (`{command}`); processes' stderr in "
        f"`{log_dir}` (every measurement: `rows.json`)."
    )
    text = "\n".join(sections)
    print(text)
    if not args.no_write:
        write_results(text)


if __name__ == "__main__":
    main()
