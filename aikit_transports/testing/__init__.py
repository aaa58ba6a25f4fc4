"""A local server that streams scripted SSE and NDJSON, for tests, demos and benchmarks.

::

    from aikit_transports.testing import StreamServer

    with StreamServer() as srv:                       # 127.0.0.1, a free port, background threads
        url = srv.url("/sse?count=100&drop_every=10")  # drops the connection every 10 events
        ...                                           # stream from it with any client
        srv.requests                                  # what the server received

Built-in endpoints (``/sse``, ``/ndjson``, ``/poll``, ``/send``, ``/sse-fast``) are scripted by
query parameters, see :mod:`aikit_transports.testing.endpoints`; :meth:`StreamServer.route` adds
your own ``handler(request, writer)``. It uses only the standard library (and ``requests``'
case-insensitive dict). ``python -m aikit_transports.testing`` runs it in the foreground, with
:class:`WebSocketServer` (the ``testing`` extra) on the next port. :class:`RawServer` hands
each connection's bare socket to a script of yours, for exact bytes on the wire.
"""

from __future__ import annotations

from .exchange import HTTPError, RecordedRequest, RouteHandler, StreamWriter
from .server import StreamServer

__all__ = ["StreamServer", "RecordedRequest", "StreamWriter", "RouteHandler", "HTTPError"]

from .proxy import FaultProxy
from .raw import RawPeer, RawServer

__all__ += ["FaultProxy", "RawServer", "RawPeer"]

try:  # WebSocketServer needs `websockets` (the optional `testing` extra)
    from .ws import WebSocketServer

    __all__ += ["WebSocketServer"]
except ImportError:  # pragma: no cover
    pass
