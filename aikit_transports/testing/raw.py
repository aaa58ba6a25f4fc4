"""A bare socket server on 127.0.0.1 for tests that need exact bytes on the wire.

::

    from aikit_transports.testing import RawPeer, RawServer

    def script(peer: RawPeer) -> None:                # runs once the request head is read
        peer.trickle(b"HTTP/1.1 200 OK\\r\\n", every=0.2)

    with RawServer(script) as srv:
        url = srv.url("/s")                           # stream from it with any client
        srv.wait_for_peers(1)[0].header("Accept")     # the raw bytes the client sent

Each connection gets a thread of its own: it reads the request head, then your script writes
whatever it likes (a trickle, a head that never ends, a cut mid-body, broken frames), for
behaviour no well-behaved server shows. Only the standard library is used.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import threading
import time
from typing import Any, Callable, Dict, Generic, List, Optional, TypeVar, cast

from ._wait import wait_for

__all__ = ["RawServer", "RawPeer"]

T = TypeVar("T")
P = TypeVar("P", bound="RawPeer")
S = TypeVar("S", bound="RawServer[Any]")
log = logging.getLogger("aikit_transports.testing.raw")

#: The longest request head read, in bytes.
MAX_HEAD = 64 * 1024


class RawPeer:
    """The server side of one connection of :class:`RawServer`, for a script.

    :param sock: the accepted socket (the server closes it).
    :param stop: set when the server closes: reads, :meth:`hold` and :meth:`trickle` end.
    """

    def __init__(self, sock: socket.socket, stop: threading.Event) -> None:
        self.sock = sock
        self.stop = stop
        #: The request head as received, without the blank line that ends it.
        self.head = b""
        #: The request's headers, names lower-cased (the last one of a repeated name).
        self.headers: Dict[str, str] = {}
        self._buf = b""

    @property
    def request_line(self) -> str:
        """The first line of the request, such as ``GET /s HTTP/1.1``."""
        return self.head.split(b"\r\n", 1)[0].decode("latin-1")

    def read_head(self, timeout: float = 5.0) -> Dict[str, str]:
        """Read the request head (once: the server does before the script); its headers.

        :param timeout: the longest wait for the client's bytes, in seconds.
        """
        if self.head:
            return self.headers
        while b"\r\n\r\n" not in self._buf:
            if len(self._buf) > MAX_HEAD:
                raise ConnectionError(f"the request head is over {MAX_HEAD} bytes")
            if not self._recv(timeout):
                raise ConnectionError("the client left before the end of its request")
        self.head, self._buf = self._buf.split(b"\r\n\r\n", 1)
        for line in self.head.decode("latin-1").split("\r\n")[1:]:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()
        return self.headers

    def header(self, name: str) -> Optional[bytes]:
        """The value of request header ``name`` as sent (bytes), or ``None``.

        :param name: the header's name, in any case.
        """
        for line in self.head.split(b"\r\n")[1:]:
            key, _, value = line.partition(b":")
            if key.strip().lower() == name.lower().encode("latin-1"):
                return value.strip()
        return None

    def send(self, data: bytes) -> bool:
        """Write ``data``; ``False`` once the client is gone.

        :param data: the bytes to write.
        """
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    def trickle(self, data: bytes, every: float) -> bool:
        """Write ``data`` one byte at a time; ``False`` once the client or the server left.

        :param data: the bytes to write.
        :param every: the pause after each byte, in seconds.
        """
        for i in range(len(data)):
            if not self.send(data[i : i + 1]) or self.stop.wait(every):
                return False
        return True

    def hold(self) -> None:
        """Keep the connection open, saying nothing, until the client or the server leaves."""
        while self._recv(None):
            self._buf = b""

    def _recv(self, timeout: Optional[float]) -> bool:
        """Read what the client sent into the buffer; ``False`` at its end or the server's
        (``TimeoutError`` after ``timeout`` seconds of silence; ``None``: no limit)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.stop.is_set():
            wait = 0.05
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"the client sent nothing for {timeout} s")
                wait = min(left, wait)
            try:
                if not select.select([self.sock], [], [], wait)[0]:
                    continue
                data = self.sock.recv(65536)
            except (OSError, ValueError):  # ValueError: closed under us
                return False
            self._buf += data
            return bool(data)
        return False


class RawServer(Generic[P]):
    """A socket server on 127.0.0.1 where ``script(peer)`` plays each connection once its
    request head is read, in a thread of its own (a connection held open blocks no other).

    ``start()`` (or the context manager) starts it; ``close()`` stops the scripts (their reads
    end), closes every socket and joins every thread.

    :param script: called with the :class:`RawPeer` of each connection; an ``OSError`` it
        raises (the client left) ends that connection quietly.
    :param scheme: the scheme of :meth:`url`.
    :param host: the address to listen on.
    """

    def __init__(
        self, script: Callable[[P], None], scheme: str = "http", host: str = "127.0.0.1"
    ) -> None:
        self.script = script
        self.scheme = scheme
        self.host = host
        #: The port, a free one (set by ``start()``).
        self.port = 0
        #: Every connection that sent its request head, in order of arrival.
        self.peers: List[P] = []
        #: Connections whose script has returned.
        self.finished = 0
        self._stop = threading.Event()
        self._changed = threading.Condition()
        self._listener: Optional[socket.socket] = None
        self._acceptor: Optional[threading.Thread] = None
        self._threads: Dict[threading.Thread, socket.socket] = {}

    def start(self: S) -> S:
        """Start listening (idempotent); returns ``self``."""
        if self._listener is not None:
            return self
        listener = self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, 0))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._acceptor = threading.Thread(
            target=self._accept, name=f"aikit-testing-raw-{self.port}", daemon=True
        )
        self._acceptor.start()
        return self

    def close(self) -> None:
        """Stop the scripts, close every socket and join every thread; idempotent."""
        self._stop.set()
        acceptor, self._acceptor = self._acceptor, None
        if acceptor is not None:
            acceptor.join(5)
        if self._listener is not None:
            self._listener.close()
        with self._changed:
            threads = dict(self._threads)
        deadline = time.monotonic() + 2.0
        for thread, sock in threads.items():
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():  # a script blocked in a write: cut it
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                thread.join(5)

    def __enter__(self: S) -> S:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def url(self, path: str = "/") -> str:
        """The URL of ``path`` on this server.

        :param path: the path, with a query string if any.
        """
        return f"{self.scheme}://{self.host}:{self.port}{path}"

    def wait_for(self, predicate: Callable[[], T], timeout: float = 10.0) -> T:
        """Wait until ``predicate()`` is truthy (checked whenever a connection arrives or its
        script returns); its value.

        :param predicate: a function of no arguments, called under the server's lock.
        :param timeout: the longest wait in seconds; then ``TimeoutError``.
        """
        return wait_for(self._changed, predicate, timeout)

    def wait_for_peers(self, n: int, timeout: float = 5.0) -> List[P]:
        """Wait until ``n`` connections sent their request head; ``peers`` then.

        :param n: how many connections, counted from the server's start.
        :param timeout: the longest wait in seconds; then ``TimeoutError``.
        """
        wait_for(self._changed, lambda: len(self.peers) >= n, timeout, f"{n} connections")
        with self._changed:
            return list(self.peers)

    def _new_peer(self, sock: socket.socket) -> P:
        """The peer of a new connection (a subclass makes its own kind)."""
        return cast(P, RawPeer(sock, self._stop))

    def _accept(self) -> None:
        listener = self._listener
        assert listener is not None
        while not self._stop.is_set():
            if not select.select([listener], [], [], 0.05)[0]:
                continue
            try:
                sock, _ = listener.accept()
            except OSError:
                return
            thread = threading.Thread(
                target=self._serve,
                args=(sock,),
                name=f"aikit-testing-raw-{self.port}-{len(self._threads) + 1}",
                daemon=True,
            )
            with self._changed:
                self._threads[thread] = sock
            thread.start()

    def _serve(self, sock: socket.socket) -> None:
        peer = self._new_peer(sock)
        try:
            peer.read_head()
        except OSError:
            log.debug("raw server: no request head", exc_info=True)
            sock.close()
            return
        with self._changed:
            self.peers.append(peer)
            self._changed.notify_all()
        try:
            self.script(peer)
        except OSError:  # TimeoutError and ConnectionError included
            log.debug("raw server: the script ended early", exc_info=True)
        finally:
            sock.close()
            with self._changed:
                self.finished += 1
                self._changed.notify_all()
