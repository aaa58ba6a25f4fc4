"""A raw TCP server on 127.0.0.1 for hostile and exact-bytes cases: each connection's request
head is read and recorded, then a script writes whatever it likes (a trickle, a head that never
ends, a cut mid-body) on the bare socket."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from typing import Optional

__all__ = ["RawServer", "RawConnection"]


class RawConnection:
    """One accepted connection: ``head`` is its request head, ``send``/``trickle`` write."""

    def __init__(self, sock: socket.socket, head: bytes, stop: threading.Event) -> None:
        self.sock = sock
        self.head = head
        self.stop = stop

    @property
    def request_line(self) -> str:
        return self.head.split(b"\r\n", 1)[0].decode("latin-1")

    def header(self, name: str) -> Optional[bytes]:
        """The raw value of request header ``name`` (bytes, as sent), or ``None``."""
        for line in self.head.split(b"\r\n")[1:]:
            key, _, value = line.partition(b":")
            if key.strip().lower() == name.lower().encode():
                return value.strip()
        return None

    def send(self, data: bytes) -> bool:
        """Write ``data``; ``False`` once the client is gone."""
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    def trickle(self, data: bytes, every: float) -> bool:
        """Write ``data`` one byte at a time, ``every`` seconds apart, until the client leaves."""
        for i in range(len(data)):
            if not self.send(data[i : i + 1]) or self.stop.wait(every):
                return False
        return True

    def hold(self) -> None:
        """Keep the connection open, saying nothing, until the client or the server leaves."""
        self.sock.settimeout(0.1)
        while not self.stop.is_set():
            try:
                if not self.sock.recv(65536):
                    return
            except socket.timeout:
                continue
            except OSError:
                return


Script = Callable[[RawConnection], None]


class RawServer:
    """``with RawServer(script) as srv:`` serves ``script(conn)`` to every connection, in a thread
    of its own; ``srv.connections`` holds them in arrival order; ``close()`` joins everything."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.connections: list[RawConnection] = []
        self._stop = threading.Event()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._listener.settimeout(0.1)
        self.port = self._listener.getsockname()[1]
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._acceptor = threading.Thread(target=self._accept, name="raw-server", daemon=True)
        self._acceptor.start()

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def wait_for_connections(self, n: int, timeout: float = 5.0) -> list[RawConnection]:
        """Block until ``n`` connections sent their request head (``TimeoutError`` after)."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: len(self.connections) >= n, timeout):
                raise TimeoutError(f"{len(self.connections)} of {n} connections came")
            return list(self.connections)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(sock,), daemon=True)
            with self._lock:
                self._threads.append(thread)
            thread.start()

    def _serve(self, sock: socket.socket) -> None:
        with sock:
            sock.settimeout(5.0)
            head = b""
            try:
                while b"\r\n\r\n" not in head and len(head) < 65536:
                    part = sock.recv(65536)
                    if not part:
                        return
                    head += part
            except OSError:
                return
            conn = RawConnection(sock, head.split(b"\r\n\r\n", 1)[0], self._stop)
            with self._arrived:
                self.connections.append(conn)
                self._arrived.notify_all()
            with contextlib.suppress(OSError):
                self.script(conn)

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        self._acceptor.join(5)
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(5)

    def __enter__(self) -> RawServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
