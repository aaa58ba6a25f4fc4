"""The ``aikit-transports`` command: ``listen`` to a stream, or run the offline ``demo``."""

from __future__ import annotations

import argparse
import base64
import json
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any, Optional, TextIO

from .config import ReconnectPolicy
from .errors import TransportError
from .events import Event, TransportType
from .transports import BaseTransport, resolve_transport, wire_for_scheme

__all__ = ["main"]

log = logging.getLogger("aikit_transports.cli")

EXIT_OK, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 130

_EPILOG = """\
examples:
  aikit-transports listen https://api.example.com/stream -H "Authorization: Bearer $TOKEN"
  aikit-transports listen wss://api.example.com/ws --json --count 10
  aikit-transports listen https://api.example.com/feed.ndjson --type http-stream
  aikit-transports listen https://api.example.com/live --type auto  # WebSocket, SSE, then NDJSON
  aikit-transports listen redis://localhost:6379/0?stream=feed --last-event-id 0
  aikit-transports demo                    # a local server that drops and resumes; no network

exit codes: 0 the stream finished (or --count reached), 1 error, 130 interrupted (Ctrl-C)
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aikit-transports",
        description="Listen to Server-Sent Events, WebSocket and NDJSON streams.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)

    listen = sub.add_parser(
        "listen",
        help="print the events of a stream",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    listen.add_argument("url", help="stream URL (http, https, ws, wss, redis)")
    listen.add_argument(
        "--type",
        dest="wire",
        choices=[*(t.value for t in TransportType), "auto"],
        help="wire to use (default: by URL scheme: ws/wss → websocket, http/https → sse)",
    )
    listen.add_argument(
        "-H",
        "--header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="request header (repeatable)",
    )
    out = listen.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="one JSON object per event")
    out.add_argument("--raw", action="store_true", help="event data only, as received (default)")
    listen.add_argument("--count", type=int, metavar="N", help="stop after N events")
    listen.add_argument(
        "--max-attempts", type=int, metavar="N", help="reconnection attempts (default 10)"
    )
    listen.add_argument("--last-event-id", metavar="ID", help="resume after this event id")
    listen.add_argument(
        "--timeout", type=float, metavar="S", help="give up when no event comes for S seconds"
    )
    listen.add_argument(
        "-q", "--quiet", action="store_true", help="no reconnect/error lines on stderr"
    )

    demo = sub.add_parser("demo", help="stream from the built-in local server (no network)")
    demo.add_argument(
        "--type",
        dest="wire",
        choices=["sse", "http-stream", "websocket"],
        default="sse",
        help="wire to demonstrate (default sse)",
    )
    demo.add_argument("--forever", action="store_true", help="keep streaming until Ctrl-C")
    demo.add_argument(
        "--count", type=int, default=40, metavar="N", help="events to stream (default 40)"
    )
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the console script and of ``python -m aikit_transports``."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    logging.getLogger("aikit_transports").setLevel(logging.CRITICAL)  # we print our own lines
    try:
        if args.command == "demo":
            from .demo import run_demo

            return run_demo(args.wire, count=args.count, forever=args.forever)
        return _listen(args)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def _headers(values: list[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for value in values:
        name, sep, rest = value.partition(":")
        if not sep or not name.strip():
            raise SystemExit(
                f"aikit-transports: bad header {name.strip() or value!r}: use 'Name: value'"
            )
        headers[name.strip()] = rest.strip()
    return headers


def _listen(args: argparse.Namespace) -> int:
    options: dict[str, Any] = {}
    headers = _headers(args.header)
    if headers:
        options["headers"] = headers
    if args.max_attempts is not None:
        options["reconnect"] = ReconnectPolicy(max_attempts=args.max_attempts)
    if args.last_event_id is not None:
        options["last_event_id"] = args.last_event_id
    err = sys.stderr
    try:
        transport = _open(args.url, args.wire, options)
    except ValueError as exc:
        err.write(f"aikit-transports: {exc}\n")
        return EXIT_ERROR
    except TransportError as exc:
        err.write(f"error: {exc}\n")
        return EXIT_ERROR
    if not args.quiet:
        _report_to(transport, err)
    return stream_to(
        transport, sys.stdout, as_json=args.json, count=args.count, timeout=args.timeout
    )


def _open(url: str, wire: Optional[str], options: dict[str, Any]) -> BaseTransport:
    if wire == "auto":
        from .connect import connect

        transport: BaseTransport = connect(url, **options)
        return transport
    cls = resolve_transport(wire or wire_for_scheme(url))
    return cls(url, **options)


def _report_to(transport: BaseTransport, err: TextIO) -> None:
    """One stderr line for each reconnect and each error (never a traceback)."""
    transport.on(
        "reconnecting",
        lambda attempt, delay, error: err.write(
            f"reconnecting (attempt {attempt}) in {delay:.2f} s: {error}\n"
        ),
    )
    transport.on("error", lambda error: err.write(f"error: {error}\n"))


def format_event(event: Event, as_json: bool) -> str:
    """One output line for ``event``: its data, or a JSON object of type, data and id."""
    data = event.data
    if as_json:
        if isinstance(data, bytes):
            data = {"base64": base64.b64encode(data).decode("ascii")}
        return json.dumps({"type": event.type, "data": data, "id": event.id}, ensure_ascii=False)
    if isinstance(data, bytes):
        return base64.b64encode(data).decode("ascii")
    if isinstance(data, str):
        return data.replace("\r", "\\r").replace("\n", "\\n")
    return json.dumps(data, ensure_ascii=False)


def stream_to(
    transport: BaseTransport,
    out: TextIO,
    *,
    as_json: bool = False,
    count: Optional[int] = None,
    timeout: Optional[float] = None,
) -> int:
    """Write the events of ``transport`` to ``out`` until done, ``count``, an error or Ctrl-C."""
    interrupted = threading.Event()
    previous = None
    if threading.current_thread() is threading.main_thread():

        def on_sigint(signum: int, frame: Any) -> None:
            interrupted.set()
            transport.close(timeout=2.0)

        previous = signal.signal(signal.SIGINT, on_sigint)
    seen = 0
    try:
        for event in transport.iter_events(timeout=timeout):
            out.write(format_event(event, as_json) + "\n")
            out.flush()
            seen += 1
            if count is not None and seen >= count:
                break
        return EXIT_INTERRUPTED if interrupted.is_set() else EXIT_OK
    except TimeoutError:
        sys.stderr.write(f"error: no event within {timeout} s\n")
        return EXIT_ERROR
    except TransportError as exc:
        if interrupted.is_set():
            return EXIT_INTERRUPTED
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_ERROR
    finally:
        transport.close(timeout=2.0)
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
