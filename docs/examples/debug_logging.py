"""debug=True: wire-level DEBUG lines for one transport, with credentials redacted."""

import logging
import sys

FORMAT = "%(name)s: %(message)s"
logging.basicConfig(level=logging.WARNING, stream=sys.stdout, format=FORMAT)

from aikit_transports import SSETransport  # noqa: E402

t = SSETransport(
    "http://127.0.0.1:8765/sse?count=2&end=sentinel&api_key=abc123",
    headers={"Authorization": "Bearer s3cr3t"},
    debug=True,  # this transport only; the others stay at WARNING
)
with t:
    for _ in t.iter_events(timeout=10):
        pass  # the debug lines show each event
