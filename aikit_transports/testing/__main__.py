"""``python -m aikit_transports.testing [--host H] [--port N]``: the test server, foreground."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from typing import List, Optional

from .server import StreamServer

logger = logging.getLogger("aikit_transports.testing")

_EXAMPLES = (
    "/sse?count=100&delay=0.1",
    "/sse?count=50&drop_every=10&end=sentinel",
    "/ndjson?count=20&malformed_every=5",
    "/poll?count=30&per_poll=5",
    "/sse-fast?count=100000&size=64",
)


def main(argv: Optional[List[str]] = None) -> int:
    """Serve until Ctrl-C (or SIGTERM); returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m aikit_transports.testing",
        description="Run the aikit-transports test server (scripted SSE / NDJSON streams).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port (default 8765, 0 = any)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(message)s"
    )
    with StreamServer(args.host, args.port) as server:
        logger.info("aikit-transports test server at %s (Ctrl-C stops it)", server.base_url)
        for example in _EXAMPLES:
            logger.info("  try %s", server.url(example))
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
        try:
            while not stop.wait(1.0):  # a timed wait stays interruptible by Ctrl-C everywhere
                pass
        except KeyboardInterrupt:
            pass
        logger.info("stopping")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
