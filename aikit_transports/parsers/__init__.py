"""Sans-I/O parsers: bytes in, events out, with no sockets and no threads.

The transports feed them what they read; they can be used alone just as well.
"""

from __future__ import annotations

from .ndjson import NDJSONParser
from .sse import SSEParser

__all__ = ["SSEParser", "NDJSONParser"]
