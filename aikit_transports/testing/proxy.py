"""A TCP forwarder on 127.0.0.1 that misbehaves on demand: cut, stall, slow down, fragment, refuse.

Tests put it between a transport and a real server to make the network fail in the ways real
networks do: a connection reset (:meth:`FaultProxy.cut`), a half-open connection that silently
stops forwarding (:meth:`FaultProxy.stall`), a slow link (:meth:`FaultProxy.slow`), bytes
arriving one at a time (:meth:`FaultProxy.fragment`) and a server that is down
(:meth:`FaultProxy.refuse`); :meth:`FaultProxy.cut_after` cuts at an exact point of the stream.
With ``http_connect=True`` it also acts as an HTTP CONNECT proxy (the tunnel always leads to the
target); with ``ssl_context`` it terminates TLS (clients speak TLS to it, the target gets plain
text), which puts a TLS front on a plain test server. One thread, named
``aikit-testing-proxy-<port>``.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from typing import Any, Callable, List, Optional, Set

from ._loop import LoopThread

__all__ = ["FaultProxy"]

_CHUNK = 65536


class _Pair:
    """The two sides of one proxied connection."""

    __slots__ = ("client", "upstream")

    def __init__(self, client: asyncio.StreamWriter, upstream: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream = upstream

    def abort(self) -> None:
        for writer in (self.client, self.upstream):
            writer.transport.abort()


class FaultProxy:
    """Forwards 127.0.0.1:``port`` to ``target_host:target_port``, with faults on demand.

    ``cut()`` resets every open connection; ``stall()`` stops forwarding (both ways, new
    connections included) without closing anything until ``resume()``; ``slow(delay)`` holds
    each chunk for ``delay`` seconds; ``fragment(True)`` writes one byte at a time;
    ``refuse(True)`` closes new connections at once; ``cut_after(n)`` resets every connection
    once ``n`` more bytes went from the target to the clients. Usable as a context manager.

    :param target_host: the host to forward to.
    :param target_port: its port.
    :param host: the address to listen on (a free port is chosen: ``port``).
    :param http_connect: act as an HTTP proxy: expect a ``CONNECT host:port`` request first
        (recorded in ``connect_requests``) and answer it with 200.
    :param ssl_context: serve TLS to clients with this context (the target side stays plain).
    """

    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        host: str = "127.0.0.1",
        http_connect: bool = False,
        ssl_context: Optional[ssl.SSLContext] = None,
    ) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.http_connect = http_connect
        #: Request lines of the CONNECT requests received (``http_connect=True``).
        self.connect_requests: List[str] = []
        #: Connections accepted so far (refused ones included).
        self.accepted = 0
        #: Connections reset by :meth:`cut` and :meth:`cut_after` so far.
        self.cuts = 0
        #: Bytes forwarded from the target to clients so far.
        self.bytes_down = 0
        self._cut_budget: Optional[int] = None
        self._pairs: Set[_Pair] = set()
        self._handlers: Set[asyncio.Task[None]] = set()
        self._delay = 0.0
        self._fragment = False
        self._refusing = False
        self._closed = False
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, 0))
        listener.listen(128)
        self.host = host
        self.port: int = listener.getsockname()[1]
        self._thread = LoopThread(f"aikit-testing-proxy-{self.port}")
        self._forwarding: asyncio.Event = self._thread.run(self._make_event)
        self._forwarding.set()
        try:
            self._server = self._thread.run(
                lambda: asyncio.start_server(
                    self._handle, sock=listener, limit=_CHUNK, ssl=ssl_context
                )
            )
        except BaseException:
            listener.close()
            self._thread.stop()
            raise

    @staticmethod
    async def _make_event() -> asyncio.Event:
        return asyncio.Event()

    def url(self, path: str = "/", scheme: str = "ws") -> str:
        """``scheme://host:port/path`` through this proxy.

        :param path: the path (and query).
        :param scheme: the URL scheme.
        """
        return f"{scheme}://{self.host}:{self.port}{path}"

    @property
    def connections(self) -> int:
        """Connections being forwarded right now."""
        return len(self._pairs)

    # -- faults -------------------------------------------------------------------------

    def _on_loop(self, fn: Callable[[], Any]) -> None:
        """Apply ``fn`` on the loop and return once it is in force."""

        async def apply() -> None:
            fn()

        if not self._closed:
            self._thread.run(apply)

    def cut(self) -> int:
        """Reset every open connection (both sides); how many there were."""
        count = len(self._pairs)
        self._on_loop(self._abort_all)
        return count

    def cut_after(self, nbytes: int) -> None:
        """Once ``nbytes`` more bytes went from the target to clients, reset every connection
        (one shot, replacing an earlier one not yet done): a cut at an exact point of a stream,
        whatever the timing. Bytes the proxy still buffered for a client at that moment are lost
        as in a real reset.

        :param nbytes: the bytes still to forward before the cut (at least 1).
        """
        if nbytes < 1:
            raise ValueError("nbytes must be at least 1")

        def arm() -> None:
            self._cut_budget = nbytes

        self._on_loop(arm)

    def _abort_all(self) -> None:
        self.cuts += len(self._pairs)
        for pair in list(self._pairs):
            pair.abort()

    def stall(self) -> None:
        """Stop forwarding in both directions, silently, until :meth:`resume`."""
        self._on_loop(self._forwarding.clear)

    def resume(self) -> None:
        """Forward again what a stall held back, and everything after it."""
        self._on_loop(self._forwarding.set)

    def slow(self, delay: float) -> None:
        """Hold every chunk for ``delay`` seconds before forwarding it (0 = off).

        :param delay: seconds per chunk.
        """
        self._delay = max(0.0, float(delay))

    def fragment(self, on: bool = True) -> None:
        """Forward one byte per write (``False`` to forward chunks whole again).

        :param on: on or off.
        """
        self._fragment = bool(on)

    def refuse(self, on: bool = True) -> None:
        """Close new connections as soon as they are accepted (a server that is down).

        :param on: on or off.
        """
        self._refusing = bool(on)

    # -- forwarding ---------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
            task.add_done_callback(self._handlers.discard)
        self.accepted += 1
        if self._refusing:
            writer.transport.abort()
            return
        try:
            if self.http_connect and not await self._accept_connect(reader, writer):
                return
            up_reader, up_writer = await asyncio.open_connection(
                self.target_host, self.target_port, limit=_CHUNK
            )
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            writer.transport.abort()
            return
        pair = _Pair(writer, up_writer)
        self._pairs.add(pair)
        try:
            await asyncio.gather(
                self._pump(reader, up_writer), self._pump(up_reader, writer, downstream=True)
            )
        finally:
            self._pairs.discard(pair)
            pair.abort()

    async def _accept_connect(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        line = head.split(b"\r\n", 1)[0].decode("latin-1")
        self.connect_requests.append(line)
        if not line.upper().startswith("CONNECT "):
            writer.write(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            writer.close()
            return False
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        return True

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        downstream: bool = False,
    ) -> None:
        forwarding = self._forwarding
        try:
            while True:
                data = await reader.read(_CHUNK)
                if not data:
                    break
                await forwarding.wait()
                if self._delay:
                    await asyncio.sleep(self._delay)
                    await forwarding.wait()
                budget = self._cut_budget if downstream else None
                if budget is not None:
                    if len(data) >= budget:
                        data = data[:budget]
                        self._cut_budget = None
                    else:
                        self._cut_budget = budget - len(data)
                        budget = None
                if self._fragment:
                    for i in range(len(data)):
                        writer.write(data[i : i + 1])
                        await writer.drain()
                else:
                    writer.write(data)
                    await writer.drain()
                if downstream:
                    self.bytes_down += len(data)
                if budget is not None:
                    self._abort_all()
                    return
            writer.close()  # the other side finished: pass the end on (after what is buffered)
        except OSError:
            writer.transport.abort()
        except asyncio.CancelledError:
            writer.transport.abort()
            raise

    # -- life cycle ---------------------------------------------------------------------

    def close(self) -> None:
        """Reset every connection, stop listening and join the thread; idempotent."""
        if self._closed:
            return

        async def shutdown() -> None:
            self._forwarding.set()
            self._server.close()
            for pair in list(self._pairs):
                pair.abort()
            await asyncio.wait_for(self._server.wait_closed(), 5)
            # Let the handlers see their connections end (rather than be cancelled with the
            # loop, which Python 3.11's asyncio reports as an error).
            if self._handlers:
                await asyncio.wait(list(self._handlers), timeout=5)

        try:
            self._thread.run(shutdown)
        finally:
            self._closed = True
            self._thread.stop()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<FaultProxy :{self.port} -> {self.target_host}:{self.target_port}>"
