"""``python -m aikit_transports.testing [--host H] [--port N] [--ws-port N]``: the test servers,
in the foreground.

SSE, NDJSON and long-poll are served by :class:`StreamServer` on ``--port`` (8765), WebSocket by
:class:`WebSocketServer` on ``--ws-port`` (the next port, 8766) when ``websockets`` (the
``testing`` extra) is installed. It prints the URLs to try, and stops on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import threading
from typing import TYPE_CHECKING, Iterator, List, Optional

from .exchange import RecordedRequest, RouteHandler, StreamWriter
from .server import StreamServer

if TYPE_CHECKING:
    from .ws import WebSocketServer

logger = logging.getLogger("aikit_transports.testing")

_EXAMPLES = (
    "/sse?count=100&delay=0.1",
    "/sse?count=50&drop_every=10&end=sentinel",
    "/ndjson?count=20&malformed_every=5",
    "/poll?count=30&per_poll=5",
    "/sse-fast?count=100000&size=64",
)

#: WebSocket endpoints to try (the full list: :mod:`aikit_transports.testing.ws`).
_WS_EXAMPLES = (
    ("/echo", "sends every message back"),
    ("/stream?count=20&interval=0.5", "a feed of JSON messages, then a normal close"),
    ("/stream?count=50&drop_every=10", "drops the connection every 10 messages"),
    ("/drop?after=3", "3 messages, then the connection drops"),
)

_NO_WEBSOCKETS = (
    "no WebSocket endpoints: they need the `websockets` package "
    "(pip install 'aikit-transports[testing]')"
)


@contextlib.contextmanager
def _websocket_server(host: str, port: int) -> Iterator[Optional[WebSocketServer]]:
    """The WebSocket server on ``port`` while the block runs (``None`` without ``websockets``)."""
    try:
        from .ws import WebSocketServer
    except ImportError:
        yield None
        return
    with WebSocketServer(host=host, port=port) as server:
        yield server


def main(argv: Optional[List[str]] = None) -> int:
    """Serve until Ctrl-C (or SIGTERM); returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m aikit_transports.testing",
        description="Run the aikit-transports test servers: scripted SSE, NDJSON and long-poll "
        "streams over HTTP, and WebSocket endpoints (echo, a scripted feed, drops).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="HTTP port (default 8765, 0 = any)")
    parser.add_argument(
        "--ws-port",
        type=int,
        default=None,
        help="WebSocket port (default: the HTTP port + 1, so 8766; any free one with --port 0)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    ws_port = args.ws_port if args.ws_port is not None else (args.port + 1 if args.port else 0)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(message)s"
    )
    if not args.verbose:  # `websockets` logs each start and stop at INFO
        logging.getLogger("aikit_transports.testing.ws").setLevel(logging.WARNING)
    websocket_side = _websocket_server(args.host, ws_port)
    with StreamServer(args.host, args.port) as server, websocket_side as websocket:
        logger.info("aikit-transports test server at %s (Ctrl-C stops it)", server.base_url)
        for example in _EXAMPLES:
            logger.info("  try %s", server.url(example))
        if websocket is None:
            logger.info(_NO_WEBSOCKETS)
            hint = _NO_WEBSOCKETS
        else:
            logger.info("WebSocket endpoints at %s", websocket.url(""))
            urls = [websocket.url(path) for path, _ in _WS_EXAMPLES]
            width = max(map(len, urls))
            for url, (_, what) in zip(urls, _WS_EXAMPLES):
                logger.info("  try %-*s  %s", width, url, what)
            hint = f"WebSocket endpoints are on another port: {websocket.url()}, /stream, /drop"
        server.route("/ws", _hint(hint))
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
        try:
            while not stop.wait(1.0):  # a timed wait stays interruptible by Ctrl-C everywhere
                pass
        except KeyboardInterrupt:
            pass
        logger.info("stopping")
    return 0


def _hint(text: str) -> RouteHandler:
    """A route that answers 404 with ``text`` (``/ws`` on the HTTP port: where WebSocket is)."""

    def route(request: RecordedRequest, writer: StreamWriter) -> None:
        writer.send_text(404, text + "\n")

    return route


if __name__ == "__main__":
    raise SystemExit(main())
