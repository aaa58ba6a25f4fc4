"""The scale benchmark's server: many idle SSE and WebSocket streams, then a paced load.

Run by ``bench/scale.py`` in a process of its own, on one asyncio loop. It prints one JSON line
``{"sse_port": P, "ws_port": Q}`` once listening, then obeys commands on its standard input, one
per line, each answered by one JSON line on its standard output:

``count``           ``{"sse": n, "ws": m}``: the streams open right now
``load RATE SECS``  sends ``RATE`` events per second in total for ``SECS`` seconds, spread
                    round-robin over every open stream (event ``k`` goes to stream ``k % n``),
                    and answers when the last one is written: ``sent``, ``t0`` and ``t1`` (the
                    server's ``time.monotonic()`` at the start and end), ``streams``,
                    ``skipped`` (events for streams closed meanwhile), ``behind_max_ms`` (how
                    late the pacing ran at worst) and ``cpu_s`` (this process, during the load)

It stops, closing every stream, when its standard input closes.

Streams (both on 127.0.0.1):

* SSE (port ``P``, any path, raw asyncio streams, HTTP/1.1 chunked): ``?hb=SECS`` asks for a
  ``: hb`` comment every ``SECS`` seconds of the stream's silence (none without it).
* WebSocket (port ``Q``, any path, the ``websockets`` asyncio server, no compression, no pings of
  its own: it only answers the client's).

Each event is ``"<stamp> <seq>"``: the server's ``time.monotonic()`` right before the write
(CLOCK_MONOTONIC is system-wide on Linux) and the event's global sequence number. SSE frames it
as ``data: <stamp> <seq>`` + a blank line, WebSocket as one text message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import sys
import time
from typing import Dict, List, Optional, Union
from urllib.parse import parse_qs, urlsplit

monotonic = time.monotonic

SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)
HEARTBEAT = b": hb\n\n"
HEARTBEAT_CHUNK = b"%x\r\n%s\r\n" % (len(HEARTBEAT), HEARTBEAT)
BACKLOG = 4096


def raise_fd_limit() -> int:
    """Raise the soft limit of open files to the hard one; the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


class SSEStream:
    """One SSE response: events go out as HTTP chunks, written at once (never awaited)."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.closed = False

    def send(self, seq: int) -> bool:
        if self.closed or self.writer.is_closing():
            return False
        payload = b"data: %.6f %d\n\n" % (monotonic(), seq)
        self.writer.write(b"%x\r\n%s\r\n" % (len(payload), payload))
        return True


class WSStream:
    """One WebSocket: events go through a queue to a sender task, so that writes stay in order
    and a slow reader delays only its own stream."""

    def __init__(self, ws: object, server: ScaleServer) -> None:
        self.ws = ws
        self.server = server
        self.closed = False
        self.queue: asyncio.Queue[int] = asyncio.Queue()

    def send(self, seq: int) -> bool:
        if self.closed:
            return False
        self.queue.put_nowait(seq)
        self.server.ws_queued += 1
        return True

    def abandon(self) -> None:
        """The stream closed: what is still queued will never be written."""
        self.closed = True
        while not self.queue.empty():
            self.queue.get_nowait()
            self.queue.task_done()

    async def sender(self) -> None:
        send = self.ws.send  # type: ignore[attr-defined]
        queue = self.queue
        while True:
            seq = await queue.get()
            try:
                await send(f"{monotonic():.6f} {seq}")
            except Exception:
                self.abandon()
                return
            finally:
                queue.task_done()
            self.server.ws_sent += 1


Stream = Union[SSEStream, WSStream]


class ScaleServer:
    """Holds the streams and runs the commands."""

    def __init__(self) -> None:
        self.sse: Dict[int, SSEStream] = {}
        self.ws: Dict[int, WSStream] = {}
        self.ws_sent = 0
        self.ws_queued = 0
        self.handlers: set[asyncio.Task[None]] = set()

    # -- SSE ----------------------------------------------------------------------------------

    async def handle_sse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self.handlers.add(task)
        stream: Optional[SSEStream] = None
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            target = head.split(b" ", 2)[1].decode("latin-1")
            query = parse_qs(urlsplit(target).query)
            hb = float(query.get("hb", ["0"])[0])
            writer.write(SSE_HEAD)
            await writer.drain()
            stream = SSEStream(writer)
            self.sse[id(stream)] = stream
            while True:
                if hb > 0:
                    try:
                        data = await asyncio.wait_for(reader.read(4096), hb)
                    except asyncio.TimeoutError:
                        writer.write(HEARTBEAT_CHUNK)
                        continue
                else:
                    data = await reader.read(4096)
                if not data:
                    break
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, IndexError):
            pass
        except asyncio.CancelledError:
            pass
        finally:
            if stream is not None:
                stream.closed = True
                self.sse.pop(id(stream), None)
            writer.close()
            if task is not None:
                self.handlers.discard(task)

    # -- WebSocket ----------------------------------------------------------------------------

    async def handle_ws(self, ws: object) -> None:
        stream = WSStream(ws, self)
        self.ws[id(stream)] = stream
        sender = asyncio.ensure_future(stream.sender())
        try:
            await ws.wait_closed()  # type: ignore[attr-defined]
        finally:
            self.ws.pop(id(stream), None)
            sender.cancel()
            stream.abandon()

    # -- commands -----------------------------------------------------------------------------

    async def load(self, rate: float, seconds: float) -> Dict[str, object]:
        """Send ``rate`` events/s for ``seconds`` s, round-robin over every open stream."""
        streams: List[Stream] = [*self.sse.values(), *self.ws.values()]
        n = len(streams)
        total = int(rate * seconds) if n else 0
        ws_before = self.ws_sent
        queued_before = self.ws_queued
        cpu0 = cpu_seconds()
        sent = skipped = 0
        behind = 0.0
        k = 0
        t0 = monotonic()
        while k < total:
            now = monotonic()
            due = min(total, int((now - t0) * rate) + 1)
            if k < due:
                behind = max(behind, now - (t0 + k / rate))
            while k < due:
                if streams[k % n].send(k):
                    sent += 1
                else:
                    skipped += 1
                k += 1
            if k < total:
                await asyncio.sleep(max(0.0, t0 + k / rate - monotonic()))
        # WebSocket events are written by their streams' tasks: wait for them (bounded)
        ws_queued = self.ws_queued - queued_before
        if ws_queued:
            waits = [s.queue.join() for s in streams if isinstance(s, WSStream) and not s.closed]
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.gather(*waits), 30.0)
            ws_written = self.ws_sent - ws_before
            skipped += ws_queued - ws_written
            sent += ws_written - ws_queued
        t1 = monotonic()
        return {
            "sent": sent,
            "t0": t0,
            "t1": t1,
            "streams": n,
            "skipped": skipped,
            "behind_max_ms": behind * 1000,
            "cpu_s": cpu_seconds() - cpu0,
        }

    async def commands(self) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while True:
            line = await reader.readline()
            if not line:
                return
            words = line.decode().split()
            if not words:
                continue
            if words[0] == "count":
                answer: Dict[str, object] = {"sse": len(self.sse), "ws": len(self.ws)}
            elif words[0] == "load":
                answer = await self.load(float(words[1]), float(words[2]))
            else:
                answer = {"error": f"unknown command {words[0]!r}"}
            sys.stdout.write(json.dumps(answer) + "\n")
            sys.stdout.flush()


async def main() -> None:
    from websockets.asyncio.server import serve

    raise_fd_limit()
    app = ScaleServer()
    sse_server = await asyncio.start_server(app.handle_sse, "127.0.0.1", 0, backlog=BACKLOG)
    ws_server = await serve(
        app.handle_ws,
        "127.0.0.1",
        0,
        ping_interval=None,
        compression=None,
        backlog=BACKLOG,
    )
    sse_port = sse_server.sockets[0].getsockname()[1]
    ws_port = ws_server.sockets[0].getsockname()[1]
    sys.stdout.write(json.dumps({"sse_port": sse_port, "ws_port": ws_port}) + "\n")
    sys.stdout.flush()
    try:
        await app.commands()
    finally:
        sse_server.close()
        for task in list(app.handlers):
            task.cancel()
        ws_server.close()  # closes every connection (1001)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(ws_server.wait_closed(), 10.0)


if __name__ == "__main__":
    asyncio.run(main())
