"""``StreamServer``: a real threaded HTTP/1.1 server on 127.0.0.1 for tests, demos and benchmarks.

One thread accepts connections and one thread serves each connection (HTTP/1.1 keep-alive),
all named ``aikit-testing-...``. :meth:`StreamServer.close` stops promptly even while routes
stream or stall: it sets the event that pausing and holding routes wait on, shuts every client
connection down (which wakes any read, write or wait on it), joins every thread and closes every
socket.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler
from types import TracebackType
from typing import Any, Dict, List, Optional, Set, Tuple, Type, cast
from urllib.parse import parse_qsl, urlsplit

from requests.structures import CaseInsensitiveDict

from .endpoints import builtin_routes
from .exchange import HTTPError, RecordedRequest, RouteHandler, StreamWriter

__all__ = ["StreamServer"]

logger = logging.getLogger("aikit_transports.testing")

_THREAD_PREFIX = "aikit-testing"


class StreamServer:
    """A local HTTP/1.1 server that streams scripted SSE and NDJSON (see
    :mod:`aikit_transports.testing.endpoints` for the built-in endpoints).

    It binds and starts serving on construction; ``close()`` (or leaving the ``with`` block)
    stops it::

        with StreamServer() as srv:
            url = srv.url("/sse?count=100&drop_every=10")
            srv.route("/custom", handler)      # handler(request, writer)
            srv.wait_for_requests(3)
            srv.requests                       # every request received, in order

    :param host: the address to listen on.
    :param port: the port (``0``: a free one, then in ``port``).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._listener = socket.create_server((host, port))
        self._listener.setblocking(False)
        address = self._listener.getsockname()
        self.host: str = address[0]
        self.port: int = address[1]
        self._routes: Dict[str, RouteHandler] = builtin_routes()
        self._requests: List[RecordedRequest] = []
        self._requests_changed = threading.Condition()
        self._closing = threading.Event()  # set by close(): routes that pause or hold stop
        self._lock = threading.Lock()  # guards _connections, _threads, _served and _closed
        self._connections: Set[socket.socket] = set()
        # Every connection thread not known to have ended: one leaves ``_connections`` a little
        # before it ends, and close() must still wait for it.
        self._threads: List[threading.Thread] = []
        self._served = 0
        self._closed = False
        self._wake_reader, self._wake_writer = socket.socketpair()  # wakes the accept loop
        self._acceptor = threading.Thread(
            target=self._accept_loop, name=f"{_THREAD_PREFIX}-server-{self.port}", daemon=True
        )
        try:
            self._acceptor.start()
        except BaseException:
            self._close_sockets()
            raise

    # -- public API --------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``"""
        return f"http://{self.host}:{self.port}"

    def url(self, path: str = "/") -> str:
        """The absolute URL of ``path`` (which may carry a query string) on this server.

        :param path: the path, with a query string if any.
        """
        return self.base_url + (path if path.startswith("/") else "/" + path)

    @property
    def requests(self) -> List[RecordedRequest]:
        """A snapshot of every request received so far, in arrival order."""
        with self._requests_changed:
            return list(self._requests)

    def wait_for_requests(self, n: int, timeout: float = 5.0) -> List[RecordedRequest]:
        """Block until at least ``n`` requests were received; ``TimeoutError`` after ``timeout``.

        :param n: how many requests, counted from the server's start.
        :param timeout: the longest wait in seconds.
        """
        with self._requests_changed:
            if not self._requests_changed.wait_for(lambda: len(self._requests) >= n, timeout):
                raise TimeoutError(
                    f"{len(self._requests)} request(s) received within {timeout:g} s, "
                    f"expected at least {n}"
                )
            return list(self._requests)

    def route(self, path: str, handler: RouteHandler) -> None:
        """Serve ``path`` (exact match, any method, without the query) with ``handler(request,
        writer)``; replaces a built-in endpoint of the same path.

        :param path: the path, starting with ``/``.
        :param handler: ``handler(request, writer)``: a :class:`RecordedRequest` in, the response
            scripted on the :class:`StreamWriter`.
        """
        if not path.startswith("/"):
            raise ValueError(f"path must start with '/', not {path!r}")
        with self._lock:
            self._routes[path] = handler

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self, timeout: float = 5.0) -> None:
        """Stop serving: wake and cut every connection, join every thread, close every socket.

        Idempotent. A custom route that blocks without using the writer's ``sleep``/``hold``
        cannot be interrupted; it is left behind (logged) after ``timeout`` seconds.

        :param timeout: the longest wait for the connection threads to end, in seconds.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        deadline = time.monotonic() + timeout
        self._closing.set()
        with contextlib.suppress(OSError):
            self._wake_writer.send(b"x")
        self._acceptor.join(timeout)
        with self._lock:  # no connection is added once _closed is set and the acceptor is gone
            connections = list(self._connections)
            threads = list(self._threads)
        for conn in connections:
            with contextlib.suppress(OSError):  # unless it ended by itself meanwhile
                conn.shutdown(socket.SHUT_RDWR)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                logger.warning(
                    "test server thread %s did not stop within %gs", thread.name, timeout
                )
        self._close_sockets()

    def __enter__(self) -> StreamServer:
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<StreamServer {self.base_url} {'closed' if self._closed else 'open'}>"

    # -- connections -------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self._listener, selectors.EVENT_READ)
            selector.register(self._wake_reader, selectors.EVENT_READ)
            while True:
                for key, _ in selector.select():
                    if key.fileobj is self._wake_reader:
                        return
                    try:
                        conn, address = self._listener.accept()
                    except OSError:  # the client gave up before we accepted (or nothing left)
                        continue
                    self._start_connection(conn, address)

    def _start_connection(self, conn: socket.socket, address: Tuple[str, int]) -> None:
        with self._lock:
            if self._closed:
                conn.close()
                return
            self._served += 1
            thread = threading.Thread(
                target=self._serve_connection,
                args=(conn, address),
                name=f"{_THREAD_PREFIX}-conn-{self.port}-{self._served}",
                daemon=True,
            )
            self._connections.add(conn)
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
            thread.start()

    def _serve_connection(self, conn: socket.socket, address: Tuple[str, int]) -> None:
        try:
            _RequestHandler(conn, address, self)  # serves requests until the connection ends
        except OSError:
            pass  # the client went away, or close() cut the connection
        except Exception:
            logger.exception("test server connection from %s failed", address)
        finally:
            with self._lock:
                self._connections.discard(conn)
            conn.close()

    def _close_sockets(self) -> None:
        for sock in (self._listener, self._wake_reader, self._wake_writer):
            sock.close()

    # -- used by the request handler ------------------------------------------------------------

    def _record(self, request: RecordedRequest) -> None:
        with self._requests_changed:
            self._requests.append(request)
            self._requests_changed.notify_all()

    def _route_for(self, path: str) -> Optional[RouteHandler]:
        with self._lock:
            return self._routes.get(path)


class _RequestHandler(BaseHTTPRequestHandler):
    """Parses each request of one connection, records it and runs its route."""

    protocol_version = "HTTP/1.1"  # keep-alive, chunked responses
    server_version = "aikit-testing"
    disable_nagle_algorithm = True  # small event writes leave at once

    def __init__(self, conn: socket.socket, address: Tuple[str, int], owner: StreamServer) -> None:
        self.owner = owner
        # BaseRequestHandler serves the connection inside __init__.
        super().__init__(conn, address, cast(Any, owner))

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.address_string(), format % args)

    def _dispatch(self) -> None:
        writer = StreamWriter(self, self.owner._closing)
        try:
            request = self._read_request()
            self.owner._record(request)
            route = self.owner._route_for(request.path)
            if route is None:
                raise HTTPError(404, f"no route for {request.path}")
            route(request, writer)
            if not writer.started:
                raise HTTPError(500, f"the route for {request.path} sent no response")
            writer.end()
        except HTTPError as exc:
            self._fail(writer, exc.status, exc.message)
        except OSError:
            self.close_connection = True  # the client went away, or the server is closing
        except Exception:
            logger.exception("test server route for %s failed", self.path)
            self._fail(writer, 500, "the route raised an exception (see the log)")

    def _fail(self, writer: StreamWriter, status: int, message: str) -> None:
        """Answer an error if the status was not sent yet; otherwise cut the response."""
        self.close_connection = True
        if writer.started or writer.aborted:
            writer.close_abruptly()
            return
        with contextlib.suppress(OSError):
            writer.send_text(status, message + "\n", {"Connection": "close"})

    def _read_request(self) -> RecordedRequest:
        split = urlsplit(self.path)
        return RecordedRequest(
            method=self.command,
            path=split.path,
            query=dict(parse_qsl(split.query, keep_blank_values=True)),
            headers=CaseInsensitiveDict(self.headers.items()),
            body=self._read_body(),
        )

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked_body()
        length = self.headers.get("Content-Length")
        if not length:
            return b""
        try:
            size = int(length)
        except ValueError:
            raise HTTPError(400, f"bad Content-Length: {length!r}") from None
        return self.rfile.read(size)

    def _read_chunked_body(self) -> bytes:
        pieces: List[bytes] = []
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise HTTPError(400, f"bad chunk size line: {line!r}") from None
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(pieces)
            pieces.append(self.rfile.read(size))
            self.rfile.readline(1024)  # the CRLF after the chunk
