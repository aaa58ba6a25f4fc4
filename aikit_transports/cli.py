"""The ``aikit-transports`` command: ``listen`` to a stream, or run the offline ``demo``.

Events go to stdout, one per line; reconnects and errors go to stderr as one line each (never a
traceback: ``--debug`` turns on the library's wire-level log instead). Exit status: 0 the stream
finished (or ``--count`` was reached), 1 an error, 2 a usage error, 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import signal
import sys
import threading
import traceback
from collections.abc import Sequence
from typing import Any, Callable, Optional, TextIO

from . import __version__
from .config import ReconnectPolicy
from .errors import TransportError
from .events import Event, TransportType
from .logs import server_text
from .redact import describe_exception
from .transports import BaseTransport, resolve_transport, wire_for_scheme

__all__ = ["main", "format_event", "EXIT_OK", "EXIT_ERROR", "EXIT_USAGE", "EXIT_INTERRUPTED"]

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

_PROG = "aikit-transports"
#: A line on stderr holds at most this many characters, control characters escaped: an error
#: message may quote what a server sent.
_LINE_CHARS = 1000

_LISTEN_EXAMPLES = """\
examples:
  # Server-Sent Events (the default for http:// and https:// URLs)
  aikit-transports listen https://api.example.com/v1/stream -H "Authorization: Bearer $TOKEN"
  aikit-transports listen https://api.example.com/v1/chat -X POST -d '{"prompt": "Hi"}' --json

  # WebSocket (the default for ws:// and wss:// URLs)
  aikit-transports listen wss://api.example.com/ws --json --count 10

  # NDJSON over HTTP: one JSON value per line
  aikit-transports listen https://api.example.com/feed.ndjson --type http-stream

  # whichever connects first: WebSocket, then SSE, then NDJSON
  aikit-transports listen https://api.example.com/live --type auto

  # resume after an event id; give up when nothing comes for 30 s
  aikit-transports listen https://api.example.com/v1/stream --last-event-id 42 --timeout 30

exit status: 0 the stream finished (or --count was reached), 1 error, 2 usage error,
130 interrupted (Ctrl-C)
"""

_MAIN_EXAMPLES = """\
examples:
  aikit-transports listen https://api.example.com/v1/stream --json
  aikit-transports listen wss://api.example.com/ws --count 10
  aikit-transports demo                  # a local server that drops and resumes; no network

'aikit-transports listen --help' lists every option; 'python -m aikit_transports' is the same
program.
"""


def _whole_number(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number of at least ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a number >= {minimum}, not {value}")
        return value

    return parse


_positive_int = _whole_number(1)
_count_or_zero = _whole_number(0)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, not {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, not {text}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=_PROG,
        description="Listen to Server-Sent Events, WebSocket and NDJSON streams, with\n"
        "reconnection and resumption.",
        epilog=_MAIN_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-V", "--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    listen = sub.add_parser(
        "listen",
        help="print the events of a stream as they arrive",
        description="Print the events of a stream as they arrive: one line per event on\n"
        "stdout; reconnects and errors on stderr, one line each.",
        epilog=_LISTEN_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    listen.add_argument("url", help="stream URL (http, https, ws, wss)")
    listen.add_argument(
        "--type",
        dest="wire",
        choices=[*(t.value for t in TransportType), "auto"],
        metavar="WIRE",
        help="sse, websocket, http-stream, or auto (tries websocket, sse, then "
        "http-stream); default: by URL scheme (ws/wss: websocket, http/https: sse)",
    )
    listen.add_argument(
        "-H",
        "--header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="request header (repeatable)",
    )
    listen.add_argument(
        "-X", "--method", metavar="METHOD", help="HTTP method of the stream request (default GET)"
    )
    listen.add_argument(
        "-d",
        "--data",
        metavar="BODY",
        help="request body, sent as JSON when it parses as JSON (with -X POST for LLM APIs)",
    )
    out = listen.add_mutually_exclusive_group()
    out.add_argument(
        "--json",
        action="store_true",
        help='one JSON object per event: {"type": ..., "data": ..., "id": ...}; data that '
        "is a JSON object or array is embedded as JSON",
    )
    out.add_argument(
        "--raw",
        action="store_true",
        help="each event's data exactly as received (multi-line data stays multi-line, "
        "binary data is written as bytes); default: one line per event, line breaks as \\n",
    )
    listen.add_argument("--count", type=_positive_int, metavar="N", help="stop after N events")
    listen.add_argument(
        "--max-attempts",
        type=_count_or_zero,
        metavar="N",
        help="reconnection attempts before giving up (default 10, 0: never reconnect)",
    )
    listen.add_argument("--last-event-id", metavar="ID", help="resume after this event id")
    listen.add_argument(
        "--timeout",
        type=_seconds,
        metavar="S",
        help="fail when not connected, or when no event arrives, within S seconds",
    )
    listen.add_argument(
        "-q", "--quiet", action="store_true", help="no reconnect or warning lines on stderr"
    )
    listen.add_argument(
        "--debug",
        action="store_true",
        help="log the wire (requests, frames, state changes) to stderr, secrets redacted",
    )

    demo = sub.add_parser(
        "demo",
        help="stream from the built-in local server (no network)",
        description="Start the built-in local server, stream from it while it drops the "
        "connection every 12 events, and show the reconnect, the resume and a summary.",
    )
    demo.add_argument(
        "--type",
        dest="wire",
        choices=["sse", "http-stream", "websocket"],
        default="sse",
        help="wire to demonstrate (default sse)",
    )
    demo.add_argument("--forever", action="store_true", help="keep streaming until Ctrl-C")
    demo.add_argument(
        "--count", type=_positive_int, default=40, metavar="N", help="events to stream (default 40)"
    )
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the console script and of ``python -m aikit_transports``."""
    args = _parser().parse_args(argv)
    err = sys.stderr
    handler: Optional[logging.Handler] = None
    if getattr(args, "debug", False):
        handler = logging.StreamHandler(err)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        logging.getLogger("aikit_transports").addHandler(handler)
    try:
        if args.command == "demo":
            from .demo import run_demo

            return run_demo(args.wire, count=args.count, forever=args.forever)
        return _listen(args)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as exc:  # a bug: still one line, unless --debug asks for the traceback
        if handler is not None:
            traceback.print_exc(file=err)
        err.write(f"{_PROG}: internal error: {describe_exception(exc)}\n")
        return EXIT_ERROR
    finally:
        if handler is not None:
            logging.getLogger("aikit_transports").removeHandler(handler)


class _Usage(Exception):
    """A bad option value, reported as one line with exit status 2."""


def _headers(values: list[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for value in values:
        name, sep, rest = value.partition(":")
        if not sep or not name.strip():
            raise _Usage(f"bad header {value!r}: use 'Name: value'")
        headers[name.strip()] = rest.strip()
    return headers


def _options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {}
    headers = _headers(args.header)
    if headers:
        options["headers"] = headers
    if args.method is not None:
        options["method"] = args.method
    if args.data is not None:
        try:
            options["json"] = json.loads(args.data)
        except ValueError:
            options["data"] = args.data.encode("utf-8")
    if args.max_attempts is not None:
        options["reconnect"] = ReconnectPolicy(max_attempts=args.max_attempts)
    if args.last_event_id is not None:
        options["last_event_id"] = args.last_event_id
    if args.debug:
        options["debug"] = True
    return options


def _listen(args: argparse.Namespace) -> int:
    err = sys.stderr
    try:
        options = _options(args)
        transport = _open(args.url, args.wire, options)
    except (_Usage, ValueError) as exc:
        err.write(f"{_PROG}: {exc}\n")
        return EXIT_USAGE
    except TypeError as exc:  # an option this wire does not take (-X on a WebSocket)
        err.write(f"{_PROG}: {exc}\n")
        return EXIT_USAGE
    except TransportError as exc:  # --type auto: no wire connected
        err.write(f"error: {server_text(exc.message, _LINE_CHARS)}\n")
        return EXIT_ERROR
    reporter = _Reporter(transport, err, quiet=args.quiet)
    mode = "json" if args.json else "raw" if args.raw else "line"
    return stream_to(
        transport,
        sys.stdout,
        mode=mode,
        count=args.count,
        timeout=args.timeout,
        reporter=reporter,
    )


def _open(url: str, wire: Optional[str], options: dict[str, Any]) -> BaseTransport:
    """The transport for ``url``: created (not connected yet), or connected by ``auto``."""
    if wire == "auto":
        from .connect import connect

        transport: BaseTransport = connect(url, **options)
        return transport
    cls = resolve_transport(wire or wire_for_scheme(url))
    try:
        return cls(url, **options)
    except TypeError as exc:
        unknown = str(exc).rsplit(" ", 1)[-1].strip("'")
        raise TypeError(f"the {cls.type.value} wire does not take {unknown!r}") from None


class _Reporter:
    """The stderr side of ``listen``: a line per reconnect, per resume and per warning."""

    def __init__(self, transport: BaseTransport, err: TextIO, *, quiet: bool) -> None:
        self.err = err
        self.quiet = quiet
        self.printed: set[int] = set()  # ids of the errors already shown
        self._lock = threading.Lock()
        self._reconnecting = False
        self._transport = transport
        transport.on("reconnecting", self._on_reconnecting)
        transport.on("connected", self._on_connected)
        transport.on("error", self._on_error)

    def line(self, text: str, *, always: bool = False) -> None:
        if self.quiet and not always:
            return
        with self._lock:
            self.err.write(server_text(text, _LINE_CHARS) + "\n")
            self.err.flush()

    def _on_reconnecting(self, attempt: int, delay: float, error: TransportError) -> None:
        self._reconnecting = True
        self.line(f"reconnecting (attempt {attempt}) in {delay:.2f} s: {error.message}")

    def _on_connected(self) -> None:
        if not self._reconnecting:
            return
        self._reconnecting = False
        last = self._transport.last_event_id
        self.line("reconnected" + (f", resuming after event id {last}" if last else ""))

    def _on_error(self, error: TransportError) -> None:
        # Errors that lead to a reconnect are told by the "reconnecting" line that follows.
        if not error.retryable:
            self.printed.add(id(error))
            self.line(f"error: {error.message}", always=True)

    def failed(self, error: BaseException) -> None:
        """The error that ends the run (shown once, even with --quiet)."""
        if id(error) not in self.printed:
            message = error.message if isinstance(error, TransportError) else str(error)
            self.line(f"error: {message}", always=True)


def _json_data(data: Any) -> Any:
    """``data`` as a value of the ``--json`` object: text holding a JSON object or array is
    that object or array (not a string of JSON within JSON); bytes are ``{"base64": ...}``."""
    if isinstance(data, (bytes, bytearray)):
        return {"base64": base64.b64encode(bytes(data)).decode("ascii")}
    if isinstance(data, str) and data.lstrip()[:1] in ("{", "["):
        try:
            return json.loads(data)
        except ValueError:
            pass  # not JSON after all: kept as text
    return data


def format_event(event: Event, mode: str = "line") -> str:
    """The output for ``event``: ``"line"`` (its data on one line), ``"raw"`` (its data as
    received) or ``"json"`` (an object of type, data and id; data that is a JSON object or
    array is embedded as JSON, other text stays a string)."""
    data = event.data
    if mode == "json":
        return json.dumps(
            {"type": event.type, "data": _json_data(data), "id": event.id}, ensure_ascii=False
        )
    if isinstance(data, (bytes, bytearray)):
        return base64.b64encode(bytes(data)).decode("ascii")
    if not isinstance(data, str):
        return json.dumps(data, ensure_ascii=False)
    if mode == "raw":
        return data
    return data.replace("\\", "\\\\").replace("\r", "\\r").replace("\n", "\\n")


def _write(out: TextIO, event: Event, mode: str) -> None:
    data = event.data
    if mode == "raw" and isinstance(data, (bytes, bytearray)):
        buffer = getattr(out, "buffer", None)
        if buffer is not None:
            out.flush()
            buffer.write(bytes(data) + b"\n")
            buffer.flush()
            return
    out.write(format_event(event, mode) + "\n")
    out.flush()


def stream_to(
    transport: BaseTransport,
    out: TextIO,
    *,
    mode: str = "line",
    count: Optional[int] = None,
    timeout: Optional[float] = None,
    reporter: Optional[_Reporter] = None,
) -> int:
    """Write the events of ``transport`` to ``out`` until done, ``count``, an error or Ctrl-C;
    returns the exit status. The transport is closed on return."""
    reporter = reporter or _Reporter(transport, sys.stderr, quiet=True)
    interrupted = threading.Event()
    closers: list[threading.Thread] = []
    previous: Any = None
    if threading.current_thread() is threading.main_thread():

        def on_sigint(signum: int, frame: Any) -> None:
            if interrupted.is_set():
                raise KeyboardInterrupt  # a second Ctrl-C: stop waiting for the close
            interrupted.set()
            # Closed on another thread: the handler may run while this thread holds a lock
            # that close() needs.
            closer = threading.Thread(
                target=transport.close, kwargs={"timeout": 2.0}, name="aikit-cli-close"
            )
            closers.append(closer)
            closer.start()

        previous = signal.signal(signal.SIGINT, on_sigint)
    seen = 0
    try:
        transport.connect(timeout=timeout)
        for event in transport.iter_events(timeout=timeout):
            _write(out, event, mode)
            seen += 1
            if count is not None and seen >= count:
                break
        return EXIT_INTERRUPTED if interrupted.is_set() else EXIT_OK
    except TimeoutError:
        reporter.failed(TimeoutError(f"no event within {timeout:g} s (--timeout)"))
        return EXIT_ERROR
    except TransportError as exc:
        if interrupted.is_set():
            return EXIT_INTERRUPTED
        reporter.failed(exc)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        transport.close(timeout=2.0)
        for closer in closers:
            closer.join(5.0)
